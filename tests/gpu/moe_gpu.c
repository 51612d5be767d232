/* SPDX-License-Identifier: Apache-2.0 */
/* moe_gpu.c - expert-parallel dispatch and combine through the ABI on GPUs, on both paths: the
 * NVLink kernels (the default within a host) and the NCCL path (MOECOMM_BACKEND_MOE_EP=nccl).
 * Each rank is a process driving its own GPU; MOE_EP is every rank (tp = ep = world).
 *
 * With one GPU a world of one on each path; with n >= 2 GPUs n ranks (at most 8) on each path.
 *  - Eager: every payload dtype (fp32, fp16, bf16, fp8 with two scales per token), every routing
 *    case of tests/common/ep_cases.h with integer and real data (rank 0 T_max tokens, rank 1
 *    none, the others random): each rank's recv_x, recv_scales, recv_counts, recv_src and out,
 *    poisoned with guard bytes before the call, equal the CPU reference byte for byte; identity
 *    experts on integer data give exactly sum over kept k of w * x.  Capacity 3 and an invalid
 *    id: after a synchronised dispatch, the combine on the member that saw the data error
 *    reports it naming the expert (MOECOMM_ERR_NOT_SUPPORTED / INVALID_ARGUMENT) and still
 *    matches the reference.  The path taken: group_stats counts the calls on custom (NVLink) or
 *    nccl; device bytes 0 before the first dispatch, more after.
 *  - Graph: a fresh context whose first dispatch is captured (the buffers are created inside
 *    capture): capture_begin, a stream capture of dispatch + identity experts + combine,
 *    capture_end; then REPLAYS replays (1000 on one GPU, 200 with more), each with new routing,
 *    payload and weights written into the captured buffers, each checked against the reference.
 *  - Timeout (NVLink, n >= 2): the last rank skips a dispatch; the others' kernels give up after
 *    MOECOMM_TIMEOUT_MS = 3000 and their next call reports MOECOMM_ERR_TIMEOUT naming it.
 *
 * Run: make gpu-test (all GPU tests), or BUILD/tests/gpu/moe_gpu after make; with more GPUs,
 * CUDA_VISIBLE_DEVICES=0 BUILD/tests/gpu/moe_gpu runs the world of one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "../common/ep_world.h"
#include "../common/harness.h"

enum { PATH_NVLINK = 0, PATH_NCCL = 1 };
static const char *const path_names[2] = {"nvlink", "nccl"};

#define TIMEOUT_MS 3000

static const moecomm_api_t *api;
static int g_replays = 1000;

/* One rank's device buffers (outputs with EP_GUARD bytes after them) and host copies. */
typedef struct dbufs {
  ep_io_t io;                                /* device addresses */
  char *h_rx, *h_rs, *h_cnt, *h_src, *h_out; /* host copies */
} dbufs_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static void dbufs_close(dbufs_t *b) {
  void *dev[] = {(void *)b->io.ids, (void *)b->io.x, (void *)b->io.y, (void *)b->io.xs,
                 (void *)b->io.w,   b->io.rx,        b->io.rs,        b->io.cnt,
                 b->io.src,         b->io.out};
  for (size_t i = 0; i < sizeof(dev) / sizeof(dev[0]); i++) cudaFree(dev[i]);
  free(b->h_rx);
  free(b->h_rs);
  free(b->h_cnt);
  free(b->h_src);
  free(b->h_out);
  memset(b, 0, sizeof(*b));
}

static int dev_alloc(void **p, int64_t bytes) {
  return MC_CUDA_OK(cudaMalloc(p, (size_t)bytes + EP_GUARD));
}

static int dbufs_open(dbufs_t *b, const mc_ep_layout_t *l) {
  memset(b, 0, sizeof(*b));
  b->h_rx = malloc((size_t)l->recv_x_bytes + EP_GUARD);
  b->h_rs = malloc((size_t)l->recv_scales_bytes + EP_GUARD);
  b->h_cnt = malloc((size_t)l->recv_counts_bytes + EP_GUARD);
  b->h_src = malloc((size_t)l->recv_src_bytes + EP_GUARD);
  b->h_out = malloc((size_t)l->out_bytes + EP_GUARD);
  return MC_CHECK(b->h_rx && b->h_rs && b->h_cnt && b->h_src && b->h_out, "host memory") &&
         dev_alloc((void **)&b->io.ids, l->items * 4) && dev_alloc((void **)&b->io.x, l->x_bytes) &&
         dev_alloc((void **)&b->io.y, l->y_bytes) &&
         dev_alloc((void **)&b->io.xs, l->x_scales_bytes) &&
         dev_alloc((void **)&b->io.w, l->items * 4) && dev_alloc(&b->io.rx, l->recv_x_bytes) &&
         dev_alloc(&b->io.rs, l->recv_scales_bytes) &&
         dev_alloc(&b->io.cnt, l->recv_counts_bytes) && dev_alloc(&b->io.src, l->recv_src_bytes) &&
         dev_alloc(&b->io.out, l->out_bytes);
}

