//! Real-client tests: skopeo, podman and docker push to and pull from a running
//! `wharf serve`.
//!
//! The images are built here, offline: an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) with real gzipped tar layers
//! (`/bin/busybox` from busybox-static plus generated files), OCI configs whose
//! `rootfs.diff_ids` match the layers, a single-platform image and a
//! two-platform index (linux/amd64 + linux/arm64/v8, different layers).
//!
//! The clients are required: a missing tool fails the test (run
//! `scripts/setup.sh`, which `scripts/test.sh` does). Every client gets private
//! state in a temporary directory (podman `--root`, a private `dockerd`, auth
//! files, signature policy), so tests can run in parallel and leave nothing
//! behind.
//!
//! `WHARF_TEST_REGISTRY=127.0.0.1:PORT` runs the same tests against another
//! registry (e.g. CNCF Distribution) instead of a fresh Wharf, to compare
//! behaviour.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Time limit for one client command.
const CMD_TIMEOUT: Duration = Duration::from_secs(300);

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

// ---------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------

struct Registry {
    /// `127.0.0.1:PORT`
    host: String,
    /// Appended to repository names (only against an external registry, whose
    /// state outlives a test run).
    suffix: String,
    server: Option<common::Server>,
}

impl Registry {
    fn start() -> Registry {
        match std::env::var("WHARF_TEST_REGISTRY") {
            Ok(host) if !host.is_empty() => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                Registry {
                    host,
                    suffix: format!("-{:x}", nanos ^ u128::from(std::process::id())),
                    server: None,
                }
            }
            _ => Registry::wharf(&[]),
        }
    }

    fn wharf(args: &[&str]) -> Registry {
        let server = common::Server::start_with(args);
        Registry {
            host: server.host.clone(),
            suffix: String::new(),
            server: Some(server),
        }
    }

    /// A repository name, unique to this run.
    fn repo(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }

    /// `HOST/repo:tag` or `HOST/repo@digest`.
    fn image(&self, repo: &str, tag_or_digest: &str) -> String {
        if tag_or_digest.starts_with("sha256:") {
            format!("{}/{repo}@{tag_or_digest}", self.host)
        } else {
            format!("{}/{repo}:{tag_or_digest}", self.host)
        }
    }

    /// `docker://HOST/repo:tag`, for skopeo.
    fn docker_ref(&self, repo: &str, tag_or_digest: &str) -> String {
        format!("docker://{}", self.image(repo, tag_or_digest))
    }
}

// ---------------------------------------------------------------------------
// Running client commands
// ---------------------------------------------------------------------------

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs a command with no stdin and a time limit, capturing its output.
/// Panics if the program cannot be started (a missing client is a failure).
fn exec(cmd: &mut Command) -> Output {
    let desc = format!("{cmd:?}");
    let program = cmd.get_program().to_string_lossy().into_owned();
    eprintln!("$ {desc}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}`: {e}\n\
                 The real-client tests need skopeo, podman, docker.io and busybox-static: \
                 run scripts/setup.sh"
            )
        });
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + CMD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out.join().unwrap();
            let stderr = err.join().unwrap();
            panic!("timed out after {CMD_TIMEOUT:?}: {desc}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    if !output.stderr.trim().is_empty() {
        eprintln!("{}", output.stderr.trim_end());
    }
    output
}

