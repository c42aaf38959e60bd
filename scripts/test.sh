#!/usr/bin/env bash
# The test command: installs what is missing, starts real PostgreSQL and Redis servers on their
# own ports (scripts/services.sh; stopped again at the end), then builds and runs every test twice
# (the optimised build, and the AddressSanitizer + UndefinedBehaviorSanitizer build), and runs
# each libFuzzer target briefly from its seed corpus. PRESETS="release" runs one of them only.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
export IMGPROC_REQUIRE_SERVICES=1  # the PostgreSQL and Redis tests fail, not skip, without them
for preset in ${PRESETS:-release asan fuzz}; do
  echo "== preset $preset =="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j"$(nproc)"
  ctest --preset "$preset" -j2
done
