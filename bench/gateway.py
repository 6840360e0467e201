"""The measuring half of bench/gateway.sh: passgate as a gateway, side by side
in one run with the backend alone and with FastMCP's own proxy. Standard
library only (plus bench/run.py's helpers).

  1. the fast backend (examples `bench_backend`: passgate's `add` on rmcp,
     stateless, JSON, no auth), passgate in front of it (`--backend`, and a
     gateway route `sse` to its SSE endpoint), FastMCP's proxy
     (`create_proxy`, with JWTVerifier) in front of the same backend;
  2. authenticated `tools/call add` with wrk at 1 and 32 connections against
     the backend directly, through passgate and through FastMCP's proxy, in
     alternation (order rotated every round), median of ROUNDS runs of
     DURATION seconds; CPU of every process from /proc/PID/stat;
  3. first SSE event latency: the backend stamps its event with the time it
     sent it; the client notes when it arrives, directly and through
     passgate, alternating, median of SSE_SAMPLES each;
  4. the table, printed and written to docs/benchmarks.md between the
     gateway markers (above bench/run.sh's part).

Every wrk response is checked (bench/wrk/mcp_add.lua); one wrong answer
fails the run and nothing is written.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (bench/run.py: Server, wrk, formatting)

BEGIN = "<!-- bench/gateway.sh writes from here... -->"
END = "<!-- ...to here. -->"
SSE_SAMPLES = 30


def ticks(*servers: run.Server) -> list[int]:
    return [s.cpu_ticks() for s in servers]


def load(url: str, token: str, conns: int, duration: int, servers: list[run.Server]) -> dict:
    before = ticks(*servers)
    r = run.wrk(url, os.path.join(HERE, "wrk", "mcp_add.lua"), ["2", "3", token], conns, duration)
    after = ticks(*servers)
    r["cpu_us_per_req"] = {
        s.name: (a - b) / run.CLK_TCK * 1e6 / r["requests"] for s, a, b in zip(servers, after, before)
    }
    return r


def first_call(url: str, token: str) -> None:
    """One checked `add`, unhurried: FastMCP's proxy connects on first use."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-06-18"}
    if token != "-":
        headers["authorization"] = f"Bearer {token}"
    conn.request("POST", "/mcp", body=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 2, "b": 3}}}),
        headers=headers)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200 or b'"result":5' not in body.replace(b" ", b""):
        raise run.BenchFailure(f"first call to {url}: {response.status} {body[:300]!r}")
    conn.close()


