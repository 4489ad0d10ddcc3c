#!/usr/bin/env bash
# Install the official Python MCP SDK (pinned) into a venv at <repo>/.tools/pyvenv (idempotent).
# The e2e tests in tests/e2e/mcp_clients.rs run tests/e2e/mcp/*.py with
# <repo>/.tools/pyvenv/bin/python (or $WORKSHOP_TEST_PYTHON).
set -euo pipefail

VERSION="${PYTHON_MCP_VERSION:-2.3.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/pyvenv"
PY="$VENV/bin/python"

installed_version() {
  [ -x "$PY" ] || return 1
  "$PY" -c 'import importlib.metadata as m, sys; sys.stdout.write(m.version("mcp"))' 2>/dev/null
}

if [ "$(installed_version || true)" = "$VERSION" ]; then
  echo "python mcp $VERSION already installed: $VENV"
  exit 0
fi

command -v python3 >/dev/null || { echo "python3 (3.10 or newer) is required for the mcp SDK" >&2; exit 1; }
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check "mcp==$VERSION"

if [ "$(installed_version || true)" != "$VERSION" ]; then
  echo "pip finished but mcp $VERSION is not importable from $VENV" >&2
  exit 1
fi
echo "installed python mcp $VERSION: $VENV"
