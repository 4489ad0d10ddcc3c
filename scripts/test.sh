#!/usr/bin/env bash
# The whole test suite: installs what the tests need (the pinned Claude Code CLI from npm), then
# runs every test of the workspace. Safe to run again; the install step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .ci/install-claude.sh ]; then
  .ci/install-claude.sh
fi
cargo test --workspace --all-targets "$@"
