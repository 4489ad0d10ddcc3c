#!/usr/bin/env bash
# The whole test suite: installs what the tests need (the pinned Claude Code CLI from npm, the
# pinned Python MCP SDK from PyPI into a venv), then runs every test of the workspace. Safe to
# run again; the install steps are idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .ci/install-claude.sh ]; then
  .ci/install-claude.sh
fi
if [ -x .ci/install-python-mcp.sh ]; then
  .ci/install-python-mcp.sh
fi
# Property tests draw from a fixed seed so a run is repeatable; set PROPTEST_RNG_SEED to
# explore others (a failure prints its minimal input).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-1}"
cargo test --workspace --all-targets "$@"
