#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy at the top: the checks, and why some are off) over every src/*.cc
# file in parallel, with a configured clang build's compile_commands.json, and fails on any
# finding (WarningsAsErrors). The headers of src/ are checked through the files including them.
#
#   scripts/tidy.sh [BUILD_DIR] [FILE_REGEX]   default build/tsan (configured by
#                                               `cmake --preset tsan`; no build needed) and
#                                               every src/*.cc
#   TIDY_JOBS=N                                 parallel clang-tidy processes (default: cores)
#   CLANG_TIDY=clang-tidy-14                    the binary (default clang-tidy)
#
# The database of a clang build is the one to use: clang-tidy is clang, and GCC's flags (in the
# release/asan databases) are not all known to it. Only configuring matters (it creates the
# include links of build/<preset>/include/); nothing needs to be compiled first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=${1:-build/tsan}
filter=${2:-.}
jobs=${TIDY_JOBS:-$(nproc)}
clang_tidy=${CLANG_TIDY:-clang-tidy}
db=$build/compile_commands.json
if [ ! -f "$db" ]; then
  echo "tidy: no $db; configure first (cmake --preset tsan)" >&2
  exit 2
fi

# The database's src/*.cc files (not tests/, bench/, fuzz/ nor the generated embedded assets).
mapfile -t files < <(python3 - "$db" "$root/src/" "$filter" <<'PY'
import json, re, sys
db, src, pattern = sys.argv[1], sys.argv[2], re.compile(sys.argv[3])
files = {e["file"] for e in json.load(open(db))}
for f in sorted(files):
    if f.startswith(src) and f.endswith(".cc") and pattern.search(f):
        print(f)
PY
)
if [ ${#files[@]} -eq 0 ]; then
  echo "tidy: no src/*.cc file in $db matches '$filter'" >&2
  exit 2
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/imgproc-tidy.XXXXXX")
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
# Each file's findings go to a file of their own, printed whole once all are done (no
# interleaving); a file whose clang-tidy fails (a finding, or a compile error) leaves a .failed.
printf '%s\0' "${files[@]}" | xargs -0 -P "$jobs" -n 1 sh -c '
  log="$3/$(printf %s "$4" | tr / _).log"
  "$1" -p "$2" --quiet "$4" >"$log" 2>&1 || touch "$log.failed"
' tidy "$clang_tidy" "$build" "$out" || true
# clang-tidy prints "N warnings generated." and the like on stderr even with --quiet.
failed=0
for f in "${files[@]}"; do
  log="$out/$(printf %s "$f" | tr / _).log"
  if [ -f "$log.failed" ] || [ ! -f "$log" ]; then
    failed=$((failed + 1))
    echo "== ${f#"$root"/}"
    grep -v -E '^[0-9]+ (warning|error)s? (and [0-9]+ (warning|error)s? )?generated\.$' "$log" || true
  fi
done
elapsed=$(( $(date +%s) - start ))
if [ "$failed" -eq 0 ]; then
  echo "tidy: ${#files[@]} files clean (${elapsed}s)"
  exit 0
fi
# One line per finding, by check, for the summary.
cat "$out"/*.log | sed -n 's/^\(\/[^:]*:[0-9]*:[0-9]*\): \(warning\|error\): .*\[\([^],]*\)[],].*/\1 \3/p' |
  sed "s#$root/##; s#build/[^/]*/include/[a-z_]*/#src/#" | sort -u >"$out/findings"
echo "tidy: $(wc -l <"$out/findings") findings in $failed of ${#files[@]} files (${elapsed}s), by check:" >&2
awk '{print $2}' "$out/findings" | sort | uniq -c | sort -rn >&2
exit 1
