#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-scatter.sh BUILD: scatter modes on 2 GPUs (bench/scatter.c): the MoE step with MOE_FULL
# against FULL for the same tokens, and the MoE-CP all-gather against ncclAllGather.  Prints the
# tables; writes scatter-<date>.json into BENCH_OUT (default BUILD/bench-results/;
# bench/common.sh), and when $OUT is set a copy of the JSON and the log.  Takes well under 90 s on 2x H200.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
bench_gpu_run bench-scatter scatter "${1:-build}"
