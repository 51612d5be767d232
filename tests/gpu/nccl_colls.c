/* nccl_colls.c - every collective, dtype and op through the NCCL backend (MOECOMM_BACKEND=nccl),
 * 2 ranks on 2 GPUs, against a float64 reference computed on the host.
 *
 * Counts 1, 7, 4095, 1 Mi and 16 Mi elements; in place and out of place; broadcast from each
 * root; all-reduce once on the legacy default stream.  Inputs are random non-zero values that are
 * exact in every dtype (mc_test_fill), different in every case (an offset into a per-rank pool);
 * outputs are poisoned with 0xff bytes (NaN, or -1 for int32) before each call; comparison is
 * exact because every sum of these values is representable. */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

#define NRANKS 2
#define MAX_COUNT ((size_t)16 << 20)
#define POOL_SLACK ((size_t)4096)
#define POOL_ELEMS (NRANKS * MAX_COUNT + POOL_SLACK)
#define SYNC_TIMEOUT_MS 60000

typedef enum { K_AR, K_RS, K_AG, K_BC } kind_t;
static const char *const k_kind_name[] = {"all_reduce", "reduce_scatter", "all_gather",
                                          "broadcast"};
static const size_t k_counts[] = {1, 7, 4095, (size_t)1 << 20, MAX_COUNT};
static const char *const k_op_name[] = {"sum", "max", "min"};

typedef struct rank_state {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  moecomm_group_t *group;
  int rank;
  cudaStream_t stream;
  char *dsend, *drecv;  /* NRANKS * MAX_COUNT elements of up to 4 bytes each */
  void *raw;            /* this rank's pool in the dtype's encoding (uploaded) */
  void *tmp;            /* scratch for the other rank's pool */
  double *pool[NRANKS]; /* every rank's pool as doubles (the reference's inputs) */
  void *hout;           /* the output copied back */
  double *expect;       /* the reference */
  uint64_t calls;       /* collectives issued on the group */
} rank_state_t;

/* Waits for the stream, but never for ever: a hung collective is a failed check. */
static int sync_stream(cudaStream_t s) {
  struct timespec ts = {0, 200000};
  for (int waited_us = 0;; waited_us += 200) {
    cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return 1;
    if (e != cudaErrorNotReady) return MC_CUDA_OK(e);
    if (waited_us / 1000 > SYNC_TIMEOUT_MS) {
      mc_test_check(0, __FILE__, __LINE__, "stream finished",
                    "the stream did not finish within %d ms (hung collective)", SYNC_TIMEOUT_MS);
      return 0;
    }
    nanosleep(&ts, NULL);
  }
}

static double apply(moecomm_redop_t op, double a, double b) {
  switch (op) {
    case MOECOMM_MAX: return a > b ? a : b;
    case MOECOMM_MIN: return a < b ? a : b;
    default: return a + b;
  }
}

/* Fills every rank's pool for dtype dt: this rank's raw encoding and all of them as doubles. */
static void make_pools(rank_state_t *st, moecomm_dtype_t dt) {
  for (int r = 0; r < NRANKS; r++) {
    void *buf = r == st->rank ? st->raw : st->tmp;
    uint64_t seed = 0x6e63636c00ull + (uint64_t)dt * 131 + (uint64_t)r;
    mc_test_fill(buf, POOL_ELEMS, dt, seed);
    for (size_t i = 0; i < POOL_ELEMS; i++) st->pool[r][i] = mc_test_get(buf, i, dt);
  }
}

/* One collective: upload, poison, call, copy back, compare.  Returns 0 when the rank should stop
   (an error that leaves the peer waiting). */
