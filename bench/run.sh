#!/usr/bin/env bash
# Benchmark: Wharf (release build) vs CNCF Distribution (Debian's
# docker-registry), side by side on loopback, plus a static file server for
# reference. Prints a table; not part of CI. Needs ~5 GiB free in $TMPDIR
# (or BENCH_DIR) with the defaults, and takes a few minutes.
#
#   bash bench/run.sh
#   BENCH_REPS=1 BENCH_BLOB_MIB=256 bash bench/run.sh      # quicker
#
# See bench/bench.py for the knobs (BENCH_* environment variables).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$repo/scripts/setup.sh"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
echo "bench: building wharf (release)" >&2
cargo build --release --quiet -p wharf --manifest-path "$repo/Cargo.toml" --target-dir "$target_dir"

export WHARF_BIN="$target_dir/release/wharf"
exec python3 "$repo/bench/bench.py"
