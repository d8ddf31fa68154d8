#!/usr/bin/env bash
# Benchmark: Wharf (release build) vs CNCF Distribution (Debian's
# docker-registry), side by side on loopback, plus a static file server for
# reference. Prints a table; not part of CI. Needs ~5 GiB free in $TMPDIR
# (or BENCH_DIR) with the defaults, and takes a few minutes.
#
#   bash bench/run.sh
#   BENCH_REPS=1 BENCH_BLOB_MIB=256 bash bench/run.sh      # quicker
#
# With the engines of scripts/testenv.sh it also runs Wharf on PostgreSQL + S3
# (one replica, and two for the manifest load). See bench/bench.py for the knobs
# (BENCH_* environment variables).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$repo/scripts/setup.sh"

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
echo "bench: building wharf (release)" >&2
cargo build --release --quiet -p wharf --manifest-path "$repo/Cargo.toml" --target-dir "$target_dir"

export WHARF_BIN="$target_dir/release/wharf"
export PATH="$HOME/.cargo/bin:$PATH"
# PostgreSQL and S3 (s3s-fs) for the scale-out columns (BENCH_SHARED=0 skips them).
if [ "${BENCH_SHARED:-1}" != 0 ]; then
  source "$repo/scripts/testenv.sh"
  trap testenv_stop EXIT
  testenv_start
fi
python3 "$repo/bench/bench.py"
