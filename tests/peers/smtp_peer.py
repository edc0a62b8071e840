#!/usr/bin/env python3
"""SMTP test peer for lockgate's email connector tests (started by lockgate-test-peers).

An aiosmtpd server on 127.0.0.1:PORT with STARTTLS (the test CA's server certificate),
optionally requiring STARTTLS and AUTH PLAIN/LOGIN. Each accepted message is stored in DIR
as <n>.json (envelope: mail_from, rcpt_tos) and <n>.eml (the raw message bytes), each
written to a temporary file and renamed; <n>.json is in place before <n>.eml appears.

Recipients steer it by local part:
  tempfail@...         RCPT answered 451 4.3.0 try later
  reject@...           RCPT answered 550 5.1.1 no such user
  drop-after-data@...  the message is read to its end, then the connection is closed
                       without an answer (the message is not stored)

Prints "READY <port>" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
"""

import argparse
import json
import os
import signal
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def local_part(address):
    return address.rsplit("@", 1)[0].lower()


class Handler:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = local_part(address)
        if local == "tempfail":
            return "451 4.3.0 try later"
        if local == "reject":
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(local_part(r) == "drop-after-data" for r in envelope.rcpt_tos):
            # Close without answering: the client cannot know whether the message arrived.
            server.transport.abort()
            return "250 OK"
        with self.lock:
            self.count += 1
            n = self.count
        self._write(f"{n}.json", json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
        }).encode())
        self._write(f"{n}.eml", envelope.original_content)
        return "250 2.0.0 OK"

    def _write(self, name, data):
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.directory, name))


def authenticator_for(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)

    return authenticator


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--require-starttls", action="store_true")
    parser.add_argument("--auth-user")
    parser.add_argument("--auth-password")
    args = parser.parse_args()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)

    # aiosmtpd warns when AUTH is allowed without TLS: the tests ask for exactly that.
    warnings.simplefilter("ignore")
    kwargs = {}
    if args.auth_user is not None:
        kwargs.update(
            authenticator=authenticator_for(args.auth_user, args.auth_password or ""),
            auth_required=True,
            # AUTH over plain text only when STARTTLS is not required anyway.
            auth_require_tls=args.require_starttls,
        )
    controller = Controller(
        Handler(args.dir),
        hostname="127.0.0.1",
        port=args.port,
        # The default (getfqdn) can stall on a machine without DNS.
        server_hostname="localhost",
        tls_context=tls,
        require_starttls=args.require_starttls,
        decode_data=False,
        enable_SMTPUTF8=True,
        **kwargs,
    )
    controller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"READY {args.port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        print(f"smtp_peer: {e}", file=sys.stderr)
        sys.exit(2)
