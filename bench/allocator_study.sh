#!/usr/bin/env bash
# The allocator study of issue 6: the codec benchmark (bench/codec_bench.cc) under glibc's
# default malloc, glibc with its mmap threshold fixed at 1 MiB (what imgproc sets at start),
# jemalloc and mimalloc (Debian's libjemalloc2 and libmimalloc2.0, preloaded). Prints the JPEG
# 4:2:0 and PNG rows (CPU ms per image, fast and pixel paths) and the peak RSS of each run.
#
#   bench/allocator_study.sh [seconds per row, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-2}
bench=build/release/bench/imgproc_codec_bench
cmake --build --preset release --target imgproc_codec_bench >/dev/null
lib=/usr/lib/x86_64-linux-gnu
for allocator in glibc-default glibc-mmap-1MiB jemalloc mimalloc; do
  # Any GLIBC_TUNABLES makes the bench keep glibc's defaults instead of imgproc's setting.
  case $allocator in
    glibc-default) env=(GLIBC_TUNABLES=glibc.malloc.perturb=0) ;;
    glibc-mmap-1MiB) env=() ;;
    jemalloc) env=(GLIBC_TUNABLES=glibc.malloc.perturb=0 LD_PRELOAD=$lib/libjemalloc.so.2) ;;
    mimalloc) env=(GLIBC_TUNABLES=glibc.malloc.perturb=0 "LD_PRELOAD=$(ls $lib/libmimalloc.so.2* | head -1)") ;;
  esac
  echo "--- $allocator"
  env "${env[@]}" /usr/bin/time -f "peak RSS %M KiB" "$bench" --seconds "$seconds" 2>&1 |
    grep -E "size|jpeg 4:2:0|png|peak RSS"
done
