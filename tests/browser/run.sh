#!/usr/bin/env bash
# The Chromium suite, as scripts/test runs it: installs Debian's chromium if
# missing, installs the npm packages (clients/js, clients/demo, tests/browser)
# from their lockfiles, rebuilds the demo and fails if clients/demo/dist
# differs from the checked-in files, builds `tandem`, then runs the browser
# tests (node's test runner) and prints their summary. Screenshots go to
# target/browser-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib/services.sh

if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi
ensure_node_installed

npm_ci() { (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); }
echo "== npm ci (clients/js, clients/demo, tests/browser)"
npm_ci clients/js
npm_ci clients/demo
npm_ci tests/browser
echo "== clients/js: build (the demo bundles @tandem/client and @tandem/react from it)"
(cd clients/js && npm run --silent build >/dev/null)

echo "== clients/demo: typecheck, rebuild, compare with the checked-in dist/"
(cd clients/demo && npm run --silent typecheck && npm run --silent build)
if ! git diff --exit-code --stat -- clients/demo/dist \
  || [ -n "$(git status --porcelain --untracked-files=all -- clients/demo/dist)" ]; then
  echo "clients/demo/dist is stale: run 'npm run build' in clients/demo and commit dist/" >&2
  git status --short -- clients/demo/dist >&2
  exit 1
fi

if [ -z "${TANDEM_BIN:-}" ]; then
  echo "== cargo build --bin tandem"
  cargo build --quiet --bin tandem
  TANDEM_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/tandem"
  export TANDEM_BIN
fi

echo "== Chromium tests (tests/browser)"
mkdir -p target/browser-artifacts
cd tests/browser
node --test --test-concurrency=1 --test-timeout=120000 \
  --test-reporter=spec --test-reporter-destination=stdout ./*.test.mjs