static int run_case(rank_state_t *st, kind_t kind, moecomm_dtype_t dt, moecomm_redop_t op,
                    size_t count, int inplace, int root, size_t off, cudaStream_t s) {
  const moecomm_api_t *api = st->api;
  size_t esz = shim_dtype_size(dt), in_elems = kind == K_RS ? NRANKS * count : count;
  size_t out_elems = kind == K_AG ? NRANKS * count : count;
  size_t region = (kind == K_AG || kind == K_RS) ? NRANKS * count : count;
  const char *own = (const char *)st->raw + off * esz;
  const void *send = NULL;
  void *recv = st->drecv;
  const char *out = st->drecv;
  moecomm_result_t rc;
  size_t bad = 0, first = 0;

  if (!MC_CUDA_OK(cudaMemsetAsync(st->drecv, 0xff, region * esz, s))) return 0;
  switch (kind) {
    case K_AR:
      if (inplace) {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->drecv, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->drecv;
      } else {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->dsend, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->dsend;
      }
      rc = api->all_reduce(st->group, send, recv, count, dt, op, s);
      break;
    case K_RS:
      if (inplace) {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->drecv, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->drecv;
        recv = st->drecv + (size_t)st->rank * count * esz;
        out = recv;
      } else {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->dsend, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->dsend;
      }
      rc = api->reduce_scatter(st->group, send, recv, count, dt, op, s);
      break;
    case K_AG:
      if (inplace) {
        char *slot = st->drecv + (size_t)st->rank * count * esz;
        if (!MC_CUDA_OK(cudaMemcpyAsync(slot, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = slot;
      } else {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->dsend, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->dsend;
      }
      rc = api->all_gather(st->group, send, recv, count, dt, s);
      break;
    default: /* K_BC */
      if (inplace) {
        if (st->rank == root &&
            !MC_CUDA_OK(cudaMemcpyAsync(st->drecv, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->drecv;
      } else {
        if (!MC_CUDA_OK(cudaMemcpyAsync(st->dsend, own, in_elems * esz, cudaMemcpyHostToDevice, s)))
          return 0;
        send = st->rank == root ? st->dsend : NULL; /* the ABI lets non-roots pass NULL */
      }
      rc = api->broadcast(st->group, send, recv, count, dt, root, s);
      break;
  }
  st->calls++;
  if (!MC_CHECK_RC(api, st->ctx, rc, MOECOMM_SUCCESS)) return 0;
  if (!sync_stream(s)) return 0;
  if (!MC_CUDA_OK(cudaMemcpy(st->hout, out, out_elems * esz, cudaMemcpyDeviceToHost))) return 0;

  for (size_t i = 0; i < out_elems; i++) {
    double e;
    switch (kind) {
      case K_AR: e = apply(op, st->pool[0][off + i], st->pool[1][off + i]); break;
      case K_RS: {
        size_t j = off + (size_t)st->rank * count + i;
        e = apply(op, st->pool[0][j], st->pool[1][j]);
        break;
      }
      case K_AG: e = st->pool[i / count][off + i % count]; break;
      default: e = st->pool[root][off + i]; break;
    }
    if (mc_test_get(st->hout, i, dt) != e) {
      if (bad++ == 0) first = i;
    }
  }
  if (!MC_CHECK(bad == 0,
                "%s %s %s count %zu %s%s%d: %zu of %zu elements wrong, first at %zu "
                "(got %g)",
                k_kind_name[kind], shim_dtype_name(dt),
                kind == K_AR || kind == K_RS ? k_op_name[op] : "", count,
                inplace ? "in place" : "out of place", kind == K_BC ? " root " : " rank ",
                kind == K_BC ? root : st->rank, bad, out_elems, first,
                bad ? mc_test_get(st->hout, first, dt) : 0.0))
    return 1; /* wrong data: keep going, the peer is not left waiting */
  return 1;
}

static int run_all(rank_state_t *st) {
  size_t case_no = 0;
  for (int dti = 0; dti < 4; dti++) {
    moecomm_dtype_t dt = (moecomm_dtype_t)dti;
    make_pools(st, dt);
    for (int kind = K_AR; kind <= K_BC; kind++) {
      int nops = kind == K_AR || kind == K_RS ? 3 : 1;
      int nroots = kind == K_BC ? NRANKS : 1;
      for (size_t ci = 0; ci < sizeof(k_counts) / sizeof(k_counts[0]); ci++)
        for (int op = 0; op < nops; op++)
          for (int inplace = 0; inplace < 2; inplace++)
            for (int root = 0; root < nroots; root++) {
              size_t off = (case_no++ * 977) % POOL_SLACK;
              if (!run_case(st, (kind_t)kind, dt, (moecomm_redop_t)op, k_counts[ci], inplace, root,
                            off, st->stream))
                return 0;
            }
    }
    /* The legacy default stream works too. */
    if (!run_case(st, K_AR, dt, MOECOMM_SUM, 4095, 0, 0, (case_no++ * 977) % POOL_SLACK, NULL))
      return 0;
  }
  return 1;
}

static int rank_main(int rank, int world, void *arg) {
  rank_state_t st;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_group_stats_t gs;
  size_t dev_bytes = NRANKS * MAX_COUNT * 4;
  moecomm_result_t rc;
  (void)arg;
  memset(&st, 0, sizeof(st));
  st.rank = rank;
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  st.api = mc_test_plugin();
  rc = st.api->context_create(&params, &st.ctx);
  if (!MC_CHECK_RC(st.api, NULL, rc, MOECOMM_SUCCESS)) return 1;
  rc = st.api->group_get(st.ctx, MOECOMM_GROUP_TP, &st.group);
  if (!MC_CHECK_RC(st.api, st.ctx, rc, MOECOMM_SUCCESS)) goto out;
  if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&st.dsend, dev_bytes)) ||
      !MC_CUDA_OK(cudaMalloc((void **)&st.drecv, dev_bytes)))
    goto out;
  st.raw = malloc(POOL_ELEMS * 4);
  st.tmp = malloc(POOL_ELEMS * 4);
  st.hout = malloc(NRANKS * MAX_COUNT * 4);
  for (int r = 0; r < NRANKS; r++) st.pool[r] = malloc(POOL_ELEMS * sizeof(double));
  if (!MC_CHECK(st.raw && st.tmp && st.hout && st.pool[0] && st.pool[1], "host malloc")) goto out;

  if (run_all(&st)) {
    memset(&gs, 0, sizeof(gs));
    gs.struct_size = sizeof(gs);
    rc = st.api->group_stats(st.group, &gs);
    if (MC_CHECK_RC(st.api, st.ctx, rc, MOECOMM_SUCCESS)) {
      MC_CHECK(gs.created == 1, "TP communicator created: %d", (int)gs.created);
      MC_CHECK(strcmp(gs.backend_name, "nccl") == 0, "backend %s, want nccl", gs.backend_name);
      MC_CHECK(gs.device_bytes > 0, "device_bytes %llu", (unsigned long long)gs.device_bytes);
      MC_CHECK(gs.ops == st.calls, "ops %llu, collectives issued %llu", (unsigned long long)gs.ops,
               (unsigned long long)st.calls);
      printf(
          "[rank %d] %llu collectives checked; NCCL communicator holds %.1f MiB device, "
          "%.1f MiB host\n",
          rank, (unsigned long long)st.calls, gs.device_bytes / 1048576.0,
          gs.host_bytes / 1048576.0);
    }
  }
out:
  for (int r = 0; r < NRANKS; r++) free(st.pool[r]);
  free(st.hout);
  free(st.tmp);
  free(st.raw);
  if (st.ctx != NULL) MC_CHECK_RC(st.api, st.ctx, st.api->context_destroy(st.ctx), MOECOMM_SUCCESS);
  if (st.drecv) cudaFree(st.drecv);
  if (st.dsend) cudaFree(st.dsend);
  if (st.stream) cudaStreamDestroy(st.stream);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("nccl_colls", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  mc_test_ranks(NRANKS, rank_main, NULL, 300);
  return mc_test_finish();
}
