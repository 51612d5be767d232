#!/usr/bin/env bash
# bench/run-mem.sh BUILD: `make bench-mem` - communicator memory per GPU (bench/mem.c) on 2 GPUs.
# Prints the tables and target checks; writes bench/results/mem-<date>.json (and, when $OUT is
# set, a copy of the JSON and the log there).  Takes about a minute.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$build/bench/mem"
[ -x "$bin" ] || bin="$root/$build/bench/mem"
if [ ! -x "$bin" ]; then
  echo "bench-mem: $build/bench/mem is not built (run make)" >&2
  exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo uncommitted)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]; then commit="$commit+dirty"; fi
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
mkdir -p "$root/bench/results"
json="$root/bench/results/mem-$stamp.json"

# NVLink SHARP stays off (multicast objects are not used on these machines).
export NCCL_NVLS_ENABLE=0
log=$(mktemp "${TMPDIR:-/tmp}/bench-mem.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
"$bin" --json "$json" --commit "$commit" --date "$stamp" --driver "${driver:-unknown}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$log" "$OUT/bench-mem.log"
  [ -f "$json" ] && cp "$json" "$OUT/"
fi
exit "$rc"
