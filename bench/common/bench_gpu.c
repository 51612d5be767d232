/* SPDX-License-Identifier: Apache-2.0 */
/* bench_gpu.c - the GPU benchmarks' shared plumbing (bench_gpu.h). */
#include "bench_gpu.h"

#if MC_WITH_CUDA

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../host_shim/lib/device.h"
#include "../../host_shim/lib/launch.h"

/* The world size from MC_BENCH_GPU_RANKS (fixed 0) or the benchmark itself; see bench_gpu.h. */
static int gpu_world(const char *bench, int fixed, int *world_p) {
  const char *env = fixed <= 0 ? getenv("MC_BENCH_GPU_RANKS") : NULL;
  const int gpus = shim_gpu_devices(), least = fixed == MC_BENCH_ANY_WORLD ? 1 : 2;
  int want = fixed > 0 ? fixed : 0;

  if (env != NULL && env[0] != '\0') {
    char *end = NULL;
    long n;
    errno = 0;
    n = strtol(env, &end, 10);
    /* 64: shim_data_fill_random's inputs keep every sum exact up to 64 ranks */
    if (errno != 0 || end == env || *end != '\0' || n < least || n > 64) {
      fprintf(stderr,
              "%s: MC_BENCH_GPU_RANKS='%s' is not one rank count from %d to 64; set it to the "
              "number of GPUs to use, or unset it to use every visible CUDA device\n",
              bench, env, least);
      return 2;
    }
    want = (int)n;
  }
  if (want == 0) {
    if (gpus < least) {
      printf(
          "SKIP %s: needs %d or more CUDA devices (it uses every visible one, or "
          "MC_BENCH_GPU_RANKS=N of them), this machine has %d\n",
          bench, least, gpus);
      return 0;
    }
    *world_p = gpus;
    return -1;
  }
  if (gpus < want && (fixed > 0 || gpus == 0)) {
    if (fixed > 0)
      printf("SKIP %s: needs %d CUDA devices (a %d-rank benchmark), this machine has %d\n", bench,
             want, want, gpus);
    else
      printf("SKIP %s: needs %d CUDA devices (MC_BENCH_GPU_RANKS=%d), this machine has %d\n", bench,
             want, want, gpus);
    return 0;
  }
  if (gpus < want) {
    /* Asked for more ranks than there are GPUs: an error, not a skip, so a run that was meant to
       measure N GPUs never passes quietly. */
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    fprintf(stderr,
            "%s: MC_BENCH_GPU_RANKS=%d but only %d CUDA devices are visible "
            "(CUDA_VISIBLE_DEVICES=%s); lower MC_BENCH_GPU_RANKS or unset it to use every one\n",
            bench, want, gpus, cvd ? cvd : "unset");
    return 1;
  }
  *world_p = want;
  return -1;
}

int mc_bench_gpu_begin(int argc, char **argv, const char *bench, int fixed, mc_bench_run_t *run_p,
                       int *world_p) {
  mc_bench_run_t run;
  int world = 0, rc = mc_bench_run_args(argc, argv, &run);
  if (rc != 0) return rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  rc = gpu_world(bench, fixed, &world);
  if (rc >= 0) return rc;
  *run_p = run;
  *world_p = world;
  return -1;
}

void *mc_bench_shared(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap of the benchmark's result area");
    return NULL;
  }
  memset(p, 0, bytes);
  return p;
}

