#!/usr/bin/env bash
# Fails when a C++ file of src/, tests/, bench/ or fuzz/ differs from what clang-format (with the
# repository's .clang-format) would make of it, and prints the differences. Covers committed files
# and new ones not yet added (git's ignore rules apply). It never rewrites a file:
#
#   scripts/check-format.sh            check (what scripts/test.sh runs)
#   clang-format -i FILE...            fix the files it names
#
# CLANG_FORMAT chooses the binary (default clang-format, Debian 12's 14: another major version
# formats some constructs differently).
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format=${CLANG_FORMAT:-clang-format}
mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- \
  'src/*.cc' 'src/*.h' 'tests/*.cc' 'tests/*.h' 'bench/*.cc' 'bench/*.h' 'fuzz/*.cc' 'fuzz/*.h' |
  sort -zu)
existing=()
for f in "${files[@]}"; do
  [ -f "$f" ] && existing+=("$f")  # not those deleted in the work tree but still in the index
done
files=("${existing[@]}")
# One clang-format for all the files; each difference is a "FILE:LINE:COL: error: ..." line.
status=0
report=$("$clang_format" --dry-run -Werror "${files[@]}" 2>&1) || status=$?
mapfile -t bad < <(sed -n 's/^\(.*\):[0-9]*:[0-9]*: error: .*/\1/p' <<<"$report" | sort -u)
if [ "$status" -ne 0 ] && [ ${#bad[@]} -eq 0 ]; then
  echo "$report" >&2
  echo "check-format: $clang_format failed" >&2
  exit 1
fi
if [ ${#bad[@]} -eq 0 ]; then
  echo "check-format: ${#files[@]} files formatted"
  exit 0
fi
for f in "${bad[@]}"; do
  "$clang_format" "$f" | diff -u --label "$f" --label "$f (clang-format)" "$f" - || true
done
echo "check-format: ${#bad[@]} of ${#files[@]} files differ from clang-format:" >&2
printf '  %s\n' "${bad[@]}" >&2
echo "check-format: run 'clang-format -i' on them" >&2
exit 1
