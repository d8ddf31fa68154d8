"""Reads and writes Wharf's IAM/STS traffic with botocore, the library under the AWS CLI.

Reads one JSON request per line from stdin and answers one JSON line each:
- {"service": "iam"|"sts", "operation": "CreateUser", "status": 200, "body": "<xml>"}
  → {"ok": true, "parsed": {...}}: what botocore's QueryParser (plus the IAM
  after-call handler that URL-decodes and JSON-loads policy documents, as the CLI
  runs it) makes of the response;
- {"serialize": true, "service": ..., "operation": ..., "params": {...}}
  → {"ok": true, "form": [[name, value], ...]}: the form body botocore's query
  serializer sends for those input parameters;
- {"ok": false, "error": "..."} when botocore refuses.
"""
import json
import sys

import botocore.session
from botocore import handlers, parsers, serialize

session = botocore.session.get_session()
models = {name: session.get_service_model(name) for name in ("iam", "sts")}
parser = parsers.create_parser("query")
serializer = serialize.create_serializer("query", include_validation=True)

for line in sys.stdin:
    req = json.loads(line)
    try:
        op = models[req["service"]].operation_model(req["operation"])
        if req.get("serialize"):
            body = serializer.serialize_to_request(req["params"], op)["body"]
            print(json.dumps({"ok": True, "form": [[k, str(v)] for k, v in body.items()]}), flush=True)
            continue
        response = {
            "status_code": req["status"],
            "headers": {"content-type": "text/xml"},
            "body": req["body"].encode("utf-8"),
        }
        parsed = parser.parse(response, op.output_shape)
        if req["status"] < 300 and req["service"] == "iam":
            handlers.json_decode_policies(parsed, op)
        out = {"ok": True, "parsed": parsed}
    except Exception as e:  # reported to the Rust test, which fails with it
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out, default=str), flush=True)
