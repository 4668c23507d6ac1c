#!/bin/sh
# The clients/js suite, as scripts/test runs it: install from the lockfile,
# build, typecheck, then the Node tests (including the check that the generated
# API types are current) against the real `tandem dev` (target/debug/tandem, or
# $TANDEM_BIN). Node's reporter prints TAP when piped (`# pass N`, `# fail N`).
set -eu
cd "$(dirname "$0")/.."
repo=$(cd ../.. && pwd)
if [ -z "${TANDEM_BIN:-}" ]; then
  TANDEM_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/tandem"
  export TANDEM_BIN
fi
if [ ! -x "$TANDEM_BIN" ]; then
  echo "clients/js: no tandem binary at $TANDEM_BIN (cargo build --bin tandem)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --prefer-offline --loglevel=error
npm run build
# The build has type-checked both packages; this checks the typed API from the outside.
npx tsc -p test
node --test --test-concurrency=1 --test-timeout=180000 test/*.test.mjs
