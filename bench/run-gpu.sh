#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-gpu.sh BUILD: `make bench` - all-reduce latency on every visible GPU
# (MC_BENCH_GPU_RANKS=N: the first N), moecomm's custom kernels (each algorithm forced, and auto)
# against moecomm's NCCL path and direct NCCL, in one run (bench/allreduce.c; method in its header
# and in bench/NOTES-custom.md).  Prints the tables; writes allreduce-<date>.json into BENCH_OUT
# (default BUILD/bench-results/; bench/common.sh), and when $OUT is set a copy of it and the log.  Takes well under 3 minutes.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
bench_gpu_run bench allreduce "${1:-build}"
