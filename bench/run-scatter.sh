#!/usr/bin/env bash
# bench/run-scatter.sh BUILD: scatter modes on 2 GPUs (bench/scatter.c): the MoE step with MOE_FULL
# against FULL for the same tokens, and the MoE-CP all-gather against ncclAllGather.  Prints the
# tables; writes bench/results/scatter-<date>.json (and, when $OUT is set, a copy of the JSON and
# the log there).  Takes well under 90 s on 2x H200.
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$build/bench/scatter"
[ -x "$bin" ] || bin="$root/$build/bench/scatter"
if [ ! -x "$bin" ]; then
  echo "bench-scatter: $build/bench/scatter is not built (run make)" >&2
  exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo uncommitted)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ]; then commit="$commit+dirty"; fi
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
mkdir -p "$root/bench/results"
json="$root/bench/results/scatter-$stamp.json"

# NVLink SHARP stays off (multicast objects are not used on these machines).
export NCCL_NVLS_ENABLE=0
log=$(mktemp "${TMPDIR:-/tmp}/bench-scatter.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
"$bin" --json "$json" --commit "$commit" --date "$stamp" --driver "${driver:-unknown}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$log" "$OUT/bench-scatter.log"
  [ -f "$json" ] && cp "$json" "$OUT/"
fi
exit "$rc"
