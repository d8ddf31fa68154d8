"""An ECR user's boto3 walkthrough against Wharf: repositories, the layer API,
PutImage, paginators, modeled exceptions, registry login, STS.

Environment: WHARF_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Prints OK."""

import base64
import hashlib
import json
import os
import urllib.request

import boto3

url = os.environ["WHARF_URL"]
ecr = boto3.client("ecr", endpoint_url=url, region_name="us-east-1")
sts = boto3.client("sts", endpoint_url=url, region_name="us-east-1")

repo = ecr.create_repository(
    repositoryName="py/app",
    imageScanningConfiguration={"scanOnPush": True},
    encryptionConfiguration={"encryptionType": "AES256"},
    tags=[{"Key": "team", "Value": "py"}],
)["repository"]
assert repo["repositoryUri"].endswith("/py/app"), repo
assert repo["imageScanningConfiguration"]["scanOnPush"] is True, repo
assert repo["createdAt"].year >= 2024, repo  # a real timestamp, parsed by botocore

try:
    ecr.create_repository(repositoryName="py/app")
    raise AssertionError("a second create must fail")
except ecr.exceptions.RepositoryAlreadyExistsException as e:
    assert "py/app" in str(e), e


def upload(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    up = ecr.initiate_layer_upload(repositoryName="py/app")
    part = up["partSize"]
    for start in range(0, len(data), part):
        chunk = data[start : start + part]
        ecr.upload_layer_part(
            repositoryName="py/app",
            uploadId=up["uploadId"],
            partFirstByte=start,
            partLastByte=start + len(chunk) - 1,
            layerPartBlob=chunk,
        )
    done = ecr.complete_layer_upload(repositoryName="py/app", uploadId=up["uploadId"], layerDigests=[digest])
    assert done["layerDigest"] == digest, done
    return digest, len(data)


config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
cfg_digest, cfg_size = upload(config)
tags = []
for i in range(3):
    layer_digest, layer_size = upload(os.urandom(1000 + i))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        }
    )
    put = ecr.put_image(repositoryName="py/app", imageManifest=manifest, imageTag=f"v{i}")
    tags.append(put["image"]["imageId"]["imageTag"])

pages = ecr.get_paginator("describe_images").paginate(repositoryName="py/app", PaginationConfig={"PageSize": 1})
details = [d for p in pages for d in p["imageDetails"]]
assert sorted(t for d in details for t in d["imageTags"]) == ["v0", "v1", "v2"], details
assert all(d["imageSizeInBytes"] > 1000 for d in details), details
listed = [i for p in ecr.get_paginator("list_images").paginate(repositoryName="py/app", PaginationConfig={"PageSize": 2}) for i in p["imageIds"]]
assert len(listed) == 3, listed

try:
    ecr.describe_repositories(repositoryNames=["py/ap"])
    raise AssertionError("describing a missing repository must fail")
except ecr.exceptions.RepositoryNotFoundException as e:
    assert "did you mean 'py/app'" in str(e), e

deleted = ecr.batch_delete_image(repositoryName="py/app", imageIds=[{"imageTag": "v0"}])
assert deleted["imageIds"][0]["imageTag"] == "v0" and not deleted["failures"], deleted

# docker login's credentials, used directly on /v2/.
auth = ecr.get_authorization_token()["authorizationData"][0]
user, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
assert user == "AWS" and ":" not in password
req = urllib.request.Request(
    f"{url}/v2/py/app/manifests/v1",
    headers={
        "Authorization": auth and "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode(),
        "Accept": "application/vnd.oci.image.manifest.v1+json",
    },
)
with urllib.request.urlopen(req) as r:
    assert r.status == 200
    assert r.headers["Docker-Content-Digest"].startswith("sha256:")

ident = sts.get_caller_identity()
assert ident["Arn"].endswith(":user/admin"), ident
print("OK")
