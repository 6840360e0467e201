# Sourced by bench/run.sh and bench/gateway.sh (with ROOT set): an earlier
# build of passgate to measure in the same rounds as this one.
#
#   BENCH_BEFORE=<commit>                       built here, in a worktree, the way this build is
#   BENCH_BEFORE_DIR=<dir> BENCH_BEFORE_LABEL=<name>
#                                               already built: <dir>/passgate, <dir>/examples/bench_token
#
# Sets BEFORE_ARGS (empty without either) for run.py and gateway.py.
BEFORE_ARGS=()
if [ -n "${BENCH_BEFORE:-}" ]; then
  echo "== building $BENCH_BEFORE (release), to measure beside this build"
  BEFORE_SRC="$ROOT/target/bench-before-src"
  git worktree remove --force "$BEFORE_SRC" 2>/dev/null || rm -rf "$BEFORE_SRC"
  git worktree add --detach --quiet "$BEFORE_SRC" "$BENCH_BEFORE"
  # The example first, the server on its own, as run.sh builds this one.
  (cd "$BEFORE_SRC" \
    && cargo build --release --quiet --features postgres --example bench_token --target-dir "$ROOT/target/bench-before" \
    && cargo build --release --quiet --features postgres --bin passgate --target-dir "$ROOT/target/bench-before")
  git worktree remove --force "$BEFORE_SRC"
  BENCH_BEFORE_DIR="$ROOT/target/bench-before/release"
  BENCH_BEFORE_LABEL="$(git rev-parse --short "$BENCH_BEFORE")"
fi
if [ -n "${BENCH_BEFORE_DIR:-}" ]; then
  BEFORE_ARGS=(--before-passgate "$BENCH_BEFORE_DIR/passgate"
    --before-token-tool "$BENCH_BEFORE_DIR/examples/bench_token"
    --before-label "${BENCH_BEFORE_LABEL:-before}")
fi

