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
  step "cargo nextest run --workspace"
  cargo nextest run --workspace --no-fail-fast "$@" || failed+=("cargo nextest run")
else
  step "cargo test --workspace"
  cargo test --workspace --no-fail-fast "$@" || failed+=("cargo test")
fi

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\ntest.sh: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}")" >&2
  exit 1
fi
