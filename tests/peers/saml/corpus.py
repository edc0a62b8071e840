#!/usr/bin/env python3
"""SAML response corpus for lockgate's SAML SSO tests (see docs/connectors/saml.md).

Builds, independently of the service provider, a set of SAML 2.0 Responses for one login:
correct ones and attacks that a correct SP must refuse. The XML is built with lxml and signed
with signxml (enveloped, RSA-SHA256, SHA-256 digests, exclusive C14N without comments; the
assertion's signature is placed right after its Issuer, as the SAML schema wants).

Usage:
  python3 corpus.py --key IDP_KEY.pem --cert IDP_CERT.pem \
      --attacker-key AK.pem --attacker-cert AC.pem \
      --idp-entity-id ID --sp-entity-id SPID --acs ACS_URL \
      --request-id REQ --other-request-id REQ2 \
      --subject alice@example.com --now UNIX_SECONDS [--check]

The attacker key and certificate (RSA 2048, self-signed) are written when their files are
missing. Prints one JSON object on stdout: case name -> {"response": base64 of the Response XML
(for deflate_bomb: of raw DEFLATE bytes), "expect": lowercase substring, or list of
alternatives, naming what the refusal is about ("accepted" for the cases that must pass)}.

Every case but "valid" and "valid_other_request" must be refused. All cases answer REQ except
replay and valid_other_request (REQ2) and wrong_in_response_to ("_unknown_request"). "replay"
reuses valid's assertion ID ("_valid1") and is refused only once "valid" was accepted.

--check verifies each case with signxml against the IdP certificate and prints one line per
case to stderr; it exits 1 when a case meant to carry a valid signature does not verify or a
case meant to break the signature does.
"""

import argparse
import base64
import copy
import datetime
import json
import os
import sys
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import SignatureConfiguration, XMLSigner, XMLVerifier
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
NSMAP = {"samlp": SAMLP, "saml": SAML}
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_WITH_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
XPATH_TRANSFORM = "http://www.w3.org/TR/1999/REC-xpath-19991116"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"

MALLORY = "mallory@example.com"
EVIL_ISSUER = "https://evil.example/idp"
UNKNOWN_REQUEST = "_unknown_request"
OVERSIZED_XML_BYTES = 310 * 1024
BOMB_BYTES = 50 * 1000 * 1000

# What each refusal is about (documentation for the harness and for readers of a failure).
EXPECT = {
    "valid": "accepted",
    "valid_other_request": "accepted",
    "replay": ["replay", "already"],
    "xsw1": ["signature", "assertion"],
    "xsw2": ["signature", "assertion"],
    "xsw3": ["assertion", "signature"],
    "xsw4": ["assertion", "signature"],
    "xsw5": ["assertion", "signature"],
    "xsw6": ["assertion", "signature"],
    "xsw7": ["assertion", "signature", "duplicate"],
    "xsw8": ["assertion", "signature", "duplicate"],
    "comment_injection": ["comment", "nameid"],
    "unsigned": "not signed",
    "tampered": "signature",
    "attacker_keyinfo": ["signature", "certificate"],
    "doctype": ["doctype", "document type"],
    "with_comments": ["canonicalisation", "canonicalization", "withcomments", "not allowed"],
    "xpath_transform": ["transform", "not allowed"],
    "duplicate_id": ["duplicate", "not unique"],
    "wrong_audience": "audience",
    "wrong_recipient": "recipient",
    "wrong_destination": "destination",
    "wrong_in_response_to": ["inresponseto", "request"],
    "wrong_issuer": "issuer",
    "expired": ["expired", "notonorafter"],
    "not_yet_valid": ["not valid yet", "notbefore"],
    "oversized": ["larger", "bytes"],
    "deflate_bomb": ["base64", "xml", "compressed"],
    "encrypted_assertion": "encrypt",
    "no_authn_statement": "AuthnStatement",
    "unknown_condition": "understand",
    "wrong_version": "2.0",
}

# Whether signxml, given the IdP certificate, must accept the (first) signature of a case.
# None: not asserted (wrapping variants, whose outcome depends on the verifier's reference
# resolution; an undecodable or signature-less message).
SIGNATURE_VERIFIES = {
    "valid": True,
    "valid_other_request": True,
    "replay": True,
    "comment_injection": True,
    "doctype": True,  # checked without its DOCTYPE (signxml refuses any DTD)
    "with_comments": True,
    "wrong_audience": True,
    "wrong_recipient": True,
    "wrong_destination": True,
    "wrong_in_response_to": True,
    "wrong_issuer": True,
    "expired": True,
    "not_yet_valid": True,
    "oversized": True,
    "no_authn_statement": True,
    "unknown_condition": True,
    "wrong_version": True,
    "tampered": False,
    "attacker_keyinfo": False,
    "duplicate_id": False,  # the reference is ambiguous
    "xpath_transform": True,  # signxml skips the XPath transform; xmlsec1 runs it and accepts
    "unsigned": False,
}


