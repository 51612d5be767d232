/* SPDX-License-Identifier: Apache-2.0 */
/* bench.h - what every benchmark shares: timing, medians, errors, JSON strings, the options
 * bench/common.sh passes, and the CPU all-reduce benchmarks' inputs.
 *
 * Plain C, no moecomm, CUDA or NCCL: bench/mpi/mpi_allreduce.c (built with mpicc by
 * bench/run-cpu.sh) links bench/common/bench.c too.  The GPU benchmarks' parent and rank plumbing
 * is in bench/common/bench_gpu.h. */
#ifndef MC_BENCH_H_
#define MC_BENCH_H_

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Monotonic clock, seconds. */
double mc_bench_now_s(void);

/* qsort comparator, ascending doubles. */
int mc_bench_cmp_double(const void *a, const void *b);

/* Sorts v[0..n) and returns its median (v[n / 2]); n >= 1. */
double mc_bench_median(double *v, int n);

/* Writes the message into err (cap bytes) unless err already holds one, so the first cause of a
   failure is the one reported.  Returns 0, for `return mc_bench_fail(...)`. */
int mc_bench_fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s as a JSON string, quotes included. */
void mc_bench_json_str(FILE *f, const char *s);

/* "4096", "4K", "64M" -> bytes. */
size_t mc_bench_parse_size(const char *s);

/* What bench/common.sh passes every GPU benchmark: --json PATH --commit C --date D --driver V. */
typedef struct mc_bench_run {
  const char *json;   /* NULL: no JSON */
  const char *commit; /* "unknown" when not given */
  const char *date;
  const char *driver;
} mc_bench_run_t;

/* Parses argv into *run_p.  Returns 0, or 2 after printing the usage line (bad option). */
int mc_bench_run_args(int argc, char **argv, mc_bench_run_t *run_p);

/* bf16 bits <-> float (round to nearest even, NaN stays NaN). */
uint16_t mc_bench_f2bf(float f);
float mc_bench_bf2f(uint16_t b);

/* ---- CPU all-reduce benchmarks (cpu_allreduce.c and mpi/mpi_allreduce.c, one method) ---- */

/* Back-to-back calls per timed batch at a size: about 32 MiB of data, 1 to 1000 calls. */
int mc_bench_batch_calls(size_t bytes);

/* Rank `rank`'s inputs, count elements, fp32 (fp32 != 0) or bf16: small integers, so the sum
   over the ranks is exact in both. */
void mc_bench_cpu_fill(void *buf, size_t count, int fp32, int rank);

/* Elements of an all-reduce (sum) result over `world` ranks' mc_bench_cpu_fill inputs that are
   not exactly right. */
size_t mc_bench_cpu_wrong(const void *buf, size_t count, int fp32, int world);

#endif
