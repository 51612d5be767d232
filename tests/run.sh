#!/usr/bin/env bash
# tests/run.sh [--gpu] BUILD: runs the test binaries of a build one after the other and sums their
# "TESTSUM passed failed skipped" lines.
#   default: every binary in BUILD/tests/<dir>/ (GPU tests skip without a device)
#   --gpu:   only BUILD/tests/gpu/; a machine without a CUDA device is a failure
# A binary that crashes, times out or prints no TESTSUM line counts as one failed check.
# MC_TEST_TIMEOUT (seconds, default 600) bounds each binary; MC_TEST_FILTER (a regex on the
# binary's name) runs a subset.  The last line is exactly "N passed, N failed, N skipped";
# the exit status is 1 when anything failed.
set -u

gpu_only=0
if [ "${1:-}" = "--gpu" ]; then
  gpu_only=1
  shift
fi
build=${1:?usage: tests/run.sh [--gpu] BUILD}
timeout_s=${MC_TEST_TIMEOUT:-600}
filter=${MC_TEST_FILTER:-}

if [ "$gpu_only" = 1 ]; then
  dirs=("$build/tests/gpu")
  export MC_TEST_REQUIRE_GPU=1
else
  dirs=()
  for d in contract core conformance system fuzz gpu; do dirs+=("$build/tests/$d"); done
fi

passed=0
failed=0
skipped=0
bins=()
if [ ! -d "$build/tests/gpu" ]; then
  echo "SKIP GPU tests: $build was built without CUDA (no $build/tests/gpu)"
  skipped=$((skipped + 1))
fi
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    [ -z "$filter" ] || [[ "$(basename "$f")" =~ $filter ]] || continue
    bins+=("$f")
  done
done

bad=()
summary=()
log=$(mktemp "${TMPDIR:-/tmp}/moecomm-test.XXXXXX")
trap 'rm -f "$log"' EXIT

if [ "$gpu_only" = 1 ]; then
  if [ ${#bins[@]} -eq 0 ]; then
    echo "FAIL: --gpu but no test binary in $build/tests/gpu"
    failed=$((failed + 1))
    bad+=("(no GPU test binaries)")
  fi
  # The binaries also fail on their own (MC_TEST_REQUIRE_GPU); this names the cause once.
  if ! ls /dev/nvidia[0-9]* >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
    echo "FAIL: --gpu but this machine shows no CUDA device (no /dev/nvidiaN, nvidia-smi -L fails)"
    failed=$((failed + 1))
    bad+=("(no CUDA device)")
  fi
fi

for bin in "${bins[@]}"; do
  name=${bin#"$build"/tests/}
  echo "=== $name"
  start=$(date +%s.%N)
  # -k 5: a binary that ignores SIGTERM is killed 5 s later.
  timeout -k 5 "$timeout_s" "$bin" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  sum=$(grep -a '^TESTSUM [0-9]* [0-9]* [0-9]*$' "$log" | tail -n 1)
  why=""
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    why="timed out after ${timeout_s} s"
  elif [ "$rc" -gt 128 ]; then
    why="killed by signal $((rc - 128))"
  elif [ -z "$sum" ]; then
    why="exited with status $rc without a TESTSUM line"
  fi
  p=0 f=0 s=0
  if [ -n "$sum" ]; then
    read -r _ p f s <<<"$sum"
  fi
  if [ -z "$why" ] && [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    why="exited with status $rc although no check failed"
  fi
  if [ -n "$why" ]; then
    f=$((f + 1))
    echo "FAIL $name: $why"
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  [ "$f" = 0 ] || bad+=("$name")
  line=$(printf '%-28s %6d passed %4d failed %4d skipped %8s s' "$name" "$p" "$f" "$s" "$secs")
  summary+=("$line")
  echo "--- $line"
done

echo
echo "=== summary ($build)"
for line in "${summary[@]+"${summary[@]}"}"; do
  echo "$line"
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "failed: ${bad[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
