"""The tokio runtime question, in one run: the same release binary served
with `PASSGATE_RUNTIME=multi-thread` (the default) and `current-thread`,
in alternation.

Measured for each, medians of ROUNDS runs of DURATION seconds:
  - authenticated `tools/call add` with wrk at 1 and 32 connections:
    requests/s, p50/p99 and passgate's CPU per request;
  - the same at 32 connections while whole passkey sign-ins run beside it
    (examples/bench_signin, its CPU-heavy requests: ceremony checks, ES256
    signatures), which is where one thread for everything should hurt: the
    tool calls' p99 and throughput.
Every response is checked (bench/wrk/mcp_add.lua, bench_signin). Prints the
table; writes nothing. Reuses bench/run.py's helpers.

  python3 bench/runtime.py --passgate target/release/passgate \\
      --token-tool target/release/examples/bench_token \\
      --signin-tool target/release/examples/bench_signin
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402

RUNTIMES = ("multi-thread", "current-thread")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passgate", required=True)
    ap.add_argument("--token-tool", required=True)
    ap.add_argument("--signin-tool", required=True)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="passgate-runtime-bench-")
    lua = os.path.join(HERE, "wrk", "mcp_add.lua")
    a, b = random.randint(10**6, 10**9), random.randint(10**6, 10**9)
    servers: dict[str, R.Server] = {}
    tokens: dict[str, str] = {}
    invitations: dict[str, str] = {}
    try:
        for name in RUNTIMES:
            port = R.free_port()
            # WebAuthn needs a localhost origin for the sign-ins beside.
            url = f"http://localhost:{port}"
            data = os.path.join(work, name)
            common = ["--data-dir", data, "--public-url", url]
            tokens[name] = subprocess.run(
                [args.token_tool, *common], check=True, capture_output=True, text=True
            ).stdout.strip()
            srv = R.Server(
                name,
                ["env", f"PASSGATE_RUNTIME={name}", args.passgate, "serve", *common,
                 "--listen", f"127.0.0.1:{port}"],
                port,
                os.path.join(work, f"{name}.log"),
            )
            srv.start()
            R.wait_port(port, srv.proc, name)
            servers[name] = srv

        def target(name: str):
            return f"http://localhost:{servers[name].port}/mcp", lua, [str(a), str(b), tokens[name]]

        def sign_ins_beside(name: str) -> subprocess.Popen:
            srv = servers[name]
            invitation = subprocess.run(
                [args.passgate, "users", "invite", f"bench{random.randint(0, 10**9)}",
                 "--data-dir", os.path.join(work, name),
                 "--public-url", f"http://localhost:{srv.port}"],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            return subprocess.Popen(
                [args.signin_tool, "--base", f"http://localhost:{srv.port}", "--pid", str(srv.pid),
                 "--invitation", invitation, "--rounds", "1", "--flows", "100000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

        R.log("== warm-up, 2 s at 32 connections each")
        for name in servers:
            R.wrk(*target(name), 32, 2)
        load: dict[tuple[str, str], list[dict]] = {}
        for rnd in range(args.rounds):
            order = list(RUNTIMES) if rnd % 2 == 0 else list(reversed(RUNTIMES))
            for case in ("c1", "c32", "c32+sign-ins"):
                for name in order:
                    beside = sign_ins_beside(name) if case == "c32+sign-ins" else None
                    try:
                        r = R.measured(servers[name], *target(name), 1 if case == "c1" else 32, args.duration)
                    finally:
                        if beside is not None:
                            beside.kill()
                            beside.wait()
                    load.setdefault((name, case), []).append(r)
                    R.log(f"   round {rnd + 1} {name:14} {case:12} {R.fmt_rps(r['rps']):>8} req/s "
                          f"p50 {R.fmt_ms(r['p50_us'])} p99 {R.fmt_ms(r['p99_us'])} "
                          f"cpu {R.fmt_cpu(r['cpu_us_per_req'])}/req ({r['ok']} checked)")
    except R.BenchFailure as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    def m(name, case, key):
        return statistics.median(x[key] for x in load[(name, case)])

    print()
    print(f"Medians of {args.rounds} runs of {args.duration} s, runtimes in alternation; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    print("| `tools/call add` | multi-thread | current-thread | current / multi |")
    print("|---|---:|---:|---:|")
    labels = {"c1": "1 connection", "c32": "32 connections",
              "c32+sign-ins": "32 connections, sign-ins beside"}
    for case, label in labels.items():
        rows = [("rps", "requests/s", R.fmt_rps), ("p50_us", "p50", R.fmt_ms), ("p99_us", "p99", R.fmt_ms)]
        # Beside the sign-ins, passgate's CPU is theirs too: not per call.
        if case != "c32+sign-ins":
            rows.append(("cpu_us_per_req", "passgate CPU per request", R.fmt_cpu))
        for key, what, fmt in rows:
            mt, ct = m("multi-thread", case, key), m("current-thread", case, key)
            print(f"| {label}: {what} | {fmt(mt)} | {fmt(ct)} | {R.ratio(ct, mt)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
