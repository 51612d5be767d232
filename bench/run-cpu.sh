#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/run-cpu.sh BUILD: shm all-reduce (moecomm) against Open MPI's MPI_Allreduce, same host,
# same rank counts, same sizes and timing method, in one run.  Prints a table and saves JSON as
# cpu-allreduce-<date>.json in BENCH_OUT (default BUILD/bench-results/; bench/common.sh).
#
# moecomm side: BUILD/bench/cpu_allreduce (built by make from bench/cpu_allreduce.c).
# MPI side: bench/mpi/mpi_allreduce.c with bench/common/bench.c (the inputs, check and batch sizes
# both sides share), compiled here with mpicc (packaging/ensure-deps.sh bench-cpu installs Open
# MPI).  MPI has no bf16 type: its bf16 rows run a 2-byte datatype with a user-defined op (fp32
# accumulate, round to nearest even), see bench/mpi/mpi_allreduce.c.
#
# Environment: MC_BENCH_RANKS (default "2 4"), MC_BENCH_MIN / MC_BENCH_MAX (bytes, default 4K /
# 64M, steps of x4), MC_BENCH_BATCHES (default 9), MC_BENCH_DTYPES (default fp32,bf16).
set -euo pipefail
# shellcheck source=bench/common.sh
source "$(dirname "$0")/common.sh"
build=${1:-build}
here=$bench_here
root=$bench_root
ranks_list=${MC_BENCH_RANKS:-"2 4"}
min=${MC_BENCH_MIN:-4K}
max=${MC_BENCH_MAX:-64M}
batches=${MC_BENCH_BATCHES:-9}
dtypes=${MC_BENCH_DTYPES:-fp32,bf16}

bin="$build/bench/cpu_allreduce"
if [ ! -x "$bin" ]; then
  echo "bench-cpu: $bin is missing; run make first" >&2
  exit 1
fi
if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
  echo "bench-cpu: mpicc/mpirun not found; install Open MPI with packaging/ensure-deps.sh bench-cpu" >&2
  exit 1
fi
mpi_bin="$build/bench/mpi_allreduce"
mkdir -p "$build/bench"
mpicc -O2 -Wall -o "$mpi_bin" "$here/mpi/mpi_allreduce.c" "$here/common/bench.c"

mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
args=(--min "$min" --max "$max" --batches "$batches" --dtypes "$dtypes")

rows=$(mktemp "${TMPDIR:-/tmp}/moecomm-bench-cpu.XXXXXX")
trap 'rm -f "$rows"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
status=0
for n in $ranks_list; do
  echo "bench-cpu: $n ranks: moecomm shm" >&2
  "$bin" --ranks "$n" "${args[@]}" | grep '^ROW ' >>"$rows" || status=1
  echo "bench-cpu: $n ranks: Open MPI" >&2
  mpirun "${mpi_flags[@]}" -np "$n" "$mpi_bin" "${args[@]}" | grep '^ROW ' >>"$rows" || status=1
done

# ---- machine and build facts ----
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
cpus=$(nproc 2>/dev/null || echo 0)
kernel=$(uname -r)
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo none)
dirty=false
if [ "$commit" != none ] && bench_dirty; then dirty=true; fi
mpi_version=$(mpirun --version 2>/dev/null | head -n 1 || echo unknown)
date_iso=$(date -u +%Y-%m-%dT%H:%M:%SZ)
out="$(bench_out_dir "$build")/cpu-allreduce-$(date -u +%Y%m%d-%H%M%S).json"

# ---- table and JSON: join moecomm and mpi rows on (dtype, ranks, bytes) ----
awk -v out="$out" -v cpu="$(json_str "$cpu")" -v cpus="$cpus" -v kernel="$(json_str "$kernel")" \
  -v commit="$commit" -v dirty="$dirty" -v mpi="$(json_str "$mpi_version")" -v date="$date_iso" \
  -v mpirun="mpirun ${mpi_flags[*]} -np N" -v load="$load_before" -v batches="$batches" '
  $1 == "ROW" {
    key = $3 " " $4 " " $5
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key; dt[key] = $3; rk[key] = $4; sz[key] = $5; ct[key] = $6 }
    us[$2, key] = $7; wrong[$2, key] = $9
  }
  function fmt(x) { return x == "" ? "-" : sprintf("%.2f", x) }
  function js(x) { return x == "" ? "null" : x }
  END {
    printf "%12s %10s %5s %5s %14s %14s %8s %7s\n", "size(B)", "count", "type", "ranks",
           "moecomm(us)", "mpi(us)", "mpi/moe", "#wrong"
    bad = 0
    for (i = 1; i <= nk; i++) {
      k = order[i]; m = us["moecomm", k]; p = us["mpi", k]
      w = wrong["moecomm", k] + 0 + wrong["mpi", k]
      if (w > 0 || m == "" || p == "") bad = 1
      ratio = (m != "" && p != "" && m > 0) ? sprintf("%.2fx", p / m) : "-"
      printf "%12d %10d %5s %5d %14s %14s %8s %7d\n", sz[k], ct[k], dt[k], rk[k], fmt(m), fmt(p), ratio, w
    }
    printf "{\n  \"bench\": \"cpu-allreduce\",\n  \"date\": \"%s\",\n  \"commit\": \"%s\",\n", date, commit > out
    printf "  \"dirty\": %s,\n  \"machine\": {\"cpu\": \"%s\", \"cpus\": %d, \"kernel\": \"%s\", \"loadavg_before\": \"%s\"},\n", dirty, cpu, cpus, kernel, load > out
    printf "  \"mpi\": {\"version\": \"%s\", \"command\": \"%s\", \"bf16\": \"2-byte MPI datatype with a user-defined op (fp32 accumulate, round to nearest even)\"},\n", mpi, mpirun > out
    printf "  \"method\": \"out-of-place sum all-reduce; per size: batches of back-to-back calls between barriers, per-call time of the slowest rank per batch, median of %d batches (us)\",\n", batches > out
    printf "  \"rows\": [\n" > out
    for (i = 1; i <= nk; i++) {
      k = order[i]
      printf "    {\"size\": %d, \"count\": %d, \"dtype\": \"%s\", \"ranks\": %d, \"moecomm_us\": %s, \"mpi_us\": %s, \"moecomm_wrong\": %s, \"mpi_wrong\": %s}%s\n",
             sz[k], ct[k], dt[k], rk[k], js(us["moecomm", k]), js(us["mpi", k]),
             js(wrong["moecomm", k]), js(wrong["mpi", k]), i < nk ? "," : "" > out
    }
    printf "  ]\n}\n" > out
    exit bad
  }' "$rows" || status=1
echo "bench-cpu: saved $out" >&2
exit "$status"
