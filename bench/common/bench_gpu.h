/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gpu.h - the plumbing every GPU benchmark shares (bench/allreduce.c, scatter.c, mem.c).
 *
 * A GPU benchmark's parent never touches CUDA: it parses the options bench/common.sh passes,
 * decides the world size, maps the result area the ranks write (mc_bench_shared) and forks the
 * ranks with shim_launch; each rank takes its GPU (mc_bench_rank_gpu), measures, and the parent
 * reports.  Only in a CUDA build (MC_WITH_CUDA); a CPU-only build's benchmarks print a SKIP. */
#ifndef MC_BENCH_GPU_H_
#define MC_BENCH_GPU_H_

#include "../../abi/moecomm.h"
#include "bench.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>
#include <nccl.h>

/* What a rank learned about its GPU (the parent reports rank 0's). */
typedef struct mc_bench_gpu {
  char name[128];   /* cudaDeviceProp.name; empty until the rank started */
  int cuda_driver;  /* cudaDriverGetVersion */
  int cuda_runtime; /* cudaRuntimeGetVersion */
} mc_bench_gpu_t;

/* `return 0` from the calling function, with the failed call and CUDA's or NCCL's reason in the
   char array err, unless err already holds an earlier error. */
#define MC_BENCH_CU(err, call)                                                           \
  do {                                                                                   \
    cudaError_t e_ = (call);                                                             \
    if (e_ != cudaSuccess)                                                               \
      return mc_bench_fail((err), sizeof(err), "%s: %s", #call, cudaGetErrorString(e_)); \
  } while (0)
#define MC_BENCH_NC(err, call)                                                           \
  do {                                                                                   \
    ncclResult_t n_ = (call);                                                            \
    if (n_ != ncclSuccess)                                                               \
      return mc_bench_fail((err), sizeof(err), "%s: %s", #call, ncclGetErrorString(n_)); \
  } while (0)

/* The start of a GPU benchmark's main: parses the options into *run_p, makes stdout line
   buffered and decides the world size.  fixed > 0: a benchmark written for that many ranks;
   fixed 0: MC_BENCH_GPU_RANKS=N when set, else every visible CUDA device; MC_BENCH_ANY_WORLD: the
   same, and one rank is enough (a benchmark that runs what one GPU can).  Returns -1 to go on
   (with *world_p, at least 2 - or 1 - and at most the devices visible), or the status main should
   return: 0 after a visible "SKIP <bench>: ..." line (too few devices), 1 or 2 after an error line
   (more ranks asked for than devices, a bad MC_BENCH_GPU_RANKS, a bad option). */
#define MC_BENCH_ANY_WORLD (-1)
int mc_bench_gpu_begin(int argc, char **argv, const char *bench, int fixed, mc_bench_run_t *run_p,
                       int *world_p);

/* Zeroed memory shared with the ranks forked later (MAP_SHARED); NULL after a perror line. */
void *mc_bench_shared(size_t bytes);

/* NCCL's version as "2.28.9", read without initialising CUDA (safe in the parent). */
void mc_bench_nccl_version(char *buf, size_t cap);

/* In a rank: NCCL_NVLS_ENABLE=0 (no NVLink multicast), CUDA device `rank` current with its
   context created, and its facts in *gpu.  Returns 1, or 0 with the reason in err. */
int mc_bench_rank_gpu(int rank, mc_bench_gpu_t *gpu, char *err, size_t cap);

/* In a rank of shim_launch: an NCCL communicator over all `world` ranks (rank r is NCCL rank r);
   rank 0 makes the unique id and the host all-gather hands it out, a failure included, so every
   rank returns.  Returns 1 with *comm_p, or 0 with the reason in err. */
int mc_bench_nccl_comm(int rank, int world, ncclComm_t *comm_p, char *err, size_t cap);

/* Opens path and writes the head of the benchmark's JSON object: "bench", "device", "driver",
   "cuda_driver_api", "cuda_runtime" (when with_runtime), "nccl_version", "commit", "date" - no
   comma after the last.  NULL after a perror line when path cannot be written. */
FILE *mc_bench_json_open(const char *path, const char *bench, const mc_bench_run_t *run,
                         const mc_bench_gpu_t *gpu, int with_runtime, const char *nccl);

/* Runs run(arg) `replays` times on stream s, each run between a pair of the events ev[2 * replays]
   (recorded on s), waits, and writes the median time of one run divided by ops, in us, to *us_p.
   run enqueues work on s and returns 1, or 0 to stop.  Returns 1, or 0 when a run or a CUDA call
   failed. */
int mc_bench_time(cudaStream_t s, cudaEvent_t *ev, int replays, int ops, int (*run)(void *arg),
                  void *arg, double *us_p);

/* Captures body(arg) on s into a graph and instantiates it into *exec_p; with ctx, inside ctx's
   capture scope (api->capture_begin before, capture_end after, which runs whenever begin
   succeeded: it is collective).  body enqueues on s and returns 1, or 0 with its reason in err.
   Returns 1, or 0 with the first reason in err (cap bytes). */
int mc_bench_capture(const moecomm_api_t *api, moecomm_context_t *ctx, cudaStream_t s,
                     int (*body)(void *arg), void *arg, cudaGraphExec_t *exec_p, char *err,
                     size_t cap);

/* "\n<label>: <device>, driver <d> (CUDA driver API <n>), NCCL <v>, commit <c>, <date>" */
void mc_bench_print_facts(const char *label, const mc_bench_run_t *run, const mc_bench_gpu_t *gpu,
                          const char *nccl);

#endif /* MC_WITH_CUDA */
#endif
