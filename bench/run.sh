#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run.sh KIND BUILD: runs one family of benchmarks (cpu, gpu, fused, mem, scatter, ep) and
# saves JSON into BENCH_OUT, default BUILD/bench-results/ (device, driver and commit recorded by
# each script).
set -euo pipefail
kind=${1:?usage: bench/run.sh cpu|gpu|fused|mem|scatter|ep BUILD}
build=${2:-build}
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run-$kind.sh" "$build"
