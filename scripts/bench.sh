#!/usr/bin/env bash
# The speed benchmark of issue 6 in one command (not part of the tests): installs what is
# missing, builds the release targets it needs, runs bench/speed_bench.cc (which starts the real
# imgproc, an image host and a fake ImgBB on 127.0.0.1, and runs bench/baseline.py) and plots
# the results with bench/plot.py. docs/speed.md explains the numbers.
#
#   scripts/bench.sh                       full run (several minutes): speed.json + docs/speed.png
#   scripts/bench.sh --quick               smoke run: build/release/bench/speed-quick.{json,png}
#   scripts/bench.sh --env WORKERS=64 ...  any imgproc_speed_bench option is passed on
#   scripts/bench.sh --resize [--rounds N] resizing against sharp and vipsthumbnail instead
#                                          (bench/resize_bench.cc; installs sharp from npm)
#
# BENCH_JSON and BENCH_PLOT override where the results and the plot go; PYTHON the interpreter
# (Debian's, which has the python3-pil/-requests/-matplotlib packages, by default).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  [ "$arg" = "--quick" ] && quick=1
done
if [ "$quick" = 1 ]; then
  json=${BENCH_JSON:-build/release/bench/speed-quick.json}
  plot=${BENCH_PLOT:-build/release/bench/speed-quick.png}
else
  json=${BENCH_JSON:-build/release/bench/speed.json}
  plot=${BENCH_PLOT:-docs/speed.png}
fi
python=${PYTHON:-/usr/bin/python3}

if [ "${1:-}" = "--resize" ]; then
  shift
  scripts/install-deps.sh --bench
  tests/web/install-deps.sh bench/resize  # sharp, from its lock file
  cmake --preset release >/dev/null
  cmake --build --preset release --parallel "$(nproc)" --target imgproc_resize_bench
  exec build/release/bench/imgproc_resize_bench "$@"
fi

scripts/install-deps.sh --bench
cmake --preset release >/dev/null
cmake --build --preset release --parallel "$(nproc)" --target imgproc imgproc_speed_bench

status=0
build/release/bench/imgproc_speed_bench --binary build/release/imgproc --json "$json" \
  --python "$python" --baseline-script bench/baseline.py "$@" || status=$?
if [ -s "$json" ]; then
  "$python" bench/plot.py "$json" "$plot"
fi
exit "$status"
