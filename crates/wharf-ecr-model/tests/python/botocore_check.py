"""Checks Wharf's serialized ECR JSON against botocore's own parser/serializer.

Usage: botocore_check.py MODEL_JSON INPUT_JSON
INPUT_JSON: {"responses": {Op: body}, "errors": [{"status": int, "body": {...}}],
             "requests": {Op: params}}
Prints a JSON report on stdout. Exit 3 if botocore is not importable, 1 on a check failure.
"""
import json
import sys

try:
    from botocore import model as bmodel, parsers, serialize, validate
except ImportError:
    print("botocore not importable", file=sys.stderr)
    sys.exit(3)


def main():
    service = bmodel.ServiceModel(json.load(open(sys.argv[1])), service_name="ecr")
    data = json.load(open(sys.argv[2]))
    report = {"responses": {}, "errors": [], "requests": {}}
    failures = []
    parser = parsers.create_parser("json")
    for op, body in data["responses"].items():
        shape = service.operation_model(op).output_shape
        parsed = parser.parse(
            {"status_code": 200, "headers": {"x-amzn-requestid": "req-1"},
             "body": json.dumps(body).encode()},
            shape,
        )
        meta = parsed.pop("ResponseMetadata", {})
        if meta.get("RequestId") != "req-1":
            failures.append(f"{op}: RequestId not parsed")
        # Reuse botocore's input validator on the parsed output: it flags unknown member
        # names, wrong types and missing required members against the model.
        result = validate.ParamValidator().validate(parsed, shape)
        if result.has_errors():
            failures.append(f"{op}: {result.generate_report()}")
        report["responses"][op] = parsed
    for err in data["errors"]:
        parsed = parser.parse(
            {"status_code": err["status"], "headers": {}, "body": json.dumps(err["body"]).encode()},
            None,
        )
        report["errors"].append(parsed.get("Error", {}))
    serializer = serialize.create_serializer("json")
    for op, params in data["requests"].items():
        req = serializer.serialize_to_request(params, service.operation_model(op))
        body = req["body"]
        if isinstance(body, bytes):
            body = body.decode()
        report["requests"][op] = {"target": req["headers"]["X-Amz-Target"], "body": body}
    print(json.dumps(report, default=lambda o: o.isoformat() if hasattr(o, "isoformat") else str(o)))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


main()
