#!/usr/bin/env bash
# The soak test (not part of the test suite): a release `passgate serve` on
# loopback under a steady mix of traffic (examples/soak.rs: sign-ins,
# registrations, tool calls, refreshes, bad requests) for SOAK_MINUTES
# (default 30). Every minute it samples the server's resident memory, its
# open file descriptors and the store's size on disk; at the end
# bench/soak_report.py writes the table and a plot (docs/soak.png) into
# docs/reliability.md, between the soak markers. Flat is the bar.
#
#   bench/soak.sh                          # 30 minutes
#   SOAK_MINUTES=5 SOAK_RATE=2 bench/soak.sh
#
# Identities are bounded, as in a deployment: SOAK_PEOPLE people (default
# 8), each with a passkey, on 64 browsers, using 4 registered clients (see
# examples/soak.rs). The server purges expired items every
# SOAK_PURGE_SECS (default 60). Besides the three columns of the table it
# records the store's live items by kind each minute (target/soak/kinds.tsv)
# to say what any growth is made of.
#
# Both processes run under `nice -n 19`. Makes its own virtualenv with a
# pinned matplotlib under target/soak/venv for the plot.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MINUTES="${SOAK_MINUTES:-30}"
RATE="${SOAK_RATE:-2}"
PEOPLE="${SOAK_PEOPLE:-8}"
PURGE_SECS="${SOAK_PURGE_SECS:-60}"
MATPLOTLIB_VERSION="3.10.7"
WORK="$ROOT/target/soak"
DATA="$WORK/data"
SAMPLES="$WORK/samples.tsv"
KINDS="$WORK/kinds.tsv"
VENV="$WORK/venv"

echo "== building"
# The driver with the test build's features (its speed is not measured,
# and the test build is usually there already); the server on its own,
# the release binary that bench/run.sh measures.
nice -n 19 cargo build --quiet --all-features --example soak
nice -n 19 cargo build --release --quiet --features postgres --bin passgate

if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi

rm -rf "$DATA"
mkdir -p "$DATA"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://localhost:$PORT"
PASSGATE="$ROOT/target/release/passgate"

INVITATIONS=()
for person in $(seq 1 "$PEOPLE"); do
  admin=()
  [ "$person" = 1 ] && admin=(--admin)
  link=$("$PASSGATE" users invite "soak-$person" "${admin[@]}" --public-url "$BASE" --data-dir "$DATA" | tail -n 1)
  INVITATIONS+=(--invitation "$link")
done
PASSGATE_LOG=warn nice -n 19 "$PASSGATE" serve --listen "127.0.0.1:$PORT" \
  --public-url "$BASE" --data-dir "$DATA" --purge-interval-secs "$PURGE_SECS" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
DRIVER=""
cleanup() {
  [ -n "$DRIVER" ] && kill "$DRIVER" 2>/dev/null || true
  kill "$SERVER" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

sample() { # minute
  local rss fds store
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER/status")
  fds=$(ls "/proc/$SERVER/fd" | wc -l)
  store=$(du -k --apparent-size -c "$DATA"/passgate.sqlite3* | tail -n 1 | cut -f1)
  printf '%s\t%s\t%s\t%s\n' "$1" "$rss" "$fds" "$store" >>"$SAMPLES"
  # Live items by kind: the key's first word and the sort key's.
  python3 - "$DATA/passgate.sqlite3" "$1" >>"$KINDS" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
now = int(time.time())
rows = db.execute(
    "SELECT pk, sk, length(value) FROM items WHERE expires_at IS NULL OR expires_at > ?", (now,))
kinds = {}
for pk, sk, size in rows:
    kind = pk.split("#")[0] + "/" + sk.split("#")[0]
    n, b = kinds.get(kind, (0, 0))
    kinds[kind] = (n + 1, b + size)
expired = db.execute("SELECT count(*) FROM items WHERE expires_at <= ?", (now,)).fetchone()[0]
for kind, (n, b) in sorted(kinds.items()):
    print(f"{sys.argv[2]}\t{kind}\t{n}\t{b}")
print(f"{sys.argv[2]}\t(expired, not yet purged)\t{expired}\t")
PY
}

printf 'minute\trss_kib\tfds\tstore_kib\n' >"$SAMPLES"
printf 'minute\tkind\titems\tvalue_bytes\n' >"$KINDS"
sample 0
echo "== soak: $MINUTES minutes at $RATE flows/s against $BASE (pid $SERVER)"
nice -n 19 "$ROOT/target/debug/examples/soak" --base "$BASE" "${INVITATIONS[@]}" \
  --minutes "$MINUTES" --rate "$RATE" >"$WORK/summary.json" 2>"$WORK/driver.log" &
DRIVER=$!
for minute in $(seq 1 "$MINUTES"); do
  sleep 60
  kill -0 "$SERVER" || { echo "the server died; see $WORK/server.log" >&2; exit 1; }
  sample "$minute"
  tail -n 1 "$SAMPLES"
done
STATUS=0
wait "$DRIVER" || STATUS=$?
DRIVER=""
cat "$WORK/summary.json"

"$VENV/bin/python" "$ROOT/bench/soak_report.py" "$SAMPLES" "$KINDS" "$ROOT/docs/soak.png" \
  "$ROOT/docs/reliability.md" "$WORK/summary.json" "$MINUTES" "$RATE"
exit "$STATUS"
