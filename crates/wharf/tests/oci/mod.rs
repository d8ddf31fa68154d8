//! Shared helpers for Wharf's HTTP-level tests: a small OCI distribution client over
//! `reqwest`, content builders (blobs, configs, manifests, indexes) and assertions on
//! registry responses that print the whole exchange when they fail.
#![allow(dead_code)]

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use wharf_oci::Algorithm;

/// Media types used by the tests.
pub mod mt {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_ND_GZ: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const OCTET: &str = "application/octet-stream";
    /// Artifact types used by the referrers tests.
    pub const ART_A: &str = "application/vnd.example.wharf.conformance.v1";
    pub const ART_B: &str = "application/vnd.example.wharf.conformance.v2";
}

/// The error codes the distribution spec defines.
pub const SPEC_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    Algorithm::Sha256.digest(data).to_string()
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    Algorithm::Sha512.digest(data).to_string()
}

/// Digest of `data` with `alg`.
pub fn digest_with(alg: Algorithm, data: &[u8]) -> String {
    alg.digest(data).to_string()
}

/// Digest of the empty blob.
pub const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Digest of `{}` (the OCI empty descriptor).
pub const EMPTY_JSON_SHA256: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh pseudo-random seed (time, process and a counter mixed).
pub fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix(
        &mut (t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic PRNG (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    Rng::new(seed()).bytes(n)
}

/// A random lowercase hex string of 12 characters.
pub fn rand_hex() -> String {
    format!("{:012x}", seed() & 0xffff_ffff_ffff)
}

/// A unique image config blob (OCI/Docker config JSON).
pub fn config_blob() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "author": format!("wharf test {}", rand_hex()),
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

/// A descriptor for `data` (sha256).
pub fn desc(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// A descriptor for `data` with the given digest algorithm.
pub fn desc_with(alg: Algorithm, media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest_with(alg, data), "size": data.len()})
}

/// An OCI image manifest JSON value.
pub fn oci_manifest(config: Value, layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    })
}

/// An OCI image index JSON value.
pub fn oci_index(manifests: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    })
}

/// Serializes a JSON value.
pub fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// An image whose blobs and manifest the tests push.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

impl Image {
    /// A random OCI image with `layers` gzip-typed layers of `layer_size` bytes.
    pub fn random(layers: usize, layer_size: usize) -> Image {
        let config = config_blob();
        let layers: Vec<Vec<u8>> = (0..layers).map(|_| random_bytes(layer_size)).collect();
        let m = oci_manifest(
            desc(mt::OCI_CONFIG, &config),
            layers.iter().map(|l| desc(mt::OCI_LAYER_GZ, l)).collect(),
        );
        Image::from_parts(config, layers, to_bytes(&m), mt::OCI_MANIFEST)
    }

    pub fn from_parts(
        config: Vec<u8>,
        layers: Vec<Vec<u8>>,
        manifest: Vec<u8>,
        media_type: &str,
    ) -> Image {
        Image {
            digest: sha256(&manifest),
            config,
            layers,
            manifest,
            media_type: media_type.to_string(),
        }
    }

    /// The descriptor of the manifest itself.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.manifest.len()})
    }

    /// All blobs (config first).
    pub fn blobs(&self) -> Vec<&[u8]> {
        std::iter::once(self.config.as_slice())
            .chain(self.layers.iter().map(|l| l.as_slice()))
            .collect()
    }
}

/// A captured HTTP exchange.
pub struct Resp {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Resp {
    /// A one-paragraph description of the exchange for failure messages.
    pub fn describe(&self) -> String {
        let mut headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>")))
            .collect();
        headers.sort();
        let body = if self.body.len() > 600 {
            format!(
                "{}... ({} bytes)",
                String::from_utf8_lossy(&self.body[..600]),
                self.body.len()
            )
        } else {
            String::from_utf8_lossy(&self.body).into_owned()
        };
        format!(
            "{} {} -> {}\n  headers: [{}]\n  body: {}",
            self.method,
            self.url,
            self.status,
            headers.join(", "),
            body
        )
    }

