#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tests/run.sh [--gpu] BUILD: runs the test binaries of a build in parallel and sums their
# "TESTSUM passed failed skipped" lines.
#   default: every binary in BUILD/tests/<dir>/ (contract core conformance system fuzz gpu; GPU
#            suites skip visibly without a device)
#   --gpu:   BUILD/tests/gpu/ and BUILD/tests/conformance/ (every backend); a machine without a
#            CUDA device is a failure
# Each binary's output goes to BUILD/test-logs/<dir>/<name>.log; one line is printed per binary as
# it finishes ("name  p passed  f failed  s skipped  T s"), followed by its whole log when it
# failed.  A binary that crashes, times out, prints no TESTSUM line, or exits non-zero although no
# check failed counts as one failed check.
#   MC_TEST_JOBS     binaries at a time (default: nproc; --gpu: 1)
#   MC_TEST_TIMEOUT  seconds per binary (default 600)
#   MC_TEST_FILTER   a regex on the binary's name ("topology") or path ("core/topology")
#   MC_TEST_EXCLUDE  a regex of binaries left out, each with a SKIP line (e.g. make test-asan)
# Serial suites (SERIAL below, and every GPU suite) run alone, after the parallel ones: they time
# things or start many processes.  The start order is the previous run's durations, longest first
# (BUILD/test-logs/.times), so that a long suite does not start last.  The last line is exactly
# "N passed, N failed, N skipped"; the exit status is 1 when anything failed.
set -u

# Timing-sensitive or process-heavy suites, run with nothing else beside them.
SERIAL=(system/bootstrap system/rendezvous_attack system/shim_launch core/store_attack
        core/shm_p2p core/moe_shm contract/handles)

gpu_only=0
if [ "${1:-}" = "--gpu" ]; then
  gpu_only=1
  shift
fi
build=${1:?usage: tests/run.sh [--gpu] BUILD}
timeout_s=${MC_TEST_TIMEOUT:-600}
filter=${MC_TEST_FILTER:-}
exclude=${MC_TEST_EXCLUDE:-}
if [ "$gpu_only" = 1 ]; then
  jobs=${MC_TEST_JOBS:-1}
  subdirs=(gpu conformance)
  export MC_TEST_REQUIRE_GPU=1
