#!/bin/sh
# Installs s3rver from the committed package-lock.json into scripts/s3-server/node_modules, unless
# that exact lock file is installed already (scripts/install-deps.sh runs it).
set -eu
cd "$(dirname "$0")"
if [ -f node_modules/.installed-lock ] && cmp -s package-lock.json node_modules/.installed-lock; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is missing: run scripts/install-deps.sh" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.installed-lock