fn reader(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs a command that must succeed; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = exec(cmd);
    assert!(
        out.status.success(),
        "command failed ({}): {desc}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs a command that must fail; returns stdout and stderr together.
fn fails(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = exec(cmd);
    assert!(
        !out.status.success(),
        "command succeeded but should have failed: {desc}\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out.text()
}

fn assert_mentions(text: &str, any_of: &[&str]) {
    let lower = text.to_lowercase();
    assert!(
        any_of.iter().any(|s| lower.contains(&s.to_lowercase())),
        "expected the error to mention one of {any_of:?}, got:\n{text}"
    );
}

/// `aws ecr get-login-password` as the administrator of `server`.
fn ecr_password(server: &common::Server) -> String {
    ok(Command::new("aws")
        .args(["ecr", "get-login-password", "--endpoint-url", &server.url])
        .args(["--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", common::ADMIN_KEY)
        .env("AWS_SECRET_ACCESS_KEY", common::ADMIN_SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"))
    .trim()
    .to_string()
}

/// Runs a `login --password-stdin` command with `password` on stdin; returns its
/// output, which must report success.
fn login(cmd: &mut Command, password: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(password.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "login failed: {text}");
    text
}

/// Private client state: signature policy and an auth file.
struct ClientEnv {
    dir: PathBuf,
}

impl ClientEnv {
    fn new(dir: &Path, host: &str) -> ClientEnv {
        fs::create_dir_all(dir).unwrap();
        fs::write(
            dir.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        fs::write(dir.join("auth.json"), common::auth_json(host)).unwrap();
        ClientEnv {
            dir: dir.to_path_buf(),
        }
    }

    fn skopeo(&self) -> Command {
        let mut c = Command::new("skopeo");
        c.env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"))
            .env("TMPDIR", &self.dir)
            .arg("--policy")
            .arg(self.dir.join("policy.json"));
        c
    }

    /// `skopeo inspect --raw` of a registry reference: the manifest bytes.
    fn raw_manifest(&self, reference: &str) -> Vec<u8> {
        let mut c = self.skopeo();
        c.args(["inspect", "--raw", "--tls-verify=false", reference]);
        // Byte-exact: don't go through the lossy String of `ok`.
        eprintln!("$ {c:?}");
        let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| {
            panic!("cannot run skopeo: {e} (run scripts/setup.sh)");
        });
        assert!(
            out.status.success(),
            "skopeo inspect --raw {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Asserts that the registry serves exactly `want` for `reference`.
    fn assert_manifest(&self, reference: &str, want: &[u8]) {
        let got = self.raw_manifest(reference);
        assert!(
            got == want,
            "{reference}: the registry serves other bytes than were pushed\n\
             got  {} bytes, {}:\n{}\nwant {} bytes, {}:\n{}",
            got.len(),
            sha256(&got),
            String::from_utf8_lossy(&got),
            want.len(),
            sha256(want),
            String::from_utf8_lossy(want)
        );
    }

    /// `skopeo copy` from an OCI layout to the registry.
    fn push(&self, layout: &Path, tag: &str, dest: &str, all: bool) {
        let mut c = self.skopeo();
        c.args(["copy", "--dest-tls-verify=false"]);
        if all {
            c.arg("--all");
        }
        c.arg(format!("oci:{}:{tag}", layout.display())).arg(dest);
        ok(&mut c);
    }
}

// ---------------------------------------------------------------------------
// Building OCI image layouts
// ---------------------------------------------------------------------------

/// An OCI image layout directory being written.
struct Layout {
    dir: PathBuf,
    refs: Vec<Value>,
}

impl Layout {
    fn create(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let layout = Layout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    fn blob_path(dir: &Path, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        dir.join("blobs/sha256").join(hex)
    }

    /// Stores a blob; returns its descriptor.
    fn put(&self, media_type: &str, bytes: &[u8]) -> Value {
        let digest = sha256(bytes);
        fs::write(Layout::blob_path(&self.dir, &digest), bytes).unwrap();
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
    }

    /// Names a manifest or index in `index.json`, so `oci:DIR:tag` finds it.
    fn tag(&mut self, tag: &str, desc: &Value) {
        let mut d = desc.clone();
        d["annotations"] = json!({ REF_NAME: tag });
        self.refs.push(d);
        self.write_index();
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.refs});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Reads an OCI layout written by a client: the descriptor named `tag`.
fn layout_ref(dir: &Path, tag: &str) -> Value {
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"][REF_NAME] == tag)
        .unwrap_or_else(|| panic!("no ref {tag} in {}/index.json: {index}", dir.display()))
        .clone()
}

/// A file in a layer.
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
}

struct Layer {
    gz: Vec<u8>,
    diff_id: String,
}

/// A gzipped tar layer with the given entries (and their parent directories).
fn layer(entries: &[Entry]) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for e in entries {
        let path = match e {
            Entry::File(p, ..) | Entry::Symlink(p, _) => *p,
        };
        let mut parent = String::new();
        for comp in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            parent.push_str(comp);
            parent.push('/');
            if dirs.insert(parent.clone()) {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                h.set_path(&parent).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
        match e {
            Entry::File(p, data, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                h.set_path(p).unwrap();
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            Entry::Symlink(p, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                h.set_path(p).unwrap();
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    Layer {
        gz: gz.finish().unwrap(),
        diff_id: sha256(&tar),
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// Deterministic filler so layers are not trivially small.
fn filler(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.as_bytes()).to_vec();
    while out.len() < len {
        out.extend_from_slice(hex::encode(&block).as_bytes());
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

/// An image written into a layout.
#[derive(Clone)]
struct Image {
    manifest: Vec<u8>,
    digest: String,
    desc: Value,
    config: Vec<u8>,
    config_digest: String,
    layers: Vec<String>,
}

fn image(layout: &Layout, arch: &str, variant: Option<&str>, layers: &[&Layer]) -> Image {
    let created = "2024-01-01T00:00:00Z";
    let mut config = json!({
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": {"org.example.wharf-test": arch},
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": layers.iter().enumerate().map(|(i, _)| json!({
            "created": created,
            "created_by": format!("wharf client test layer {i}"),
        })).collect::<Vec<_>>(),
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_desc = layout.put(OCI_CONFIG, &config);
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|l| layout.put(OCI_LAYER_GZIP, &l.gz))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
        "annotations": {"org.opencontainers.image.title": format!("wharf client test {arch}")},
    });
    // Pretty-printed on purpose: a registry must keep the exact bytes.
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    let desc = layout.put(OCI_MANIFEST, &manifest);
    Image {
        digest: sha256(&manifest),
        manifest,
        desc,
        config_digest: sha256(&config),
        config,
        layers: layer_descs
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect(),
    }
}

/// The test images, in an OCI layout.
///
/// - `v1`: linux/amd64, a busybox layer and a generated layer.
/// - `v2`: linux/amd64, the same busybox layer and another generated layer.
/// - `multi`: an index of linux/amd64 (busybox + a third generated layer) and
///   linux/arm64/v8 (one generated layer).
struct Fixture {
    dir: PathBuf,
    v1: Image,
    v2: Image,
    amd64: Image,
    arm64: Image,
    index: Vec<u8>,
    index_digest: String,
}

impl Fixture {
    fn build(dir: &Path) -> Fixture {
        let busybox = fs::read("/bin/busybox").unwrap_or_else(|e| {
            panic!("cannot read /bin/busybox ({e}): install busybox-static (scripts/setup.sh)")
        });
        let mut layout = Layout::create(dir);
        let base = layer(&[
            Entry::File("bin/busybox", &busybox, 0o755),
            Entry::Symlink("bin/sh", "busybox"),
            Entry::Symlink("bin/ls", "busybox"),
        ]);
        let gen = |name: &str| {
            let text = format!("wharf client test: {name}\n");
            let blob = filler(name, 64 * 1024);
            layer(&[
                Entry::File("etc/wharf-test", text.as_bytes(), 0o644),
                Entry::File("var/lib/wharf-test/filler", &blob, 0o644),
            ])
        };
        let (l1, l2, l3, l4) = (gen("v1"), gen("v2"), gen("multi-amd64"), gen("multi-arm64"));

        let v1 = image(&layout, "amd64", None, &[&base, &l1]);
        layout.tag("v1", &v1.desc);
        let v2 = image(&layout, "amd64", None, &[&base, &l2]);
        layout.tag("v2", &v2.desc);

        let amd64 = image(&layout, "amd64", None, &[&base, &l3]);
        let arm64 = image(&layout, "arm64", Some("v8"), &[&l4]);
        let mut m_amd = amd64.desc.clone();
        m_amd["platform"] = json!({"architecture": "amd64", "os": "linux"});
        let mut m_arm = arm64.desc.clone();
        m_arm["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
        let index = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [m_amd, m_arm],
        }))
        .unwrap();
        let index_desc = layout.put(OCI_INDEX, &index);
        layout.tag("multi", &index_desc);

        Fixture {
            dir: dir.to_path_buf(),
            v1,
            v2,
            amd64,
            arm64,
            index_digest: sha256(&index),
            index,
        }
    }
}

/// Asserts that an OCI layout written by a client holds `img` byte for byte.
fn assert_same_image(out: &Path, src: &Path, img: &Image) {
    let mut blobs = vec![img.digest.clone(), img.config_digest.clone()];
    blobs.extend(img.layers.iter().cloned());
    for d in blobs {
        let got = fs::read(Layout::blob_path(out, &d))
            .unwrap_or_else(|e| panic!("{d} missing from {}: {e}", out.display()));
        let want = fs::read(Layout::blob_path(src, &d)).unwrap();
        assert_eq!(sha256(&got), d, "blob {d} copied back has another digest");
        assert!(got == want, "blob {d} differs from what was pushed");
    }
}

fn tags(env: &ClientEnv, reg: &Registry, repo: &str) -> BTreeSet<String> {
    let out = ok(env.skopeo().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/{repo}", reg.host),
    ]));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags in {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------

#[test]
fn skopeo_copy_inspect_list_delete() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(&tmp.path().join("client"), &reg.host);
    let fx = Fixture::build(&tmp.path().join("src"));
    let repo = reg.repo("wharf-test/skopeo");

    // Push: a single-platform image twice (sharing the busybox layer) and the index.
    env.push(&fx.dir, "v1", &reg.docker_ref(&repo, "v1"), false);
    env.push(&fx.dir, "v2", &reg.docker_ref(&repo, "v2"), false);
    env.push(&fx.dir, "multi", &reg.docker_ref(&repo, "multi"), true);

    // The registry serves exactly the bytes that were pushed, by tag and by digest.
    env.assert_manifest(&reg.docker_ref(&repo, "v1"), &fx.v1.manifest);
    env.assert_manifest(&reg.docker_ref(&repo, &fx.v1.digest), &fx.v1.manifest);
    env.assert_manifest(&reg.docker_ref(&repo, "v2"), &fx.v2.manifest);
    env.assert_manifest(&reg.docker_ref(&repo, "multi"), &fx.index);
    env.assert_manifest(&reg.docker_ref(&repo, &fx.index_digest), &fx.index);
    env.assert_manifest(&reg.docker_ref(&repo, &fx.amd64.digest), &fx.amd64.manifest);
    env.assert_manifest(&reg.docker_ref(&repo, &fx.arm64.digest), &fx.arm64.manifest);

    // The parsed view: digest, platform, layers, and the config blob.
    let info: Value = serde_json::from_str(&ok(env.skopeo().args([
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "v1"),
    ])))
    .unwrap();
    assert_eq!(info["Digest"], fx.v1.digest.as_str(), "{info}");
    assert_eq!(info["Architecture"], "amd64", "{info}");
    assert_eq!(info["Layers"], json!(fx.v1.layers), "{info}");
    let config = ok(env.skopeo().args([
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "v1"),
    ]));
    assert_eq!(config.as_bytes(), &fx.v1.config[..]);
    // Through the index, skopeo picks this machine's platform (amd64), or the
    // one asked for.
    let info: Value = serde_json::from_str(&ok(env.skopeo().args([
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "multi"),
    ])))
    .unwrap();
    assert_eq!(info["Digest"], fx.index_digest.as_str(), "{info}");
    assert_eq!(info["Architecture"], "amd64", "{info}");
    assert_eq!(info["Layers"], json!(fx.amd64.layers), "{info}");
    let info: Value = serde_json::from_str(&ok(env.skopeo().args([
        "--override-arch",
        "arm64",
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "multi"),
    ])))
    .unwrap();
    assert_eq!(info["Architecture"], "arm64", "{info}");
    assert_eq!(info["Layers"], json!(fx.arm64.layers), "{info}");

    // Copy back into a new layout: every blob identical.
    let out = tmp.path().join("out");
    ok(env.skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &reg.docker_ref(&repo, "v1"),
        &format!("oci:{}:v1", out.display()),
    ]));
    assert_eq!(layout_ref(&out, "v1")["digest"], fx.v1.digest.as_str());
    assert_same_image(&out, &fx.dir, &fx.v1);
    ok(env.skopeo().args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        &reg.docker_ref(&repo, "multi"),
        &format!("oci:{}:multi", out.display()),
    ]));
    let r = layout_ref(&out, "multi");
    assert_eq!(r["digest"], fx.index_digest.as_str(), "{r}");
    assert_eq!(r["mediaType"], OCI_INDEX, "{r}");
    let index = fs::read(Layout::blob_path(&out, &fx.index_digest)).unwrap();
    assert!(index == fx.index, "index copied back differs");
    assert_same_image(&out, &fx.dir, &fx.amd64);
    assert_same_image(&out, &fx.dir, &fx.arm64);

    // Tags.
    assert_eq!(tags(&env, &reg, &repo), set(&["multi", "v1", "v2"]));

    // Delete v2: the tag is gone, the others are untouched.
    ok(env
        .skopeo()
        .args(["delete", "--tls-verify=false", &reg.docker_ref(&repo, "v2")]));
    let err = fails(env.skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "v2"),
    ]));
    assert_mentions(&err, &["manifest unknown"]);
    let err = fails(env.skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref(&repo, &fx.v2.digest),
    ]));
    assert_mentions(&err, &["manifest unknown"]);
    assert_eq!(tags(&env, &reg, &repo), set(&["multi", "v1"]));
    env.assert_manifest(&reg.docker_ref(&repo, "v1"), &fx.v1.manifest);
    env.assert_manifest(&reg.docker_ref(&repo, "multi"), &fx.index);

    // Errors as skopeo reports them.
    let err = fails(env.skopeo().args([
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&repo, "no-such-tag"),
    ]));
    assert_mentions(&err, &["manifest unknown"]);
    let absent = format!("sha256:{}", "0".repeat(64));
    let err = fails(env.skopeo().args([
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&repo, &absent),
    ]));
    assert_mentions(&err, &["manifest unknown"]);
    assert_mentions(&err, &[&absent]);
    let err = fails(env.skopeo().args([
        "inspect",
        "--tls-verify=false",
        &reg.docker_ref(&reg.repo("wharf-test/no-such-repo"), "v1"),
    ]));
    assert_mentions(&err, &["manifest unknown", "name unknown", "not found"]);
}