else
  jobs=${MC_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
  subdirs=(contract core conformance system fuzz gpu)
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  echo "tests/run.sh: MC_TEST_JOBS='$jobs' is not a positive integer"
  exit 2
fi

logs="$build/test-logs"
times_file="$logs/.times"
declare -A prev_secs=()
if [ -f "$times_file" ]; then
  while read -r n s; do prev_secs[$n]=$s; done <"$times_file"
fi
rm -rf "$logs"
mkdir -p "$logs" || exit 2

passed=0 failed=0 skipped=0
bad=()
declare -A secs_of=()

if [ "$gpu_only" = 0 ] && [ ! -d "$build/tests/gpu" ]; then
  echo "SKIP GPU tests: $build was built without CUDA (no $build/tests/gpu)"
  skipped=$((skipped + 1))
fi
if [ "$gpu_only" = 1 ]; then
  # The binaries also fail on their own (MC_TEST_REQUIRE_GPU); this names the cause once.
  if ! ls /dev/nvidia[0-9]* >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
    echo "FAIL: --gpu but this machine shows no CUDA device (no /dev/nvidiaN, nvidia-smi -L fails)"
    failed=$((failed + 1))
    bad+=("(no CUDA device)")
  fi
fi

# ---- the binaries: parallel ones by the previous run's duration, longest first; serial ones -----
is_serial() {
  local n=$1 s
  [[ "$n" == gpu/* ]] && return 0
  for s in "${SERIAL[@]}"; do [ "$s" = "$n" ] && return 0; done
  return 1
}
par=() ser=()
while read -r secs name; do
  if [ "$secs" = excluded ]; then
    echo "SKIP $name: excluded by MC_TEST_EXCLUDE='$exclude'"
    skipped=$((skipped + 1))
  elif is_serial "$name"; then
    ser+=("$name")
  else
    par+=("$name")
  fi
done < <(
  for d in "${subdirs[@]}"; do
    [ -d "$build/tests/$d" ] || continue
    for f in "$build/tests/$d"/*; do
      [ -f "$f" ] && [ -x "$f" ] || continue
      name="$d/$(basename "$f")"
      if [ -n "$filter" ] && ! [[ "$(basename "$f")" =~ $filter || "$name" =~ $filter ]]; then
        continue
      fi
      if [ -n "$exclude" ] && [[ "$(basename "$f")" =~ $exclude || "$name" =~ $exclude ]]; then
        echo "excluded $name"
        continue
      fi
      # unknown durations first: a new suite may be long
      echo "${prev_secs[$name]:-999999} $name"
    done
  done | sort -k1,1gr -k2,2)
total=$((${#par[@]} + ${#ser[@]}))
if [ "$gpu_only" = 1 ] && [ "$total" = 0 ]; then
  echo "FAIL: --gpu but no test binary in $build/tests/gpu or $build/tests/conformance"
  failed=$((failed + 1))
  bad+=("(no GPU test binaries)")
fi
echo "=== $total test binaries from $build: ${#par[@]} in parallel ($jobs at a time," \
     "MC_TEST_JOBS), then ${#ser[@]} alone; logs in $logs/"

# ---- running and reporting ------------------------------------------------------------------
start_bin() { # name: runs it in the background; its exit status and seconds go to <log>.rc
  local name=$1 log="$logs/$1.log"
  mkdir -p "$(dirname "$log")"
  (
    t0=$(date +%s.%N)
    # -k 5: a binary that ignores SIGTERM is killed 5 s later.
    timeout -k 5 "$timeout_s" "$build/tests/$name" </dev/null >"$log" 2>&1 &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null' TERM # the runner was stopped: stop the binary too
    wait $pid
    rc=$?
    t1=$(date +%s.%N)
    echo "$rc $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >"$log.rc.tmp"
    mv "$log.rc.tmp" "$log.rc"
  ) 2>/dev/null & # (bash's own "Segmentation fault" line: report() says it)
}

report() { # name: its line, and its log when it failed
  local name=$1 log="$logs/$1.log" rc secs sum why="" p=0 f=0 s=0
  read -r rc secs <"$log.rc"
  rm -f "$log.rc"
  sum=$(grep -a '^TESTSUM [0-9]* [0-9]* [0-9]*$' "$log" | tail -n 1)
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    why="timed out after ${timeout_s} s"
  elif [ "$rc" -gt 128 ]; then
    why="killed by signal $((rc - 128))"
  elif [ -z "$sum" ]; then
    why="exited with status $rc without a TESTSUM line"
  fi
  [ -z "$sum" ] || read -r _ p f s <<<"$sum"
  if [ -z "$why" ] && [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    why="exited with status $rc although no check failed"
  fi
  [ -z "$why" ] || f=$((f + 1))
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  secs_of[$name]=$secs
  printf '%-28s %7d passed %4d failed %4d skipped %7s s\n' "$name" "$p" "$f" "$s" "$secs"
  if [ "$f" != 0 ]; then
    bad+=("$name")
    echo "--- $name failed${why:+: $why}; its output ($log):"
    sed 's/^/  | /' "$log"
    echo "--- end of $name"
  fi
}

declare -A pending=()
reap() { # reports every started binary that has finished
  local n
  for n in "${!pending[@]}"; do
    if [ -f "$logs/$n.log.rc" ]; then
      unset "pending[$n]"
      report "$n"
    fi
  done
}
wait_one() { # until one more started binary has finished
  local before=${#pending[@]}
  while [ "${#pending[@]}" = "$before" ] && [ "$before" != 0 ]; do
    wait -n 2>/dev/null
    if [ $? = 127 ]; then # no child is left: whatever has no .rc now never will
      for n in "${!pending[@]}"; do
        [ -f "$logs/$n.log.rc" ] || echo "139 0.0" >"$logs/$n.log.rc"
      done
    fi
    reap
  done
}

stop() {
  echo "tests/run.sh: stopped; stopping the running binaries"
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null; done
  wait
  exit 130
}
trap stop INT TERM

t_start=$(date +%s.%N)
for name in "${par[@]}"; do
  while [ "${#pending[@]}" -ge "$jobs" ]; do wait_one; done
  pending[$name]=1
  start_bin "$name"
done
while [ "${#pending[@]}" -gt 0 ]; do wait_one; done
for name in "${ser[@]}"; do
  pending[$name]=1
  start_bin "$name"
  while [ "${#pending[@]}" -gt 0 ]; do wait_one; done
done
wall=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')

for n in "${!secs_of[@]}"; do prev_secs[$n]=${secs_of[$n]}; done # a subset keeps the others' times
for n in "${!prev_secs[@]}"; do echo "$n ${prev_secs[$n]}"; done >"$times_file"
echo
echo "=== summary ($build): $total binaries in $wall s, $jobs at a time; logs in $logs/"
echo "slowest: $(for n in "${!secs_of[@]}"; do echo "$n ${secs_of[$n]}"; done | sort -k2,2gr |
  head -n 5 | awk '{ printf "%s%s %s s", sep, $1, $2; sep = ", " }')"
if [ ${#bad[@]} -gt 0 ]; then
  echo "failed: ${bad[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