void mc_bench_nccl_version(char *buf, size_t cap) {
  int v = 0;
  (void)ncclGetVersion(&v); /* no CUDA initialisation: the parent forks CUDA ranks later */
  snprintf(buf, cap, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
}

int mc_bench_rank_gpu(int rank, mc_bench_gpu_t *gpu, char *err, size_t cap) {
  struct cudaDeviceProp prop;
  cudaError_t e;
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  if ((e = cudaSetDevice(rank)) != cudaSuccess || (e = cudaFree(0)) != cudaSuccess)
    return mc_bench_fail(err, cap, "no usable CUDA device %d: %s", rank, cudaGetErrorString(e));
  if (cudaGetDeviceProperties(&prop, rank) == cudaSuccess)
    snprintf(gpu->name, sizeof(gpu->name), "%s", prop.name);
  (void)cudaDriverGetVersion(&gpu->cuda_driver);
  (void)cudaRuntimeGetVersion(&gpu->cuda_runtime);
  return 1;
}

/* What rank 0 hands out: the id, or that it has none (every rank then fails alike). */
typedef struct nccl_id_msg {
  int ok;
  ncclUniqueId id;
} nccl_id_msg_t;

int mc_bench_nccl_comm(int rank, int world, ncclComm_t *comm_p, char *err, size_t cap) {
  nccl_id_msg_t mine, *all = calloc((size_t)world, sizeof(*all));
  ncclComm_t comm = NULL;
  ncclResult_t nr = ncclSuccess;

  memset(&mine, 0, sizeof(mine));
  if (rank == 0) {
    nr = ncclGetUniqueId(&mine.id);
    mine.ok = nr == ncclSuccess;
  }
  /* every rank takes part in the all-gather even after a failure, so none waits for a dead one */
  if (all == NULL || shim_host_allgather(shim_launch_hub(), &mine, all, sizeof(mine)) != 0) {
    free(all);
    return mc_bench_fail(err, cap, "exchanging the NCCL unique id over the host all-gather failed");
  }
  if (!all[0].ok) {
    free(all);
    return mc_bench_fail(err, cap, "rank 0 could not make an NCCL unique id%s%s",
                         rank == 0 ? ": " : "", rank == 0 ? ncclGetErrorString(nr) : "");
  }
  nr = ncclCommInitRank(&comm, world, all[0].id, rank);
  free(all);
  if (nr != ncclSuccess)
    return mc_bench_fail(err, cap, "ncclCommInitRank (rank %d of %d): %s", rank, world,
                         ncclGetErrorString(nr));
  *comm_p = comm;
  return 1;
}

/* ",\n  "key": <s as a JSON string>" */
static void json_field(FILE *f, const char *key, const char *s) {
  fprintf(f, ",\n  \"%s\": ", key);
  mc_bench_json_str(f, s);
}

FILE *mc_bench_json_open(const char *path, const char *bench, const mc_bench_run_t *run,
                         const mc_bench_gpu_t *gpu, int with_runtime, const char *nccl) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return NULL;
  }
  fprintf(f, "{\n  \"bench\": ");
  mc_bench_json_str(f, bench);
  json_field(f, "device", gpu->name);
  json_field(f, "driver", run->driver);
  fprintf(f, ",\n  \"cuda_driver_api\": %d", gpu->cuda_driver);
  if (with_runtime) fprintf(f, ",\n  \"cuda_runtime\": %d", gpu->cuda_runtime);
  json_field(f, "nccl_version", nccl);
  json_field(f, "commit", run->commit);
  json_field(f, "date", run->date);
  return f;
}

void mc_bench_print_facts(const char *label, const mc_bench_run_t *run, const mc_bench_gpu_t *gpu,
                          const char *nccl) {
  printf("\n%s: %s, driver %s (CUDA driver API %d), NCCL %s, commit %s, %s\n", label, gpu->name,
         run->driver, gpu->cuda_driver, nccl, run->commit, run->date);
}

int mc_bench_time(cudaStream_t s, cudaEvent_t *ev, int replays, int ops, int (*run)(void *arg),
                  void *arg, double *us_p) {
  double *t = malloc(sizeof(double) * (size_t)replays);
  int good = t != NULL;
  for (int r = 0; good && r < replays; r++)
    good = cudaEventRecord(ev[2 * r], s) == cudaSuccess && run(arg) &&
           cudaEventRecord(ev[2 * r + 1], s) == cudaSuccess;
  if (good && cudaStreamSynchronize(s) != cudaSuccess) good = 0;
  for (int r = 0; good && r < replays; r++) {
    float ms = 0;
    good = cudaEventElapsedTime(&ms, ev[2 * r], ev[2 * r + 1]) == cudaSuccess;
    t[r] = 1000.0 * ms / ops;
  }
  if (good) *us_p = mc_bench_median(t, replays);
  free(t);
  return good;
}

int mc_bench_capture(const moecomm_api_t *api, moecomm_context_t *ctx, cudaStream_t s,
                     int (*body)(void *arg), void *arg, cudaGraphExec_t *exec_p, char *err,
                     size_t cap) {
  cudaGraph_t graph = NULL;
  int good = 1, in_scope = 0, capturing = 0;
  if (ctx != NULL) {
    if (api->capture_begin(ctx, s) == MOECOMM_SUCCESS)
      in_scope = 1;
    else
      good = mc_bench_fail(err, cap, "capture_begin: %s", api->last_error(ctx));
  }
  if (good) {
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess)
      capturing = 1;
    else
      good = mc_bench_fail(err, cap, "cudaStreamBeginCapture failed");
  }
  if (good) good = body(arg);
  if (capturing && cudaStreamEndCapture(s, &graph) != cudaSuccess && good)
    good = mc_bench_fail(err, cap, "cudaStreamEndCapture failed");
  if (in_scope && api->capture_end(ctx, s) != MOECOMM_SUCCESS && good)
    good = mc_bench_fail(err, cap, "capture_end: %s", api->last_error(ctx));
  if (good && cudaGraphInstantiate(exec_p, graph, 0) != cudaSuccess)
    good = mc_bench_fail(err, cap, "cudaGraphInstantiate failed");
  if (graph) cudaGraphDestroy(graph);
  (void)cudaGetLastError();
  return good;
}

#endif /* MC_WITH_CUDA */