    /// The value of header `name`, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The value of header `name`; panics (describing the exchange) if absent.
    pub fn must_header(&self, name: &str) -> String {
        self.header(name)
            .unwrap_or_else(|| panic!("missing header {name}:\n{}", self.describe()))
    }

    /// Asserts header `name` is exactly `value`.
    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) -> &Resp {
        let got = self.header(name);
        assert_eq!(
            got.as_deref(),
            Some(value),
            "header {name} mismatch:\n{}",
            self.describe()
        );
        self
    }

    /// Asserts header `name` is absent.
    #[track_caller]
    pub fn assert_no_header(&self, name: &str) -> &Resp {
        assert!(
            self.headers.get(name).is_none(),
            "header {name} must be absent:\n{}",
            self.describe()
        );
        self
    }

    /// Asserts the status code.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status:\n{}",
            self.describe()
        );
        self
    }

    /// The body parsed as JSON; panics (describing the exchange) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{}", self.describe()))
    }

    /// The `code`s of the OCI error body (empty if the body is not an error body).
    pub fn error_codes(&self) -> Vec<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_string))
            .collect()
    }

    /// Asserts an OCI error response: the status, a JSON body
    /// `{"errors":[{"code":..,"message":..}]}` whose first code is `code`. Returns the
    /// first error object.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> Value {
        self.expect_error_in(status, &[code])
    }

    /// Like [`Resp::expect_error`], accepting any of `codes` as the first code.
    #[track_caller]
    pub fn expect_error_in(&self, status: u16, codes: &[&str]) -> Value {
        self.expect(status);
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/json"),
            "error response must be JSON (Content-Type {ct:?}):\n{}",
            self.describe()
        );
        let v = self.json();
        let errors = v
            .get("errors")
            .and_then(|e| e.as_array())
            .unwrap_or_else(|| panic!("error body has no \"errors\" array:\n{}", self.describe()));
        assert!(
            !errors.is_empty(),
            "empty errors array:\n{}",
            self.describe()
        );
        let first = errors[0].clone();
        let got = first.get("code").and_then(|c| c.as_str()).unwrap_or("");
        assert!(
            codes.contains(&got),
            "expected error code {codes:?}, got {got:?}:\n{}",
            self.describe()
        );
        for e in errors {
            let c = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            assert!(
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "error code {c:?} must be uppercase letters and underscores:\n{}",
                self.describe()
            );
            if let Some(m) = e.get("message") {
                assert!(
                    m.is_string(),
                    "message must be a string:\n{}",
                    self.describe()
                );
            }
        }
        first
    }

    /// The `message` of the first error.
    pub fn error_message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Extracts the target of a `Link: <url>; rel="next"` header.
pub fn next_link(resp: &Resp) -> Option<String> {
    let all: Vec<String> = resp
        .headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    for value in all {
        for part in value.split(',') {
            let part = part.trim();
            if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
                continue;
            }
            let start = part.find('<')?;
            let end = part.find('>')?;
            return Some(part[start + 1..end].to_string());
        }
    }
    None
}

/// A registry client bound to one server.
#[derive(Clone)]
pub struct Reg {
    pub c: Client,
    pub base: Url,
}

/// A `reqwest` client that never follows redirects.
pub fn client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&crate::common::admin_basic()).expect("header"),
    );
    Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4)
        .build()
        .expect("reqwest client")
}

impl Reg {
    pub fn new(base: &str) -> Reg {
        Reg {
            c: client(),
            base: Url::parse(base).expect("server url"),
        }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("url join")
    }

    /// Resolves a `Location` (absolute or relative) against the server URL.
    pub fn resolve(&self, location: &str) -> Url {
        self.base
            .join(location)
            .unwrap_or_else(|e| panic!("unparsable Location {location:?}: {e}"))
    }

    /// `url` with query parameter `k=v` appended (keeping its existing query).
    pub fn with_query(url: &Url, k: &str, v: &str) -> Url {
        let mut u = url.clone();
        u.query_pairs_mut().append_pair(k, v);
        u
    }