/* Member me's inputs to the device, its outputs poisoned (the stream is idle). */
static int upload(const ep_world_t *w, int me, dbufs_t *b, cudaStream_t s) {
  const mc_ep_layout_t *l = &w->L;
  const size_t it = (size_t)(w->tok[me] * l->cfg.top_k);
  return MC_CUDA_OK(cudaMemcpy((void *)b->io.ids, w->ids[me], it * 4, cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaMemcpy((void *)b->io.w, w->w[me], it * 4, cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaMemcpy((void *)b->io.x, w->x[me], (size_t)(w->tok[me] * l->row_bytes),
                               cudaMemcpyHostToDevice)) &&
         MC_CUDA_OK(cudaMemcpy((void *)b->io.xs, w->xs[me],
                               (size_t)(w->tok[me] * l->cfg.scales) * 4, cudaMemcpyHostToDevice)) &&
         (w->identity || MC_CUDA_OK(cudaMemcpy((void *)b->io.y, w->y[me], (size_t)l->y_bytes,
                                               cudaMemcpyHostToDevice))) &&
         MC_CUDA_OK(cudaMemsetAsync(b->io.rx, EP_POISON, (size_t)l->recv_x_bytes + EP_GUARD, s)) &&
         MC_CUDA_OK(
             cudaMemsetAsync(b->io.rs, EP_POISON, (size_t)l->recv_scales_bytes + EP_GUARD, s)) &&
         MC_CUDA_OK(
             cudaMemsetAsync(b->io.cnt, EP_POISON, (size_t)l->recv_counts_bytes + EP_GUARD, s)) &&
         MC_CUDA_OK(
             cudaMemsetAsync(b->io.src, EP_POISON, (size_t)l->recv_src_bytes + EP_GUARD, s)) &&
         MC_CUDA_OK(cudaMemsetAsync(b->io.out, EP_POISON, (size_t)l->out_bytes + EP_GUARD, s)) &&
         MC_CUDA_OK(cudaStreamSynchronize(s));
}

static int fetch(void *host, const void *dev, int64_t bytes) {
  return MC_CUDA_OK(cudaMemcpy(host, dev, (size_t)bytes + EP_GUARD, cudaMemcpyDeviceToHost));
}

/* After the stream finished a dispatch: its outputs against the reference. */
static int check_dispatch(const ep_world_t *w, int me, dbufs_t *b, cudaStream_t s,
                          const char *what) {
  const mc_ep_layout_t *l = &w->L;
  return MC_CUDA_OK(cudaStreamSynchronize(s)) && fetch(b->h_rx, b->io.rx, l->recv_x_bytes) &&
         fetch(b->h_rs, b->io.rs, l->recv_scales_bytes) &&
         fetch(b->h_cnt, b->io.cnt, l->recv_counts_bytes) &&
         fetch(b->h_src, b->io.src, l->recv_src_bytes) &&
         ep_world_check_dispatch(w, me, b->h_rx, b->h_rs, b->h_cnt, b->h_src, what);
}

static int check_combine(const ep_world_t *w, int me, dbufs_t *b, cudaStream_t s, int kind,
                         const char *what) {
  return MC_CUDA_OK(cudaStreamSynchronize(s)) && fetch(b->h_out, b->io.out, w->L.out_bytes) &&
         ep_world_check_combine(w, me, b->h_out, kind, what);
}

/* One eager pair, synchronised after the dispatch so that its data errors are on the host
   when the combine starts. */
static int gpu_pair(moecomm_context_t *ctx, moecomm_group_t *g, const ep_world_t *w, int me,
                    dbufs_t *b, cudaStream_t s, int kind, const char *what) {
  moecomm_moe_dispatch_args_t d = ep_dispatch_args(w, me, &b->io);
  moecomm_moe_combine_args_t c;
  uint64_t h = 0;
  if (!upload(w, me, b, s) ||
      !MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, s), MOECOMM_SUCCESS) ||
      !check_dispatch(w, me, b, s, what))
    return 0;
  c = ep_combine_args(w, me, &b->io, h);
  return ep_world_check_report(api, ctx, w, me, api->moe_combine(g, &c, s), what) &&
         check_combine(w, me, b, s, kind, what);
}

