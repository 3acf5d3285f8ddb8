#!/usr/bin/env bash
# README command 2, and what CI runs (.ci/run): every check and every test.
#
#   scripts/test.sh [extra nextest/cargo test filter args...]
#
# 1. scripts/setup.sh --no-kubeboot (cached: seconds when the machine is ready)
# 2. cargo fmt --check; cargo clippy --workspace --all-targets -D warnings;
#    vagrant/test.sh (vagrant validate on vagrant/Vagrantfile, provision.sh's arguments)
# 3. cargo build --workspace --bins (the e2e tests run target/debug/kubeboot)
# 4. cargo nextest run --workspace --run-ignored all  (fallback: cargo test ... --include-ignored)
#    with KUBEBOOT_BIN_DIR from /var/lib/kubeboot-dev/env
# All stages run; the script exits non-zero if any failed. Needs root (e2e nodes).
# CARGO_TARGET_DIR defaults to ${KUBEBOOT_TARGET_DIR:-$HOME/.cache/kubeboot/target},
# outside the clone, so repeated runs and fresh clones reuse the build.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CI="${CI:-}" CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

say() { printf '\n[test] %s\n' "$*" >&2; }
failed=()
stage() {
  local name=$1
  shift
  say "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then
    say "=== $name: ok ($((SECONDS - t0))s)"
  else
    say "=== $name: FAILED ($((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

"$REPO/scripts/setup.sh" --no-kubeboot </dev/null
set -a
# shellcheck disable=SC1091
. "${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/env"
set +a
export KUBEBOOT_BIN_DIR
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KUBEBOOT_TARGET_DIR}"
say "KUBEBOOT_BIN_DIR=$KUBEBOOT_BIN_DIR CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage vagrant bash "$REPO/vagrant/test.sh"
stage build cargo build --workspace --bins
if [[ " ${failed[*]:-} " == *" build "* ]]; then
  say "the build failed; not running the tests"
else
  # The binary just built is the one under test (tests/src/env.rs: kubeboot_exe); naming it
  # explicitly skips the harness's staleness check, which a concurrent edit would trip.
  export KUBEBOOT_EXE="${KUBEBOOT_EXE:-$CARGO_TARGET_DIR/debug/kubeboot}"
  if cargo nextest --version >/dev/null 2>&1; then
    stage tests cargo nextest run --workspace --run-ignored all \
      --tool-config-file "kubeboot:$REPO/.ci/nextest.toml" "$@"
  else
    say "cargo-nextest not found; using cargo test (bounded by 'timeout 3600')"
    stage tests timeout 3600 cargo test --workspace --no-fail-fast -- --include-ignored "$@"
  fi
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all checks and tests passed"
