# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# bench/common.sh - sourced by bench/run-*.sh: what every benchmark run records (commit, driver,
# date) and where its output goes: the directory BENCH_OUT names (default BUILD/bench-results/,
# outside the source tree; BENCH_OUT=bench/results keeps a run in the repository), and a copy in
# $OUT when set (the GPU machine's output folder).  Defines functions only.

bench_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench_root=$(cd "$bench_here/.." && pwd)

# Succeeds when the checkout has uncommitted changes (never outside git).
bench_dirty() {
  [ -n "$(git -C "$bench_root" status --porcelain 2>/dev/null | head -n 1)" ]
}

# The short commit, "+dirty" appended when the tree has changes; "uncommitted" outside git.
# BENCH_COMMIT overrides it where the tree is a copy without .git (the GPU machine).
bench_commit_short() {
  local commit
  if [ -n "${BENCH_COMMIT:-}" ]; then
    echo "$BENCH_COMMIT"
    return
  fi
  commit=$(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo uncommitted)
  if bench_dirty; then commit="$commit+dirty"; fi
  echo "$commit"
}

# bench_out_dir BUILD: creates and prints (absolute) the directory results go to: $BENCH_OUT
# (relative to the current directory), else BUILD/bench-results.
bench_out_dir() {
  local build=$1 dir
  dir=${BENCH_OUT:-}
  if [ -z "$dir" ]; then
    dir="$build/bench-results"
    [ -d "$build" ] || dir="$bench_root/$build/bench-results"
  fi
  mkdir -p "$dir"
  (cd "$dir" && pwd)
}

# bench_gpu_run LABEL NAME BUILD: runs BUILD/bench/NAME with NVLink SHARP off and the run's facts
# (--json <bench_out_dir>/NAME-<date>.json --commit --date --driver), its output on the terminal;
# when $OUT is set, copies the log there as bench-NAME.log, and the JSON.  Exits with the
# benchmark's status.  LABEL starts its error lines.
bench_gpu_run() {
  local label=$1 name=$2 build=$3
  local bin="$build/bench/$name" stamp commit driver json rc
  [ -x "$bin" ] || bin="$bench_root/$build/bench/$name"
  if [ ! -x "$bin" ]; then
    echo "$label: $build/bench/$name is not built (run make)" >&2
    exit 1
  fi
  stamp=$(date -u +%Y%m%dT%H%M%SZ)
  commit=$(bench_commit_short)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 ||
    true)
  json="$(bench_out_dir "$build")/$name-$stamp.json"

  # NVLink SHARP stays off (multicast objects are not used on these machines).
  export NCCL_NVLS_ENABLE=0
  bench_log=$(mktemp "${TMPDIR:-/tmp}/bench-$name.XXXXXX") # global: the EXIT trap reads it
  trap 'rm -f "$bench_log"' EXIT
  set +e
  "$bin" --json "$json" --commit "$commit" --date "$stamp" --driver "${driver:-unknown}" 2>&1 |
    tee "$bench_log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ -f "$json" ]; then echo "$label: saved $json"; fi
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$bench_log" "$OUT/bench-$name.log"
    if [ -f "$json" ]; then cp "$json" "$OUT/"; fi
  fi
  exit "$rc"
}
