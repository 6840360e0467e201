"""PostgreSQL beside SQLite, in one run (bench/store_compare.sh builds first).

The same release binary (built with `--features postgres`) serves with
`--store sqlite` and with `--store postgres` on a throw-away PostgreSQL
cluster on loopback (initdb/pg_ctl from Debian's postgresql package; as
root, the cluster belongs to `nobody`). Measured, the stores in alternation:
  - authenticated `tools/call add` with wrk at 1 and 32 connections, median
    of ROUNDS runs of DURATION seconds: requests/s, p50/p99, passgate's CPU
    per request, and the PostgreSQL server processes' CPU per request;
  - a whole sign-in (examples/bench_signin: discovery to token with a
    passkey), median server CPU per flow and wall time per flow.
Every response is checked (bench/wrk/mcp_add.lua, bench_signin). Prints the
table; writes nothing. Standard library only; reuses bench/run.py's helpers
(the cluster, the load and the sign-in measurements), so that its numbers
are measured exactly as the PostgreSQL column of bench/run.sh's table: a
shorter run of the stores alone, for work on the PostgreSQL store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import random

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passgate", required=True)
    ap.add_argument("--token-tool", required=True)
    ap.add_argument("--signin-tool", required=True)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="passgate-store-bench-")
    lua = os.path.join(HERE, "wrk", "mcp_add.lua")
    a, b = random.randint(10**6, 10**9), random.randint(10**6, 10**9)
    key = R.secrets.token_urlsafe(32)
    cluster, servers, tokens = None, {}, {}
    try:
        cluster = R.PgCluster(work)
        cluster.create_database("calls")
        cluster.create_database("signin")
        stores = {
            "sqlite": [],
            "postgres": R.postgres_args(cluster, "calls", key),
        }
        for name, extra in stores.items():
            port = R.free_port()
            url = f"http://127.0.0.1:{port}"
            data = os.path.join(work, name)
            tokens[name] = subprocess.run(
                [args.token_tool, "--data-dir", data, "--public-url", url, *extra],
                check=True, capture_output=True, text=True,
            ).stdout.strip()
            srv = R.Server(name, [args.passgate, "serve", "--data-dir", data, "--public-url", url,
                                  "--listen", f"127.0.0.1:{port}", *extra], port, os.path.join(work, f"{name}.log"))
            srv.start()
            R.wait_port(port, srv.proc, name)
            servers[name] = srv

        def target(name: str):
            return f"http://127.0.0.1:{servers[name].port}/mcp", lua, [str(a), str(b), tokens[name]]

        R.log("== warm-up, 2 s at 32 connections each")
        for name in servers:
            R.wrk(*target(name), 32, 2)
        load: dict[tuple[str, int], list[dict]] = {}
        for rnd in range(args.rounds):
            order = ["sqlite", "postgres"] if rnd % 2 == 0 else ["postgres", "sqlite"]
            for conns in (1, 32):
                for name in order:
                    statements_before = cluster.statements("calls")
                    db_before = cluster.cpu_ticks()
                    r = R.measured(servers[name], *target(name), conns, args.duration)
                    r["db_cpu_us_per_req"] = (cluster.cpu_ticks() - db_before) / R.CLK_TCK * 1e6 / r["requests"]
                    r["statements_per_req"] = R.statements_per_request(
                        statements_before, cluster.statements("calls"), r["requests"])
                    load.setdefault((name, conns), []).append(r)
                    R.log(f"   round {rnd + 1} {name:8} c={conns:<2} {R.fmt_rps(r['rps']):>8} req/s "
                          f"p50 {R.fmt_ms(r['p50_us'])} p99 {R.fmt_ms(r['p99_us'])} "
                          f"passgate cpu {R.fmt_cpu(r['cpu_us_per_req'])}/req, "
                          f"database cpu {R.fmt_cpu(r['db_cpu_us_per_req'])}/req, "
                          f"{r['statements_per_req']:.3f} statements/req ({r['ok']} checked)")
        for srv in servers.values():
            srv.stop()
        servers = {}
        R.log("== whole sign-ins")
        flows = {
            "sqlite": R.signin_measure(args, work),
            "postgres": R.signin_measure(args, work, "postgres", tuple(R.postgres_args(cluster, "signin", key))),
        }
    except R.BenchFailure as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for srv in servers.values():
            srv.stop()
        if cluster:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    def m(name, conns, key):
        return statistics.median(x[key] for x in load[(name, conns)])

    print()
    print(f"Medians of {args.rounds} runs of {args.duration} s, stores in alternation; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    print("| | SQLite | PostgreSQL | PostgreSQL / SQLite |")
    print("|---|---:|---:|---:|")
    for conns in (1, 32):
        label = f"{conns} connection{'s' if conns > 1 else ''}"
        for key, what, fmt in (("rps", "requests/s", R.fmt_rps), ("p50_us", "p50", R.fmt_ms),
                               ("p99_us", "p99", R.fmt_ms), ("cpu_us_per_req", "passgate CPU per request", R.fmt_cpu)):
            s, p = m("sqlite", conns, key), m("postgres", conns, key)
            print(f"| tools/call, {label}: {what} | {fmt(s)} | {fmt(p)} | {R.ratio(p, s)} |")
        print(f"| tools/call, {label}: PostgreSQL server CPU per request | – | "
              f"{R.fmt_cpu(m('postgres', conns, 'db_cpu_us_per_req'))} | – |")
        print(f"| tools/call, {label}: database statements per request (pg_stat_statements) | – | "
              f"{m('postgres', conns, 'statements_per_req'):.3f} | – |")
    s, p = flows["sqlite"], flows["postgres"]
    print(f"| whole sign-in ({s['requests_per_flow']} requests, {s['flows']} flows): wall time per flow | "
          f"{R.fmt_ms(s['p50_us'])} | {R.fmt_ms(p['p50_us'])} | {R.ratio(p['p50_us'], s['p50_us'])} |")
    print(f"| whole sign-in: passgate CPU per flow | {R.fmt_cpu(s['cpu_us_per_flow'])} | "
          f"{R.fmt_cpu(p['cpu_us_per_flow'])} | {R.ratio(p['cpu_us_per_flow'], s['cpu_us_per_flow'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
