#!/usr/bin/env python3
"""SOAP client test peer for lockgate's inbound HR web service (plugin `hr-soap`, see
docs/connectors/hr-web-services.md).

A real, third-party SOAP stack: zeep loads the service's WSDL (from its URL or a file) and
every call is built by zeep from that WSDL, never by hand. It prints one JSON object per line
on stdout for every call:

    {"op": "GetEmployee", "ok": true, "result": {...}, "fault": null}
    {"op": "GetEmployee", "ok": false, "result": null,
     "fault": {"code": "soap:Client", "message": "...", "detail": {...}}}

`detail` is `{"kind": "InvalidEmployees", "rows": [{"index", "identifier", "field", "rule"}]}`
or `{"kind": "Error", "attributes": {"kind", "element", "line", "column"}}` (what the fault
carries), or null. A failure that is not a SOAP fault (an HTTP status other than 200/500,
a connection error, a request zeep refuses to build) has `"fault": null` and
`"error": {"type", "message", "status"}`. A WSDL that cannot be loaded prints one object with
`"op": "load_wsdl"` and exits 2; otherwise the exit status is 0 whatever the calls answered.

Usage:
  python3 soap_client.py WSDL [--address URL] [--ca-file PEM]
      [--token TOKEN | --token-env VAR] [--token-header NAME]
      [--username NAME (--password PW | --password-env VAR)]
      [--scenario NAME]            (without it: a JSON list of commands on stdin)

  WSDL           the WSDL URL (https://host/ws/hr?wsdl) or a file path
  --address      the service URL to call instead of the WSDL's soap:address
  --token        the API token, sent on every HTTP request (WSDL included) in --token-header
                 (default `Authorization`, as `Bearer TOKEN`; another header gets the bare token)
  --username     WS-Security UsernameToken (PasswordText) in the SOAP header of every call
  --ca-file      a CA bundle to verify the server's TLS certificate with

Commands (stdin): [{"op": "UpsertEmployees", "args": {"domain": "Staff", "employee": [
  {"identifier": "E-1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}]}},
  {"op": "GetEmployee", "args": {"identifier": "E-1"}}, ...]; `args` are the operation's
  parameters as the WSDL names them (zeep keyword arguments).

Scenarios:
  operations   lists the WSDL's operations with zeep's signatures (no call)
  all          calls every operation once: UpsertEmployees (two employees), UpsertEmployees
               with two invalid rows (fault), GetEmployee, DeactivateEmployee, DeleteEmployee,
               ListChanges, GetEmployee of an unknown identifier (fault)
"""

import argparse
import datetime
import decimal
import json
import os
import sys

import requests
import zeep
import zeep.exceptions
import zeep.helpers
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

TNS = "urn:lockgate:hr:1"
BINDING = "{%s}HrServiceSoap" % TNS

SCENARIOS = {
    "all": [
        {
            "op": "UpsertEmployees",
            "args": {
                "employee": [
                    {
                        "identifier": "HR-1",
                        "firstName": "Ada",
                        "lastName": "Lovelace",
                        "email": "ada@example.com",
                        "department": "Engineering",
                        "mobilePhone": "+44 20 7946 0000",
                    },
                    {"identifier": "HR-2", "firstName": "Grace", "lastName": "Hopper"},
                ]
            },
        },
        {
            "op": "UpsertEmployees",
            "args": {
                "employee": [
                    {"identifier": "HR-3", "firstName": "Alan", "lastName": "Turing"},
                    {
                        "identifier": "HR-4",
                        "firstName": "Edsger",
                        "lastName": "Dijkstra",
                        "email": "not an address",
                    },
                    {"identifier": "HR-5", "firstName": "x" * 60, "lastName": "Knuth"},
                ]
            },
        },
        {"op": "GetEmployee", "args": {"identifier": "HR-1"}},
        {"op": "DeactivateEmployee", "args": {"identifier": "HR-2"}},
        {"op": "DeleteEmployee", "args": {"identifier": "HR-2"}},
        {"op": "ListChanges", "args": {"limit": 100}},
        {"op": "GetEmployee", "args": {"identifier": "HR-does-not-exist"}},
    ],
}


