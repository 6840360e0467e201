#!/usr/bin/env bash
# The gateway benchmark, in one command: a fast MCP backend alone, passgate
# in front of it (`--backend`), and FastMCP's own proxy in front of it, on
# loopback, in one run; then a stdio route against the same command run
# directly (bench/stdio.py), and the first SSE event through the Lambda
# build beside the server build (bench/lambda_sse.py). Each writes its
# section of docs/benchmarks.md.
#
#   bench/gateway.sh                                   # about 2 minutes after the builds
#   BENCH_DURATION=3 BENCH_ROUNDS=3 bench/gateway.sh   # shorter load runs
#   BENCH_BEFORE=<commit> bench/gateway.sh             # that commit's build beside this one
#
# Needs wrk and the test virtualenv (scripts/install-test-deps.sh), whose
# FastMCP is pinned at the version bench/run.sh measures. Nothing here is
# part of the test suite, and nothing asserts timings in tests.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
ROOT="$PASSGATE_ROOT"
cd "$ROOT"

FASTMCP_VERSION="$(sed -n 's/^FASTMCP_VERSION="\(.*\)"$/\1/p' bench/run.sh)"
VENV="$PASSGATE_TOOLS/venv"

command -v wrk >/dev/null 2>&1 || {
  echo "wrk is missing: apt-get install wrk (or scripts/install-test-deps.sh)" >&2
  exit 1
}

echo "== building (release)"
# Examples first, the server last and on its own, so that the measured
# binary is exactly what `cargo build --release` makes. `--features
# postgres`, as bench/run.sh and bench/soak.sh build it: one binary for all
# three (and one build).
cargo build --release --quiet --features postgres --example bench_token --example bench_backend \
  --example bench_bare_proxy
cargo build --release --quiet --features postgres --bin passgate
# The Lambda build in its own target directory, as bench/run.sh builds it,
# and a token tool that reads its DynamoDB table: the test build's, whose
# speed is not measured (and which is usually there already).
cargo build --release --quiet --features lambda,dynamodb --bin passgate \
  --target-dir "$ROOT/target/bench-lambda"
cargo build --quiet --all-features --example bench_token

"$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('fastmcp') != '$FASTMCP_VERSION')" || {
  echo "the test virtualenv lacks FastMCP $FASTMCP_VERSION: run scripts/install-test-deps.sh" >&2
  exit 1
}

# BENCH_BEFORE / BENCH_BEFORE_DIR: an earlier build beside this one (bench/before.sh).
source "$ROOT/bench/before.sh"

"$VENV/bin/python" "$ROOT/bench/gateway.py" \
  --root "$ROOT" \
  --passgate "$ROOT/target/release/passgate" \
  --token-tool "$ROOT/target/release/examples/bench_token" \
  --backend "$ROOT/target/release/examples/bench_backend" \
  --bare-proxy "$ROOT/target/release/examples/bench_bare_proxy" \
  --python "$VENV/bin/python" \
  --duration "${BENCH_DURATION:-5}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  --out "$ROOT/docs/benchmarks.md" \
  "${BEFORE_ARGS[@]}"

# A stdio route against the same server run directly over stdio.
"$VENV/bin/python" "$ROOT/bench/stdio.py" \
  --root "$ROOT" \
  --passgate "$ROOT/target/release/passgate" \
  --token-tool "$ROOT/target/release/examples/bench_token" \
  --python "$VENV/bin/python" \
  --calls "${BENCH_STDIO_CALLS:-200}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  --out "$ROOT/docs/benchmarks.md"

# The first SSE event through the Lambda build beside the server build.
exec "$VENV/bin/python" "$ROOT/bench/lambda_sse.py" \
  --root "$ROOT" \
  --passgate "$ROOT/target/release/passgate" \
  --lambda-passgate "$ROOT/target/bench-lambda/release/passgate" \
  --token-tool "$ROOT/target/debug/examples/bench_token" \
  --backend "$ROOT/target/release/examples/bench_backend" \
  --python "$VENV/bin/python" \
  --samples "${BENCH_SSE_SAMPLES:-30}" \
  --out "$ROOT/docs/benchmarks.md"
