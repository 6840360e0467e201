#!/usr/bin/env python3
"""A stdio route's cost: `tools/call` round trips to one stdio MCP server
(`mcp-server-time` from PyPI, pinned in tests/py/requirements.txt), run
directly over its stdin/stdout by this script, and the same command behind
passgate as a stdio route (`/mcp/time`, a signed-in token, one session),
alternating in rounds. Sequential calls on one connection: what a person's
client sees. Writes its section of docs/benchmarks.md.

Run by bench/gateway.sh after the gateway benchmark; nothing here is part
of the test suite, and nothing asserts timings.
"""

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
import run  # noqa: E402  (bench/run.py: Server, free_port, machine_info)

BEGIN = "<!-- bench/stdio.py writes from here... -->"
END = "<!-- ...to here (stdio). -->"
CALL = {"name": "get_current_time", "arguments": {"timezone": "UTC"}}


def check(answer: dict, n: int) -> None:
    text = answer.get("result", {}).get("content", [{}])[0].get("text", "")
    if answer.get("id") != n or "UTC" not in text:
        raise run.BenchFailure(f"wrong answer to call {n}: {answer}")


class Direct:
    """The server as a child of this script, newline-delimited JSON-RPC."""

    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def rpc(self, message: dict) -> dict:
        self.send(message)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise run.BenchFailure("the stdio server exited")
            answer = json.loads(line)
            if answer.get("id") == message["id"]:
                return answer

    def call(self, n: int) -> dict:
        return self.rpc({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": CALL})

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class ThroughPassgate:
    """One session on passgate's stdio route, over one kept-alive connection."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream"}
        answer, session = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}})
        if not session or "result" not in answer:
            raise run.BenchFailure(f"no session from passgate: {answer}")
        self.headers["Mcp-Session-Id"] = session
        self.headers["MCP-Protocol-Version"] = "2025-06-18"
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message: dict) -> tuple[dict, str | None]:
        self.conn.request("POST", "/mcp/time", json.dumps(message), self.headers)
        response = self.conn.getresponse()
        body = response.read().decode()
        if response.status == 202:
            return {}, None
        if response.status != 200:
            raise run.BenchFailure(f"passgate answered {response.status}: {body}")
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
            body = data[-1]
        return json.loads(body), response.getheader("Mcp-Session-Id")

    def call(self, n: int) -> dict:
        return self.post({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": CALL})[0]


def timed(target, first: int, calls: int) -> list[float]:
    samples = []
    for n in range(first, first + calls):
        start = time.perf_counter()
        answer = target.call(n)
        samples.append((time.perf_counter() - start) * 1e6)
        check(answer, n)
    return samples


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--passgate", required=True)
    p.add_argument("--token-tool", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    info = run.machine_info(args.root)
    command = [args.python, "-m", "mcp_server_time", "--local-timezone=UTC"]
    work = tempfile.mkdtemp(prefix="passgate-stdio-bench-")
    port = run.free_port()
    public = f"http://127.0.0.1:{port}"
    data = os.path.join(work, "data")
    gateway_file = os.path.join(work, "gateway.toml")
    with open(gateway_file, "w") as f:
        f.write('[[route]]\nname = "time"\n'
                f'stdio = {{ command = {json.dumps(command[0])}, args = '
                f'{json.dumps(command[1:])}, max_children = 4, idle_timeout_secs = 600 }}\n')
    os.environ["PASSGATE_LOG"] = "warn"
    passgate = run.Server(
        "passgate",
        [args.passgate, "serve", "--listen", f"127.0.0.1:{port}", "--public-url", public,
         "--data-dir", data, "--gateway-config", gateway_file],
        port, os.path.join(work, "passgate.log"))
    direct = None
    try:
        passgate.start()
        run.wait_port(port, passgate.proc, "passgate", timeout=120)
        token = subprocess.run(
            [args.token_tool, "--data-dir", data, "--public-url", public, "--ttl-secs", "86400",
             "--resource", f"{public}/mcp/time"],
            check=True, capture_output=True, text=True).stdout.strip()
        direct = Direct(command)
        gated = ThroughPassgate(port, token)
        timed(direct, 1, 20)
        timed(gated, 1, 20)
        samples: dict[str, list[float]] = {"direct": [], "passgate": []}
        medians: dict[str, list[float]] = {"direct": [], "passgate": []}
        cpu_per_call = []
        for rnd in range(args.rounds):
            first = 1000 * (rnd + 1)
            d = timed(direct, first, args.calls)
            before = passgate.cpu_ticks()
            g = timed(gated, first, args.calls)
            ticks = passgate.cpu_ticks() - before
            cpu_per_call.append(ticks / os.sysconf("SC_CLK_TCK") / args.calls * 1e6)
            for name, s in (("direct", d), ("passgate", g)):
                samples[name] += s
                medians[name].append(statistics.median(s))
            run.log(f"round {rnd + 1}: direct {medians['direct'][-1]:.0f} µs, "
                    f"through passgate {medians['passgate'][-1]:.0f} µs per call")
    finally:
        if direct:
            direct.close()
        passgate.stop()

    def pct(s: list[float], q: float) -> float:
        return sorted(s)[int(q * (len(s) - 1))]

    d_med, g_med = statistics.median(medians["direct"]), statistics.median(medians["passgate"])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        BEGIN,
        "## stdio routes: a command behind passgate",
        "",
        f"`bench/stdio.py` (run by `bench/gateway.sh`), {stamp}, {info['nproc']} CPUs "
        f"({info['cpu']}), passgate {info['passgate commit']}. `mcp-server-time` (PyPI, the test suite's pin) answering "
        "`tools/call get_current_time`: directly over its stdin/stdout from the benchmark "
        "process, and as the stdio route `/mcp/time` of one passgate (a signed-in token, one "
        f"session, one kept-alive connection). {args.rounds} rounds of {args.calls} sequential "
        "calls each, the two alternating; every answer checked. Medians of the rounds' medians.",
        "",
        "| `tools/call` | p50 | p90 | passgate CPU per call |",
        "|---|---:|---:|---:|",
        f"| directly over stdio | {d_med:.0f} µs | {pct(samples['direct'], 0.9):.0f} µs | – |",
        f"| through passgate's stdio route | {g_med:.0f} µs | "
        f"{pct(samples['passgate'], 0.9):.0f} µs | {statistics.median(cpu_per_call):.0f} µs |",
        "",
        f"What the route adds to a call: **{g_med - d_med:.0f} µs** at the median "
        f"({g_med / d_med:.2f}× the direct round trip): HTTP, the token check and the account "
        "read, and the hop through the child's pipes. The server's own work is the same in both.",
        END,
    ]
    section = "\n".join(lines)
    run.write_section(args.out, BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
