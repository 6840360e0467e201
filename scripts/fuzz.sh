#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo +nightly fuzz) for a given time each,
# under `nice -n 19`, one after the other:
#
#   scripts/fuzz.sh            # 60 seconds per target
#   scripts/fuzz.sh 300        # 5 minutes per target
#   scripts/fuzz.sh 300 token  # only the named targets
#
# New inputs go to target/fuzz-corpus/<target>/ (not committed); the
# committed seeds in fuzz/corpus/<target>/ are read, never written. A crash
# leaves its input in fuzz/artifacts/<target>/: fix it, and copy the input
# to fuzz/regressions/<target>/, which `cargo test` replays on stable.
# Prints one line per target with its executions and coverage.
#
# Needs the nightly toolchain and cargo-fuzz
# (`cargo +nightly install cargo-fuzz --locked`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"

SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

# No sanitizer: passgate has no unsafe code, so panics are what is looked
# for, and uninstrumented memory access gives more executions per second.
# Debug assertions on, so arithmetic overflow panics too.
FLAGS=(--sanitizer none --debug-assertions)
nice -n 19 cargo +nightly fuzz build "${FLAGS[@]}"
for target in "${TARGETS[@]}"; do
  mkdir -p "$ROOT/target/fuzz-corpus/$target"
  log="$ROOT/target/fuzz-corpus/$target.log"
  echo "== $target: $SECONDS_EACH s"
  status=0
  nice -n 19 cargo +nightly fuzz run "${FLAGS[@]}" "$target" \
    "$ROOT/target/fuzz-corpus/$target" "$ROOT/fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+[[:space:]]+DONE)' "$log" | tr '\n' ' '
  echo
  if [ "$status" -ne 0 ]; then
    echo "$target FAILED (exit $status); see $log and fuzz/artifacts/$target/" >&2
    grep -E 'panicked|ERROR|Test unit written' "$log" >&2 || true
    exit "$status"
  fi
done
