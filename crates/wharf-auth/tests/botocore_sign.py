"""Signs sample requests with botocore (the signer the AWS CLI and boto3 use) and
prints them as JSON for tests/sigv4.rs to verify."""
import base64
import json

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AK, SK = "AKIAWHARFTEST0000001", "wharf/Secret+Key/For/Tests0000000000000"
out = []


def add(name, req, auth, region, service):
    auth.add_auth(req)
    p = req.prepare()
    body = p.body or b""
    if isinstance(body, str):
        body = body.encode()
    out.append({
        "name": name,
        "method": p.method,
        "url": p.url,
        "headers": [[k, v if isinstance(v, str) else v.decode()] for k, v in p.headers.items()],
        "body": base64.b64encode(body).decode(),
        "region": region,
        "service": service,
    })


plain = Credentials(AK, SK)
temp = Credentials(AK, SK, token="FQoGZXIvYXdzEXAMPLE//session+token==")

body = json.dumps({"repositoryName": "myapp", "imageScanningConfiguration": {"scanOnPush": True}})
headers = {
    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
    "Content-Type": "application/x-amz-json-1.1",
}
add("ecr json", AWSRequest("POST", "http://127.0.0.1:5000/", data=body, headers=dict(headers)),
    SigV4Auth(plain, "ecr", "us-east-1"), "us-east-1", "ecr")
add("ecr json with session token", AWSRequest("POST", "http://127.0.0.1:5000/", data=body, headers=dict(headers)),
    SigV4Auth(temp, "ecr", "eu-west-1"), "eu-west-1", "ecr")
add("query and odd path", AWSRequest("GET", "http://localhost:5000/a%20b/c~d/?b=2&a=1&c=hello%20world&d=%2F&e=",
                                      headers={}),
    SigV4Auth(plain, "ecr", "us-east-1"), "us-east-1", "ecr")
add("iam form post", AWSRequest("POST", "http://127.0.0.1:5000/",
                                data="Action=CreateUser&UserName=bob&Version=2010-05-08",
                                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}),
    SigV4Auth(plain, "iam", "us-east-1"), "us-east-1", "iam")
add("presigned", AWSRequest("GET", "http://127.0.0.1:5000/v2/?x=1"),
    SigV4QueryAuth(plain, "ecr", "us-east-1", expires=300), "us-east-1", "ecr")
print(json.dumps({"access_key": AK, "secret": SK, "cases": out}))
