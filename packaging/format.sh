#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# packaging/format.sh check|fix SRC: the C and CUDA sources of the tree at SRC against .clang-format.
#   check: one check per file (clang-format --dry-run --Werror), the diff of the first few that
#          differ, and a "TESTSUM passed failed skipped" line (tests/run.sh sums it).
#   fix:   rewrites them in place.
# The tree is formatted with clang-format 14 (Debian 12's); other major versions format a few
# constructs differently, so check skips, visibly, unless clang-format 14 is found (clang-format-14
# or clang-format).  abi/moecomm_v1.h is frozen byte for byte and left out.
set -u
mode=${1:?usage: packaging/format.sh check|fix SRC}
src=${2:?usage: packaging/format.sh check|fix SRC}
want=14

cf=""
for cand in clang-format-$want clang-format; do
  if command -v "$cand" >/dev/null 2>&1 &&
    "$cand" --version | grep -Eq "version $want\."; then
    cf=$cand
    break
  fi
done
if [ -z "$cf" ]; then
  found=$(clang-format --version 2>/dev/null | head -n 1)
  echo "SKIP format check: needs clang-format $want (found: ${found:-none}; apt-get install clang-format on Debian 12)"
  [ "$mode" = check ] && echo "TESTSUM 0 0 1"
  [ "$mode" = check ]
  exit $?
fi

cd "$src" || exit 1
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -co --exclude-standard -- '*.c' '*.h' '*.cu' '*.cuh')
else
  mapfile -t files < <(find abi plugin kernels host_shim tests bench packaging \
    -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | sort)
fi
passed=0
failed=0
for f in "${files[@]}"; do
  [ "$f" = abi/moecomm_v1.h ] && continue
  [ -f "$f" ] || continue
  if [ "$mode" = fix ]; then
    "$cf" -i "$f"
  elif "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL format: $f differs from .clang-format (make format rewrites it)"
    if [ "$failed" -le 3 ]; then "$cf" "$f" | diff -u "$f" - | head -n 30; fi
  fi
done
[ "$mode" = fix ] && exit 0
echo "format: $((passed + failed)) files checked (abi/moecomm_v1.h is frozen), $failed not formatted"
echo "TESTSUM $passed $failed 0"
[ "$failed" -eq 0 ]
