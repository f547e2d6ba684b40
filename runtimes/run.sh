#!/usr/bin/env bash
# The runtimes step of CI (.ci/run calls it after `deno task ci`):
# 1. imports mod.ts by file URL with `deno run --no-config` (no import map);
# 2. runs the smoke suite (runtimes/smoke.ts) on Node 22 and on Bun, against
#    `grammy` installed from npm into a temp folder (see runtimes/pack.ts).
# Each suite ends with one "ok | N passed | N failed (...)" line, which .ci/run
# sums; a suite that dies before its summary counts as one failure. Exits
# non-zero if anything failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/grammyx_runtimes_XXXXXX")"
trap 'rm -rf "$work"' EXIT
export NO_COLOR=1
status=0

# Runs a suite: <label> <command...>; prints its output and a summary line if it had none.
suite() {
  local label="$1" out
  shift
  out="$(mktemp)"
  timeout 120 "$@" 2>&1 | tee "$out"
  local code="${PIPESTATUS[0]}"
  if ! grep -qE '\| [0-9]+ passed \| [0-9]+ failed' "$out"; then
    echo "FAILED | 0 passed | 1 failed (${label}: exited with code ${code} before its summary)"
    code=1
  fi
  rm -f "$out"
  [ "$code" -eq 0 ] || status=1
}

echo "== ${root}/mod.ts by file URL, deno run --no-config"
suite "deno --no-config" env NODE_OPTIONS=--no-warnings deno run --no-config --no-lock \
  --allow-net=127.0.0.1 --allow-env --allow-read "file://${root}/runtimes/url_import.ts"

echo "== Packing @grammyx/runner with grammy from npm into ${work}"
if ! deno run --no-config --no-lock --allow-read --allow-write "${root}/runtimes/pack.ts" "$work" ||
  ! (cd "$work" && npm install --no-audit --no-fund --loglevel=error); then
  echo "FAILED | 0 passed | 2 failed (could not pack the module for Node and Bun)"
  exit 1
fi

echo "== Node 22"
suite "node 22" npx -y node@22 "${work}/smoke/smoke.ts"
echo "== Bun 1.4.4"
suite "bun 1.4.4" npx -y bun@1.4.4 "${work}/smoke/smoke.ts"
exit "$status"
