use std::collections::BTreeSet;
use wharf_ecr_model::*;

fn model() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/model/ecr-2015-09-21.json"
    ))
    .expect("model");
    serde_json::from_str(&text).expect("json")
}

#[test]
fn operation_table_matches_model() {
    let m = model();
    let ops = m["operations"].as_object().expect("operations");
    assert_eq!(Operation::ALL.len(), ops.len());
    assert!(Operation::ALL.len() >= 58);
    for op in Operation::ALL {
        let o = &ops[op.name()];
        assert_eq!(o["input"]["shape"], op.input_shape());
        assert_eq!(o["output"]["shape"], op.output_shape());
        let errs: Vec<&str> = o["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["shape"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(errs, op.errors());
        for e in op.errors() {
            assert!(error_status(e).is_some(), "{e} not an error shape");
        }
    }
}

#[test]
fn from_target_round_trips() {
    for op in Operation::ALL {
        let target = format!("AmazonEC2ContainerRegistry_V20150921.{}", op.name());
        assert_eq!(op.target(), target);
        assert_eq!(Operation::from_target(&target), Some(*op));
        assert_eq!(Operation::from_name(op.name()), Some(*op));
    }
    assert_eq!(Operation::from_target("CreateRepository"), None);
    assert_eq!(
        Operation::from_target("AmazonEC2ContainerRegistry_V20150921.Nope"),
        None
    );
    assert_eq!(
        Operation::from_target("SpencerFrontendService.CreateRepository"),
        None
    );
}

#[test]
fn metadata_constants() {
    assert_eq!(TARGET_PREFIX, "AmazonEC2ContainerRegistry_V20150921");
    assert_eq!(JSON_VERSION, "1.1");
    assert_eq!(SIGNING_NAME, "ecr");
    assert_eq!(ENDPOINT_PREFIX, "api.ecr");
    assert_eq!(API_VERSION, "2015-09-21");
    assert_eq!(CONTENT_TYPE, "application/x-amz-json-1.1");
}

#[test]
fn error_statuses() {
    assert_eq!(error_status("ServerException"), Some(500));
    assert_eq!(error_status("RepositoryNotFoundException"), Some(400));
    assert_eq!(error_status("ValidationException"), Some(400));
    assert_eq!(error_status("NoSuchThing"), None);
    assert!(ERROR_SHAPES.len() >= 40);
    let e = KmsException {
        message: Some("boom".into()),
        kms_error: Some("KMS.Disabled".into()),
    };
    let v = serde_json::to_value(&e).expect("ser");
    assert_eq!(
        v,
        serde_json::json!({"message": "boom", "kmsError": "KMS.Disabled"})
    );
}

const CREATE_BODY: &str = r#"{"repositoryName":"myapp","imageScanningConfiguration":{"scanOnPush":true},"encryptionConfiguration":{"encryptionType":"AES256"},"imageTagMutability":"IMMUTABLE","tags":[{"Key":"team","Value":"a"}]}"#;

#[test]
fn deserializes_cli_create_repository() {
    let req: CreateRepositoryRequest = serde_json::from_str(CREATE_BODY).expect("parse");
    assert_eq!(req.repository_name.as_deref(), Some("myapp"));
    assert_eq!(req.registry_id, None);
    assert_eq!(
        req.image_scanning_configuration,
        Some(ImageScanningConfiguration {
            scan_on_push: Some(true)
        })
    );
    let enc = req.encryption_configuration.as_ref().expect("enc");
    assert_eq!(enc.encryption_type, Some(EncryptionType::Aes256));
    assert_eq!(enc.kms_key, None);
    assert_eq!(
        req.image_tag_mutability,
        Some(ImageTagMutability::Immutable)
    );
    let tags = req.tags.as_ref().expect("tags");
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].key.as_deref(), Some("team"));
    assert_eq!(tags[0].value.as_deref(), Some("a"));
    assert_eq!(req.validate(), Ok(()));

    // Same through the operation table.
    let op = Operation::from_target("AmazonEC2ContainerRegistry_V20150921.CreateRepository")
        .expect("op");
    let input = op.parse_input(CREATE_BODY.as_bytes()).expect("parse");
    assert_eq!(input.operation(), Operation::CreateRepository);
    assert_eq!(input, OperationInput::CreateRepository(req));
    assert_eq!(input.validate(), Ok(()));
    // Empty body = `{}`.
    let empty = Operation::GetAuthorizationToken
        .parse_input(b"")
        .expect("empty");
    assert_eq!(empty.validate(), Ok(()));
    // Wrong JSON type is a deserialization error.
    assert!(Operation::CreateRepository
        .parse_input(br#"{"repositoryName":5}"#)
        .is_err());
}

