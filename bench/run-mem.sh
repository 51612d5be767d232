#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-mem.sh BUILD: `make bench-mem` - communicator memory per GPU (bench/mem.c) on 2 GPUs.
# Prints the tables and target checks; writes mem-<date>.json into BENCH_OUT (default
# BUILD/bench-results/; bench/common.sh), and when $OUT is set a copy of the JSON and the log.  Takes about a minute.
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
bench_gpu_run bench-mem mem "${1:-build}"