def first_event_ms(port: int, path: str, token: str | None, host: str | None = None) -> float:
    """Milliseconds from the backend's send of its first SSE event to its
    arrival here; `host`, when given, is the `Host` header (a Function URL's
    emulation routes by it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    if host:
        headers["host"] = host
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "stream", "arguments": {}}})
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise run.BenchFailure(f"SSE {path}: {response.status} {response.read()[:300]!r}")
    line = b""
    while not line.startswith(b"data:"):
        line = response.fp.readline()
        if not line:
            raise run.BenchFailure(f"SSE {path}: the stream ended before its first event")
    arrived = time.time_ns()
    sent = json.loads(line[5:])["params"]["sent_unix_ns"]
    conn.close()
    return (arrived - sent) / 1e6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--passgate", required=True)
    p.add_argument("--token-tool", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--python", required=True)
    # The floor: examples `bench_bare_proxy` (bench/bare_proxy.rs), with each client.
    p.add_argument("--bare-proxy")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    # An earlier build, forwarding to the same backend in the same rounds.
    p.add_argument("--before-passgate")
    p.add_argument("--before-token-tool")
    p.add_argument("--before-label", default="before")
    args = p.parse_args()

    info = run.machine_info(args.root)
    work = tempfile.mkdtemp(prefix="passgate-gateway-bench-")
    backend_port, passgate_port, proxy_port = run.free_port(), run.free_port(), run.free_port()
    public = f"http://127.0.0.1:{passgate_port}"
    data = os.path.join(work, "data")
    gateway_file = os.path.join(work, "gateway.toml")
    with open(gateway_file, "w") as f:
        f.write(f'[[route]]\nname = "sse"\nurl = "http://127.0.0.1:{backend_port}/sse"\n')

    backend = run.Server("backend", [args.backend, f"127.0.0.1:{backend_port}"], backend_port,
                         os.path.join(work, "backend.log"))
    passgate = run.Server(
        "passgate",
        [args.passgate, "serve", "--listen", f"127.0.0.1:{passgate_port}", "--public-url", public,
         "--data-dir", data, "--backend", f"http://127.0.0.1:{backend_port}/mcp",
         "--gateway-config", gateway_file],
        passgate_port, os.path.join(work, "passgate.log"))
    proxy_issuer = f"http://127.0.0.1:{proxy_port}"
    key_dir = os.path.join(work, "fastmcp-keys")
    fastmcp_py = os.path.join(HERE, "fastmcp_server.py")
    proxy = run.Server(
        "fastmcp-proxy",
        [args.python, fastmcp_py, "proxy", "--key-dir", key_dir, "--issuer", proxy_issuer,
         "--audience", f"{proxy_issuer}/mcp", "--port", str(proxy_port),
         "--backend", f"http://127.0.0.1:{backend_port}/mcp"],
        proxy_port, os.path.join(work, "proxy.log"))
    servers = [backend, passgate, proxy]
    bare = {}
    if args.bare_proxy:
        for client in ("reqwest", "hyper"):
            port = run.free_port()
            bare[client] = run.Server(
                f"bare-{client}",
                [args.bare_proxy, f"127.0.0.1:{port}", f"http://127.0.0.1:{backend_port}/mcp", client],
                port, os.path.join(work, f"bare-{client}.log"))
            servers.append(bare[client])
    before = None
    if args.before_passgate:
        before_port = run.free_port()
        before_public = f"http://127.0.0.1:{before_port}"
        before_data = os.path.join(work, "before-data")
        before = run.Server(
            "passgate-before",
            [args.before_passgate, "serve", "--listen", f"127.0.0.1:{before_port}", "--public-url",
             before_public, "--data-dir", before_data, "--backend", f"http://127.0.0.1:{backend_port}/mcp"],
            before_port, os.path.join(work, "before.log"))
        servers.append(before)
    os.environ["PASSGATE_LOG"] = "warn"
    try:
        proxy_token = subprocess.run(
            [args.python, fastmcp_py, "mint", "--key-dir", key_dir, "--issuer", proxy_issuer,
             "--audience", f"{proxy_issuer}/mcp"], check=True, capture_output=True, text=True,
        ).stdout.strip()
        for s in servers:
            s.start()
        for s in servers:
            run.wait_port(s.port, s.proc, s.name, timeout=120)
        run.log("== waiting for passgate to be ready")
        deadline = time.time() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", passgate_port, timeout=5)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise run.BenchFailure("passgate never became ready: " + passgate.log_tail())
            time.sleep(0.2)

        def mint(resource: str | None) -> str:
            cmd = [args.token_tool, "--data-dir", data, "--public-url", public, "--ttl-secs", "86400"]
            if resource:
                cmd += ["--resource", resource]
            return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

        token, sse_token = mint(None), mint(f"{public}/mcp/sse")
        targets = {
            "direct": (f"http://127.0.0.1:{backend_port}/mcp", "-", [backend]),
            "passgate": (f"{public}/mcp", token, [passgate, backend]),
            "fastmcp-proxy": (f"{proxy_issuer}/mcp", proxy_token, [proxy, backend]),
        }
        for client, server in bare.items():
            targets[server.name] = (f"http://127.0.0.1:{server.port}/mcp", "-", [server, backend])
        if before:
            before_token = run.mint_token(args.before_token_tool, before_data, before_public,
                                          "--ttl-secs", "86400")
            targets["passgate-before"] = (f"{before_public}/mcp", before_token, [before, backend])
        run.log("== first call and warm-up (every answer checked)")
        for name, (url, tok, procs) in targets.items():
            first_call(url, tok)
            load(url, tok, 4, 3, procs)

        results: dict[tuple[str, int], list[dict]] = {}
        order = list(targets)
        for rnd in range(args.rounds):
            for conns in (1, 32):
                for name in order:
                    url, tok, procs = targets[name]
                    r = load(url, tok, conns, args.duration, procs)
                    results.setdefault((name, conns), []).append(r)
                    run.log(f"round {rnd + 1} {name:14} c={conns:2}: {r['rps']:10,.0f} req/s  "
                            + "  ".join(f"{k} {v:.1f} µs/req" for k, v in r["cpu_us_per_req"].items()))
            order = order[1:] + order[:1]

        run.log("== first SSE event latency")
        direct_ms, gateway_ms = [], []
        for _ in range(SSE_SAMPLES):
            direct_ms.append(first_event_ms(backend_port, "/sse", None))
            gateway_ms.append(first_event_ms(passgate_port, "/mcp/sse", sse_token))
        load_at_end = os.getloadavg()
    except run.BenchFailure as e:
        print(f"benchmark FAILED: {e}", file=sys.stderr)
        for s in servers:
            print(f"--- {s.name} log:\n{s.log_tail()}", file=sys.stderr)
        return 1
    finally:
        for s in servers:
            s.stop()

    def m(name: str, conns: int, key: str, proc: str | None = None) -> float:
        rows = results[(name, conns)]
        return statistics.median(r["cpu_us_per_req"][proc] if proc else r[key] for r in rows)

    lines = [
        BEGIN,
        "## Gateway: passgate in front of an existing MCP server",
        "",
        f"`bench/gateway.sh`, {info['date']}, {info['nproc']} CPUs ({info['cpu']}), "
        f"load average {info['load average at start']} at start and "
        f"{' '.join(f'{x:.2f}' for x in load_at_end)} at the end; passgate {info['passgate commit']}, "
        f"FastMCP {info['fastmcp']}. Medians of {args.rounds} runs of {args.duration} s each, the "
        "set-ups in alternation; every response checked. The backend is passgate's own `add` "
        "on rmcp without authorization (`bench/backend.rs`); passgate forwards to it with "
        "`--backend`, FastMCP's proxy (`create_proxy`, FastMCP 4's `as_proxy`) with its "
        "`JWTVerifier` in front."
        + (" `bare-reqwest` and `bare-hyper` are the floor (`bench/bare_proxy.rs`): a proxy on "
           "passgate's stack that reads the body, copies the headers and relays the answer, with "
           "no token check, policy, identity or logging, through reqwest (passgate's client) and "
           "through hyper-util's pooled client." if bare else ""),
        "",
        "| `tools/call add` | connections | req/s | vs direct | passgate CPU/call | backend CPU/call | proxy CPU/call |",
        "|---|---|---|---|---|---|---|",
    ]
    for conns in (1, 32):
        direct_rps = m("direct", conns, "rps")
        names = ("direct", "passgate", "fastmcp-proxy") + (("passgate-before",) if before else ()) \
            + tuple(s.name for s in bare.values())
        for name in names:
            rps = m(name, conns, "rps")
            pg = run.fmt_cpu(m(name, conns, "", name)) if name.startswith("passgate") else "–"
            own = name == "fastmcp-proxy" or name.startswith("bare-")
            px = run.fmt_cpu(m(name, conns, "", name)) if own else "–"
            lines.append(
                f"| {name} | {conns} | {run.fmt_rps(rps)} | {rps / direct_rps:.0%} | {pg} | "
                f"{run.fmt_cpu(m(name, conns, '', 'backend'))} | {px} |"
            )
    gw32, px32, d32 = m("passgate", 32, "rps"), m("fastmcp-proxy", 32, "rps"), m("direct", 32, "rps")
    extra = m("passgate", 32, "", "passgate") + m("passgate", 32, "", "backend") - m("direct", 32, "", "backend")
    d_ms, g_ms = statistics.median(direct_ms), statistics.median(gateway_ms)
    lines += [
        "",
        "| target (issue 13) | measured | met |",
        "|---|---|---|",
        f"| forwarded call costs ≤ 30 µs CPU more than the backend alone (32 connections) | "
        f"{extra:.1f} µs | {'yes' if extra <= 30 else 'no'} |",
        f"| ≥ 70% of direct throughput at 32 connections | {gw32 / d32:.0%} | {'yes' if gw32 / d32 >= 0.7 else 'no'} |",
        f"| ≥ 20× FastMCP's proxy throughput (32 connections) | {run.ratio(gw32, px32)} | "
        f"{'yes' if gw32 / px32 >= 20 else 'no'} |",
        f"| first SSE event through ≤ 5 ms after the backend sends it | {g_ms:.2f} ms (direct {d_ms:.2f} ms; "
        f"max {max(gateway_ms):.2f} ms, {SSE_SAMPLES} samples) | {'yes' if g_ms <= 5 else 'no'} |",
    ]
    if before:
        b32 = m("passgate-before", 32, "", "passgate-before") + m("passgate-before", 32, "", "backend") \
            - m("direct", 32, "", "backend")
        lines += [
            "",
            f"`passgate-before` is {args.before_label}, built the same way, forwarding to the same "
            "backend in the same rounds: its forwarded call costs "
            f"{b32:.1f} µs more than the backend alone at 32 connections, this build {extra:.1f} µs "
            f"({run.ratio(extra, b32)}), at {m('passgate-before', 32, 'rps') / d32:.0%} and {gw32 / d32:.0%} "
            "of direct throughput.",
        ]
    if bare:
        def over(name: str) -> float:
            return m(name, 32, "", name) + m(name, 32, "", "backend") - m("direct", 32, "", "backend")
        floor = {s.name: over(s.name) for s in bare.values()}
        lines += [
            "",
            "What a forwarded call costs above the backend alone at 32 connections (the proxy's "
            "CPU plus the backend's extra): "
            + ", ".join(f"`{n}` {v:.1f} µs at {m(n, 32, 'rps') / d32:.0%} of direct" for n, v in floor.items())
            + f", passgate {extra:.1f} µs at {gw32 / d32:.0%}. passgate's own work (token check, "
            f"policy, identity, sealed sessions, logging) is the difference from `bare-reqwest`: "
            f"{extra - floor['bare-reqwest']:.1f} µs.",
        ]
    lines += [
        "",
        "The machine was shared with other builds during the run (see the load average): the "
        "ratios, measured side by side, are what to quote.",
        END,
    ]
    report = "\n".join(lines)
    print(report)
    run.write_section(args.out, BEGIN, END, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