fn sample_repository() -> Repository {
    Repository {
        repository_arn: Some("arn:aws:ecr:us-east-1:123456789012:repository/myapp".into()),
        registry_id: Some("123456789012".into()),
        repository_name: Some("myapp".into()),
        repository_uri: Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/myapp".into()),
        created_at: Some(Timestamp(1_700_000_000.5)),
        image_tag_mutability: Some(ImageTagMutability::Mutable),
        image_tag_mutability_exclusion_filters: None,
        image_scanning_configuration: Some(ImageScanningConfiguration {
            scan_on_push: Some(false),
        }),
        encryption_configuration: Some(EncryptionConfiguration {
            encryption_type: Some(EncryptionType::Aes256),
            kms_key: None,
        }),
    }
}

#[test]
fn serializes_describe_repositories_with_model_names() {
    let resp = DescribeRepositoriesResponse {
        repositories: Some(vec![sample_repository()]),
        next_token: None,
    };
    let v = serde_json::to_value(&resp).expect("ser");
    let top: BTreeSet<&str> = v
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, BTreeSet::from(["repositories"]));
    let repo = v["repositories"][0].as_object().expect("repo");
    let keys: BTreeSet<&str> = repo.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "repositoryArn",
            "registryId",
            "repositoryName",
            "repositoryUri",
            "createdAt",
            "imageTagMutability",
            "imageScanningConfiguration",
            "encryptionConfiguration",
        ])
    );
    assert!(repo["createdAt"].is_number());
    assert_eq!(repo["createdAt"].as_f64(), Some(1_700_000_000.5));
    assert_eq!(repo["imageTagMutability"], "MUTABLE");
    assert_eq!(repo["imageScanningConfiguration"]["scanOnPush"], false);
    assert_eq!(repo["encryptionConfiguration"]["encryptionType"], "AES256");
    // Whole-second timestamps are plain integers; both forms parse back.
    let t = serde_json::to_string(&Timestamp(1_700_000_000.0)).expect("ser");
    assert_eq!(t, "1700000000");
    let back: Timestamp = serde_json::from_str("1.7000000005E9").expect("de");
    assert_eq!(back, Timestamp(1_700_000_000.5));
    // Round trip.
    let again: DescribeRepositoriesResponse = serde_json::from_value(v).expect("de");
    assert_eq!(again, resp);
}

