#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-ep.sh BUILD: `make bench-ep` - expert-parallel dispatch and combine latency per call
# on every visible GPU (MC_BENCH_GPU_RANKS=N: the first N; one GPU: a world of one, which says its
# numbers are not NVLink numbers): moecomm's NVLink kernels and NCCL path (bench/ep.c; method in
# its header), then, in the same run, torch.distributed.all_to_all_single carrying the same rows
# (packaging/python/benchmarks/ep_a2a.py) when a Python with torch is found: MC_BENCH_PYTHON,
# python3, or /opt/torch/.venv/bin/python.  Prints the tables; writes ep-<date>.json into
# BENCH_OUT (default BUILD/bench-results/; bench/common.sh), torch's numbers included, and when
# $OUT is set a copy of the JSON and the logs.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
build=${1:-build}
out_dir=$(bench_out_dir "$build")
before=$(ls -t "$out_dir"/ep-*.json 2>/dev/null | head -n 1 || true)

# bench_gpu_run exits with the benchmark's status: a subshell keeps this script going.
set +e
(bench_gpu_run bench-ep ep "$build")
rc=$?
set -e
json=$(ls -t "$out_dir"/ep-*.json 2>/dev/null | head -n 1 || true)
if [ "$rc" -ne 0 ] || [ -z "$json" ] || [ "$json" = "$before" ]; then exit "$rc"; fi

py=""
for cand in "${MC_BENCH_PYTHON:-}" python3 /opt/torch/.venv/bin/python; do
  if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 &&
    "$cand" -c "import torch, torch.distributed" >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "bench-ep: no Python with torch (MC_BENCH_PYTHON, python3, /opt/torch/.venv/bin/python);" \
    "the torch.distributed comparison is left out of $json"
  exit 0
fi
log=$(mktemp "${TMPDIR:-/tmp}/bench-ep-torch.XXXXXX")
trap 'rm -f "$log"' EXIT
set +e
NCCL_NVLS_ENABLE=0 "$py" "$bench_root/packaging/python/benchmarks/ep_a2a.py" --json "$json" 2>&1 |
  tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$log" "$OUT/bench-ep-torch.log"
  cp "$json" "$OUT/"
fi
exit "$rc"
