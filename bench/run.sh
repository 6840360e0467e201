#!/usr/bin/env bash
# The benchmark, in one command: passgate side by side with FastMCP and with
# a bare-axum ceiling, on loopback, in one run, and the same passgate binary
# on PostgreSQL beside its default SQLite store. Writes docs/benchmarks.md.
#
#   bench/run.sh                 # the full run (about 6 minutes after the builds)
#   BENCH_DURATION=3 BENCH_ROUNDS=3 bench/run.sh    # shorter load runs
#   BENCH_WRK_NICE=10 bench/run.sh                  # wrk under nice, on a shared machine
#   BENCH_BEFORE=<commit> bench/run.sh              # that commit's build measured beside this one
#   BENCH_BEFORE_DIR=<dir> BENCH_BEFORE_LABEL=<name> bench/run.sh
#                                                   # the same, already built: <dir>/passgate and
#                                                   # <dir>/examples/bench_token
#
# Needs: the Rust toolchain, python3 (3.10+), wrk and postgresql (Debian
# packages, installed by scripts/install-test-deps.sh). Makes its own virtualenv with a
# pinned FastMCP under .tools/bench-venv. Nothing here is part of the test
# suite, and nothing asserts timings in tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FASTMCP_VERSION="4.2.3"
VENV="$ROOT/.tools/bench-venv"

command -v wrk >/dev/null 2>&1 || {
  echo "wrk is missing: apt-get install wrk (or scripts/install-test-deps.sh)" >&2
  exit 1
}

echo "== building (release)"
# Examples first, the server last and on its own, so that the measured
# binary is exactly what `cargo build --release` makes (dev-dependency
# features are not unified into it).
# `--features postgres`: one binary serves both stores.
cargo build --release --quiet --features postgres \
  --example bench_token --example bench_ceiling --example bench_signin
cargo build --release --quiet --features postgres --bin passgate
# The Lambda build, in its own target directory so that it cannot change
# the binary measured above.
cargo build --release --quiet --features lambda,dynamodb --bin passgate \
  --target-dir "$ROOT/target/bench-lambda"

# BENCH_BEFORE / BENCH_BEFORE_DIR: sets BEFORE_ARGS.
source "$ROOT/bench/before.sh"

echo "== FastMCP $FASTMCP_VERSION in .tools/bench-venv"
if ! [ -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# moto and cargo-lambda at the test suite's pinned versions, for the Lambda
# init measurement.
PINS=$(grep -E '^(moto\[server\]|cargo-lambda)==' "$ROOT/tests/py/requirements.txt")
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('fastmcp') != '$FASTMCP_VERSION')" 2>/dev/null \
   || ! [ -x "$VENV/bin/cargo-lambda" ] || ! [ -x "$VENV/bin/moto_server" ]; then
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check "fastmcp==$FASTMCP_VERSION" $PINS
fi

exec "$VENV/bin/python" "$ROOT/bench/run.py" \
  --root "$ROOT" \
  --passgate "$ROOT/target/release/passgate" \
  --token-tool "$ROOT/target/release/examples/bench_token" \
  --ceiling "$ROOT/target/release/examples/bench_ceiling" \
  --signin-tool "$ROOT/target/release/examples/bench_signin" \
  --lambda-passgate "$ROOT/target/bench-lambda/release/passgate" \
  --python "$VENV/bin/python" \
  --duration "${BENCH_DURATION:-5}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  --out "$ROOT/docs/benchmarks.md" \
  "${BEFORE_ARGS[@]}"