    /// A request builder for `method` on `url`.
    pub fn req(&self, method: Method, url: Url) -> RequestBuilder {
        self.c.request(method, url)
    }

    /// A request builder for `method` on `path`.
    pub fn at(&self, method: Method, path: &str) -> RequestBuilder {
        self.c.request(method, self.url(path))
    }

    /// Sends a request and captures the response; errors are returned.
    pub async fn try_send(&self, rb: RequestBuilder) -> Result<Resp, reqwest::Error> {
        let req = rb.build()?;
        self.exec(req).await
    }

    async fn exec(&self, req: reqwest::Request) -> Result<Resp, reqwest::Error> {
        let method = req.method().clone();
        let url = req.url().clone();
        let resp = self.c.execute(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok(Resp {
            method,
            url,
            status,
            headers,
            body,
        })
    }

    /// Sends a request and captures the response; panics on transport errors.
    pub async fn send(&self, rb: RequestBuilder) -> Resp {
        let req = rb.build().expect("request");
        let what = format!("{} {}", req.method(), req.url());
        self.exec(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: transport error: {e:?}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.at(Method::GET, path)).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(self.at(Method::HEAD, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.at(Method::DELETE, path)).await
    }

    /// `POST /v2/<repo>/blobs/uploads/` with `Content-Length: 0`; asserts 202 and returns
    /// the response and the resolved upload URL.
    pub async fn start_upload(&self, repo: &str) -> (Resp, Url) {
        let r = self
            .send(
                self.at(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
                    .body(Vec::<u8>::new()),
            )
            .await;
        r.expect(202);
        let loc = self.resolve(&r.must_header("location"));
        (r, loc)
    }

    /// Pushes `data` with POST then PUT (sha256); asserts 201; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        self.push_blob_with(repo, data, Algorithm::Sha256).await
    }

    /// Pushes `data` with POST then PUT, digest algorithm `alg`; asserts 201 and
    /// `Docker-Content-Digest`; returns the digest.
    pub async fn push_blob_with(&self, repo: &str, data: &[u8], alg: Algorithm) -> String {
        let digest = digest_with(alg, data);
        let (_, loc) = self.start_upload(repo).await;
        let r = self
            .send(
                self.req(Method::PUT, Reg::with_query(&loc, "digest", &digest))
                    .header("content-type", mt::OCTET)
                    .body(data.to_vec()),
            )
            .await;
        r.expect(201);
        r.assert_header("docker-content-digest", &digest);
        digest
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with Content-Type `ct`.
    pub async fn put_manifest(&self, repo: &str, reference: &str, ct: &str, body: &[u8]) -> Resp {
        self.send(
            self.at(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
                .header("content-type", ct)
                .body(body.to_vec()),
        )
        .await
    }

    /// Pushes a manifest; asserts 201, `Docker-Content-Digest` and a `Location` that
    /// serves the same bytes. Returns the sha256 digest of `body`.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        ct: &str,
        body: &[u8],
    ) -> String {
        let r = self.put_manifest(repo, reference, ct, body).await;
        r.expect(201);
        let digest = if reference.starts_with("sha512:") {
            sha512(body)
        } else {
            sha256(body)
        };
        r.assert_header("docker-content-digest", &digest);
        let loc = self.resolve(&r.must_header("location"));
        assert!(
            loc.path().starts_with(&format!("/v2/{repo}/manifests/")),
            "manifest Location must point into /v2/{repo}/manifests/:\n{}",
            r.describe()
        );
        let g = self
            .send(self.req(Method::GET, loc).header("accept", ct))
            .await;
        g.expect(200);
        assert_eq!(
            &g.body[..],
            body,
            "manifest Location serves other bytes:\n{}",
            g.describe()
        );
        digest
    }

    /// `GET /v2/<repo>/manifests/<reference>` with an optional Accept header.
    pub async fn get_manifest(&self, repo: &str, reference: &str, accept: Option<&str>) -> Resp {
        let mut rb = self.at(Method::GET, &format!("/v2/{repo}/manifests/{reference}"));
        if let Some(a) = accept {
            rb = rb.header("accept", a);
        }
        self.send(rb).await
    }

    /// `HEAD /v2/<repo>/manifests/<reference>` with an optional Accept header.
    pub async fn head_manifest(&self, repo: &str, reference: &str, accept: Option<&str>) -> Resp {
        let mut rb = self.at(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"));
        if let Some(a) = accept {
            rb = rb.header("accept", a);
        }
        self.send(rb).await
    }

    /// Pushes every blob of `img` and then its manifest under `reference`.
    pub async fn push_image(&self, repo: &str, reference: &str, img: &Image) {
        for b in img.blobs() {
            self.push_blob(repo, b).await;
        }
        self.push_manifest(repo, reference, &img.media_type, &img.manifest)
            .await;
    }

    /// Asserts that `repo` serves blob `data` in full with correct headers.
    pub async fn assert_blob(&self, repo: &str, data: &[u8]) {
        let d = sha256(data);
        self.assert_blob_digest(repo, &d, data).await;
    }

    /// Asserts that `repo` serves `data` as blob `digest` (GET and HEAD).
    pub async fn assert_blob_digest(&self, repo: &str, digest: &str, data: &[u8]) {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let g = self.get(&path).await;
        g.expect(200);
        assert!(g.body == data, "blob body differs:\n{}", g.describe());
        g.assert_header("content-length", &data.len().to_string());
        g.assert_header("docker-content-digest", digest);
        let h = self.head(&path).await;
        h.expect(200);
        h.assert_header("content-length", &data.len().to_string());
        h.assert_header("docker-content-digest", digest);
        assert!(
            h.body.is_empty(),
            "HEAD must not have a body:\n{}",
            h.describe()
        );
    }

    /// `GET /v2/<repo>/tags/list` (plus `query`), asserting 200; returns the tags.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list")).await;
        r.expect(200);
        tags_of(&r)
    }
}

/// The `tags` of a tags-list response (`null` counts as empty).
pub fn tags_of(r: &Resp) -> Vec<String> {
    let v = r.json();
    match &v["tags"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .unwrap_or_else(|| panic!("tag is not a string:\n{}", r.describe()))
                    .to_string()
            })
            .collect(),
        _ => panic!("tags is not an array:\n{}", r.describe()),
    }
}

/// A response read by [`raw_http`].
pub struct RawResp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn describe(&self) -> String {
        format!(
            "{} headers: {:?} body: {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body[..self.body.len().min(600)])
        )
    }
}