def instant(secs):
    return datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def q(ns, name):
    return f"{{{ns}}}{name}"


def sub(parent, ns, name, text=None, **attrs):
    el = etree.SubElement(parent, q(ns, name), {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def generate_key_pair(key_path, cert_path, common_name):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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


class Corpus:
    def __init__(self, args):
        self.a = args
        with open(args.key, "rb") as f:
            self.key = f.read()
        with open(args.cert, "rb") as f:
            self.cert = f.read()
        with open(args.attacker_key, "rb") as f:
            self.attacker_key = f.read()
        with open(args.attacker_cert, "rb") as f:
            self.attacker_cert = f.read()
        self.now = args.now

    # --- building -------------------------------------------------------------------------

    def response(
        self,
        case,
        assertion_id=None,
        request_id=None,
        subject=None,
        destination=None,
        recipient=None,
        audience=None,
        issuer=None,
        not_before=None,
        not_on_or_after=None,
        issue_instant=None,
        extra_attributes=(),
    ):
        """An unsigned Response with one Assertion; a signature placeholder follows its Issuer."""
        now = self.now
        request_id = request_id or self.a.request_id
        subject = subject or self.a.subject
        issuer = issuer or self.a.idp_entity_id
        not_before = now - 60 if not_before is None else not_before
        not_on_or_after = now + 300 if not_on_or_after is None else not_on_or_after
        issued = instant(now if issue_instant is None else issue_instant)

        resp = etree.Element(
            q(SAMLP, "Response"),
            nsmap=NSMAP,
            ID=f"_resp_{case}",
            Version="2.0",
            IssueInstant=issued,
            Destination=destination or self.a.acs,
            InResponseTo=request_id,
        )
        sub(resp, SAML, "Issuer", issuer)
        status = sub(resp, SAMLP, "Status")
        sub(status, SAMLP, "StatusCode", Value=SUCCESS)

        a = sub(resp, SAML, "Assertion", ID=assertion_id or f"_a_{case}", Version="2.0", IssueInstant=issued)
        sub(a, SAML, "Issuer", issuer)
        etree.SubElement(a, q(DS, "Signature"), Id="placeholder", nsmap={"ds": DS})
        subj = sub(a, SAML, "Subject")
        sub(subj, SAML, "NameID", subject, Format=NAMEID_UNSPECIFIED)
        conf = sub(subj, SAML, "SubjectConfirmation", Method=BEARER)
        sub(
            conf,
            SAML,
            "SubjectConfirmationData",
            Recipient=recipient or self.a.acs,
            NotOnOrAfter=instant(not_on_or_after),
            InResponseTo=request_id,
        )
        cond = sub(
            a, SAML, "Conditions", NotBefore=instant(not_before), NotOnOrAfter=instant(not_on_or_after)
        )
        restriction = sub(cond, SAML, "AudienceRestriction")
        sub(restriction, SAML, "Audience", audience or self.a.sp_entity_id)
        authn = sub(a, SAML, "AuthnStatement", AuthnInstant=issued, SessionIndex=f"_s_{case}")
        ctx = sub(authn, SAML, "AuthnContext")
        sub(ctx, SAML, "AuthnContextClassRef", PASSWORD_PROTECTED)
        attrs = sub(a, SAML, "AttributeStatement")
        for name, value in (("mail", subject), *extra_attributes):
            attr = sub(attrs, SAML, "Attribute", Name=name)
            sub(attr, SAML, "AttributeValue", value)
        return resp

    @staticmethod
    def assertion(resp):
        return resp.find("saml:Assertion", NS)

    def sign(self, resp, target_id, c14n=EXC_C14N, key=None, cert=None):
        """Signs the element with ID target_id at the document's one placeholder Signature."""
        signer = XMLSigner(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=SignatureMethod.RSA_SHA256,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod(c14n),
        )
        return signer.sign(
            resp,
            key=key or self.key,
            cert=(cert or self.cert).decode(),
            reference_uri=f"#{target_id}",
            id_attribute="ID",
        )

    def signed(self, case, **kw):
        """A Response whose Assertion is signed with the IdP key."""
        resp = self.response(case, **kw)
        return self.sign(resp, self.assertion(resp).get("ID"))

    def without_signature(self, resp):
        """The Response with the Assertion's placeholder removed (never signed)."""
        ph = self.assertion(resp).find("ds:Signature", NS)
        ph.getparent().remove(ph)
        return resp

    def sign_response_too(self, resp):
        """Adds an enveloped signature of the whole Response, right after its Issuer."""
        issuer = resp.find("saml:Issuer", NS)
        issuer.addnext(etree.Element(q(DS, "Signature"), Id="placeholder", nsmap={"ds": DS}))
        return self.sign(resp, resp.get("ID"))

    def resign_signed_info(self, signature, key):
        """Recomputes SignatureValue over the (changed) SignedInfo, exclusive C14N, RSA-SHA256."""
        signed_info = signature.find("ds:SignedInfo", NS)
        octets = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
        private = serialization.load_pem_private_key(key, password=None)
        value = private.sign(octets, padding.PKCS1v15(), hashes.SHA256())
        signature.find("ds:SignatureValue", NS).text = base64.b64encode(value).decode()

    @staticmethod
    def make_evil(assertion):
        """The attacker's edit: mallory as NameID and mail."""
        for nameid in assertion.iter(q(SAML, "NameID")):
            nameid.text = MALLORY
        for attr in assertion.iter(q(SAML, "Attribute")):
            if attr.get("Name") == "mail":
                for v in attr.findall("saml:AttributeValue", NS):
                    v.text = MALLORY

    # --- cases ------------------------------------------------------------------------------

    def xsw(self, n):
        """Signature wrapping variant n (Somorovsky et al., "On Breaking SAML"; SAML Raider)."""
        case = f"xsw{n}"
        resp = self.signed(case)
        if n in (1, 2):
            # Wrapping around the Response signature: a copy of the signed original Response
            # (without its own signature) goes into the Signature (1) or before it (2); the
            # outer Response, now the attacker's, gets a new ID and an evil, unsigned assertion
            # (ID _evil_assertion_ID).
            resp = self.sign_response_too(resp)
            original = copy.deepcopy(resp)
            original.remove(original.find("ds:Signature", NS))
            evil = self.assertion(resp)
            evil.remove(evil.find("ds:Signature", NS))
            evil.set("ID", "_evil_assertion_ID")
            self.make_evil(evil)
            signature = resp.find("ds:Signature", NS)
            if n == 1:
                signature.append(original)
            else:
                signature.addprevious(original)
            resp.set("ID", "_evil_response_ID")
            return resp

        assertion = self.assertion(resp)
        if n in (3, 4, 7):
            # An unsigned evil copy beside (3), around (4) or in Extensions before (7) the
            # signed original.
            evil = copy.deepcopy(assertion)
            evil.remove(evil.find("ds:Signature", NS))
            self.make_evil(evil)
            if n == 3:
                evil.set("ID", "_evil_assertion_ID")
                assertion.addprevious(evil)
            elif n == 4:
                evil.set("ID", "_evil_assertion_ID")
                assertion.addprevious(evil)
                evil.append(assertion)
            else:  # 7: the copy keeps the original ID
                ext = etree.Element(q(SAMLP, "Extensions"))
                ext.append(evil)
                resp.find("saml:Issuer", NS).addnext(ext)
            return resp

        # 5, 6, 8: the assertion in place becomes the evil one, keeping the Signature; an
        # unsigned copy of the original goes after it (5), into the Signature (6), or into a
        # ds:Object in the Signature (8, keeping the original ID).
        original = copy.deepcopy(assertion)
        original.remove(original.find("ds:Signature", NS))
        self.make_evil(assertion)
        signature = assertion.find("ds:Signature", NS)
        if n == 5:
            assertion.set("ID", "_evil_assertion_ID")
            resp.append(original)
        elif n == 6:
            assertion.set("ID", "_evil_assertion_ID")
            signature.append(original)
        else:  # 8
            obj = sub(signature, DS, "Object")
            obj.append(original)
        return resp

    def cases(self):
        a, now = self.a, self.now
        out = {}
        out["valid"] = self.signed("valid", assertion_id="_valid1")
        out["replay"] = self.signed("replay", assertion_id="_valid1", request_id=a.other_request_id)
        out["valid_other_request"] = self.signed("valid_other_request", request_id=a.other_request_id)
        for n in range(1, 9):
            out[f"xsw{n}"] = self.xsw(n)

        # The NameID split by a comment: exclusive C14N (without comments) drops it, so the
        # signature stays valid while a careless reader sees only the first text node.
        resp = self.response("comment_injection")
        assertion = self.assertion(resp)
        for el in (
            assertion.find("saml:Subject/saml:NameID", NS),
            assertion.find("saml:AttributeStatement/saml:Attribute/saml:AttributeValue", NS),
        ):
            el.text = MALLORY
            comment = etree.Comment("")
            comment.tail = ".alice.example"
            el.append(comment)
        out["comment_injection"] = self.sign(resp, self.assertion(resp).get("ID"))

        out["unsigned"] = self.without_signature(self.response("unsigned"))

        resp = self.signed("tampered")
        self.assertion(resp).find("saml:Subject/saml:NameID", NS).text = MALLORY
        out["tampered"] = resp

        resp = self.response("attacker_keyinfo")
        out["attacker_keyinfo"] = self.sign(
            resp, self.assertion(resp).get("ID"), key=self.attacker_key, cert=self.attacker_cert
        )

        out["doctype"] = self.signed("doctype")  # the DOCTYPE is prepended when serialised

        resp = self.response("with_comments")
        out["with_comments"] = self.sign(
            resp, self.assertion(resp).get("ID"), c14n=EXC_C14N_WITH_COMMENTS
        )

        # An XPath transform (selecting all but the Signature, so the digest is unchanged)
        # inserted after signing; the SignatureValue is recomputed, so a verifier that runs
        # XPath transforms (xmlsec1) accepts it: only a transform policy refuses it.
        resp = self.signed("xpath_transform")
        signature = self.assertion(resp).find("ds:Signature", NS)
        enveloped = signature.find(
            f"ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform[@Algorithm='{ENVELOPED}']", NS
        )
        xpath_transform = etree.Element(q(DS, "Transform"), Algorithm=XPATH_TRANSFORM)
        # (the ds prefix is the one declared on the Signature, in scope for the expression)
        sub(xpath_transform, DS, "XPath", "not(ancestor-or-self::ds:Signature)")
        enveloped.addnext(xpath_transform)
        self.resign_signed_info(signature, self.key)
        out["xpath_transform"] = resp

        # Another element with the assertion's ID, in the Response's Extensions.
        resp = self.signed("duplicate_id")
        ext = etree.Element(q(SAMLP, "Extensions"))
        note = etree.SubElement(ext, "{urn:example:lockgate:test}Note", ID=self.assertion(resp).get("ID"))
        note.text = "duplicate"
        resp.find("saml:Issuer", NS).addnext(ext)
        out["duplicate_id"] = resp

        out["wrong_audience"] = self.signed("wrong_audience", audience="https://other-sp.example/metadata")
        out["wrong_recipient"] = self.signed("wrong_recipient", recipient="https://other-sp.example/acs")
        out["wrong_destination"] = self.signed(
            "wrong_destination", destination="https://other-sp.example/acs"
        )
        out["wrong_in_response_to"] = self.signed("wrong_in_response_to", request_id=UNKNOWN_REQUEST)
        out["wrong_issuer"] = self.signed("wrong_issuer", issuer=EVIL_ISSUER)
        out["expired"] = self.signed(
            "expired", not_before=now - 7200, not_on_or_after=now - 3600, issue_instant=now - 7200
        )
        out["not_yet_valid"] = self.signed("not_yet_valid", not_before=now + 3600, not_on_or_after=now + 3900)
        out["oversized"] = self.signed("oversized", extra_attributes=[("padding", "A" * OVERSIZED_XML_BYTES)])

        # Signed, but no statement that the subject authenticated.
        resp = self.response("no_authn_statement")
        a_el = self.assertion(resp)
        a_el.remove(a_el.find("saml:AuthnStatement", NS))
        out["no_authn_statement"] = self.sign(resp, a_el.get("ID"))

        # Signed, with a condition the SP cannot understand (validity indeterminate).
        resp = self.response("unknown_condition")
        cond = self.assertion(resp).find("saml:Conditions", NS)
        custom = sub(cond, SAML, "Condition")
        custom.set("{http://www.w3.org/2001/XMLSchema-instance}type", "DelegationRestrictionType")
        out["unknown_condition"] = self.sign(resp, self.assertion(resp).get("ID"))

        # Signed, but not a SAML 2.0 assertion.
        resp = self.response("wrong_version")
        self.assertion(resp).set("Version", "1.1")
        out["wrong_version"] = self.sign(resp, self.assertion(resp).get("ID"))

        # An EncryptedAssertion in place of the Assertion (the cipher text is random: the SP
        # has no key to decrypt it and must refuse encrypted assertions before trying).
        resp = self.without_signature(self.response("encrypted_assertion"))
        resp.remove(self.assertion(resp))
        enc = sub(resp, SAML, "EncryptedAssertion")
        data = etree.SubElement(enc, q(XENC, "EncryptedData"), nsmap={"xenc": XENC},
                                Type="http://www.w3.org/2001/04/xmlenc#Element")
        sub(data, XENC, "EncryptionMethod", Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm")
        cipher = sub(data, XENC, "CipherData")
        sub(cipher, XENC, "CipherValue", base64.b64encode(os.urandom(512)).decode())
        out["encrypted_assertion"] = resp
        return out

    def serialise(self, name, resp):
        xml = etree.tostring(resp, encoding="utf-8")
        if name == "doctype":
            xml = b'<!DOCTYPE samlp:Response [<!ENTITY e "x">]>\n' + xml
        return xml


def deflate_bomb():
    """Raw DEFLATE (no zlib header) of 50 MB of zeros: about 50 KB."""
    d = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [d.compress(chunk) for _ in range(BOMB_BYTES // len(chunk))]
    parts.append(d.compress(bytes(BOMB_BYTES % len(chunk))))
    parts.append(d.flush())
    return b"".join(parts)


def check(corpus, documents):
    """Verifies each case's first signature with signxml and the IdP certificate."""
    config = SignatureConfiguration(expect_references=1)
    failures = 0
    for name, xml in documents.items():
        if name == "deflate_bomb":
            print(f"{name:22} not XML", file=sys.stderr)
            continue
        if name == "doctype":
            xml = xml.split(b"\n", 1)[1]
        try:
            XMLVerifier().verify(xml, x509_cert=corpus.cert.decode(), id_attribute="ID", expect_config=config)
            outcome, detail = True, "signature verifies"
        except Exception as e:
            outcome, detail = False, f"signature refused: {type(e).__name__}: {str(e)[:90]}"
        want = SIGNATURE_VERIFIES.get(name)
        bad = want is not None and want != outcome
        failures += bad
        mark = "FAIL" if bad else ("ok  " if want is not None else "info")
        print(f"{mark} {name:22} {len(xml):7} bytes  {detail}", file=sys.stderr)
    return failures


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--attacker-key", required=True)
    p.add_argument("--attacker-cert", required=True)
    p.add_argument("--idp-entity-id", required=True)
    p.add_argument("--sp-entity-id", required=True)
    p.add_argument("--acs", required=True)
    p.add_argument("--request-id", required=True)
    p.add_argument("--other-request-id", required=True)
    p.add_argument("--subject", default="alice@example.com")
    p.add_argument("--now", type=int, required=True, help="Unix seconds")
    p.add_argument("--check", action="store_true", help="verify the signatures with signxml")
    p.add_argument(
        "--logins",
        help="benchmark mode: a file of request ids (one per line); prints a JSON list of valid "
        "signed responses (base64), one per request, with assertion ids _bench_N",
    )
    args = p.parse_args()

    for key, cert, name in ((args.key, args.cert, "lockgate test IdP"),):
        if not (os.path.exists(key) and os.path.exists(cert)):
            generate_key_pair(key, cert, name)
    if not (os.path.exists(args.attacker_key) and os.path.exists(args.attacker_cert)):
        generate_key_pair(args.attacker_key, args.attacker_cert, "lockgate test attacker")

    if args.logins:
        corpus = Corpus(args)
        with open(args.logins) as f:
            ids = [line.strip() for line in f if line.strip()]
        out = [
            base64.b64encode(
                corpus.serialise("valid", corpus.signed(f"bench{i}", request_id=rid, assertion_id=f"_bench_{i}"))
            ).decode("ascii")
            for i, rid in enumerate(ids)
        ]
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return

    corpus = Corpus(args)
    documents = {name: corpus.serialise(name, resp) for name, resp in corpus.cases().items()}
    out = {
        name: {"response": base64.b64encode(xml).decode("ascii"), "expect": EXPECT[name]}
        for name, xml in documents.items()
    }
    out["deflate_bomb"] = {
        "response": base64.b64encode(deflate_bomb()).decode("ascii"),
        "expect": EXPECT["deflate_bomb"],
    }
    assert set(out) == set(EXPECT), set(out) ^ set(EXPECT)

    failures = check(corpus, documents) if args.check else 0
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
