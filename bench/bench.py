#!/usr/bin/env python3
"""Wharf vs CNCF Distribution, side by side on loopback.

Run through bench/run.sh, which builds Wharf (release) and installs the tools.
Only the standard library is used; the HTTP work is done by curl, wrk and
skopeo so that the client is the same native code for both registries.

Environment:
  WHARF_BIN          path of the wharf binary (required)
  BENCH_REPS         repetitions of each timed step, median reported (default 3)
  BENCH_BLOB_MIB     size of the big blob in MiB (default 1024)
  BENCH_CHUNK_MIB    PATCH chunk size in MiB (default 64)
  BENCH_LAYERS       layers of the skopeo test image (default 5)
  BENCH_LAYER_MIB    MiB per layer (default 20)
  BENCH_WRK_SECONDS  wrk duration (default 10)
  BENCH_DIR          work directory (default: a new temporary directory, removed at the end)
  BENCH_KEEP=1       keep the work directory
  BENCH_SHARED=0     skip the PostgreSQL + S3 runs (on by default when bench/run.sh
                     started the engines: WHARF_TEST_POSTGRES, WHARF_TEST_S3)
"""

import gzip
import base64
import hashlib
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request

MIB = 1024 * 1024

REPS = int(os.environ.get("BENCH_REPS", "3"))
BLOB_MIB = int(os.environ.get("BENCH_BLOB_MIB", "1024"))
CHUNK_MIB = int(os.environ.get("BENCH_CHUNK_MIB", "64"))
LAYERS = int(os.environ.get("BENCH_LAYERS", "5"))
LAYER_MIB = int(os.environ.get("BENCH_LAYER_MIB", "20"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))

ACCEPT = ",".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

errors = []


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# Wharf always authenticates: the benchmark uses an administrator access key as Basic
# credentials on every request (Distribution, run without auth, ignores them).
BENCH_KEY = "AKIAWHARFBENCHADMIN1"
BENCH_SECRET = "wharf-bench-secret-0123456789abcdefghij"
BASIC = "Basic " + base64.b64encode(f"{BENCH_KEY}:{BENCH_SECRET}".encode()).decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return  # it answers
        except Exception as e:  # noqa: BLE001
            if time.time() > deadline:
                raise RuntimeError(f"{url} not up after {timeout}s: {e}")
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