/// Sends one HTTP/1.1 request over a raw TCP connection, reading the response while
/// the body is still being written (as curl does), so a server that answers early and
/// closes the connection is still heard. With `chunked`, the body is sent with
/// `Transfer-Encoding: chunked`, otherwise with `Content-Length`.
pub async fn raw_http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    chunked: bool,
) -> Result<RawResp, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect {host}: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAuthorization: {}\r\n",
        crate::common::admin_basic()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut payload = Vec::new();
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for c in body.chunks(64 * 1024) {
            payload.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            payload.extend_from_slice(c);
            payload.extend_from_slice(b"\r\n");
        }
        payload.extend_from_slice(b"0\r\n\r\n");
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        payload.extend_from_slice(body);
    }
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for c in payload.chunks(64 * 1024) {
            wr.write_all(c).await?;
        }
        wr.flush().await?;
        // Keep the write half open: dropping it half-closes the socket, which the
        // server reads as the client going away before the response.
        std::future::pending::<()>().await;
        Ok::<(), std::io::Error>(())
    });
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(60), rd.read_to_end(&mut buf)).await;
    writer.abort();
    if buf.is_empty() {
        return Err(format!("no response ({read:?})"));
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response: {:?}", String::from_utf8_lossy(&buf)))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(RawResp {
        status,
        headers,
        body,
    })
}
