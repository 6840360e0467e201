#!/usr/bin/env bash
# The benchmark, in one command: passgate side by side with FastMCP and with
# a bare-axum ceiling, on loopback, in one run. Writes docs/benchmarks.md.
#
#   bench/run.sh                 # the full run (about 5 minutes after the build)
#   BENCH_DURATION=3 BENCH_ROUNDS=3 bench/run.sh    # shorter load runs
#
# Needs: the Rust toolchain, python3 (3.10+), and wrk (Debian package `wrk`,
# installed by scripts/install-test-deps.sh). Makes its own virtualenv with a
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
cargo build --release --quiet --example bench_token --example bench_ceiling
cargo build --release --quiet --bin passgate

echo "== FastMCP $FASTMCP_VERSION in .tools/bench-venv"
if ! [ -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('fastmcp') != '$FASTMCP_VERSION')" 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check "fastmcp==$FASTMCP_VERSION"
fi

exec "$VENV/bin/python" "$ROOT/bench/run.py" \
  --root "$ROOT" \
  --passgate "$ROOT/target/release/passgate" \
  --token-tool "$ROOT/target/release/examples/bench_token" \
  --ceiling "$ROOT/target/release/examples/bench_ceiling" \
  --python "$VENV/bin/python" \
  --duration "${BENCH_DURATION:-5}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  --out "$ROOT/docs/benchmarks.md"