class Server:
    def __init__(self, name, proc, host):
        self.name = name
        self.proc = proc
        self.host = host
        self.url = f"http://{host}"

    def status(self, key):
        """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def shared_engines():
    """A fresh PostgreSQL database and S3 bucket on the engines bench/run.sh started, as
    (serve arguments, environment), or None when they are not there."""
    pg, s3 = os.environ.get("WHARF_TEST_POSTGRES"), os.environ.get("WHARF_TEST_S3")
    if os.environ.get("BENCH_SHARED") == "0" or not pg or not s3:
        return None
    name = f"wbench{os.getpid()}"
    subprocess.run(["psql", pg, "-qc", f"CREATE DATABASE {name}"], check=True)
    db = pg.rsplit("/", 1)[0] + "/" + name
    creds = {
        "AWS_ACCESS_KEY_ID": os.environ["WHARF_TEST_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": os.environ["WHARF_TEST_S3_SECRET_KEY"],
        "AWS_REGION": "us-east-1",
    }
    subprocess.run(
        ["aws", "s3api", "create-bucket", "--bucket", name, "--endpoint-url", s3],
        check=True, capture_output=True, env=dict(os.environ, **creds),
    )
    blobs = f"s3://{name}?endpoint={s3}&region=us-east-1"
    return ["--metadata", db, "--blobs", blobs], creds


def start_wharf(work, name="Wharf", engines=None):
    data = os.path.join(work, "wharf-data-" + name.replace(" ", "-"))
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    args, extra_env = engines or ([], {})
    env.update(extra_env)
    proc = subprocess.Popen(
        [
            os.environ["WHARF_BIN"], "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
            "--admin-access-key-id", BENCH_KEY, "--admin-secret-access-key", BENCH_SECRET,
        ] + args,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    deadline = time.time() + 30
    host = None
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"wharf exited with {proc.wait()} before listening")
        m = re.search(r"wharf listening on http://(\S+)", line)
        if m:
            host = m.group(1)
            break
    if host is None:
        proc.kill()
        raise RuntimeError("wharf did not print its address in 30s")
    # keep draining stdout
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    srv = Server(name, proc, host)
    wait_http(srv.url + "/v2/")
    return srv


def start_distribution(work):
    port = free_port()
    root = os.path.join(work, "distribution-data")
    conf = os.path.join(work, "distribution.yml")
    with open(conf, "w") as f:
        f.write(
            f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
"""
        )
    proc = subprocess.Popen(
        ["docker-registry", "serve", conf],
        stdin=subprocess.DEVNULL,
        stdout=open(os.path.join(work, "distribution.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    srv = Server("Distribution", proc, f"127.0.0.1:{port}")
    wait_http(srv.url + "/v2/")
    return srv


def start_static(work, kind, directory):
    port = free_port()
    if kind == "busybox":
        cmd = ["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", directory]
    else:
        cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", directory]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = Server(kind, proc, f"127.0.0.1:{port}")
    wait_http(srv.url + "/")
    return srv


# ---------------------------------------------------------------------------
# Peak RSS sampling
# ---------------------------------------------------------------------------


class RssSampler:
    def __init__(self, server, interval=0.02):
        self.server = server
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.status("VmRSS"))
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.server.status("VmRSS"))


# ---------------------------------------------------------------------------
# curl helpers
# ---------------------------------------------------------------------------


def curl(args, what):
    """Runs curl with headers dumped; returns (status, headers dict, stdout)."""
    cmd = ["curl", "-sS", "-H", "Expect:", "-H", f"Authorization: {BASIC}", "-D", "-", "-o", "/dev/null"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{what}: curl exit {p.returncode}: {p.stderr.strip()}")
    status, headers = 0, {}
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("HTTP/"):
            status, headers = int(line.split()[1]), {}
        elif ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def absolute(server, location):
    return location if location.startswith("http") else server.url + location


def with_query(url, query):
    return url + ("&" if "?" in url else "?") + query


def start_upload(server, repo):
    status, h = curl(["-X", "POST", f"{server.url}/v2/{repo}/blobs/uploads/"], "POST upload")
    if status != 202 or "location" not in h:
        raise RuntimeError(f"POST /v2/{repo}/blobs/uploads/: HTTP {status}, headers {h}")
    return absolute(server, h["location"])


def finish(status, h, what):
    if status != 201:
        raise RuntimeError(f"{what}: HTTP {status} (want 201), headers {h}")


def push_monolithic(server, repo, path, digest):
    loc = start_upload(server, repo)
    status, h = curl(
        ["-X", "PUT", "-T", path, "-H", "Content-Type: application/octet-stream", with_query(loc, f"digest={digest}")],
        "PUT monolithic",
    )
    finish(status, h, "PUT ?digest= with the whole blob")


def push_chunked(server, repo, chunks, digest):
    loc = start_upload(server, repo)
    offset = 0
    for c in chunks:
        size = os.path.getsize(c)
        status, h = curl(
            [
                "-X",
                "PATCH",
                "-T",
                c,
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                f"Content-Range: {offset}-{offset + size - 1}",
                loc,
            ],
            "PATCH chunk",
        )
        if status != 202 or "location" not in h:
            raise RuntimeError(f"PATCH {offset}-{offset + size - 1}: HTTP {status}, headers {h}")
        loc = absolute(server, h["location"])
        offset += size
    status, h = curl(["-X", "PUT", "-H", "Content-Length: 0", with_query(loc, f"digest={digest}")], "PUT close")
    finish(status, h, "PUT ?digest= closing a chunked upload")


def pull(url):
    p = subprocess.run(
        ["curl", "-sS", "-L", "-H", f"Authorization: {BASIC}", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise RuntimeError(f"GET {url}: curl exit {p.returncode}: {p.stderr.strip()}")
    code, size, secs = p.stdout.split()
    if code != "200":
        raise RuntimeError(f"GET {url}: HTTP {code}")
    return int(size), float(secs)


# ---------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------


def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MIB)
            f.write(os.urandom(n))
            left -= n


def vary(path, rep):
    """Makes the file's content unique to this repetition; returns its digest."""
    with open(path, "r+b") as f:
        f.write(hashlib.sha256(f"wharf-bench-{rep}-{time.time()}".encode()).digest())
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 * MIB)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def split(path, chunk_dir, chunk):
    shutil.rmtree(chunk_dir, ignore_errors=True)
    os.makedirs(chunk_dir)
    out = []
    with open(path, "rb") as f:
        i = 0
        while True:
            b = f.read(chunk)
            if not b:
                break
            p = os.path.join(chunk_dir, f"{i:04d}")
            with open(p, "wb") as g:
                g.write(b)
            out.append(p)
            i += 1
    return out


def make_layout(directory, tags, layers, layer_size):
    """An OCI layout with one image per tag, each with its own random layers."""
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d

    refs = []
    for tag in tags:
        layer_descs, diff_ids = [], []
        for i in range(layers):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                data = os.urandom(layer_size)
                info = tarfile.TarInfo(f"data/{tag}-{i}.bin")
                info.size = len(data)
                info.mtime = 1_700_000_000
                tf.addfile(info, io.BytesIO(data))
            raw = buf.getvalue()
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
            gz = gzip.compress(raw, compresslevel=1, mtime=0)
            layer_descs.append(
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)}
            )
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put(config),
                    "size": len(config),
                },
                "layers": layer_descs,
            }
        ).encode()
        refs.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        )
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(directory, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": refs}, f)


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def skopeo(args, work):
    env = dict(os.environ, TMPDIR=work, REGISTRY_AUTH_FILE=os.path.join(work, "auth.json"))
    p = subprocess.run(
        ["skopeo", "--policy", os.path.join(work, "policy.json")] + args,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode != 0:
        raise RuntimeError(f"skopeo {' '.join(args)}: {p.stderr.strip()[-800:]}")


def run_wrk(url):
    p = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{WRK_SECONDS}s", "--latency", "-H", f"Accept: {ACCEPT}", "-H", f"Authorization: {BASIC}", url],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise RuntimeError(f"wrk: {p.stderr.strip()}")
    out = p.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    if bad:
        errors.append(f"wrk {url}: {bad.group(0)}")
    if errs:
        errors.append(f"wrk {url}: {errs.group(0)}")
    return rps, p99


def main():
    for tool in ["curl", "skopeo", "wrk", "docker-registry", "busybox"]:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found (run scripts/setup.sh)")

    keep = os.environ.get("BENCH_KEEP") == "1"
    work = os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="wharf-bench-")
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(work, "policy.json"), "w") as f:
        f.write('{"default":[{"type":"insecureAcceptAnything"}]}')
    with open(os.path.join(work, "auth.json"), "w") as f:
        f.write("{}")
    log(f"work directory {work}")

    servers, statics = [], []
    results = {}  # (metric, server) -> value

    def record(metric, name, fn):
        try:
            results[(metric, name)] = fn()
        except Exception as e:  # noqa: BLE001
            results[(metric, name)] = None
            errors.append(f"{name}: {metric}: {e}")
            log(f"ERROR {name}: {metric}: {e}")

    try:
        blob_dir = os.path.join(work, "static")
        os.makedirs(blob_dir)
        blob = os.path.join(blob_dir, "blob.bin")
        size = BLOB_MIB * MIB
        log(f"writing {BLOB_MIB} MiB of random data")
        write_random(blob, size)

        servers.append(start_wharf(work))
        key_file = os.path.join(work, "master.keys")
        subprocess.run([os.environ["WHARF_BIN"], "keys", "generate", "--key-file", key_file],
                       check=True, capture_output=True)
        servers.append(start_wharf(work, ENCRYPTED, (["--encryption-key-file", key_file], {})))
        shared = shared_engines()
        replica2 = None
        if shared:
            servers.append(start_wharf(work, SHARED, shared))
            replica2 = start_wharf(work, SHARED + " #2", shared)
        with open(os.path.join(work, "auth.json"), "w") as f:
            auths = {s.host: {"auth": BASIC.split()[1]} for s in servers}
            f.write(json.dumps({"auths": auths}))
        servers.append(start_distribution(work))
        statics.append(start_static(work, "busybox", blob_dir))
        statics.append(start_static(work, "python", blob_dir))
        for s in servers:
            log(f"{s.name} on {s.url} (pid {s.proc.pid})")

        # --- 1 GiB blob push, monolithic and chunked
        mono = {s.name: [] for s in servers}
        chunked = {s.name: [] for s in servers}
        rss_mono = {s.name: 0 for s in servers}
        rss_chunk = {s.name: 0 for s in servers}
        last_digest = None
        for rep in range(REPS):
            digest = vary(blob, rep)
            order = servers if rep % 2 == 0 else servers[::-1]
            for s in order:
                log(f"rep {rep + 1}/{REPS}: {s.name}: monolithic push")
                subprocess.run(["sync"])
                try:
                    with RssSampler(s) as r:
                        mono[s.name].append(timed(lambda: push_monolithic(s, "bench/blob", blob, digest)))
                    rss_mono[s.name] = max(rss_mono[s.name], r.peak)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{s.name}: monolithic push: {e}")
                    log(f"ERROR {s.name}: monolithic push: {e}")
            # a different digest for the chunked upload, so it is not already there
            digest2 = vary(blob, rep + 1000)
            chunks = split(blob, os.path.join(work, "chunks"), CHUNK_MIB * MIB)
            for s in order:
                log(f"rep {rep + 1}/{REPS}: {s.name}: chunked push ({len(chunks)} x {CHUNK_MIB} MiB)")
                subprocess.run(["sync"])
                try:
                    with RssSampler(s) as r:
                        chunked[s.name].append(timed(lambda: push_chunked(s, "bench/blob", chunks, digest2)))
                    rss_chunk[s.name] = max(rss_chunk[s.name], r.peak)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{s.name}: chunked push: {e}")
                    log(f"ERROR {s.name}: chunked push: {e}")
            last_digest = digest2
        shutil.rmtree(os.path.join(work, "chunks"), ignore_errors=True)
        subprocess.run(["sync"])

        for s in servers:
            record("push 1 GiB monolithic", s.name, lambda: statistics.median(mono[s.name]))
            record("push 1 GiB chunked", s.name, lambda: statistics.median(chunked[s.name]))
            record("peak RSS monolithic", s.name, lambda: rss_mono[s.name] / 1024 if mono[s.name] else None)
            record("peak RSS chunked", s.name, lambda: rss_chunk[s.name] / 1024 if chunked[s.name] else None)

        # --- 1 GiB blob pull (the static file holds the last chunked digest's content)
        for s in servers:
            # warm the cache once
            try:
                pull(f"{s.url}/v2/bench/blob/blobs/{last_digest}")
            except Exception:  # noqa: BLE001
                pass
        for st in statics:
            pull(f"{st.url}/blob.bin")

        def pull_times(url, expect):
            ts = []
            for _ in range(REPS):
                n, t = pull(url)
                if n != expect:
                    raise RuntimeError(f"GET {url}: got {n} bytes, want {expect}")
                ts.append(t)
            return statistics.median(ts)

        for s in servers:
            log(f"{s.name}: pull 1 GiB")
            record("pull 1 GiB", s.name, lambda: pull_times(f"{s.url}/v2/bench/blob/blobs/{last_digest}", size))
        for st in statics:
            log(f"{st.name} httpd: pull 1 GiB")
            record("pull 1 GiB", st.name, lambda: pull_times(f"{st.url}/blob.bin", size))
        shared_srv = next((s for s in servers if s.name == SHARED), None)
        if shared_srv is not None:
            # The S3 server's own speed: the same blob straight from the bucket.
            try:
                hexd = last_digest.split(":", 1)[1]
                bucket = shared[0][3].split("?")[0][len("s3://"):]
                endpoint = os.environ["WHARF_TEST_S3"]
                presigned = subprocess.run(
                    ["aws", "s3", "presign", f"s3://{bucket}/blobs/sha256/{hexd[:2]}/{hexd}",
                     "--endpoint-url", endpoint],
                    check=True, capture_output=True, text=True, env=dict(os.environ, **shared[1]),
                ).stdout.strip()
                log("S3 server: pull 1 GiB straight from the bucket")
                record("pull 1 GiB", "s3", lambda: pull_times(presigned, size))
            except Exception as e:  # noqa: BLE001
                errors.append(f"S3 server direct pull: {e}")
        for st in statics:
            st.stop()

        # --- skopeo copy of a multi-layer image
        layout = os.path.join(work, "image")
        tags = [f"rep{i}" for i in range(REPS)]
        log(f"building an OCI layout: {REPS} images of {LAYERS} x {LAYER_MIB} MiB layers")
        make_layout(layout, tags, LAYERS, LAYER_MIB * MIB)
        push_t = {s.name: [] for s in servers}
        again_t = {s.name: [] for s in servers}
        pull_t = {s.name: [] for s in servers}
        for i, tag in enumerate(tags):
            order = servers if i % 2 == 0 else servers[::-1]
            for s in order:
                log(f"rep {i + 1}/{REPS}: {s.name}: skopeo copy")
                dest = f"docker://{s.host}/bench/image:{tag}"
                try:
                    push_t[s.name].append(
                        timed(lambda: skopeo(["copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", dest], work))
                    )
                    again_t[s.name].append(
                        timed(
                            lambda: skopeo(
                                ["copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", dest + "-again"], work
                            )
                        )
                    )
                    out = os.path.join(work, f"pulled-{s.name}-{tag}")
                    pull_t[s.name].append(
                        timed(lambda: skopeo(["copy", "--src-tls-verify=false", dest, f"oci:{out}:{tag}"], work))
                    )
                    shutil.rmtree(out, ignore_errors=True)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{s.name}: skopeo copy: {e}")
                    log(f"ERROR {s.name}: skopeo copy: {e}")
        for s in servers:
            record("skopeo push image", s.name, lambda: statistics.median(push_t[s.name]))
            record("skopeo push, blobs exist", s.name, lambda: statistics.median(again_t[s.name]))
            record("skopeo pull image", s.name, lambda: statistics.median(pull_t[s.name]))

        # --- GET manifest by tag under load
        for s in servers:
            log(f"{s.name}: wrk GET manifest ({WRK_SECONDS}s, 64 connections)")

            def load():
                return run_wrk(f"{s.url}/v2/bench/image/manifests/{tags[0]}")

            try:
                rps, p99 = load()
                results[("manifest GET req/s", s.name)] = rps
                results[("manifest GET p99", s.name)] = p99
            except Exception as e:  # noqa: BLE001
                errors.append(f"{s.name}: wrk: {e}")
        # --- the same, through two replicas on one database and bucket at once
        if replica2 is not None:
            log(f"{SHARED}: wrk GET manifest through two replicas at once ({WRK_SECONDS}s, 2 x 64 connections)")
            first = next(s for s in servers if s.name == SHARED)
            url = f"/v2/bench/image/manifests/{tags[0]}"
            outs = [None, None]

            def one(i, srv):
                try:
                    outs[i] = run_wrk(srv.url + url)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"{srv.name}: wrk: {e}")

            threads = [threading.Thread(target=one, args=(i, srv)) for i, srv in enumerate([first, replica2])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if all(outs):
                results[("manifest GET req/s, 2 replicas", SHARED)] = outs[0][0] + outs[1][0]
        for s in servers:
            results[("VmHWM at end", s.name)] = s.status("VmHWM") / 1024

    finally:
        if replica2 is not None:
            replica2.stop()
        for s in servers + statics:
            s.stop()
        if not keep and not os.environ.get("BENCH_DIR"):
            shutil.rmtree(work, ignore_errors=True)

    report(results, size)


SHARED = "Wharf PG+S3"
ENCRYPTED = "Wharf encrypted"


def report(results, size):
    gib = size / (1024 * MIB)

    def get(metric, name):
        return results.get((metric, name))

    def mibs(secs):
        return None if secs is None else size / MIB / secs

    rows = []

    def row(label, metric, unit, fmt, higher_better, conv=lambda x: x, extra=None):
        w = get(metric, "Wharf")
        d = get(metric, "Distribution")
        p = get(metric, SHARED)
        w = None if w is None else conv(w)
        d = None if d is None else conv(d)
        p = None if p is None else conv(p)
        ratio = None if (w is None or d in (None, 0)) else w / d
        rows.append((label, unit, w, d, ratio, fmt, higher_better, p))

    size_label = f"{gib:g} GiB" if gib >= 1 else f"{size // MIB} MiB"
    row(f"push {size_label} blob, monolithic (POST, PUT)", "push 1 GiB monolithic", "s", "{:.2f}", False)
    row("  = throughput", "push 1 GiB monolithic", "MiB/s", "{:.0f}", True, mibs)
    row(f"push {size_label} blob, chunked ({CHUNK_MIB} MiB PATCHes)", "push 1 GiB chunked", "s", "{:.2f}", False)
    row("  = throughput", "push 1 GiB chunked", "MiB/s", "{:.0f}", True, mibs)
    row(f"pull {size_label} blob (curl -o /dev/null)", "pull 1 GiB", "s", "{:.2f}", False)
    row("  = throughput", "pull 1 GiB", "MiB/s", "{:.0f}", True, mibs)
    row(f"skopeo copy oci: -> registry ({LAYERS} x {LAYER_MIB} MiB layers)", "skopeo push image", "s", "{:.2f}", False)
    row("skopeo copy again, new tag (blobs exist)", "skopeo push, blobs exist", "s", "{:.2f}", False)
    row("skopeo copy registry -> oci:", "skopeo pull image", "s", "{:.2f}", False)
    row("GET manifest by tag, 64 conns (wrk)", "manifest GET req/s", "req/s", "{:.0f}", True)
    row("  p99 latency", "manifest GET p99", "ms", "{:.2f}", False)
    row("GET manifest, two replicas at once (2 x wrk)", "manifest GET req/s, 2 replicas", "req/s", "{:.0f}", True)
    row(f"peak RSS during monolithic {size_label} push", "peak RSS monolithic", "MiB", "{:.1f}", False)
    row(f"peak RSS during chunked {size_label} push", "peak RSS chunked", "MiB", "{:.1f}", False)
    row("VmHWM (lifetime peak RSS) at the end", "VmHWM at end", "MiB", "{:.1f}", False)

    def cell(v, fmt):
        return "-" if v is None else fmt.format(v)

    ver = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.strip()
    print()
    print(f"Wharf vs CNCF Distribution ({ver.split()[-1] if ver else '?'}), loopback, {os.cpu_count()} cores, "
          f"median of {REPS}")
    w0 = max(len(r[0]) for r in rows)
    show_shared = any(r[7] is not None for r in rows)
    header = f"{'':{w0}}  {'unit':>5}  {'Wharf':>10}  {'Distribution':>12}  {'Wharf/Dist':>19}"
    if show_shared:
        header += f"  {SHARED:>12}  {'PG+S3/Dist':>10}"
    print(header)
    print("-" * len(header))
    for label, unit, w, d, ratio, fmt, hb, p in rows:
        mark = ""
        if ratio is not None:
            better = ratio > 1 if hb else ratio < 1
            mark = " (better)" if better and abs(ratio - 1) > 0.05 else (" (worse)" if abs(ratio - 1) > 0.05 else "")
        rtxt = "-" if ratio is None else f"{ratio:.2f}x"
        line = f"{label:{w0}}  {unit:>5}  {cell(w, fmt):>10}  {cell(d, fmt):>12}  {rtxt + mark:>19}"
        if show_shared:
            pr = "-" if (p is None or d in (None, 0)) else f"{p / d:.2f}x"
            line += f"  {cell(p, fmt):>12}  {pr:>10}"
        print(line)
    print()
    costs = []
    for label, metric in [("push monolithic", "push 1 GiB monolithic"), ("push chunked", "push 1 GiB chunked"),
                          ("pull", "pull 1 GiB"), ("skopeo pull", "skopeo pull image")]:
        plain, enc = get(metric, "Wharf"), get(metric, ENCRYPTED)
        if plain and enc:
            costs.append(f"{label} {enc:.2f} s vs {plain:.2f} s ({(enc / plain - 1) * 100:+.0f}%)")
    if costs:
        print("encryption at rest (filesystem), encrypted vs plain: " + "; ".join(costs))
    for name, label in [("busybox", "busybox httpd"), ("python", "python3 -m http.server"),
                        ("s3", "the S3 server (s3s-fs) directly, presigned GET")]:
        t = get("pull 1 GiB", name)
        if t is not None:
            print(f"reference: pull of the same {size_label} file from {label}: {t:.2f} s = {mibs(t):.0f} MiB/s")
    if errors:
        print()
        print("errors:")
        for e in errors:
            print(f"  - {e}")


if __name__ == "__main__":
    main()
