#!/bin/sh
# Installs the node packages of the folder $1 from its committed package-lock.json into
# $1/node_modules, unless that exact lock file is installed already: the web tests' (a copy of
# tests/web in the build tree) and the resize bench's sharp (bench/resize, by scripts/bench.sh).
set -eu
cd "$1"
if [ -f node_modules/.installed-lock ] && cmp -s package-lock.json node_modules/.installed-lock; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run scripts/install-deps.sh" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.installed-lock