/* Calls counted on the path's backend, and device memory held only once dispatching began. */
static int check_stats(const moecomm_group_stats_t *before, const moecomm_group_stats_t *after,
                       int path, uint64_t calls, const char *what) {
  const uint64_t on_path = path == PATH_NVLINK ? after->ops_custom : after->ops_nccl;
  return MC_CHECK(
      before->device_bytes == 0 && after->device_bytes > 0 && on_path == calls &&
          after->ops == calls,
      "%s: device bytes %llu -> %llu, %llu calls, %llu on %s (custom %llu, nccl "
      "%llu): the %s path was not taken",
      what, (unsigned long long)before->device_bytes, (unsigned long long)after->device_bytes,
      (unsigned long long)after->ops, (unsigned long long)on_path, path_names[path],
      (unsigned long long)after->ops_custom, (unsigned long long)after->ops_nccl, path_names[path]);
}

/* One configuration: fresh context, every routing case with both data kinds. */
static int eager_case(int rank, int n, int path, const mc_ep_config_t *cfg, int bad, uint64_t seed,
                      cudaStream_t s) {
  const moecomm_moe_config_t mc = ep_abi_config(cfg);
  moecomm_group_stats_t st0, st1;
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = NULL;
  ep_world_t w;
  dbufs_t b = {0};
  char what[200] = "";
  uint64_t pairs = 0;
  int ok =
      ep_world_open(&w, cfg) && dbufs_open(&b, &w.L) && (ctx = ep_make_ctx(api, rank, n, rank, &g));
  if (ok) {
    st0 = ep_stats(api, g);
    ok = MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
  }
  for (int route = 0; ok && route < EP_ROUTE_COUNT; route++)
    for (int kind = 0; ok && kind < 2; kind++) {
      const int b_item = route == EP_ROUTE_RANDOM && kind == 1 ? bad : -1;
      snprintf(what, sizeof(what), "%s n%d E%d k%d dtype %d T_max %lld H %lld C %lld %s %s%s",
               path_names[path], n, cfg->experts, cfg->top_k, cfg->dtype, (long long)cfg->t_max,
               (long long)cfg->hidden, (long long)w.L.cfg.capacity, ep_route_names[route],
               kind ? "real" : "integer", b_item >= 0 ? " invalid id" : "");
      ep_world_gen(&w, seed + (uint64_t)(2 * route + kind), route, kind, b_item);
      ok = ep_world_ref(&w) && gpu_pair(ctx, g, &w, rank, &b, s, kind, what);
      pairs++;
    }
  if (ok) {
    st1 = ep_stats(api, g);
    ok = check_stats(&st0, &st1, path, 2 * pairs, what);
  }
  if (ctx != NULL) api->context_destroy(ctx);
  dbufs_close(&b);
  ep_world_close(&w);
  return MC_CHECK(ok, "rank %d: %s", rank, what);
}

static int eager_cases(int rank, int n, int path, cudaStream_t s) {
  static const int dts[4] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MC_EP_FLOAT8_E4M3};
  int ok = 1;
  for (int d = 0; ok && d < 4; d++) {
    const int fp8 = dts[d] == MC_EP_FLOAT8_E4M3;
    /* H 1040 for fp8: rows past one 2 KB chunk of the kernels' copy loop */
    const mc_ep_config_t c = ep_config(n, n * (1 + (n + d) % 4), 1 + (2 * n + 3 * d) % 8, dts[d],
                                       fp8 ? MOECOMM_BFLOAT16 : dts[d], fp8 ? 2 : 0,
                                       MC_EP_PATH_NCCL, d == 1 ? 100 : 37, fp8 ? 1040 : 64, 0);
    ok = eager_case(rank, n, path, &c, -1, 100u * (uint64_t)(d + 1) + (uint64_t)path, s);
  }
  if (ok) { /* capacity 3: overflows; an invalid id on rank 0 */
    const mc_ep_config_t c =
        ep_config(n, 2 * n, 4, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0, MC_EP_PATH_NCCL, 20, 64, 3);
    ok = eager_case(rank, n, path, &c, 11, 900u + (uint64_t)path, s);
  }
  return ok;
}

