"""How the SQLite store's size behaves under a sustained unauthenticated
flood of `/authorize` (standard library only; not part of the test suite).

    python3 bench/store_growth.py --bin target/release/passgate \
        --minutes 22 --rate 20 --addresses 1000 --purge-interval 30

Starts passgate on a free loopback port with a throw-away data directory,
`--trust-forwarded-for` and the given purge interval, registers one client,
then sends `--rate` `/authorize` requests per second, each from the next of
`--addresses` forwarded addresses (so the per-address limit is not what
stops them), for `--minutes`. Every 30 s it prints the minute, the requests
sent, how many were stored (303) or refused (429), and the sizes of
`passgate.sqlite3` and its WAL. Pending authorizations live 15 minutes, so
without purging the file grows for as long as the flood lasts; with it, the
size levels off once the first ones expire and their pages are reused.
"""

from __future__ import annotations

import argparse
import hashlib
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sizes(data_dir: str) -> tuple[int, int]:
    def size(name: str) -> int:
        try:
            return os.path.getsize(os.path.join(data_dir, name))
        except FileNotFoundError:
            return 0

    return size("passgate.sqlite3"), size("passgate.sqlite3-wal")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--minutes", type=float, default=22)
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--addresses", type=int, default=1000)
    p.add_argument("--purge-interval", type=int, default=30)
    args = p.parse_args()

    data_dir = tempfile.mkdtemp(prefix="passgate-growth-")
    port = free_port()
    base = f"http://localhost:{port}"
    server = subprocess.Popen(
        [
            args.bin, "serve", "--listen", f"127.0.0.1:{port}", "--public-url", base,
            "--data-dir", data_dir, "--trust-forwarded-for",
            "--purge-interval-secs", str(args.purge_interval),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PASSGATE_LOG": "warn"},
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("passgate did not start")
            time.sleep(0.2)

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        redirect = "http://127.0.0.1:33418/callback"
        conn.request(
            "POST", "/register",
            body=json.dumps({"client_name": "growth", "redirect_uris": [redirect]}),
            headers={"Content-Type": "application/json", "X-Forwarded-For": "192.0.2.1"},
        )
        reply = conn.getresponse()
        client_id = json.loads(reply.read())["client_id"]

        challenge = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
            "code_challenge": challenge, "code_challenge_method": "S256", "state": "s",
        })
        start = time.time()
        end = start + args.minutes * 60
        sent = stored = refused = 0
        next_report = start
        print("minute,requests,stored,refused,db_bytes,wal_bytes", flush=True)
        while time.time() < end:
            n = sent % args.addresses
            addr = f"198.{18 + n // 65536}.{(n // 256) % 256}.{n % 256}"
            conn.request("GET", f"/authorize?{query}", headers={"X-Forwarded-For": addr})
            r = conn.getresponse()
            r.read()
            sent += 1
            stored += r.status == 303
            refused += r.status == 429
            now = time.time()
            if now >= next_report:
                db, wal = sizes(data_dir)
                print(f"{(now - start) / 60:.1f},{sent},{stored},{refused},{db},{wal}", flush=True)
                next_report += 30
            pause = start + sent / args.rate - time.time()
            if pause > 0:
                time.sleep(pause)
        db, wal = sizes(data_dir)
        print(f"{(time.time() - start) / 60:.1f},{sent},{stored},{refused},{db},{wal}", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
