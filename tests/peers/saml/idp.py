#!/usr/bin/env python3
"""SAML 2.0 identity-provider test peer for lockgate's SAML SSO (see docs/connectors/saml.md).

A real, third-party IdP: pysaml2's saml2.server.Server parses the AuthnRequest and builds and
signs the Response (the assertion is signed by the xmlsec1 binary, RSA-SHA256 with SHA-256
digests, exclusive c14n); this script only wires it to a small threaded HTTP server on
127.0.0.1:PORT and logs every request in as the current subject, without a login page.

Its entity ID is http://127.0.0.1:PORT/idp/metadata.

Endpoints:
  GET  /idp/metadata         the IdP's metadata (SingleSignOnService HTTP-Redirect at
                             http://127.0.0.1:PORT/sso/redirect, the signing certificate)
  GET  /sso/redirect?SAMLRequest=...&RelayState=...
                             reads the AuthnRequest (HTTP-Redirect binding), answers 200
                             text/html with pysaml2's auto-submitting HTTP-POST form to the
                             request's ACS: hidden inputs SAMLResponse and (when a RelayState
                             came with the request) RelayState. NameID: the subject, format
                             urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified. Attributes:
                             mail = the subject, uid = its local part.
  POST /control/subject      body: the subject for later logins; answers 204
  POST /control/sp-metadata  body: the SP's metadata XML, replacing the one read at start
                             (written back to --sp-metadata); answers 204

Errors are answered 400 (or 404) with a one-line text/plain reason.

Usage:
  python3 idp.py --port P --key KEY.pem --cert CERT.pem --sp-metadata SP_METADATA.xml \
      [--subject alice@example.com] [--generate] [--uri-attributes]

--generate writes an RSA 2048 key and a self-signed certificate to KEY/CERT when either file is
missing (existing files are used as they are). Attribute names are plain ("mail", "uid",
NameFormat basic) unless --uri-attributes asks for pysaml2's urn:oid names with FriendlyName.

Prints "READY" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
"""

import argparse
import datetime
import os
import signal
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# pysaml2 touches cryptography's deprecated CFB mode at import; keep stderr for real problems.
warnings.filterwarnings("ignore", message=".*CFB has been moved.*")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.attribute_converter import AttributeConverterNOOP
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import (
    AUTHN_PASSWORD_PROTECTED,
    NAME_FORMAT_BASIC,
    NAME_FORMAT_URI,
    NAMEID_FORMAT_UNSPECIFIED,
    NameID,
)
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

MAX_BODY = 1 << 20


