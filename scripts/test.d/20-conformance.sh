#!/usr/bin/env bash
# The official MCP conformance suite against examples/conformance_server.rs,
# the fixture server that serves through passgate's own transport settings.
# Three runs, all of which must pass:
#   1. conformance-stable (0.1.16), every active server scenario;
#   2. conformance-next, --requirements 2025-11-25 (the suite's verdict);
#   3. conformance-next, --requirements 2026-07-28 with the baseline in
#      tests/conformance/expected-failures-2026-07-28.yml, which is also
#      enforced for the scenarios that set runs without scoring.
# Then the same three through passgate's gateway (`passgate serve --backend`
# in front of the fixture server), reached through tests/js/bearer-proxy.mjs,
# which adds a token minted by examples/bench_token (the suite has no
# sign-in): every check must end as it did directly
# (tests/conformance/compare-runs.mjs).
# Everything after the build runs in a network namespace that has only
# loopback (when the machine allows one), which proves the suite needs no
# other network. Set PASSGATE_CONFORMANCE_NETNS=0 to skip the namespace.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$PASSGATE_ROOT"

STABLE=tests/js/node_modules/conformance-stable/dist/index.js
NEXT=tests/js/node_modules/conformance-next/dist/index.js
BASELINE=tests/conformance/expected-failures-2026-07-28.yml
RUN_TIMEOUT=900

# Can this namespace talk to itself over loopback? (Used to decide whether
# the network-isolated re-run below can work here.)
if [ "${1:-}" = "--probe-loopback" ]; then
  ip link set lo up 2>/dev/null || true
  exec node -e '
    const net = require("net");
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      net.connect(server.address().port, "127.0.0.1", () => process.exit(0))
        .on("error", () => process.exit(1));
    });' </dev/null
fi

if [ "${1:-}" != "--isolated" ]; then
  for f in "$STABLE" "$NEXT"; do
    [ -f "$f" ] || { echo "missing $f: run scripts/install-test-deps.sh" >&2; exit 1; }
  done
  echo "building the conformance fixture server"
  cargo build --quiet --example conformance_server --example bench_token --bin passgate
  target_dir=$(cargo metadata --offline --format-version 1 --no-deps \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
  export CONFORMANCE_SERVER_BIN="$target_dir/debug/examples/conformance_server"
  export CONFORMANCE_TOKEN_BIN="$target_dir/debug/examples/bench_token"
  export CONFORMANCE_PASSGATE_BIN="$target_dir/debug/passgate"
  if [ "${PASSGATE_CONFORMANCE_NETNS:-1}" = 1 ] \
    && timeout 20 unshare --net -- bash "$self" --probe-loopback 2>/dev/null; then
    exec unshare --net -- bash "$self" --isolated
  fi
  echo "note: no usable network namespace here; running without network isolation"
else
  ip link set lo up 2>/dev/null || true
  echo "running in a network namespace with loopback only"
fi

work=$(mktemp -d)
server_pid=""
gateway_pid=""
proxy_pid=""
stop() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    # Graceful shutdown first; a server that hangs on it is killed.
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$proxy_pid"
  stop "$gateway_pid"
  stop "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$CONFORMANCE_SERVER_BIN" --port 0 --port-file "$work/port" </dev/null >"$work/server.log" 2>&1 &
server_pid=$!

port=""
for _ in $(seq 1 300); do
  if [ -s "$work/port" ]; then port=$(cat "$work/port"); break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
healthy=0
if [ -n "$port" ]; then
  for _ in $(seq 1 100); do
    if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' \
      "http://localhost:$port/healthz" </dev/null; then
      healthy=1
      break
    fi
    sleep 0.1
  done
fi
if [ "$healthy" != 1 ]; then
  echo "the fixture server did not become healthy; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
url="http://localhost:$port/mcp"
echo "fixture server at $url"

passed=()
failed=()
# run NAME COMMAND...: runs one suite invocation (results in
# $work/results-NAME), prints its summary, and records a failure instead of
# stopping, so every run reports.
run() {
  local name=$1 log="$work/$1.log" rc=0
  shift
  echo
  echo "== conformance: $name"
  timeout "$RUN_TIMEOUT" "$@" -o "$work/results-$name" </dev/null >"$log" 2>&1 || rc=$?
  if grep -q '=== SUMMARY ===' "$log"; then
    sed -n '/=== SUMMARY ===/,$p' "$log"
  else
    tail -n 60 "$log"
  fi
  if [ "$rc" = 0 ]; then
    passed+=("$name")
  else
    echo "conformance run '$name' FAILED (exit $rc); failed checks:"
    show_failures "$work/results-$name"
    failed+=("$name")
  fi
}

# The suite lists only scenario names when it runs many; the checks are in
# the results directory.
show_failures() {
  node -e '
    const fs = require("fs"), path = require("path");
    const dir = process.argv[1];
    if (!fs.existsSync(dir)) process.exit(0);
    for (const name of fs.readdirSync(dir).sort()) {
      const file = path.join(dir, name, "checks.json");
      if (!fs.existsSync(file)) continue;
      for (const c of JSON.parse(fs.readFileSync(file, "utf8")))
        if (c.status === "FAILURE")
          console.log(`  ${name}: ${c.id}: ${(c.errorMessage || c.description || "").slice(0, 300)}`);
    }' "$1" </dev/null
}

run stable node "$STABLE" server --url "$url"
run next-2025-11-25 node "$NEXT" server --url "$url" --requirements 2025-11-25
run next-2026-07-28 node "$NEXT" server --url "$url" --requirements 2026-07-28 \
  --expected-failures "$BASELINE"

echo
echo "== conformance: baseline over every 2026-07-28 scenario, scored or not"
if node tests/conformance/check-baseline.mjs "$work/results-next-2026-07-28" "$BASELINE" </dev/null; then
  passed+=("baseline-2026-07-28")
else
  failed+=("baseline-2026-07-28")
fi

echo
echo "== conformance: the same runs through passgate's gateway"
free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})' </dev/null
}
gateway_port=$(free_port)
gateway="http://localhost:$gateway_port"
"$CONFORMANCE_PASSGATE_BIN" serve --listen "127.0.0.1:$gateway_port" --public-url "$gateway" \
  --data-dir "$work/passgate" --backend "$url" </dev/null >"$work/passgate.log" 2>&1 &
