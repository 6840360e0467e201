#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks formatting and lints,
# runs the Rust tests (which start their own real components), then every
# part in scripts/test.d/ in order (conformance suite, real clients, browser,
# CDK synth). Exits non-zero on the first failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PASSGATE_ROOT"
# A one-off build gains nothing from incremental state but its disk use.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings
echo "== cargo test"
cargo test --all-features

for part in scripts/test.d/*.sh; do
  [ -e "$part" ] || continue
  echo "== $part"
  bash "$part"
done
echo "all test parts passed"