/* Captures a context's first pair; every replay gets new routing and data. */
static int graph_case(int rank, int n, int path, cudaStream_t s) {
  static const int64_t tok[EP_MAXN] = {12, 0, 7, 12, 5, 1, 12, 3};
  const mc_ep_config_t cfg =
      ep_config(n, 2 * n, 4, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0, MC_EP_PATH_NCCL, 12, 64, 0);
  const moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = NULL;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  moecomm_moe_dispatch_args_t d;
  moecomm_moe_combine_args_t c;
  ep_world_t w;
  dbufs_t b = {0};
  uint64_t h = 0;
  int e1 = -1, e2 = -1, done = 0;
  int ok = ep_world_open(&w, &cfg) && dbufs_open(&b, &w.L) &&
           (ctx = ep_make_ctx(api, rank, n, rank, &g)) &&
           MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
  w.fixed_tok = 1;
  memcpy(w.tok, tok, sizeof(tok));
  d = ep_dispatch_args(&w, rank, &b.io);
  ok = ok && MC_CHECK_RC(api, ctx, api->capture_begin(ctx, s), MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  if (ok) {
    e1 = api->moe_dispatch(g, &d, &h, s);
    c = ep_combine_args(&w, rank, &b.io, h);
    e2 = e1 == MOECOMM_SUCCESS ? (int)api->moe_combine(g, &c, s) : -1;
    ok = MC_CUDA_OK(cudaStreamEndCapture(s, &graph)) &&
         MC_CHECK(e1 == 0 && e2 == 0, "captured dispatch %d, combine %d: %s", e1, e2,
                  api->last_error(ctx)) &&
         MC_CHECK_RC(api, ctx, api->capture_end(ctx, s), MOECOMM_SUCCESS) &&
         MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  }
  for (int rep = 0; ok && rep < g_replays; rep++) {
    char what[96];
    snprintf(what, sizeof(what), "%s graph replay %d", path_names[path], rep);
    ep_world_gen(&w, 5000u + (uint64_t)rep, rep % EP_ROUTE_COUNT, rep & 1, -1);
    ok = ep_world_ref(&w) && upload(&w, rank, &b, s) && MC_CUDA_OK(cudaGraphLaunch(exec, s)) &&
         check_dispatch(&w, rank, &b, s, what) && check_combine(&w, rank, &b, s, rep & 1, what);
    done += ok;
  }
  if (exec != NULL) cudaGraphExecDestroy(exec);
  if (graph != NULL) cudaGraphDestroy(graph);
  if (ctx != NULL) api->context_destroy(ctx);
  dbufs_close(&b);
  ep_world_close(&w);
  return MC_CHECK(ok && done == g_replays, "rank %d %s: %d of %d replays matched the reference",
                  rank, path_names[path], done, g_replays);
}

/* A host barrier: a one-float all-reduce on WORLD, waited for. */
static int world_barrier(moecomm_context_t *ctx, dbufs_t *b, cudaStream_t s) {
  moecomm_group_t *world = NULL;
  const float x = 1.0f;
  return MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_WORLD, &world), MOECOMM_SUCCESS) &&
         MC_CUDA_OK(cudaMemcpy((void *)b->io.w, &x, 4, cudaMemcpyHostToDevice)) &&
         MC_CHECK_RC(api, ctx,
                     api->all_reduce(world, b->io.w, b->io.out, 1, MOECOMM_FLOAT32, MOECOMM_SUM, s),
                     MOECOMM_SUCCESS) &&
         MC_CUDA_OK(cudaStreamSynchronize(s));
}

/* NVLink, n >= 2: the last rank skips a dispatch; the others' kernels give up and their next
   call reports it.  The barriers (the first one creates WORLD's communicator while every rank is
   there) keep the skipping rank's segment alive until the others are done. */
