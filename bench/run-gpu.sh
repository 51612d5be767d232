#!/usr/bin/env bash
# bench/run-gpu.sh BUILD: `make bench` - all-reduce latency on 2 GPUs, moecomm's custom kernels
# (each algorithm forced, and auto) against moecomm's NCCL path and direct NCCL, in one run
# (bench/allreduce.c; method in its header and in bench/NOTES-custom.md).  Prints the tables;
# writes bench/results/allreduce-<date>.json (and, when $OUT is set, a copy of it and the log
# there).  Takes well under 3 minutes.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$build/bench/allreduce"
[ -x "$bin" ] || bin="$root/$build/bench/allreduce"
if [ ! -x "$bin" ]; then
  echo "bench: $build/bench/allreduce is not built (run make)" >&2
  exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo uncommitted)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]; then commit="$commit+dirty"; fi
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
mkdir -p "$root/bench/results"
json="$root/bench/results/allreduce-$stamp.json"

# NVLink SHARP stays off (multicast objects are not used on these machines).
export NCCL_NVLS_ENABLE=0
log=$(mktemp "${TMPDIR:-/tmp}/bench-allreduce.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
"$bin" --json "$json" --commit "$commit" --date "$stamp" --driver "${driver:-unknown}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$log" "$OUT/bench-allreduce.log"
  [ -f "$json" ] && cp "$json" "$OUT/"
fi
exit "$rc"
