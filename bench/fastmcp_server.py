"""The FastMCP side of bench/run.sh: the server passgate replaces.

Same tool (`add(a: int, b: int) -> int`), Streamable HTTP at /mcp, stateless,
JSON responses, and bearer auth with FastMCP's JWTVerifier checking an ES256
signature, the issuer and the audience, as passgate does.

    python bench/fastmcp_server.py mint  --key-dir DIR --issuer URL --audience URL
        generates an ES256 key pair in DIR (es256-private.pem, es256-public.pem)
        and prints an access token signed with it;
    python bench/fastmcp_server.py serve --key-dir DIR --issuer URL --audience URL --port N
        serves, verifying tokens with DIR/es256-public.pem.
    python bench/fastmcp_server.py proxy --key-dir DIR --issuer URL --audience URL --port N --backend URL
        FastMCP's own proxy (`create_proxy`, FastMCP 4's name for `FastMCP.as_proxy`)
        in front of the MCP server at URL, with the same JWT check: what
        bench/gateway.sh compares passgate-as-gateway with.

Only FastMCP's own dependencies are used (joserfc for the token, cryptography
for the key), so the virtualenv holds nothing but the pinned fastmcp.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid


def mint(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc import jwk, jwt

    os.makedirs(args.key_dir, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    with open(os.path.join(args.key_dir, "es256-private.pem"), "wb") as f:
        f.write(private_pem)
    with open(os.path.join(args.key_dir, "es256-public.pem"), "wb") as f:
        f.write(public_pem)
    now = int(time.time())
    claims = {
        "iss": args.issuer,
        "sub": "bench-user",
        "aud": args.audience,
        "iat": now,
        "exp": now + args.ttl_secs,
        "jti": uuid.uuid4().hex,
        "client_id": "bench-client",
        "scope": "mcp",
    }
    key = jwk.ECKey.import_key(private_pem)
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt"}, claims, key)
    print(token)


def verifier(args: argparse.Namespace):
    """FastMCP's own bearer check, with the key bench_token signs with."""
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    with open(os.path.join(args.key_dir, "es256-public.pem")) as f:
        public_pem = f.read()
    return JWTVerifier(
        public_key=public_pem,
        issuer=args.issuer,
        audience=args.audience,
        algorithm="ES256",
    )


def run_http(mcp, args: argparse.Namespace) -> None:
    """Stateless JSON over HTTP, as passgate serves `/mcp`."""
    mcp.run(
        transport="http",
        host="127.0.0.1",
        port=args.port,
        path="/mcp",
        stateless_http=True,
        json_response=True,
        show_banner=False,
        log_level="warning",
        # No access log: passgate logs nothing per request at its default
        # level either.
        uvicorn_config={"access_log": False},
    )


def serve(args: argparse.Namespace) -> None:
    from fastmcp import FastMCP

    mcp = FastMCP("passgate-bench", auth=verifier(args))

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two integers and return their sum."""
        return a + b

    run_http(mcp, args)


def proxy(args: argparse.Namespace) -> None:
    from fastmcp.server import create_proxy

    run_http(create_proxy(args.backend, name="passgate-bench-proxy", auth=verifier(args)), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("mint", "serve", "proxy"):
        p = sub.add_parser(name)
        p.add_argument("--key-dir", required=True)
        p.add_argument("--issuer", required=True)
        p.add_argument("--audience", required=True)
        if name == "mint":
            p.add_argument("--ttl-secs", type=int, default=24 * 3600)
        else:
            p.add_argument("--port", type=int, required=True)
        if name == "proxy":
            p.add_argument("--backend", required=True)
    args = parser.parse_args()
    {"mint": mint, "serve": serve, "proxy": proxy}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