#[test]
fn blob_is_base64() {
    let req: UploadLayerPartRequest = serde_json::from_str(
        r#"{"repositoryName":"a/b","uploadId":"0a1b2c3d-0000-1111-2222-333344445555","partFirstByte":0,"partLastByte":2,"layerPartBlob":"AAEC"}"#,
    )
    .expect("parse");
    assert_eq!(req.layer_part_blob, Some(Blob(vec![0, 1, 2])));
    assert_eq!(req.validate(), Ok(()));
    let v = serde_json::to_value(&req).expect("ser");
    assert_eq!(v["layerPartBlob"], "AAEC");
    assert!(serde_json::from_str::<UploadLayerPartRequest>(r#"{"layerPartBlob":"!!"}"#).is_err());
}

fn errors_of(r: Result<(), ValidationError>) -> Vec<String> {
    r.expect_err("expected a validation error").errors
}

#[test]
fn validation_missing_required() {
    let req: CreateRepositoryRequest = serde_json::from_str("{}").expect("parse");
    assert_eq!(req.missing_required(), vec!["repositoryName"]);
    let err = req.validate().expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "1 validation error detected: Value null at 'repositoryName' failed to satisfy constraint: Member must not be null"
    );
    // Nested required members get a dotted path.
    let req: CreateRepositoryRequest =
        serde_json::from_str(r#"{"repositoryName":"ok","tags":[{"Key":"k"}]}"#).expect("parse");
    assert_eq!(
        errors_of(req.validate()),
        vec!["Value null at 'tags.1.member.Value' failed to satisfy constraint: Member must not be null"]
    );
}

#[test]
fn validation_length_pattern_range() {
    let long = "a".repeat(257);
    let req = CreateRepositoryRequest {
        repository_name: Some(long.clone()),
        ..Default::default()
    };
    let errs = errors_of(req.validate());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0], format!("Value '{long}' at 'repositoryName' failed to satisfy constraint: Member must have length less than or equal to 256"));

    let req = CreateRepositoryRequest {
        repository_name: Some("MyApp".into()),
        registry_id: Some("12345".into()),
        ..Default::default()
    };
    let err = req.validate().expect_err("invalid");
    assert_eq!(err.errors.len(), 2, "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("2 validation errors detected: "), "{msg}");
    assert!(msg.contains("Value '12345' at 'registryId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9]{12}"), "{msg}");
    assert!(msg.contains("Value 'MyApp' at 'repositoryName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-z0-9]+"), "{msg}");

    let req = DescribeRepositoriesRequest {
        max_results: Some(1001),
        repository_names: Some(vec![]),
        ..Default::default()
    };
    let errs = errors_of(req.validate());
    assert!(errs.contains(&"Value '1001' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000".to_string()), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("at 'repositoryNames' failed to satisfy constraint: Member must have length greater than or equal to 1")), "{errs:?}");

    let req = DescribeRepositoriesRequest {
        repository_names: Some(vec!["ok".into(), "Bad".into()]),
        ..Default::default()
    };
    let errs = errors_of(req.validate());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("Value 'Bad' at 'repositoryNames.2.member' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{errs:?}");
}

#[test]
fn validation_invalid_enum() {
    let req: CreateRepositoryRequest = serde_json::from_str(
        r#"{"repositoryName":"myapp","imageTagMutability":"SOMETIMES","encryptionConfiguration":{"encryptionType":"ROT13"}}"#,
    )
    .expect("unknown enum values still deserialize");
    assert_eq!(
        req.image_tag_mutability,
        Some(ImageTagMutability::Unknown("SOMETIMES".into()))
    );
    let errs = errors_of(req.validate());
    assert_eq!(errs, vec![
        "Value 'ROT13' at 'encryptionConfiguration.encryptionType' failed to satisfy constraint: Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]".to_string(),
        "Value 'SOMETIMES' at 'imageTagMutability' failed to satisfy constraint: Member must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]".to_string(),
    ]);
}

#[test]
fn unknown_enum_in_response_serializes() {
    let mut repo = sample_repository();
    repo.image_tag_mutability = Some(ImageTagMutability::from("FUTURE_MODE"));
    let v = serde_json::to_value(&repo).expect("never fails");
    assert_eq!(v["imageTagMutability"], "FUTURE_MODE");
    let counts: ImageScanFindingsSummary =
        serde_json::from_str(r#"{"findingSeverityCounts":{"HIGH":2,"NEW_LEVEL":1}}"#).expect("de");
    let v = serde_json::to_value(&counts).expect("ser");
    assert_eq!(v["findingSeverityCounts"]["NEW_LEVEL"], 1);
    assert_eq!(v["findingSeverityCounts"]["HIGH"], 2);
}

#[test]
fn enums_round_trip() {
    for v in ImageTagMutability::ALL {
        assert!(v.is_known());
        assert_eq!(ImageTagMutability::from(v.as_str()), *v);
    }
    assert_eq!(
        ImageTagMutability::VALUES.len(),
        ImageTagMutability::ALL.len()
    );
    assert_eq!(UpstreamRegistry::EcrPublic.as_str(), "ecr-public");
}

#[test]
fn patterns_compile() {
    // Patterns the `regex` crate cannot compile are skipped by validation; list them here.
    let unsupported: Vec<&str> = PATTERNS
        .iter()
        .filter(|(_, p)| compile_pattern(p).is_none())
        .map(|(s, _)| *s)
        .collect();
    assert!(
        unsupported.is_empty(),
        "unsupported patterns: {unsupported:?}"
    );
}
