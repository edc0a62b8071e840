#!/usr/bin/env python3
"""Fake HR system for lockgate's HR pull tests and benchmark (Python 3 standard library only).

It stands for a vendor HR system: a paged REST/JSON endpoint with a "changed since" filter,
a SOAP 1.1 variant of the same data, deterministic generated persons, and control endpoints
with which a test changes, adds, deactivates or removes persons and injects faults. The
contract is in README.md beside this file.

    python3 fake_hr.py --persons 10000 [--port 0] [--token SECRET]

Prints `READY <port>` on stdout once it listens on 127.0.0.1.
"""

import argparse
import datetime
import json
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BASE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
MAX_PAGE_SIZE = 1000
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
HR_NS = "urn:lockgate:fake-hr"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
FIELDS = ("given", "family", "email", "phone", "department", "status")


def stamp(rev):
    """The `changed` value of revision `rev`: BASE plus `rev` seconds, ISO 8601 UTC."""
    return (BASE + datetime.timedelta(seconds=rev)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text):
    """The revision of a `changed` value (ValueError when it is not one)."""
    at = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    return int((at - BASE).total_seconds())


class Data:
    """The persons, their revisions, the injected faults and the request log; one lock."""

    def __init__(self, n):
        self.lock = threading.Lock()
        self.persons = {}
        self.rev = 0
        for i in range(n):
            self.rev += 1
            pid = "E%06d" % i
            self.persons[pid] = {
                "id": pid,
                "given": "Given%d" % i,
                "family": "Surname%d" % i,
                "email": "e%d@example.com" % i,
                "phone": "+41 44 000 %04d" % (i % 10000),
                "department": "Operations",
                "status": "active",
                "rev": self.rev,
            }
        self.faults = []
        self.requests = []

    def bump(self, person):
        self.rev += 1
        person["rev"] = self.rev

    def select(self, since_rev):
        """Persons changed at or after `since_rev` (all when None), ordered by id."""
        ids = sorted(self.persons)
        return [
            self.persons[i]
            for i in ids
            if since_rev is None or self.persons[i]["rev"] >= since_rev
        ]

    def take_fault(self, fmt, page):
        """The fault armed for this format and page, if any (counted down)."""
        for f in self.faults:
            if f["format"] not in (None, fmt):
                continue
            if f["page"] is not None and f["page"] != page:
                continue
            if f["times"] is not None:
                f["times"] -= 1
                if f["times"] <= 0:
                    self.faults.remove(f)
            return f["kind"]
        return None


def as_json(p):
    return {
        "id": p["id"],
        "name": {"given": p["given"], "family": p["family"]},
        "email": p["email"],
        "phone": p["phone"],
        "department": p["department"],
        "status": p["status"],
        "changed": stamp(p["rev"]),
    }


def esc(text):
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


def xml_field(tag, value):
    if value is None:
        return '<hr:%s xsi:nil="true"/>' % tag
    return "<hr:%s>%s</hr:%s>" % (tag, esc(str(value)), tag)


def as_xml(p):
    return "".join(
        [
            "<hr:Employee>",
            xml_field("Id", p["id"]),
            xml_field("GivenName", p["given"]),
            xml_field("FamilyName", p["family"]),
            xml_field("Email", p["email"]),
            xml_field("Phone", p["phone"]),
            xml_field("Department", p["department"]),
            xml_field("Status", p["status"]),
            xml_field("Changed", stamp(p["rev"])),
            "</hr:Employee>",
        ]
    )


def envelope(body):
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="%s" xmlns:xsi="%s" xmlns:hr="%s"><soap:Body>%s</soap:Body></soap:Envelope>'
        % (SOAP_NS, XSI_NS, HR_NS, body)
    )


def soap_fault(code, message):
    return envelope(
        "<soap:Fault><faultcode>soap:%s</faultcode><faultstring>%s</faultstring></soap:Fault>"
        % (code, esc(message))
    )


DEEP = 100


