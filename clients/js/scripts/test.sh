#!/bin/sh
# The clients/js suite, as scripts/test runs it: install from the lockfile,
# build, check the generated API types and the TypeScript, then the Node tests
# against the real `tandem dev` (target/debug/tandem, or $TANDEM_BIN).
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
npm ci --no-audit --no-fund --prefer-offline
npm run build
node packages/client/scripts/gen.mjs --check
npm run typecheck
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout test/