static int timeout_case(int rank, int n, cudaStream_t s) {
  const mc_ep_config_t cfg =
      ep_config(n, 2 * n, 2, MOECOMM_BFLOAT16, MOECOMM_BFLOAT16, 0, MC_EP_PATH_NCCL, 8, 64, 0);
  const moecomm_moe_config_t mc = ep_abi_config(&cfg);
  moecomm_group_t *g = NULL;
  moecomm_context_t *ctx = NULL;
  ep_world_t w;
  dbufs_t b = {0};
  char name[48];
  int ok = ep_world_open(&w, &cfg) && dbufs_open(&b, &w.L) &&
           (ctx = ep_make_ctx(api, rank, n, rank, &g)) &&
           MC_CHECK_RC(api, ctx, api->moe_configure(g, &mc), MOECOMM_SUCCESS);
  if (ok) {
    ep_world_gen(&w, 77, EP_ROUTE_RANDOM, 0, -1);
    ok = ep_world_ref(&w) && gpu_pair(ctx, g, &w, rank, &b, s, 0, "before the timeout") &&
         world_barrier(ctx, &b, s);
  }
  snprintf(name, sizeof(name), "rank %d did not arrive", n - 1);
  if (ok && rank != n - 1) {
    moecomm_moe_dispatch_args_t d = ep_dispatch_args(&w, rank, &b.io);
    moecomm_moe_combine_args_t c;
    uint64_t h = 0;
    moecomm_result_t r;
    double t0 = now_ms(), dt;
    ok = upload(&w, rank, &b, s) &&
         MC_CHECK_RC(api, ctx, api->moe_dispatch(g, &d, &h, s), MOECOMM_SUCCESS) &&
         MC_CUDA_OK(cudaStreamSynchronize(s));
    dt = now_ms() - t0;
    c = ep_combine_args(&w, rank, &b.io, h);
    r = api->moe_combine(g, &c, s);
    MC_CHECK(dt < TIMEOUT_MS + 5000, "rank %d: the dispatch ended after %.0f ms", rank, dt);
    MC_CHECK(r == MOECOMM_ERR_TIMEOUT && strstr(api->last_error(ctx), name) != NULL,
             "rank %d: combine after rank %d skipped the dispatch: %d (%s): %s", rank, n - 1,
             (int)r, api->result_string(r), api->last_error(ctx));
    if (rank == 0) printf("skipped dispatch: %s\n", api->last_error(ctx));
  }
  if (ok) world_barrier(ctx, &b, s);
  if (ctx != NULL) api->context_destroy(ctx);
  dbufs_close(&b);
  ep_world_close(&w);
  return ok;
}

typedef struct run {
  int path, what; /* what: 0 eager and graph, 1 timeout */
} run_t;

static int gpu_rank(int rank, int world, void *arg) {
  const run_t *run = arg;
  cudaStream_t s = NULL;
  if (!MC_CUDA_OK(cudaSetDevice(rank)) ||
      !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)))
    return 1;
  if (run->what == 1)
    timeout_case(rank, world, s);
  else if (eager_cases(rank, world, run->path, s))
    graph_case(rank, world, run->path, s);
  cudaStreamDestroy(s);
  return 0;
}

static void run_world(int n, int path, int what, int timeout_s) {
  run_t run = {path, what};
  if (path == PATH_NCCL)
    setenv("MOECOMM_BACKEND_MOE_EP", "nccl", 1);
  else
    unsetenv("MOECOMM_BACKEND_MOE_EP");
  MC_CHECK(mc_test_ranks(n, gpu_rank, &run, timeout_s) == 0, "%s path, %d rank%s%s",
           path_names[path], n, n > 1 ? "s" : "", what == 1 ? ", a skipped dispatch" : "");
  unsetenv("MOECOMM_BACKEND_MOE_EP");
}

int main(int argc, char **argv) {
  int gpus;
  char t[32];
  mc_test_init("moe_gpu", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  api = mc_test_plugin();
  gpus = mc_test_gpu_count();
  setenv("MOECOMM_TIMEOUT_MS", "60000", 1);
  for (int path = 0; path < 2; path++) run_world(1, path, 0, 300);
  if (gpus < 2) {
    mc_test_skip("moe_gpu between processes", "needs 2 CUDA devices, this machine has %d", gpus);
    return mc_test_finish();
  }
  g_replays = 200;
  for (int path = 0; path < 2; path++) run_world(gpus > 8 ? 8 : gpus, path, 0, 300);
  snprintf(t, sizeof(t), "%d", TIMEOUT_MS);
  setenv("MOECOMM_TIMEOUT_MS", t, 1);
  run_world(gpus > 8 ? 8 : gpus, PATH_NVLINK, 1, 120);
  return mc_test_finish();
}