def fault_body(kind, fmt):
    """(status, content type, body) of an injected fault."""
    if kind == "status-503":
        return 503, "text/plain", "HR system under maintenance"
    if kind == "soap-fault":
        return 500, "text/xml; charset=utf-8", soap_fault("Server", "database offline")
    if kind == "doctype":
        return (
            200,
            "text/xml; charset=utf-8",
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            '<soap:Envelope xmlns:soap="%s"><soap:Body>&lol2;</soap:Body></soap:Envelope>'
            % SOAP_NS,
        )
    if fmt == "json":
        if kind == "malformed":
            return 200, "application/json", '{"data": {"employees": [{"id": "E0'
        if kind == "deep":
            return (
                200,
                "application/json",
                '{"data": {"employees": []}, "extra": %s%s}' % ("[" * DEEP, "]" * DEEP),
            )
    else:
        if kind == "malformed":
            # A mismatched end tag.
            return (
                200,
                "text/xml; charset=utf-8",
                envelope("<hr:ListEmployeesResponse><hr:Employees></hr:ListEmployeesResponse>"),
            )
        if kind == "deep":
            return (
                200,
                "text/xml; charset=utf-8",
                envelope(
                    "<hr:ListEmployeesResponse><hr:Employees/>%s%s</hr:ListEmployeesResponse>"
                    % ("<hr:x>" * DEEP, "</hr:x>" * DEEP)
                ),
            )
    raise ValueError("unknown fault kind %r" % kind)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHR/1.0"

    def log_message(self, fmt, *args):
        pass

    @property
    def data(self):
        return self.server.data

    def reply(self, status, ctype, body):
        raw = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def reply_json(self, status, value):
        self.reply(status, "application/json", json.dumps(value))

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authorised(self):
        token = self.server.token
        if token is None:
            return True
        if self.headers.get("Authorization") == "Bearer " + token:
            return True
        self.reply_json(401, {"error": "missing or wrong bearer token"})
        return False

    # ---- the HR endpoints -------------------------------------------------------------

    def page_of(self, page, size, since):
        """(items, has_more) for a 1-based page of the selection."""
        with self.data.lock:
            rows = self.data.select(since)
            start = (page - 1) * size
            chunk = [dict(p) for p in rows[start : start + size]]
            more = start + size < len(rows)
        return chunk, more

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path.startswith("/control/"):
            return self.control_get(url.path)
        if url.path != "/api/employees":
            return self.reply_json(404, {"error": "no such resource"})
        with self.data.lock:
            self.data.requests.append(self.path)
        if not self.authorised():
            return
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            size = int(q.get("page_size", "100"))
            if not 1 <= size <= MAX_PAGE_SIZE:
                raise ValueError("page_size must be 1-%d" % MAX_PAGE_SIZE)
            if "cursor" in q:
                offset = int(q["cursor"][1:]) if q["cursor"].startswith("c") else -1
                if offset < 0 or offset % size:
                    raise ValueError("bad cursor")
                page = offset // size + 1
            else:
                page = int(q.get("page", "1"))
                if page < 1:
                    raise ValueError("page must be at least 1")
            since = parse_stamp(q["changed_since"]) if q.get("changed_since") else None
        except ValueError as e:
            return self.reply_json(400, {"error": str(e)})
        with self.data.lock:
            fault = self.data.take_fault("json", page)
        if fault:
            return self.reply(*fault_body(fault, "json"))
        chunk, more = self.page_of(page, size, since)
        with self.data.lock:
            watermark = stamp(self.data.rev)
        self.reply_json(
            200,
            {
                "data": {"employees": [as_json(p) for p in chunk]},
                "paging": {
                    "page": page,
                    "has_more": more,
                    "next_cursor": ("c%d" % (page * size)) if more else None,
                },
                "watermark": watermark,
            },
        )

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith("/control/"):
            return self.control_post(url.path, body)
        if url.path != "/soap":
            return self.reply_json(404, {"error": "no such resource"})
        with self.data.lock:
            self.data.requests.append("POST /soap " + body.decode("utf-8", "replace"))
        if not self.authorised():
            return
        ctype = "text/xml; charset=utf-8"
        try:
            root = ET.fromstring(body)
            req = root.find("{%s}Body/{%s}ListEmployees" % (SOAP_NS, HR_NS))
            if req is None:
                raise ValueError("expected soap:Body/hr:ListEmployees")

            def text(tag):
                el = req.find("{%s}%s" % (HR_NS, tag))
                return (el.text or "").strip() if el is not None else ""

            page = int(text("Page") or "1")
            size = int(text("PageSize") or "100")
            if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
                raise ValueError("Page must be >= 1 and PageSize 1-%d" % MAX_PAGE_SIZE)
            since = parse_stamp(text("ChangedSince")) if text("ChangedSince") else None
        except (ET.ParseError, ValueError) as e:
            return self.reply(500, ctype, soap_fault("Client", str(e)))
        if self.headers.get("SOAPAction", "").strip('"') != HR_NS + "#ListEmployees":
            return self.reply(500, ctype, soap_fault("Client", "unknown SOAPAction"))
        with self.data.lock:
            fault = self.data.take_fault("soap", page)
        if fault:
            return self.reply(*fault_body(fault, "soap"))
        chunk, more = self.page_of(page, size, since)
        with self.data.lock:
            watermark = stamp(self.data.rev)
        self.reply(
            200,
            ctype,
            envelope(
                "<hr:ListEmployeesResponse><hr:Employees>%s</hr:Employees>"
                "<hr:HasMore>%s</hr:HasMore><hr:Watermark>%s</hr:Watermark></hr:ListEmployeesResponse>"
                % ("".join(as_xml(p) for p in chunk), "true" if more else "false", watermark)
            ),
        )

    # ---- control ----------------------------------------------------------------------

    def control_get(self, path):
        with self.data.lock:
            if path == "/control/requests":
                return self.reply_json(200, self.data.requests)
            if path == "/control/state":
                return self.reply_json(
                    200,
                    {"persons": len(self.data.persons), "watermark": stamp(self.data.rev)},
                )
        self.reply_json(404, {"error": "no such control"})

    def control_post(self, path, raw):
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            return self.reply_json(400, {"error": "not JSON: %s" % e})
        d = self.data
        with d.lock:
            try:
                if path == "/control/update":
                    for change in body["changes"]:
                        p = d.persons[change["id"]]
                        for k, v in change["set"].items():
                            if k not in FIELDS:
                                raise KeyError("unknown field %s" % k)
                            p[k] = v
                        d.bump(p)
                    done = len(body["changes"])
                elif path == "/control/add":
                    for new in body["persons"]:
                        if new["id"] in d.persons:
                            raise KeyError("%s exists" % new["id"])
                        p = {k: new.get(k) for k in FIELDS}
                        p["status"] = p["status"] or "active"
                        p["id"] = new["id"]
                        d.persons[new["id"]] = p
                        d.bump(p)
                    done = len(body["persons"])
                elif path == "/control/deactivate":
                    for pid in body["ids"]:
                        d.persons[pid]["status"] = "inactive"
                        d.bump(d.persons[pid])
                    done = len(body["ids"])
                elif path == "/control/remove":
                    for pid in body["ids"]:
                        del d.persons[pid]
                    done = len(body["ids"])
                elif path == "/control/fault":
                    fault_body(body["kind"], body.get("format") or "json")
                    d.faults.append(
                        {
                            "kind": body["kind"],
                            "format": body.get("format"),
                            "page": body.get("page"),
                            "times": body.get("times", 1),
                        }
                    )
                    done = 1
                elif path == "/control/clear":
                    d.faults.clear()
                    d.requests.clear()
                    done = 0
                else:
                    return self.reply_json(404, {"error": "no such control"})
            except (KeyError, TypeError, ValueError) as e:
                return self.reply_json(400, {"error": "bad control request: %s" % e})
            return self.reply_json(200, {"done": done, "watermark": stamp(d.rev)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.data = Data(args.persons)
    server.token = args.token
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
