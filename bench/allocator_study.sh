#!/usr/bin/env bash
# The allocator study of issue 6: the codec benchmark (bench/codec_bench.cc, linked with glibc's
# malloc) under glibc's default, glibc with its mmap threshold fixed at 1 MiB, jemalloc (what
# imgproc links) and mimalloc (Debian's libjemalloc2 and libmimalloc2.0, preloaded). Prints the
# JPEG 4:2:0 and PNG rows (CPU ms per image, fast and pixel paths) and each run's peak RSS.
#
#   bench/allocator_study.sh [seconds per row, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-2}
bench=build/release/bench/imgproc_codec_bench
cmake --build --preset release --target imgproc_codec_bench >/dev/null
lib=/usr/lib/x86_64-linux-gnu
for allocator in glibc-default glibc-mmap-1MiB jemalloc mimalloc; do
  case $allocator in
    glibc-default) env=() ;;
    glibc-mmap-1MiB) env=(GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576) ;;
    jemalloc) env=(LD_PRELOAD=$lib/libjemalloc.so.2) ;;
    mimalloc) env=("LD_PRELOAD=$(ls $lib/libmimalloc.so.2* | head -1)") ;;
  esac
  echo "--- $allocator"
  env "${env[@]}" /usr/bin/time -f "peak RSS %M KiB" "$bench" --seconds "$seconds" 2>&1 |
    grep -E "size|jpeg 4:2:0|png|peak RSS"
done
