"""The Lambda build on each tokio runtime (`PASSGATE_RUNTIME`), side by side.

Under `cargo lambda watch`'s runtime API and Function URL emulation, its
table on moto (as bench/run.py's Lambda init measurement):
  - init: from starting the function's process to the end of its answer to a
    first GET /healthz, RUNS runs per runtime in alternation (bench/run.py's
    `lambda_init_measure`, the first run of each discarded);
  - invocations: one function per runtime, then CALLS authenticated
    `tools/call add` one at a time (a Lambda execution environment serves
    one request at a time), in alternation: median wall time per call
    through the emulator, and the function's CPU per call.
Every answer is checked. Prints the table; writes nothing.

  python3 bench/lambda_runtime.py --lambda-passgate target/bench-lambda/release/passgate \\
      --token-tool target/debug/examples/bench_token --python .tools/venv/bin/python
(the token tool must have the dynamodb feature: the debug one `cargo test
--all-features` builds has)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import probe  # noqa: E402
import run as R  # noqa: E402

RUNTIMES = ("multi-thread", "current-thread")
TABLE = "passgate"


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lambda-passgate", required=True)
    ap.add_argument("--token-tool", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--root", default=os.path.dirname(HERE))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    args.coldstart_runs = args.runs

    work = tempfile.mkdtemp(prefix="passgate-lambda-runtime-")
    init: dict[str, list[float]] = {name: [] for name in RUNTIMES}
    for rnd in range(2):
        for name in RUNTIMES if rnd == 0 else reversed(RUNTIMES):
            R.log(f"== init, {name}")
            init[name] += R.lambda_init_measure(args, work, {"PASSGATE_RUNTIME": name})

    bin_dir = os.path.dirname(args.python)
    logf = open(os.path.join(work, "invocations.log"), "ab")
    procs: list[subprocess.Popen] = []

    def start(cmd, **kw) -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    per_call: dict[str, list[float]] = {name: [] for name in RUNTIMES}
    cpu: dict[str, float] = {}
    try:
        moto_port = R.free_port()
        moto = start([os.path.join(bin_dir, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)])
        R.wait_port(moto_port, moto, "moto_server")
        aws_env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        subprocess.run(
            [args.python, "-c",
             f"import boto3; boto3.client('dynamodb').create_table(TableName='{TABLE}', "
             "BillingMode='PAY_PER_REQUEST', "
             "AttributeDefinitions=[{'AttributeName': n, 'AttributeType': 'S'} for n in ('pk', 'sk')], "
             "KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}, "
             "{'AttributeName': 'sk', 'KeyType': 'RANGE'}])"],
            check=True, env={**os.environ, **aws_env})
        store_env = {**os.environ, **aws_env, "PASSGATE_STORE": "dynamodb",
                     "PASSGATE_DYNAMODB_TABLE": TABLE,
                     "PASSGATE_MASTER_KEY": secrets.token_urlsafe(32)}
        functions = {}
        for name in RUNTIMES:
            port = R.free_port()
            emulator = start([os.path.join(bin_dir, "cargo-lambda"), "lambda", "watch",
                              "--only-lambda-apis", "--invoke-address", "127.0.0.1",
                              "--invoke-port", str(port)], cwd=args.root)
            R.wait_port(port, emulator, "cargo lambda watch")
            public = f"http://localhost:{port}"
            minted = subprocess.run([args.token_tool, "--public-url", public], env=store_env,
                                    capture_output=True, text=True)
            if minted.returncode != 0:
                raise R.BenchFailure(f"bench_token: {minted.stderr[:1500]}")
            token = minted.stdout.strip()
            function = start([args.lambda_passgate], env={
                **store_env, "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt",
                "AWS_LAMBDA_FUNCTION_NAME": "_", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "PASSGATE_PUBLIC_URL": public,
                "PASSGATE_LOG": "warn", "PASSGATE_RUNTIME": name})
            functions[name] = (port, token, function)

        a, b = random.randint(10**6, 10**9), random.randint(10**6, 10**9)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "add", "arguments": {"a": a, "b": b}}})

        def call(name: str) -> float:
            port, token, _ = functions[name]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            t0 = time.perf_counter()
            conn.request("POST", "/mcp", body=body, headers={
                "Host": f"localhost:{port}", "Authorization": f"Bearer {token}",
                "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-11-25"})
            resp = conn.getresponse()
            text = resp.read()
            ms = (time.perf_counter() - t0) * 1e3
            conn.close()
            if resp.status != 200 or str(a + b).encode() not in text:
                raise R.BenchFailure(f"{name}: tools/call answered {resp.status}: {text[:300]!r}")
            return ms

        for name in RUNTIMES:
            for _ in range(20):
                call(name)  # warm-up, checked
        before = {name: cpu_ticks(functions[name][2].pid) for name in RUNTIMES}
        for _ in range(args.calls):
            for name in RUNTIMES:
                per_call[name].append(call(name))
        for name in RUNTIMES:
            ticks = cpu_ticks(functions[name][2].pid) - before[name]
            cpu[name] = ticks / R.CLK_TCK * 1e6 / args.calls
    except (R.BenchFailure, subprocess.CalledProcessError, OSError) as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(procs):
            probe.stop(proc)
        logf.close()
        shutil.rmtree(work, ignore_errors=True)

    mt, ct = "multi-thread", "current-thread"
    print()
    print(f"Init: {len(init[mt])} runs per runtime; invocations: {args.calls} calls each, one at a time, "
          f"in alternation; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    print("| Lambda build | multi-thread | current-thread | current / multi |")
    print("|---|---:|---:|---:|")
    i_mt, i_ct = statistics.median(init[mt]), statistics.median(init[ct])
    print(f"| init to first answer, median | {i_mt:.1f} ms | {i_ct:.1f} ms | {R.ratio(i_ct, i_mt)} |")
    c_mt, c_ct = statistics.median(per_call[mt]), statistics.median(per_call[ct])
    print(f"| `tools/call` through the emulator, median wall time | {c_mt:.2f} ms | {c_ct:.2f} ms | "
          f"{R.ratio(c_ct, c_mt)} |")
    print(f"| function CPU per call | {R.fmt_cpu(cpu[mt])} | {R.fmt_cpu(cpu[ct])} | "
          f"{R.ratio(cpu[ct], cpu[mt])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
