#!/usr/bin/env bash
# Builds Wharf (release) and runs the registry in the foreground.
#
#   scripts/run.sh                                  # http://127.0.0.1:5000, data in ./wharf-data
#   scripts/run.sh --listen 0.0.0.0:5000 --data-dir /srv/wharf
#
# Every argument is passed to `wharf serve`. Wharf needs nothing but a Rust
# toolchain to build; clients (docker, podman, skopeo) are up to you
# (scripts/setup.sh installs them on Debian).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v cargo >/dev/null 2>&1; then
  echo "run.sh: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
cargo build --release -p wharf --manifest-path "$repo/Cargo.toml" --target-dir "$target_dir"
exec "$target_dir/release/wharf" serve "$@"
