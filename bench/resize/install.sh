#!/bin/sh
# Installs sharp (with its own prebuilt libvips, an npm package) from the committed
# package-lock.json into bench/resize/node_modules for bench/resize_bench.cc, unless that exact
# lock file is installed already. Only scripts/bench.sh runs it: the tests never need sharp.
set -eu
cd "$(dirname "$0")"
if [ -f node_modules/.installed-lock ] && cmp -s package-lock.json node_modules/.installed-lock; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run scripts/install-deps.sh" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.installed-lock
