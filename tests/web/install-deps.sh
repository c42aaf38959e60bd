#!/bin/sh
# Installs the node test dependencies from the committed package-lock.json into the folder $1
# (a copy of tests/web in the build tree), unless that exact lock file is installed already.
set -eu
cd "$1"
if [ -f node_modules/.installed-lock ] && cmp -s package-lock.json node_modules/.installed-lock; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run scripts/install-deps.sh" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.installed-lock
