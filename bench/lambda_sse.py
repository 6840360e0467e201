#!/usr/bin/env python3
"""First SSE event through the Lambda build against the server build: the
same backend (`bench_backend`'s `/sse`, whose first event carries the time
it was sent), behind `passgate serve --backend` and behind the Lambda build
(`--features lambda,dynamodb`, its Function URL in RESPONSE_STREAM mode)
under `cargo lambda watch`'s emulation with its table on moto, sampled in
alternation. Writes its section of docs/benchmarks.md.

Run by bench/gateway.sh; nothing here is part of the test suite, and
nothing asserts timings.
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import probe  # noqa: E402
import run  # noqa: E402
from gateway import first_event_ms  # noqa: E402  (bench/gateway.py)

BEGIN = "<!-- bench/lambda_sse.py writes from here... -->"
END = "<!-- ...to here (Lambda SSE). -->"
TABLE = "passgate"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--passgate", required=True, help="the server build")
    p.add_argument("--lambda-passgate", required=True, help="the Lambda build")
    p.add_argument("--token-tool", required=True, help="bench_token with the dynamodb feature")
    p.add_argument("--backend", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    info = run.machine_info(args.root)
    work = tempfile.mkdtemp(prefix="passgate-lambda-sse-")
    bin_dir = os.path.dirname(args.python)
    logf = open(os.path.join(work, "log"), "ab")
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=logf, stderr=logf,
                                stdin=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    backend_port, server_port, moto_port, lambda_port = (run.free_port() for _ in range(4))
    backend_url = f"http://127.0.0.1:{backend_port}/sse"
    master_key = secrets.token_urlsafe(32)
    aws_env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}", "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    lambda_public = f"http://localhost:{lambda_port}"
    server_public = f"http://127.0.0.1:{server_port}"
    try:
        backend = start([args.backend, f"127.0.0.1:{backend_port}"])
        run.wait_port(backend_port, backend, "backend")
        data = os.path.join(work, "data")
        server = start([args.passgate, "serve", "--listen", f"127.0.0.1:{server_port}",
                        "--public-url", server_public, "--data-dir", data,
                        "--backend", backend_url], env={**os.environ, "PASSGATE_LOG": "warn"})
        run.wait_port(server_port, server, "passgate serve", timeout=120)
        server_token = subprocess.run(
            [args.token_tool, "--data-dir", data, "--public-url", server_public],
            check=True, capture_output=True, text=True).stdout.strip()

        moto = start([os.path.join(bin_dir, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)])
        run.wait_port(moto_port, moto, "moto_server")
        subprocess.run(
            [args.python, "-c",
             f"import boto3; boto3.client('dynamodb').create_table(TableName='{TABLE}', "
             "BillingMode='PAY_PER_REQUEST', "
             "AttributeDefinitions=[{'AttributeName': n, 'AttributeType': 'S'} for n in ('pk', 'sk')], "
             "KeySchema=[{'AttributeName': 'pk', 'KeyType': 'HASH'}, "
             "{'AttributeName': 'sk', 'KeyType': 'RANGE'}])"],
            check=True, env={**os.environ, **aws_env})
        store_env = {**os.environ, **aws_env, "PASSGATE_STORE": "dynamodb",
                     "PASSGATE_DYNAMODB_TABLE": TABLE, "PASSGATE_MASTER_KEY": master_key}
        emulator = start([os.path.join(bin_dir, "cargo-lambda"), "lambda", "watch",
                          "--only-lambda-apis", "--invoke-address", "127.0.0.1",
                          "--invoke-port", str(lambda_port)], cwd=args.root)
        run.wait_port(lambda_port, emulator, "cargo lambda watch")
        # Minted first: the tool creates the signing key the function loads.
        lambda_token = subprocess.run(
            [args.token_tool, "--public-url", lambda_public], env=store_env,
            check=True, capture_output=True, text=True).stdout.strip()
        start([args.lambda_passgate], env={
            **store_env, "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{lambda_port}/.rt",
            "AWS_LAMBDA_FUNCTION_NAME": "_", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "PASSGATE_PUBLIC_URL": lambda_public,
            "PASSGATE_BACKEND": backend_url, "PASSGATE_LOG": "warn"})

        targets = {
            "server": (server_port, f"127.0.0.1:{server_port}", server_token),
            "lambda": (lambda_port, f"localhost:{lambda_port}", lambda_token),
        }
        for port, host, token in targets.values():
            first_event_ms(port, "/mcp", token, host)  # warm-up, checked
        samples: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.samples):
            for name, (port, host, token) in targets.items():
                samples[name].append(first_event_ms(port, "/mcp", token, host))
        run.log("first event (ms): " + "  ".join(
            f"{n} median {statistics.median(s):.2f} max {max(s):.2f}" for n, s in samples.items()))
    finally:
        for proc in reversed(procs):
            probe.stop(proc)
        logf.close()

    s, l = samples["server"], samples["lambda"]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        BEGIN,
        "## First SSE event: the Lambda build beside the server build",
        "",
        f"`bench/lambda_sse.py` (run by `bench/gateway.sh`), {stamp}, {info['nproc']} CPUs "
        f"({info['cpu']}), passgate {info['passgate commit']}. The same backend "
        "(`bench_backend`'s `/sse`: its first event, sent 50 ms after the headers, carries the "
        "time it was sent) behind `passgate serve --backend` and behind the Lambda build "
        "(`--features lambda,dynamodb`, streaming responses) under `cargo lambda watch`'s "
        f"Function URL emulation, its table on moto; {args.samples} samples each, in "
        "alternation, from the backend's send to the event's arrival at the client.",
        "",
        "| first event after the backend sends it | median | p90 | max |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("server", "`passgate serve`"), ("lambda", "Lambda build, emulated Function URL")):
        v = sorted(samples[name])
        lines.append(f"| {label} | {statistics.median(v):.2f} ms | {v[int(0.9 * (len(v) - 1))]:.2f} ms "
                     f"| {v[-1]:.2f} ms |")
    lines += [
        "",
        f"The Lambda build adds {statistics.median(l) - statistics.median(s):.2f} ms at the median: "
        "the emulator's own hop (the runtime API hands the function the request and relays its "
        "streamed answer), not buffering, which would show the backend's full second of hold.",
        END,
    ]
    section = "\n".join(lines)
    run.write_section(args.out, BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