gateway_pid=$!
gateway_ready=0
for _ in $(seq 1 300); do
  if node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' \
    "$gateway/readyz" </dev/null; then
    gateway_ready=1
    break
  fi
  kill -0 "$gateway_pid" 2>/dev/null || break
  sleep 0.1
done
if [ "$gateway_ready" = 1 ]; then
  "$CONFORMANCE_TOKEN_BIN" --data-dir "$work/passgate" --public-url "$gateway" --ttl-secs 7200 \
    </dev/null >"$work/token"
  node tests/js/bearer-proxy.mjs "$gateway" "$work/token" "$work/proxy-port" </dev/null \
    >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$work/proxy-port" ] && break
    sleep 0.1
  done
  gw_url="http://localhost:$(cat "$work/proxy-port")/mcp"
  echo "gateway at $gateway/mcp, through the token-adding proxy at $gw_url"
  run gateway-stable node "$STABLE" server --url "$gw_url"
  run gateway-next-2025-11-25 node "$NEXT" server --url "$gw_url" --requirements 2025-11-25
  run gateway-next-2026-07-28 node "$NEXT" server --url "$gw_url" --requirements 2026-07-28 \
    --expected-failures "$BASELINE"
  echo
  echo "== conformance: every check ends through the gateway as it did directly"
  if node tests/conformance/compare-runs.mjs \
    "$work/results-stable" "$work/results-gateway-stable" \
    "$work/results-next-2025-11-25" "$work/results-gateway-next-2025-11-25" \
    "$work/results-next-2026-07-28" "$work/results-gateway-next-2026-07-28" </dev/null; then
    passed+=("gateway-same-as-direct")
  else
    failed+=("gateway-same-as-direct")
  fi
  if grep -q "$(cat "$work/token")" "$work/passgate.log"; then
    echo "the access token is in passgate's log" >&2
    failed+=("gateway-log-without-token")
  fi
else
  echo "passgate (the gateway) did not become ready; its log:" >&2
  tail -n 60 "$work/passgate.log" >&2
  failed+=("gateway-ready")
fi

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "the fixture server died during the runs; its log:" >&2
  tail -n 60 "$work/server.log" >&2
  failed+=("server-alive")
fi

echo
[ ${#failed[@]} -eq 0 ] || echo "conformance FAILED: ${failed[*]}"
echo "conformance: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
