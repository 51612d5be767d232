/* SPDX-License-Identifier: Apache-2.0 */
/* mpi_allreduce.c - Open MPI's side of `make bench-cpu` (compiled with mpicc by bench/run-cpu.sh).
 *
 * The same sizes, inputs, timing method and output as bench/cpu_allreduce.c, for MPI_Allreduce:
 * a batch of back-to-back out-of-place calls between two barriers, its time divided by the calls,
 * the slowest rank's value per batch, the median over --batches batches; one checked call.
 * Inputs, batch sizes, the check and bf16 rounding come from bench/common/bench.c, linked in.
 *
 * fp32 is MPI_FLOAT with MPI_SUM.  MPI has no bfloat16 type: bf16 runs as a contiguous 2-byte
 * datatype with a user-defined commutative op that widens to fp32, adds and rounds to nearest even
 * (what moecomm computes), so Open MPI moves the same bytes and does the same arithmetic, through
 * its user-op path rather than a built-in one.
 *
 * Rank 0 prints one line per measurement:
 *   ROW mpi <dtype> <ranks> <bytes> <count> <median us> <min us> <#wrong> */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/bench.h"

static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
  const uint16_t *a = in;
  uint16_t *b = inout;
  (void)dt;
  for (int i = 0; i < *len; i++) b[i] = mc_bench_f2bf(mc_bench_bf2f(a[i]) + mc_bench_bf2f(b[i]));
}

int main(int argc, char **argv) {
  size_t min_bytes = 4096, max_bytes = (size_t)64 << 20;
  int batches = 9, want_fp32 = 1, want_bf16 = 1, rank, world;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--min") == 0)
      min_bytes = mc_bench_parse_size(argv[i + 1]);
    else if (strcmp(argv[i], "--max") == 0)
      max_bytes = mc_bench_parse_size(argv[i + 1]);
    else if (strcmp(argv[i], "--batches") == 0)
      batches = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--dtypes") == 0) {
      want_fp32 = strstr(argv[i + 1], "fp32") != NULL;
      want_bf16 = strstr(argv[i + 1], "bf16") != NULL;
    }
  }
  MPI_Datatype bf16;
  MPI_Op bf16_op;
  MPI_Type_contiguous(2, MPI_BYTE, &bf16);
  MPI_Type_commit(&bf16);
  MPI_Op_create(bf16_sum, 1, &bf16_op);
  double *per_call = calloc((size_t)batches, sizeof(double));
  int failed = 0;

  for (int d = 0; d < 2; d++) {
    if ((d == 0 && !want_fp32) || (d == 1 && !want_bf16)) continue;
    const size_t es = d == 0 ? 4 : 2;
    MPI_Datatype type = d == 0 ? MPI_FLOAT : bf16;
    MPI_Op op = d == 0 ? MPI_SUM : bf16_op;
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
      size_t count = bytes / es;
      int calls = mc_bench_batch_calls(bytes);
      unsigned char *send = malloc(bytes), *recv = malloc(bytes);
      if (send == NULL || recv == NULL || count > 0x7fffffff) {
        fprintf(stderr, "rank %d: cannot run %zu bytes\n", rank, bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      mc_bench_cpu_fill(send, count, d == 0, rank);
      memset(recv, 0, bytes);
      for (int w = 0; w < 2; w++) MPI_Allreduce(send, recv, (int)count, type, op, MPI_COMM_WORLD);
      for (int b = 0; b < batches; b++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int k = 0; k < calls; k++)
          MPI_Allreduce(send, recv, (int)count, type, op, MPI_COMM_WORLD);
        double mine = (MPI_Wtime() - t0) * 1e6 / calls, slowest;
        MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        per_call[b] = slowest;
      }
      memset(recv, 0x7f, bytes);
      MPI_Allreduce(send, recv, (int)count, type, op, MPI_COMM_WORLD);
      size_t wrong = mc_bench_cpu_wrong(recv, count, d == 0, world);
      double median = mc_bench_median(per_call, batches);
      if (rank == 0) {
        printf("ROW mpi %s %d %zu %zu %.2f %.2f %zu\n", d == 0 ? "fp32" : "bf16", world, bytes,
               count, median, per_call[0], wrong);
        fflush(stdout);
      }
      failed |= wrong != 0;
      free(send);
      free(recv);
    }
  }
  free(per_call);
  MPI_Op_free(&bf16_op);
  MPI_Type_free(&bf16);
  MPI_Finalize();
  return failed;
}
