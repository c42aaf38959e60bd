#!/usr/bin/env bash
# The test command (what .ci/run runs): installs what is missing, starts real PostgreSQL and Redis
# servers on their own ports (scripts/services.sh; stopped again at the end), then runs every
# check, each of which fails the run:
#
#   format   scripts/check-format.sh: any clang-format difference in src/ tests/ bench/ fuzz/
#   tidy     scripts/tidy.sh: clang-tidy (.clang-tidy) over src/, with the tsan preset's compile
#            database. It runs in the background from the start at the idle CPU priority, so it
#            only takes the cores that the builds and the tests leave idle (the tests mostly
#            wait on sockets, processes and timers); its report is printed at the end.
#   release  the optimised build (GCC) and every test
#   asan     the AddressSanitizer + UndefinedBehaviorSanitizer build (GCC) and every test
#   tsan     the ThreadSanitizer build (clang), which also compiles everything with clang's
#            thread-safety analysis (-Wthread-safety -Werror), and the tests of the tsan test
#            preset (CMakePresets.json says which and why); a data race or lock-order inversion
#            anywhere, in a test or in an imgproc process a test started, fails it
#   fuzz     each libFuzzer target for a few seconds from its seed corpus (clang, ASan+UBSan)
#
#   PRESETS="release tsan" scripts/test.sh    some of the presets only
#   CHECKS="format" scripts/test.sh           some of the two checks only (CHECKS= none)
#
# A failed step does not stop the others: the run ends with the time each step took and the list
# of those that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

presets=${PRESETS:-release asan tsan fuzz}
checks=${CHECKS-format tidy}
has() { [[ " $1 " == *" $2 "* ]]; }

scripts/install-deps.sh
eval "$(scripts/services.sh start)"
tidy_pid=""
cleanup() {
  if [ -n "$tidy_pid" ]; then kill "$tidy_pid" 2>/dev/null || true; fi
  scripts/services.sh stop
}
trap cleanup EXIT
export IMGPROC_REQUIRE_SERVICES=1  # the PostgreSQL and Redis tests fail, not skip, without them

failed=()
times=()
run_start=$(date +%s)
# step NAME COMMAND...: runs it, records its time, and its name when it fails.
step() {
  local name=$1 start status=0
  shift
  start=$(date +%s)
  "$@" || status=$?
  times+=("$(printf '%-20s %4ds' "$name" $(( $(date +%s) - start )))")
  if [ "$status" -ne 0 ]; then
    failed+=("$name")
    echo "== $name FAILED (exit $status)"
  fi
  return 0
}

if has "$checks" format; then
  echo "== format"
  step format scripts/check-format.sh
fi

# clang-tidy needs the tsan preset configured (its compile database and include links), not
# built. At the idle priority (SCHED_IDLE) it never delays a build or a test.
tidy_log=build/tidy.log
if has "$checks" tidy; then
  echo "== tidy (in the background; report at the end)"
  step "tidy: tsan configure" cmake --preset tsan
  mkdir -p build
  if command -v chrt >/dev/null; then idle=(chrt --idle 0); else idle=(nice -n 19); fi
  tidy_start=$(date +%s)
  "${idle[@]}" scripts/tidy.sh build/tsan >"$tidy_log" 2>&1 &
  tidy_pid=$!
fi

tsan_reports=build/tsan/tsan-reports  # TSAN_OPTIONS log_path of the tsan test preset
for preset in $presets; do
  echo "== preset $preset"
  step "$preset configure" cmake --preset "$preset"
  step "$preset build" cmake --build --preset "$preset" -j"$(nproc)"
  if [ "$preset" = tsan ]; then
    rm -rf "$tsan_reports"
    mkdir -p "$tsan_reports"
  fi
  step "$preset test" ctest --preset "$preset" -j2
  if [ "$preset" = tsan ] && compgen -G "$tsan_reports/*" >/dev/null; then
    # A race in an imgproc process that a test started is not that test's failure: it is here.
    echo "== ThreadSanitizer reports (tests/tsan.supp suppresses those of other libraries):"
    cat "$tsan_reports"/*
    failed+=("tsan reports")
  fi
done

if [ -n "$tidy_pid" ]; then
  status=0
  wait "$tidy_pid" || status=$?
  tidy_pid=""
  times+=("$(printf '%-20s %4ds (background, finished %ds after the start)' tidy \
    "$(sed -n 's/.*(\([0-9]*\)s).*/\1/p' "$tidy_log" | tail -1)" $(( $(date +%s) - tidy_start )))")
  echo "== tidy"
  cat "$tidy_log"
  [ "$status" -eq 0 ] || failed+=(tidy)
fi

echo "== times"
printf '  %s\n' "${times[@]}"
echo "  total                $(( $(date +%s) - run_start ))s"
if [ ${#failed[@]} -ne 0 ]; then
  echo "== FAILED: ${failed[*]}"
  exit 1
fi
echo "== all passed"
