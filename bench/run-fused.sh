#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-fused.sh BUILD: all_reduce_rmsnorm on every visible GPU (MC_BENCH_GPU_RANKS=N: the
# first N; one GPU: the world-of-one path, said so), the fused kernels against moecomm's
# all-reduce + the norm kernel and NCCL + the norm kernel, in one run (bench/fused.c).  Prints the
# table; writes fused-<date>.json into BENCH_OUT (default BUILD/bench-results/; bench/common.sh),
# and when $OUT is set a copy of it and the log.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
bench_gpu_run bench-fused fused "${1:-build}"