def generate_key_pair(key_path, cert_path):
    """An RSA 2048 key and a self-signed certificate (one year), as PEM files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lockgate test IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class Idp:
    """The pysaml2 server and the current subject, shared by the request threads."""

    def __init__(self, args):
        self.args = args
        self.base = f"http://127.0.0.1:{args.port}"
        self.entity_id = f"{self.base}/idp/metadata"
        self.sso_url = f"{self.base}/sso/redirect"
        self.lock = threading.Lock()
        self.subject = args.subject
        self.server = self._server()
        self.metadata = create_metadata_string(None, config=self.server.config, sign=False).decode()

    def _server(self):
        name_form = NAME_FORMAT_URI if self.args.uri_attributes else NAME_FORMAT_BASIC
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "key_file": self.args.key,
                "cert_file": self.args.cert,
                "xmlsec_binary": get_xmlsec_binary(["/usr/bin", "/usr/local/bin"]),
                "metadata": {"local": [self.args.sp_metadata]},
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
                "accepted_time_diff": 60,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)],
                        },
                        "name_id_format": [NAMEID_FORMAT_UNSPECIFIED],
                        "want_authn_requests_signed": False,
                        "sign_assertion": True,
                        "sign_response": False,
                        "policy": {
                            "default": {
                                "lifetime": {"minutes": 5},
                                "name_form": name_form,
                                "attribute_restrictions": None,
                            },
                        },
                    },
                },
            }
        )
        if not self.args.uri_attributes:
            # Attribute names as given ("mail", "uid"), not pysaml2's urn:mace/urn:oid maps.
            config.attribute_converters = [AttributeConverterNOOP(NAME_FORMAT_BASIC)]
        return Server(config=config)

    def set_subject(self, subject):
        with self.lock:
            self.subject = subject

    def set_sp_metadata(self, xml):
        with self.lock:
            path = self.args.sp_metadata
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(xml)
            os.replace(tmp, path)
            self.server = self._server()

    def login(self, saml_request, relay_state):
        """The HTML form that posts the signed response for the current subject to the ACS."""
        with self.lock:
            server, subject = self.server, self.subject
        request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        response_args = server.response_args(request.message, [BINDING_HTTP_POST])
        identity = {"mail": [subject], "uid": [subject.split("@", 1)[0]]}
        response = server.create_authn_response(
            identity,
            userid=subject,
            name_id=NameID(format=NAMEID_FORMAT_UNSPECIFIED, text=subject),
            authn={"class_ref": AUTHN_PASSWORD_PROTECTED, "authn_auth": self.entity_id},
            sign_assertion=True,
            sign_response=False,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            **response_args,
        )
        http = server.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            destination=response_args["destination"],
            relay_state=relay_state,
            response=True,
        )
        return http["data"]


def handler_for(idp):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("idp: %s %s\n" % (self.command, urlsplit(self.path).path))

        def reply(self, status, body=b"", content_type="text/plain; charset=utf-8"):
            if isinstance(body, str):
                body = body.encode("utf-8")
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if status != 204:
                self.wfile.write(body)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            return self.rfile.read(length).decode("utf-8")

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/idp/metadata":
                self.reply(200, idp.metadata, "application/samlmetadata+xml")
            elif url.path == "/sso/redirect":
                query = parse_qs(url.query)
                request = query.get("SAMLRequest", [""])[0]
                relay_state = query.get("RelayState", [""])[0]
                if not request:
                    self.reply(400, "no SAMLRequest\n")
                    return
                try:
                    page = idp.login(request, relay_state)
                except Exception as e:  # pysaml2 raises many kinds; all mean a bad request
                    self.reply(400, f"authentication request refused: {type(e).__name__}: {e}\n")
                    return
                self.reply(200, page, "text/html; charset=utf-8")
            else:
                self.reply(404, "not found\n")

        def do_POST(self):
            path = urlsplit(self.path).path
            try:
                body = self.body()
            except ValueError as e:
                self.reply(400, f"{e}\n")
                return
            if path == "/control/subject":
                subject = body.strip()
                if not subject:
                    self.reply(400, "empty subject\n")
                    return
                idp.set_subject(subject)
                self.reply(204)
            elif path == "/control/sp-metadata":
                try:
                    idp.set_sp_metadata(body)
                except Exception as e:
                    self.reply(400, f"SP metadata refused: {type(e).__name__}: {e}\n")
                    return
                self.reply(204)
            else:
                self.reply(404, "not found\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True, help="RSA private key (PEM)")
    parser.add_argument("--cert", required=True, help="its certificate (PEM)")
    parser.add_argument("--sp-metadata", required=True, help="the SP's metadata XML file")
    parser.add_argument("--subject", default="alice@example.com")
    parser.add_argument("--generate", action="store_true", help="create KEY/CERT if missing")
    parser.add_argument("--uri-attributes", action="store_true", help="urn:oid attribute names")
    args = parser.parse_args()

    if not (os.path.exists(args.key) and os.path.exists(args.cert)):
        if not args.generate:
            parser.error("--key/--cert do not exist (use --generate to create them)")
        generate_key_pair(args.key, args.cert)

    idp = Idp(args)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(idp))
    httpd.daemon_threads = True

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("READY", flush=True)
    httpd.serve_forever()
    httpd.server_close()


if __name__ == "__main__":
    main()
