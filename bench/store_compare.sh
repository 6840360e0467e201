#!/usr/bin/env bash
# PostgreSQL beside SQLite, in one run: authenticated tools/call and a whole
# sign-in on the same release binary with each store (bench/store_compare.py
# says what is measured). Prints a table; writes nothing.
#
#   bench/store_compare.sh
#   BENCH_DURATION=3 BENCH_ROUNDS=3 bench/store_compare.sh
#
# Needs: the Rust toolchain, python3, wrk and Debian's postgresql package
# (scripts/install-test-deps.sh installs both). Builds with
# `--features postgres` into target/bench-postgres, so the binary that
# bench/run.sh measures is untouched. Nothing here is part of the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="$ROOT/target/bench-postgres"

echo "== building (release, --features postgres)"
cargo build --release --quiet --features postgres --target-dir "$TARGET" \
  --bin passgate --example bench_token --example bench_signin

exec python3 "$ROOT/bench/store_compare.py" \
  --passgate "$TARGET/release/passgate" \
  --token-tool "$TARGET/release/examples/bench_token" \
  --signin-tool "$TARGET/release/examples/bench_signin" \
  --duration "${BENCH_DURATION:-5}" \
  --rounds "${BENCH_ROUNDS:-3}"
