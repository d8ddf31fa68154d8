//! SigV4 verification against requests signed by botocore, the signer of the AWS CLI
//! and boto3 (installed by scripts/setup.sh).

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::process::Command;
use time::{Duration, OffsetDateTime};
use wharf_auth::sigv4::{self, Expect, Request, SigV4Error};

struct Case {
    name: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    region: String,
    service: String,
}

fn b64(s: &str) -> Vec<u8> {
    // Small decoder to avoid a dependency for tests.
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = T.iter().position(|t| *t == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn botocore_cases() -> (String, String, Vec<Case>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/botocore_sign.py");
    let out = Command::new("python3")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "botocore signing failed (is boto3 installed? scripts/setup.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let url = c["url"].as_str().unwrap();
            let after_host = &url[url.find("://").unwrap() + 3..];
            let path_q = &after_host[after_host.find('/').unwrap()..];
            let (path, query) = match path_q.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (path_q.to_string(), None),
            };
            let mut headers = HeaderMap::new();
            let host = &after_host[..after_host.find('/').unwrap()];
            headers.insert("host", HeaderValue::from_str(host).unwrap());
            for h in c["headers"].as_array().unwrap() {
                headers.append(
                    HeaderName::from_bytes(h[0].as_str().unwrap().as_bytes()).unwrap(),
                    HeaderValue::from_str(h[1].as_str().unwrap()).unwrap(),
                );
            }
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                method: c["method"].as_str().unwrap().to_string(),
                path,
                query,
                headers,
                body: b64(c["body"].as_str().unwrap()),
                region: c["region"].as_str().unwrap().to_string(),
                service: c["service"].as_str().unwrap().to_string(),
            }
        })
        .collect();
    (
        v["access_key"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
        cases,
    )
}

fn check(c: &Case, secret: &str, now: OffsetDateTime) -> Result<sigv4::Parsed, SigV4Error> {
    let req = Request {
        method: &c.method,
        path: &c.path,
        query: c.query.as_deref(),
        headers: &c.headers,
        body: &c.body,
    };
    let parsed = sigv4::parse(&req)?;
    let expect = Expect {
        service: &c.service,
        region: &c.region,
        now,
    };
    sigv4::verify(&req, &parsed, secret, &expect).map(|_| parsed)
}

#[test]
fn botocore_signatures_verify_and_tampering_fails() {
    let (ak, secret, cases) = botocore_cases();
    assert_eq!(cases.len(), 5);
    let now = OffsetDateTime::now_utc();
    for c in &cases {
        let parsed = check(c, &secret, now).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(parsed.access_key_id, ak, "{}", c.name);
        if c.name.contains("session token") {
            assert_eq!(
                parsed.security_token.as_deref(),
                Some("FQoGZXIvYXdzEXAMPLE//session+token==")
            );
        }
        if c.name == "presigned" {
            assert_eq!(parsed.expires, Some(300));
        }

        // Wrong secret.
        let e = check(c, "not-the-secret", now).unwrap_err();
        assert_eq!(e.code(), "InvalidSignatureException", "{}", c.name);
        assert!(e.to_string().contains(&ak), "{}: {e}", c.name);
        assert!(!e.to_string().contains(&secret));

        // Tampered body (payload hash is signed).
        if !c.body.is_empty() {
            let mut t = clone(c);
            t.body.push(b' ');
            assert!(
                matches!(check(&t, &secret, now), Err(SigV4Error::Mismatch { .. })),
                "{}",
                c.name
            );
        }
        // Tampered signed header.
        let mut t = clone(c);
        t.headers
            .insert("host", HeaderValue::from_static("evil.example:5000"));
        assert!(
            matches!(check(&t, &secret, now), Err(SigV4Error::Mismatch { .. })),
            "{}",
            c.name
        );
        // Clock far off.
        let e = check(c, &secret, now + Duration::hours(2)).unwrap_err();
        assert_eq!(e.code(), "InvalidSignatureException", "{}", c.name);
        assert!(e.to_string().contains("expired"), "{}: {e}", c.name);
        // Another region is refused with a message naming both.
        let mut t = clone(c);
        t.region = "ap-south-1".into();
        let e = check(&t, &secret, now).unwrap_err();
        assert!(
            matches!(e, SigV4Error::WrongScope(_)) && e.to_string().contains("ap-south-1"),
            "{}: {e}",
            c.name
        );
    }
}

#[test]
fn missing_and_malformed_signatures() {
    let headers = HeaderMap::new();
    let req = Request {
        method: "POST",
        path: "/",
        query: None,
        headers: &headers,
        body: b"",
    };
    let e = sigv4::parse(&req).unwrap_err();
    assert_eq!(e, SigV4Error::Missing);
    assert_eq!(e.code(), "MissingAuthenticationTokenException");
    assert_eq!(e.status(), 403);

    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ecr/aws4_request, Signature=00",
        ),
    );
    h.insert("x-amz-date", HeaderValue::from_static("20260101T000000Z"));
    let req = Request { headers: &h, ..req };
    let e = sigv4::parse(&req).unwrap_err();
    assert_eq!(e.code(), "IncompleteSignatureException");
    assert_eq!(e.status(), 400);
    assert!(e.to_string().contains("SignedHeaders"), "{e}");

    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("AWS AKID:abc"));
    let req = Request { headers: &h, ..req };
    assert!(sigv4::parse(&req)
        .unwrap_err()
        .to_string()
        .contains("Signature Version 4"));
}

#[test]
fn own_signer_round_trips() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:5000"));
    headers.insert(
        "x-amz-target",
        HeaderValue::from_static("AmazonEC2ContainerRegistry_V20150921.ListImages"),
    );
    let now = OffsetDateTime::now_utc();
    let body = br#"{"repositoryName":"x"}"#;
    let signer = sigv4::Signer {
        access_key_id: "AKID",
        secret: "SECRET",
        region: "us-east-1",
        service: "ecr",
    };
    signer.sign("POST", "/", None, &mut headers, body, now);
    let req = Request {
        method: "POST",
        path: "/",
        query: None,
        headers: &headers,
        body,
    };
    let parsed = sigv4::parse(&req).unwrap();
    let expect = Expect {
        service: "ecr",
        region: "us-east-1",
        now,
    };
    sigv4::verify(&req, &parsed, "SECRET", &expect).unwrap();
    assert!(sigv4::verify(&req, &parsed, "OTHER", &expect).is_err());
}

fn clone(c: &Case) -> Case {
    Case {
        name: c.name.clone(),
        method: c.method.clone(),
        path: c.path.clone(),
        query: c.query.clone(),
        headers: c.headers.clone(),
        body: c.body.clone(),
        region: c.region.clone(),
        service: c.service.clone(),
    }
}
