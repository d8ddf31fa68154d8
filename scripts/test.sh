#!/usr/bin/env bash
# The one test command: installs the tools (scripts/setup.sh), then checks
# formatting, runs clippy with warnings as errors, and runs every test of the
# workspace (unit, integration and real-client tests).
#
#   bash scripts/test.sh                # everything
#   bash scripts/test.sh -E 'test(skopeo)'   # extra args go to nextest (or cargo test)
#
# The build goes to $CARGO_TARGET_DIR, by default a directory outside the
# checkout ($HOME/.cache/wharf-target) so that repeated runs and fresh clones
# reuse it. Exits non-zero if any step fails; every step runs regardless, so
# one run shows all problems.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup (scripts/setup.sh)"
if ! bash scripts/setup.sh; then
  echo "test.sh: setup failed" >&2
  exit 1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wharf-target}"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

failed=()

step "cargo fmt --check"
cargo fmt --all -- --check || failed+=("cargo fmt --check")

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings || failed+=("cargo clippy")

if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so the test runner's summary
  # is the last thing printed.
  step "cargo test --workspace --doc"
  cargo test --workspace --doc --quiet || failed+=("doctests")
  runner=(cargo nextest run --no-fail-fast)
else
  runner=(cargo test --no-fail-fast)
fi

# One PostgreSQL cluster and one S3 server for the whole run (tests make a fresh
# database and bucket each).
step "start PostgreSQL and S3 (scripts/testenv.sh)"
source scripts/testenv.sh
trap testenv_stop EXIT
testenv_start || failed+=("testenv")

step "${runner[*]} --workspace  (SQLite + filesystem)"
"${runner[@]}" --workspace "$@" || failed+=("tests on SQLite + filesystem")

# The registry's end-to-end suites again, with every server on PostgreSQL + S3.
# (serve.rs is about the data directory, TLS and signals of one process; the
# clients' suite runs on both through skopeo, podman and docker.)
E2E=(conformance manifests discovery management robustness immutability crash
     clients ecr_api ecr_images registry_auth iam boto3 encryption)
step "${runner[*]} -p wharf  (PostgreSQL + S3)"
e2e_args=()
for t in "${E2E[@]}"; do e2e_args+=(--test "$t"); done
WHARF_TEST_ENGINES=postgres-s3 "${runner[@]}" -p wharf "${e2e_args[@]}" "$@" \
  || failed+=("tests on PostgreSQL + S3")

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\ntest.sh: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
