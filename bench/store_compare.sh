#!/usr/bin/env bash
# PostgreSQL beside SQLite, in one run: authenticated tools/call and a whole
# sign-in on the same release binary with each store (bench/store_compare.py
# says what is measured). Prints a table; writes nothing. The same
# measurements make the PostgreSQL column of bench/run.sh's table; this is
# the shorter run of the stores alone.
#
#   bench/store_compare.sh
#   BENCH_DURATION=3 BENCH_ROUNDS=3 bench/store_compare.sh
#   BENCH_WRK_NICE=10 bench/store_compare.sh     # wrk under nice, on a shared machine
#
# Needs: the Rust toolchain, python3, wrk and Debian's postgresql package
# (scripts/install-test-deps.sh installs both). Builds exactly what
# bench/run.sh builds (`--features postgres`, target/release), so the two
# measure one binary. Nothing here is part of the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="$ROOT/target"

echo "== building (release, --features postgres)"
# As bench/run.sh: the examples first, the server last and on its own.
cargo build --release --quiet --features postgres --example bench_token --example bench_signin
cargo build --release --quiet --features postgres --bin passgate

exec python3 "$ROOT/bench/store_compare.py" \
  --passgate "$TARGET/release/passgate" \
  --token-tool "$TARGET/release/examples/bench_token" \
  --signin-tool "$TARGET/release/examples/bench_signin" \
  --duration "${BENCH_DURATION:-5}" \
  --rounds "${BENCH_ROUNDS:-3}"
