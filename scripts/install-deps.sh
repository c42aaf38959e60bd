#!/usr/bin/env bash
# Installs the Debian 12 packages imgproc needs to build, run and test. Safe to run again.
#   scripts/install-deps.sh           the packages to build, run and test
#   scripts/install-deps.sh --bench   also those of the speed benchmark (scripts/bench.sh)
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang-format
  libvips-dev libjpeg62-turbo-dev libdeflate-dev zlib1g-dev libjemalloc-dev libcurl4-openssl-dev libcpp-httplib-dev nlohmann-json3-dev libsqlite3-dev
  libboost-dev libcsv-dev libspdlog-dev libfmt-dev libcli11-dev libssl-dev
  libpq-dev libhiredis-dev postgresql-15 redis-server
  libgtest-dev libgmock-dev clang libclang-rt-14-dev
  curl python3 sqlite3
  chromium
)
# The node tests (tests/web) need node >= 20 (playwright-core) and npm: the machine's Node.js is
# used; Debian's packages (node 18, too old for the browser test) only when there is none.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
# Optional: the speed benchmark's Python baseline (Pillow, requests), its plot (matplotlib), the
# status API load generator (wrk) and the resize benchmark's vipsthumbnail (libvips-tools).
if [ "${1:-}" = "--bench" ]; then
  packages+=(python3-pil python3-requests python3-matplotlib wrk libvips-tools)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -ne 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The tests' S3 server (s3rver, started by scripts/services.sh), from npm at its locked version.
"$(dirname "$0")/s3-server/install.sh"