def plain(value):
    """zeep's objects as JSON-ready values."""
    value = zeep.helpers.serialize_object(value, dict)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def local(tag):
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)


def fault_detail(detail):
    """The structured detail of a fault (an lxml `detail` element or None)."""
    if detail is None:
        return None
    for child in detail:
        name = local(child.tag)
        if name == "InvalidEmployees":
            rows = []
            for row in child:
                rows.append(
                    {
                        "index": int(row.get("index", "-1")),
                        "identifier": row.get("identifier"),
                        "field": row.get("field"),
                        "rule": row.get("rule"),
                    }
                )
            return {"kind": "InvalidEmployees", "rows": rows}
        return {"kind": name, "attributes": dict(child.attrib)}
    return None


def emit(obj):
    print(json.dumps(obj, ensure_ascii=False, sort_keys=True), flush=True)


def build_client(args):
    session = requests.Session()
    if args.ca_file:
        session.verify = args.ca_file
    token = args.token or (os.environ.get(args.token_env) if args.token_env else None)
    if token:
        header = args.token_header
        session.headers[header] = (
            "Bearer " + token if header.lower() == "authorization" else token
        )
    wsse = None
    if args.username:
        password = args.password
        if password is None and args.password_env:
            password = os.environ.get(args.password_env)
        if password is None:
            raise SystemExit("--username needs --password or --password-env")
        # PasswordText (use_digest=False): the only type the gateway accepts, over TLS.
        wsse = UsernameToken(args.username, password, use_digest=False)
    transport = Transport(session=session, timeout=30, operation_timeout=60)
    client = zeep.Client(args.wsdl, transport=transport, wsse=wsse)
    service = (
        client.create_service(BINDING, args.address) if args.address else client.service
    )
    return client, service


def operations(client):
    out = []
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            for name, op in sorted(port.binding._operations.items()):
                out.append(
                    {
                        "operation": name,
                        "soap_action": op.soapaction,
                        "input": op.input.signature(as_output=False),
                        "output": op.output.signature(as_output=True),
                    }
                )
    return out


def call(service, command):
    op = command.get("op")
    args = command.get("args") or {}
    record = {"op": op, "ok": False, "result": None, "fault": None}
    try:
        result = getattr(service, op)(**args)
        record["ok"] = True
        record["result"] = plain(result)
    except zeep.exceptions.Fault as f:
        record["fault"] = {
            "code": f.code,
            "message": f.message,
            "detail": fault_detail(f.detail),
        }
    except zeep.exceptions.TransportError as e:
        record["error"] = {
            "type": "TransportError",
            "status": e.status_code,
            "message": (e.content or b"")[:500].decode("utf-8", "replace")
            if isinstance(e.content, bytes)
            else str(e.content)[:500],
        }
    except (zeep.exceptions.Error, requests.RequestException, AttributeError, TypeError) as e:
        record["error"] = {"type": type(e).__name__, "status": None, "message": str(e)}
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wsdl")
    parser.add_argument("--address")
    parser.add_argument("--ca-file")
    parser.add_argument("--token")
    parser.add_argument("--token-env")
    parser.add_argument("--token-header", default="Authorization")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--password-env")
    parser.add_argument("--scenario", choices=sorted(["operations", *SCENARIOS]))
    args = parser.parse_args()

    try:
        client, service = build_client(args)
    except Exception as e:  # noqa: BLE001 - reported as one JSON line, whatever it is
        emit(
            {
                "op": "load_wsdl",
                "ok": False,
                "result": None,
                "fault": None,
                "error": {"type": type(e).__name__, "status": None, "message": str(e)},
            }
        )
        return 2

    if args.scenario == "operations":
        emit({"op": "operations", "ok": True, "result": operations(client), "fault": None})
        return 0
    if args.scenario:
        commands = SCENARIOS[args.scenario]
    else:
        commands = json.load(sys.stdin)
        if isinstance(commands, dict):
            commands = [commands]
    for command in commands:
        emit(call(service, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
