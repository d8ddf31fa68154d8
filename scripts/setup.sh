#!/usr/bin/env bash
# Installs the external tools Wharf's tests and benchmark need.
#
# Idempotent: each section checks what is already there and installs only
# what is missing, so a second run is a no-op that takes well under a second.
# Output is quiet; the full installer log is shown only when a step fails.
#
#   bash scripts/setup.sh
#
# Runs on Debian 12 (what CI and the developers' machines are). Needs root, or
# sudo, for apt-get.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    log "not root and no sudo: cannot install packages"
    exit 1
  fi
fi

# Runs a command with its output sent to a log file; prints the log on failure.
quiet() {
  local out rc=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    log "FAILED ($rc): $*"
    tail -n 60 "$out" >&2
  fi
  rm -f "$out"
  return "$rc"
}

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------
APT_PACKAGES=(
  # real registry clients used by crates/wharf/tests/clients.rs
  docker.io           # dockerd + containerd (a private daemon is started per test)
  skopeo
  podman
  # podman's helpers (recommended, installed explicitly since we skip recommends)
  uidmap fuse-overlayfs slirp4netns containernetworking-plugins tini
  # test images are built from /bin/busybox
  busybox-static
  # the benchmark: CNCF Distribution for comparison, load generators
  docker-registry
  wrk
  hyperfine
  # plumbing
  curl jq ca-certificates xz-utils python3
  # the PostgreSQL metadata backend's tests (scripts/testenv.sh starts a cluster)
  postgresql
)

apt_missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    apt_missing+=("$p")
  fi
done

if [ "${#apt_missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
  APT_OPTS=(-y -qq -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  quiet "${SUDO[@]}" apt-get -qq -o DPkg::Lock::Timeout=600 update
  quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a \
    apt-get install "${APT_OPTS[@]}" --no-install-recommends "${apt_missing[@]}"
fi

# ---------------------------------------------------------------------------
# Python packages (pip)
# ---------------------------------------------------------------------------
# Each entry is "command-or-python-module=pip-requirement"; installed when
# neither the command nor the module is there.
PIP_PACKAGES=(
  aws=awscli          # the real AWS CLI, for the ECR API tests
  boto3=boto3         # boto3/botocore: SigV4 signing in the auth tests
)

for entry in ${PIP_PACKAGES[@]+"${PIP_PACKAGES[@]}"}; do
  cmd=${entry%%=*}
  req=${entry#*=}
  if ! command -v "$cmd" >/dev/null 2>&1 && ! python3 -c "import $cmd" >/dev/null 2>&1; then
    log "installing pip package: $req"
    quiet python3 -m pip install --quiet --disable-pip-version-check "$req"
  fi
done

# ---------------------------------------------------------------------------
# Cargo-installed tools
# ---------------------------------------------------------------------------
# s3s-fs: an S3-compatible server (SigV4-enforcing) for the S3 blob backend's
# tests. 0.14.1 is pinned: it builds with the toolchain here in about two minutes.
if ! command -v s3s-fs >/dev/null 2>&1; then
  log "installing s3s-fs (cargo install, about two minutes)"
  quiet env CARGO_TARGET_DIR="${HOME}/.cache/wharf-tools-target" \
    cargo install --locked --features binary s3s-fs@0.14.1
fi

# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------
# Nothing is started here: tests start their own private daemons (wharf,
# dockerd) in temporary directories, and scripts/test.sh starts one PostgreSQL
# cluster and one S3 server for the run (scripts/testenv.sh).

# ---------------------------------------------------------------------------
# Final check: every tool the tests call must be on PATH.
# ---------------------------------------------------------------------------
missing=()
for t in dockerd docker skopeo podman busybox docker-registry wrk hyperfine curl jq s3s-fs; do
  command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if [ ! -x /bin/busybox ]; then missing+=(/bin/busybox); fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then missing+=(initdb); fi
if [ "${#missing[@]}" -gt 0 ]; then
  log "still missing after install: ${missing[*]}"
  exit 1
fi
