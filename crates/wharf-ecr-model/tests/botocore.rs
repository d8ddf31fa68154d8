//! Cross-checks the generated types against botocore itself (via `python3`).
//! Skipped when python3/botocore are missing, unless `CI=true`.

use std::process::Command;
use wharf_ecr_model::*;

fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("botocore check cannot run under CI=true: {why}");
    }
    eprintln!("skipping botocore check: {why}");
}

#[test]
fn botocore_parses_our_json() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let repo = Repository {
        repository_arn: Some("arn:aws:ecr:us-east-1:123456789012:repository/myapp".into()),
        registry_id: Some("123456789012".into()),
        repository_name: Some("myapp".into()),
        repository_uri: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp".into()),
        created_at: Some(Timestamp(1_700_000_000.25)),
        image_tag_mutability: Some(ImageTagMutability::Immutable),
        image_tag_mutability_exclusion_filters: None,
        image_scanning_configuration: Some(ImageScanningConfiguration {
            scan_on_push: Some(true),
        }),
        encryption_configuration: Some(EncryptionConfiguration {
            encryption_type: Some(EncryptionType::Kms),
            kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/abc".into()),
        }),
    };
    let describe = DescribeRepositoriesResponse {
        repositories: Some(vec![repo.clone()]),
        next_token: Some("tok".into()),
    };
    let auth = GetAuthorizationTokenResponse {
        authorization_data: Some(vec![AuthorizationData {
            authorization_token: Some("QVdTOnNlY3JldA==".into()),
            expires_at: Some(Timestamp(1_700_043_200.0)),
            proxy_endpoint: Some("https://123456789012.dkr.ecr.us-east-1.amazonaws.com".into()),
        }]),
    };
    let images = DescribeImagesResponse {
        image_details: Some(vec![ImageDetail {
            registry_id: Some("123456789012".into()),
            repository_name: Some("myapp".into()),
            image_digest: Some(format!("sha256:{}", "a".repeat(64))),
            image_tags: Some(vec!["latest".into()]),
            image_size_in_bytes: Some(12345),
            image_pushed_at: Some(Timestamp(1_700_000_100.0)),
            image_manifest_media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            ..Default::default()
        }]),
        next_token: None,
    };
    let input = serde_json::json!({
        "responses": {
            "DescribeRepositories": describe,
            "CreateRepository": CreateRepositoryResponse { repository: Some(repo) },
            "GetAuthorizationToken": auth,
            "DescribeImages": images,
        },
        "errors": [
            {"status": RepositoryNotFoundException::STATUS, "body": serde_json::from_slice::<serde_json::Value>(
                &RepositoryNotFoundException { message: Some("nope".into()) }.to_json_body()).expect("json")},
            {"status": ServerException::STATUS, "body": serde_json::from_slice::<serde_json::Value>(
                &ServerException { message: Some("oops".into()) }.to_json_body()).expect("json")},
        ],
        "requests": {
            "CreateRepository": {
                "repositoryName": "myapp",
                "imageTagMutability": "IMMUTABLE",
                "imageScanningConfiguration": {"scanOnPush": true},
                "encryptionConfiguration": {"encryptionType": "AES256"},
                "tags": [{"Key": "team", "Value": "a"}],
            },
            "UploadLayerPart": {
                "repositoryName": "myapp",
                "uploadId": "0a1b2c3d-0000-1111-2222-333344445555",
                "partFirstByte": 0, "partLastByte": 2,
                "layerPartBlob": "\u{0}\u{1}\u{2}",
            },
        },
    });
    let tmp = std::env::temp_dir().join(format!("wharf-ecr-botocore-{}.json", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&input).expect("ser")).expect("write");
    let out = Command::new("python3")
        .arg(format!("{dir}/tests/python/botocore_check.py"))
        .arg(format!("{dir}/model/ecr-2015-09-21.json"))
        .arg(&tmp)
        .output();
    let _ = std::fs::remove_file(&tmp);
    let out = match out {
        Ok(o) => o,
        Err(e) => return skip_or_fail(&format!("python3: {e}")),
    };
    if out.status.code() == Some(3) {
        return skip_or_fail("botocore not importable");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "botocore check failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");

    let r = &report["responses"]["DescribeRepositories"]["repositories"][0];
    assert_eq!(r["repositoryName"], "myapp");
    assert_eq!(r["imageTagMutability"], "IMMUTABLE");
    assert_eq!(r["encryptionConfiguration"]["encryptionType"], "KMS");
    // botocore turned our epoch number into a datetime.
    let created = r["createdAt"].as_str().expect("datetime");
    assert!(created.starts_with("2023-11-14T22:13:20.25"), "{created}");
    assert_eq!(
        report["responses"]["DescribeRepositories"]["nextToken"],
        "tok"
    );
    let a = &report["responses"]["GetAuthorizationToken"]["authorizationData"][0];
    assert!(a["expiresAt"]
        .as_str()
        .is_some_and(|s| s.starts_with("2023-11-15")));
    assert_eq!(
        report["responses"]["DescribeImages"]["imageDetails"][0]["imageSizeInBytes"],
        12345
    );
    assert_eq!(report["errors"][0]["Code"], "RepositoryNotFoundException");
    assert_eq!(report["errors"][0]["Message"], "nope");
    assert_eq!(report["errors"][1]["Code"], "ServerException");

    // botocore's request serialization parses and validates on our side.
    for (name, req) in report["requests"].as_object().expect("requests") {
        let target = req["target"].as_str().expect("target");
        let op = Operation::from_target(target).expect("known target");
        assert_eq!(op.name(), name);
        let body = req["body"].as_str().expect("body");
        let parsed = op
            .parse_input(body.as_bytes())
            .expect("parse botocore body");
        assert_eq!(parsed.validate(), Ok(()), "{name}: {body}");
        if let OperationInput::UploadLayerPart(u) = &parsed {
            assert_eq!(u.layer_part_blob, Some(Blob(vec![0, 1, 2])));
        }
    }
}
