"""Measurement helpers for bench/run.sh (standard library only).

    probe.py coldstart --runs N --port P --token T --a A --b B -- CMD...
        N times: start CMD, poll http://127.0.0.1:P/mcp with an authenticated
        `tools/call add` until the right sum comes back, record the elapsed
        time (process start to first correct response) and the process's RSS
        at that moment, then stop it. Prints JSON.

    probe.py dcr --port P --pid PID --rounds R --count C
        Dynamic client registration: R rounds of C sequential registrations
        over one keep-alive connection each, every round from its own
        loopback source address (127.0.0.<20+round>) because passgate limits
        registrations to 30 an hour per address. Checks each answer (201 with
        a client_id) and measures latency and the server's CPU time, summed
        over its threads from /proc/PID/task/*/schedstat (nanoseconds; the
        10 ms ticks of /proc/PID/stat are too coarse for a few dozen
        requests). Prints JSON.

    probe.py call --port P --token T --a A --b B
        One authenticated `tools/call add`; exits 0 if the sum is right.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time


def call_body(a: int, b: int) -> bytes:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": a, "b": b}},
        },
        separators=(",", ":"),
    ).encode()


def headers(port: int, token: str | None) -> dict[str, str]:
    h = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    if token:
        h["Authorization"] = f"Bearer {token}"
    return h


def sum_ok(body: bytes, total: int) -> bool:
    text = body.decode("utf-8", "replace")
    return (
        re.search(r'"result"\s*:\s*%d(?!\d)' % total, text) is not None
        and re.search(r'"isError"\s*:\s*true', text) is None
    )


def try_call(port: int, token: str, a: int, b: int, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/mcp", body=call_body(a, b), headers=headers(port, token))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def coldstart_once(
    cmd: list[str], port: int, token: str, a: int, b: int, timeout: float = 60.0
) -> tuple[float, int | None]:
    """Starts cmd, waits for the first correct authenticated answer, stops it.
    Returns (milliseconds from process start to that answer, RSS in KiB then)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"coldstart: {cmd[0]} exited with {proc.returncode}")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"coldstart: no correct answer from {cmd[0]} in {timeout} s")
            try:
                status, body = try_call(port, token, a, b)
            except (ConnectionError, http.client.HTTPException, OSError):
                time.sleep(0.0005)
                continue
            if status == 200 and sum_ok(body, a + b):
                elapsed_ms = (time.perf_counter() - t0) * 1000.0
                return elapsed_ms, rss_kib(proc.pid)
            if status not in (502, 503):
                raise RuntimeError(f"coldstart: wrong answer {status}: {body[:300]!r}")
            time.sleep(0.0005)
    finally:
        stop(proc)


def coldstart(args: argparse.Namespace) -> None:
    times_ms, rss = [], []
    for _ in range(args.runs):
        ms, kib = coldstart_once(args.cmd, args.port, args.token, args.a, args.b, args.timeout)
        times_ms.append(ms)
        rss.append(kib)
        time.sleep(0.2)
    print(json.dumps({"ms": times_ms, "rss_kib_at_first_answer": rss}))


def task_cpu_ns(pid: int) -> dict[str, int]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def cpu_delta_ns(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(v - before.get(tid, 0) for tid, v in after.items())


def dcr_measure(port: int, pid: int, rounds: int, count: int) -> dict:
    body = json.dumps(
        {
            "client_name": "passgate bench",
            "redirect_uris": ["http://127.0.0.1:9/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
    ).encode()
    h = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    latencies_us, cpu_per_req_us, rps = [], [], []
    for r in range(rounds):
        source = f"127.0.0.{20 + r}"
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=10, source_address=(source, 0)
        )
        before = task_cpu_ns(pid)
        t_round = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter()
            conn.request("POST", "/register", body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            latencies_us.append((time.perf_counter() - t) * 1e6)
            if resp.status != 201 or b'"client_id"' not in data:
                raise RuntimeError(f"dcr: wrong answer {resp.status}: {data[:300]!r}")
        elapsed = time.perf_counter() - t_round
        after = task_cpu_ns(pid)
        conn.close()
        cpu_per_req_us.append(cpu_delta_ns(before, after) / 1e3 / count)
        rps.append(count / elapsed)
    latencies_us.sort()
    return {
        "requests": rounds * count,
        "rps": statistics.median(rps),
        "p50_us": statistics.median(latencies_us),
        "max_us": latencies_us[-1],
        "cpu_us_per_req": statistics.median(cpu_per_req_us),
        "cpu_us_per_req_rounds": cpu_per_req_us,
    }


def dcr(args: argparse.Namespace) -> None:
    print(json.dumps(dcr_measure(args.port, args.pid, args.rounds, args.count)))


def call(args: argparse.Namespace) -> None:
    status, body = try_call(args.port, args.token, args.a, args.b)
    if status != 200 or not sum_ok(body, args.a + args.b):
        sys.exit(f"call: wrong answer {status}: {body[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("coldstart")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60.0)
    for q in (p, sub.add_parser("call")):
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--token", required=True)
        q.add_argument("--a", type=int, required=True)
        q.add_argument("--b", type=int, required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    d = sub.add_parser("dcr")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--pid", type=int, required=True)
    d.add_argument("--rounds", type=int, default=3)
    d.add_argument("--count", type=int, default=25)
    args = parser.parse_args()
    if args.command == "coldstart":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        if not args.cmd:
            parser.error("coldstart needs a command after --")
        coldstart(args)
    elif args.command == "dcr":
        dcr(args)
    else:
        call(args)


if __name__ == "__main__":
    main()
