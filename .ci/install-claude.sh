#!/usr/bin/env bash
# Install the pinned Claude Code CLI into <repo>/.tools/claude (idempotent).
# Tests and the bench find it at <repo>/.tools/claude/node_modules/.bin/claude
# (or wherever $CLAUDE_CLI points).
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.328}"
PKG="@anthropic-ai/claude-code"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.tools/claude"
BIN="$DEST/node_modules/.bin/claude"

installed_version() {
  local pj="$DEST/node_modules/$PKG/package.json"
  [ -f "$pj" ] || return 1
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null
}

if [ -x "$BIN" ] && [ "$(installed_version || true)" = "$VERSION" ]; then
  echo "claude $VERSION already installed: $BIN"
  exit 0
fi

command -v npm >/dev/null || { echo "npm is required to install $PKG" >&2; exit 1; }
mkdir -p "$DEST"
[ -f "$DEST/package.json" ] || echo '{"name":"workshop-claude-tool","private":true}' > "$DEST/package.json"
npm install --prefix "$DEST" --no-audit --no-fund --no-save --loglevel=error "$PKG@$VERSION"

if [ ! -x "$BIN" ]; then
  echo "install finished but $BIN is missing" >&2
  exit 1
fi
echo "installed claude $(installed_version): $BIN"
"$BIN" --version || true