// ---------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------

struct Podman {
    dir: PathBuf,
    env: PathBuf,
}

impl Podman {
    fn new(dir: &Path, env: &ClientEnv) -> Podman {
        for d in ["root", "runroot", "tmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        Podman {
            dir: dir.to_path_buf(),
            env: env.dir.clone(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("REGISTRY_AUTH_FILE", self.env.join("auth.json"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--storage-driver=vfs",
                "--events-backend=none",
                "--cgroup-manager=cgroupfs",
            ]);
        c
    }

    fn inspect(&self, image: &str) -> Value {
        let out = ok(self.cmd().args(["image", "inspect", image]));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v[0].clone()
    }
}

#[test]
fn podman_pull_tag_push_rmi() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(&tmp.path().join("client"), &reg.host);
    let fx = Fixture::build(&tmp.path().join("src"));
    let podman = Podman::new(&tmp.path().join("podman"), &env);
    if let Some(server) = &reg.server {
        // The ECR way; podman stores the token where skopeo reads it too.
        let password = ecr_password(server);
        let text = login(
            podman.cmd().args([
                "login",
                "--tls-verify=false",
                "--username",
                "AWS",
                "--password-stdin",
                &reg.host,
            ]),
            &password,
        );
        assert!(text.contains("Login Succeeded"), "{text}");
        let auth = fs::read_to_string(env.dir.join("auth.json")).unwrap();
        assert!(
            !auth.contains(common::ADMIN_SECRET),
            "podman replaced the key with the token"
        );
    }
    let repo = reg.repo("wharf-test/podman");
    let copy = reg.repo("wharf-test/podman-copy");
    env.push(&fx.dir, "v1", &reg.docker_ref(&repo, "v1"), false);
    env.push(&fx.dir, "multi", &reg.docker_ref(&repo, "multi"), true);

    // Pull by tag.
    ok(podman
        .cmd()
        .args(["pull", "-q", "--tls-verify=false", &reg.image(&repo, "v1")]));
    let info = podman.inspect(&reg.image(&repo, "v1"));
    assert_eq!(info["Digest"], fx.v1.digest.as_str(), "{info}");
    assert_eq!(info["Architecture"], "amd64", "{info}");
    assert_eq!(
        format!("sha256:{}", info["Id"].as_str().unwrap()),
        fx.v1.config_digest
    );
    let repo_digests = info["RepoDigests"].to_string();
    assert!(
        repo_digests.contains(&reg.image(&repo, &fx.v1.digest)),
        "{repo_digests}"
    );

    // Tag into another repository and push it there.
    let copied = reg.image(&copy, "retagged");
    ok(podman.cmd().args(["tag", &reg.image(&repo, "v1"), &copied]));
    let digestfile = tmp.path().join("digest");
    ok(podman.cmd().args([
        "push",
        "-q",
        "--tls-verify=false",
        "--digestfile",
        digestfile.to_str().unwrap(),
        &copied,
    ]));
    let pushed = fs::read_to_string(&digestfile).unwrap().trim().to_string();
    let served = env.raw_manifest(&format!("docker://{copied}"));
    assert_eq!(
        sha256(&served),
        pushed,
        "the registry's manifest for {copied} is not the one podman pushed"
    );
    env.assert_manifest(&reg.docker_ref(&copy, &pushed), &served);
    // The image itself is unchanged: same config (hence same layer diff_ids).
    let config = ok(env.skopeo().args([
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{copied}"),
    ]));
    assert_eq!(sha256(config.as_bytes()), fx.v1.config_digest);
    assert_eq!(tags(&env, &reg, &copy), set(&["retagged"]));

    // A multi-platform pull picks the requested platform.
    ok(podman.cmd().args([
        "pull",
        "-q",
        "--tls-verify=false",
        "--arch",
        "arm64",
        &reg.image(&repo, "multi"),
    ]));
    let info = podman.inspect(&reg.image(&repo, "multi"));
    assert_eq!(info["Architecture"], "arm64", "{info}");
    assert_eq!(
        format!("sha256:{}", info["Id"].as_str().unwrap()),
        fx.arm64.config_digest
    );
    let repo_digests = info["RepoDigests"].to_string();
    assert!(
        repo_digests.contains(&fx.index_digest) || repo_digests.contains(&fx.arm64.digest),
        "{repo_digests}"
    );

    // rmi, then pull back what podman pushed.
    ok(podman.cmd().args([
        "rmi",
        &reg.image(&repo, "v1"),
        &copied,
        &reg.image(&repo, "multi"),
    ]));
    let left = ok(podman.cmd().args(["images", "-q"]));
    assert!(left.trim().is_empty(), "images left after rmi: {left}");
    ok(podman
        .cmd()
        .args(["pull", "-q", "--tls-verify=false", &copied]));
    let info = podman.inspect(&copied);
    assert_eq!(info["Digest"], pushed.as_str(), "{info}");

    // A missing tag.
    let err = fails(podman.cmd().args([
        "pull",
        "--tls-verify=false",
        &reg.image(&repo, "no-such-tag"),
    ]));
    assert_mentions(&err, &["manifest unknown"]);
}

// ---------------------------------------------------------------------------
// docker
// ---------------------------------------------------------------------------

/// A private dockerd in a temporary directory; stopped on drop (also on panic).
struct Dockerd {
    child: Option<Child>,
    dir: PathBuf,
    host: String,
}

impl Dockerd {
    fn start(dir: &Path) -> Dockerd {
        for d in ["root", "exec", "cli"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("daemon.json"), "{}").unwrap();
        fs::write(dir.join("cli/config.json"), "{}").unwrap();
        let sock = dir.join("docker.sock");
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .args([
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dockerd: {e}: install docker.io (scripts/setup.sh)")
            });
        let mut d = Dockerd {
            child: Some(child),
            dir: dir.to_path_buf(),
            host: format!("unix://{}", sock.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited with {status}:\n{}", d.log());
            }
            if sock.exists() {
                let ping = d.cmd().arg("version").stdin(Stdio::null()).output();
                if matches!(ping, Ok(ref o) if o.status.success()) {
                    break;
                }
            }
            if Instant::now() > deadline {
                panic!("dockerd did not come up in 60s:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", self.dir.join("cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .args(["-H", &self.host]);
        c
    }

    fn inspect(&self, image: &str) -> Value {
        let out = ok(self.cmd().args(["image", "inspect", image]));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v[0].clone()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The digest `docker push` reports (`TAG: digest: sha256:... size: N`).
fn pushed_digest(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_string()
}

#[test]
fn docker_load_push_pull() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(&tmp.path().join("client"), &reg.host);
    let fx = Fixture::build(&tmp.path().join("src"));
    let repo = reg.repo("wharf-test/docker");
    env.push(&fx.dir, "multi", &reg.docker_ref(&repo, "multi"), true);
    let docker = Dockerd::start(&tmp.path().join("docker"));
    if let Some(server) = &reg.server {
        // As ECR users log in: aws ecr get-login-password | docker login.
        let password = ecr_password(server);
        let text = login(
            docker
                .cmd()
                .args(["login", "--username", "AWS", "--password-stdin", &reg.host]),
            &password,
        );
        assert!(text.contains("Login Succeeded"), "{text}");
        // Without the login, docker is refused with the registry's reason.
        let anon = docker.dir.join("anon-cli");
        fs::create_dir_all(&anon).unwrap();
        fs::write(anon.join("config.json"), "{}").unwrap();
        let refused = docker
            .cmd()
            .env("DOCKER_CONFIG", &anon)
            .args(["pull", &reg.image(&repo, "multi")])
            .output()
            .unwrap();
        assert!(!refused.status.success(), "anonymous pull must fail");
    }

    // Load the image from an archive, then push it.
    let name = reg.image(&repo, "v1");
    let archive = tmp.path().join("v1.tar");
    ok(env.skopeo().args([
        "copy",
        &format!("oci:{}:v1", fx.dir.display()),
        &format!("docker-archive:{}:{name}", archive.display()),
    ]));
    ok(docker.cmd().args(["load", "-i", archive.to_str().unwrap()]));
    let loaded = docker.inspect(&name);
    assert_eq!(loaded["Id"], fx.v1.config_digest.as_str(), "{loaded}");
    let out = ok(docker.cmd().args(["push", &name]));
    let pushed = pushed_digest(&out);
    let served = env.raw_manifest(&format!("docker://{name}"));
    assert_eq!(
        sha256(&served),
        pushed,
        "the registry's manifest is not the one docker pushed"
    );

    // Remove it locally and pull it back.
    ok(docker.cmd().args(["rmi", &name]));
    let left = ok(docker.cmd().args(["images", "-q"]));
    assert!(left.trim().is_empty(), "images left after rmi: {left}");
    ok(docker.cmd().args(["pull", &name]));
    let info = docker.inspect(&name);
    assert_eq!(info["Id"], fx.v1.config_digest.as_str(), "{info}");
    assert_eq!(
        info["RepoDigests"],
        json!([format!("{}/{repo}@{pushed}", reg.host)]),
        "{info}"
    );

    // Pull by digest.
    ok(docker.cmd().args(["rmi", &name]));
    ok(docker.cmd().args(["pull", &reg.image(&repo, &pushed)]));

    // The multi-platform index by tag: docker picks linux/amd64 and records
    // the index digest.
    let multi = reg.image(&repo, "multi");
    ok(docker.cmd().args(["pull", &multi]));
    let info = docker.inspect(&multi);
    assert_eq!(info["Architecture"], "amd64", "{info}");
    assert_eq!(info["Id"], fx.amd64.config_digest.as_str(), "{info}");
    assert_eq!(
        info["RepoDigests"],
        json!([format!("{}/{repo}@{}", reg.host, fx.index_digest)]),
        "{info}"
    );
    // ... and the other platform on request.
    ok(docker
        .cmd()
        .args(["pull", "--platform", "linux/arm64", &multi]));
    let info = docker.inspect(&multi);
    assert_eq!(info["Architecture"], "arm64", "{info}");
    assert_eq!(info["Id"], fx.arm64.config_digest.as_str(), "{info}");

    // A missing tag.
    let err = fails(
        docker
            .cmd()
            .args(["pull", &reg.image(&repo, "no-such-tag")]),
    );
    assert_mentions(&err, &["manifest unknown"]);
    assert_mentions(&err, &["not found"]);
}

// ---------------------------------------------------------------------------
// Wharf-specific: --no-create-on-push and `wharf repo`
// ---------------------------------------------------------------------------

#[test]
fn skopeo_push_needs_repo_without_create_on_push() {
    let reg = Registry::wharf(&["--no-create-on-push"]);
    let server = reg.server.as_ref().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let env = ClientEnv::new(&tmp.path().join("client"), &reg.host);
    let fx = Fixture::build(&tmp.path().join("src"));
    let repo = "wharf-test/precreated";

    // Not created: the push fails and names the problem.
    let mut c = env.skopeo();
    c.args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", fx.dir.display()))
        .arg(reg.docker_ref(repo, "v1"));
    let err = fails(&mut c);
    assert_mentions(&err, &["name unknown"]);

    // Created with the CLI while the server runs: the push goes through.
    ok(server.command().args(["repo", "create", repo]));
    let list = ok(server.command().args(["repo", "list"]));
    assert!(list.lines().any(|l| l.contains(repo)), "{list}");
    env.push(&fx.dir, "v1", &reg.docker_ref(repo, "v1"), false);
    env.assert_manifest(&reg.docker_ref(repo, "v1"), &fx.v1.manifest);
}
