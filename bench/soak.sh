#!/usr/bin/env bash
# The soak test (not part of the test suite): a release `passgate serve` on
# loopback under a steady mix of traffic (examples/soak.rs: sign-ins,
# registrations, tool calls, refreshes, bad requests) for SOAK_MINUTES
# (default 30). Every minute it samples the server's resident memory, its
# open file descriptors and the store's size on disk; at the end it writes
# the table and a plot (docs/soak.png) into docs/reliability.md, between the
# soak markers. Flat is the bar.
#
#   bench/soak.sh                          # 30 minutes
#   SOAK_MINUTES=5 SOAK_RATE=2 bench/soak.sh
#
# Both processes run under `nice -n 19`. Makes its own virtualenv with a
# pinned matplotlib under target/soak/venv for the plot.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MINUTES="${SOAK_MINUTES:-30}"
RATE="${SOAK_RATE:-2}"
MATPLOTLIB_VERSION="3.10.7"
WORK="$ROOT/target/soak"
DATA="$WORK/data"
SAMPLES="$WORK/samples.tsv"
VENV="$WORK/venv"

echo "== building"
# The driver with the test build (its speed is not measured); the server
# on its own, exactly as `cargo build --release` makes it.
nice -n 19 cargo build --quiet --example soak
nice -n 19 cargo build --release --quiet --bin passgate

if ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi

rm -rf "$DATA"
mkdir -p "$DATA"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://localhost:$PORT"
PASSGATE="$ROOT/target/release/passgate"

LINK=$("$PASSGATE" users invite soak --admin --public-url "$BASE" --data-dir "$DATA" | tail -n 1)
PASSGATE_LOG=warn nice -n 19 "$PASSGATE" serve --listen "127.0.0.1:$PORT" \
  --public-url "$BASE" --data-dir "$DATA" >"$WORK/server.log" 2>&1 &
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
}

printf 'minute\trss_kib\tfds\tstore_kib\n' >"$SAMPLES"
sample 0
echo "== soak: $MINUTES minutes at $RATE flows/s against $BASE (pid $SERVER)"
nice -n 19 "$ROOT/target/debug/examples/soak" --base "$BASE" --invitation "$LINK" \
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

"$VENV/bin/python" - "$SAMPLES" "$ROOT/docs/soak.png" "$ROOT/docs/reliability.md" \
  "$WORK/summary.json" "$MINUTES" "$RATE" <<'PY'
import json, re, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

samples, png, doc, summary, minutes, rate = sys.argv[1:]
rows = [line.rstrip("\n").split("\t") for line in open(samples)][1:]
m = [int(r[0]) for r in rows]
rss = [int(r[1]) / 1024 for r in rows]
fds = [int(r[2]) for r in rows]
store = [int(r[3]) / 1024 for r in rows]
result = json.load(open(summary))

fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
for ax, ys, label in zip(axes, [rss, fds, store],
                         ["RSS (MiB)", "open file descriptors", "store on disk (MiB)"]):
    ax.plot(m, ys, marker="o", markersize=3)
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0, top=max(ys) * 1.25 + 1)
    ax.grid(alpha=0.3)
axes[-1].set_xlabel("minute")
fig.suptitle(f"passgate soak: {result['flows']} sign-in flows in {minutes} min")
fig.tight_layout()
fig.savefig(png, dpi=90)

table = ["| minute | RSS (MiB) | open fds | store (MiB) |", "|---:|---:|---:|---:|"]
table += [f"| {a} | {b:.1f} | {c} | {d:.2f} |" for a, b, c, d in zip(m, rss, fds, store)]
flows, seconds = result["flows"], result["seconds"]
block = "\n".join([
    "<!-- soak:begin (written by bench/soak.sh) -->",
    f"{minutes} minutes at up to {rate} flows/s: {flows} whole sign-in flows "
    f"({flows / max(seconds, 1):.2f}/s), {result['failures']} failures.",
    "",
    *table,
    "",
    "![RSS, file descriptors and store size per minute](soak.png)",
    "<!-- soak:end -->",
])
text = open(doc).read()
text = re.sub(r"<!-- soak:begin.*?<!-- soak:end -->", lambda _: block, text, flags=re.S)
open(doc, "w").write(text)
print("\n".join(table))
PY
exit "$STATUS"
