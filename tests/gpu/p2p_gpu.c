/* SPDX-License-Identifier: Apache-2.0 */
/* p2p_gpu.c - send/recv, all_to_all and all_to_all_v through the NCCL backend
 * (MOECOMM_BACKEND=nccl), rank r on GPU r: worlds of 2, 3, 4 and 8 ranks, those this machine has
 * GPUs for (one visible skip line with fewer than 2).
 *
 * Eager, per world: the cases of tests/common/p2p_cases.h on device buffers, as
 * tests/core/shm_p2p.c runs them on the CPU: all_to_all of every dtype x per-peer counts 0, 1, 7,
 * 4095, 262147; all_to_all_v of every shape (zero, uneven with gaps and shuffled blocks, large) x
 * dtype; every ordered pair (counts 0, 1, 7, 4095; 300007 between a few), rings both ways, a chain,
 * six messages in a row (FIFO, two pairs at once with 4+ ranks), a pipeline over the PP group
 * (activations forward, gradients back, each stage transforming them).  Every output is poisoned
 * first and compared byte for byte; guards and send buffers must stay untouched.
 *
 * Captured, per world, in a new context whose NCCL communicator and point-to-point connections
 * are all made inside the capture: an all_to_all, an all_to_all_v, a ring step and a pipeline
 * hand-off in one graph, replayed 20 times with new inputs uploaded before each launch and
 * outputs poisoned, every replay checked; then an eager all_to_all on the same context.
 *
 * Failures (2 GPUs, MOECOMM_TIMEOUT_MS=4000): a peer that makes no send/recv -> the first send
 * (its connection) fails with MOECOMM_ERR_TIMEOUT in about the timeout; a peer killed before the
 * first send, and one killed during a stream of sends -> MOECOMM_ERR_PEER or TIMEOUT within the
 * timeout and slack, the stream never hangs, context_destroy returns.
 *
 * Not covered on NCCL: a send and a recv that disagree (count, dtype, both sending).  NCCL cannot
 * see it without a host round trip per call; the ABI makes agreement the caller's duty. */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/harness.h"
#include "../common/p2p_cases.h"

#define REPLAYS 20
#define FAULT_TIMEOUT_MS 4000
#define SLACK_MS 4000 /* abort, process exit and scheduling on top of the timeout */

static const moecomm_api_t *api;
static moecomm_context_t *g_ctx;
static cudaStream_t g_stream;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The stream's work, but never for ever: 1 when it drained without error. */
static int wait_stream(double limit_ms) {
  struct timespec ts = {0, 200000};
  double until = now_ms() + limit_ms;
  for (;;) {
    cudaError_t e = cudaStreamQuery(g_stream);
    if (e == cudaSuccess) return 1;
    if (e != cudaErrorNotReady) return MC_CUDA_OK(e);
    if (now_ms() > until)
      return MC_CHECK(0, "the stream did not drain within %.0f ms (a hung transfer)", limit_ms);
    nanosleep(&ts, NULL);
  }
}

/* Device buffers on g_stream: the cases' buffer operations. */
static void *dev_alloc(size_t bytes) {
  void *p = NULL;
  return MC_CUDA_OK(cudaMalloc(&p, bytes)) ? p : NULL;
}
static void dev_free(void *p) {
  (void)cudaFree(p);
}
static int dev_put(void *dst, const void *host, size_t bytes) {
  return MC_CUDA_OK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, g_stream));
}
static int dev_get(void *host, const void *src, size_t bytes) {
  return wait_stream(60000) && MC_CUDA_OK(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
}

static p2p_env_t env(void) {
  p2p_env_t e = {api, g_ctx, g_stream, dev_alloc, dev_free, dev_put, dev_get};
  return e;
}

/* A context on GPU `rank` with the NCCL backend; the stream too on first use.  pp: PP size. */
static int create(int rank, int world, int pp) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world / pp);
  moecomm_context_params_t p;
  topo.pp = pp;
  p = mc_test_ctx_params(&topo, rank);
  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  if (api == NULL) api = mc_test_plugin();
  if (!MC_CUDA_OK(cudaSetDevice(rank)) ||
      (g_stream == NULL &&
       !MC_CUDA_OK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking))))
    return 0;
  return MC_CHECK_RC(api, NULL, api->context_create(&p, &g_ctx), MOECOMM_SUCCESS);
}

static int destroy(void) {
  int ok = MC_CHECK_RC(api, g_ctx, api->context_destroy(g_ctx), MOECOMM_SUCCESS);
  g_ctx = NULL;
  return ok;
}

/* ---- eager ---- */

static int eager_cases(int world, uint64_t *id) {
  p2p_env_t e = env();
  p2p_grp_t wg;
  int failed = 0;
  if (!p2p_group(&e, MOECOMM_GROUP_WORLD, &wg)) return 1;
  /* pairs first: each pair's first message connects it (the all-to-alls connect the rest) */
  failed += p2p_pair_cases(&e, &wg, id);
  failed += p2p_ring_cases(&e, &wg, id);
  failed += !p2p_chain_case(&e, &wg, (*id)++, 100003);
  failed += p2p_fifo_case(&e, &wg, (*id)++, 0, 1);
  if (world >= 4) failed += p2p_fifo_case(&e, &wg, *id, 3, 2); /* a second pair at once */
  (*id)++;
  failed += p2p_pipeline_case(&e, (*id)++);
  failed += p2p_a2a_cases(&e, &wg, id, 0);
  return failed;
}

/* ---- captured ---- */

/* One buffer pair of the graph: fixed device memory, host mirrors refilled each replay. */
typedef struct cap_buf {
  p2p_vplan_t v; /* the layout fixed at capture; v.case_id changes per replay */
  moecomm_dtype_t dt;
  size_t es;
  unsigned char *hs, *hr, *ds, *dr;
} cap_buf_t;

typedef struct cap {
  p2p_grp_t wg, pp;
  cap_buf_t a2a, a2av, ring, pipe; /* ring, pipe: v.sc/rc[0] hold the count */
} cap_t;

static int cap_alloc(cap_buf_t *b, moecomm_dtype_t dt) {
  b->dt = dt;
  b->es = shim_dtype_size(dt);
  b->hs = malloc(b->v.send_len * b->es);
  b->hr = malloc(b->v.recv_len * b->es);
  b->ds = dev_alloc(b->v.send_len * b->es);
  b->dr = dev_alloc(b->v.recv_len * b->es);
  return MC_CHECK(b->hs && b->hr && b->ds && b->dr, "capture buffers");
}

static void cap_free(cap_buf_t *b) {
  free(b->hs);
  free(b->hr);
  if (b->ds != NULL) dev_free(b->ds);
  if (b->dr != NULL) dev_free(b->dr);
}

/* The layouts: all_to_all of 1000 fp32, all_to_all_v uneven bf16, a ring step of 300007 int32,
   a pipeline hand-off of 5000 fp16 (every stage keeps what it received in dr). */
static int cap_setup(cap_t *c, uint64_t id) {
  p2p_env_t e = env();
  if (!p2p_group(&e, MOECOMM_GROUP_WORLD, &c->wg) || !p2p_group(&e, MOECOMM_GROUP_PP, &c->pp))
    return 0;
  p2p_vplan_equal(&c->a2a.v, id, c->wg.n, c->wg.me, 1000, 1);
  p2p_vplan(&c->a2av.v, P2P_V_UNEVEN, id + 1, c->wg.n, c->wg.me, 0);
  c->ring.v.sc[0] = c->ring.v.rc[0] = 300007;
  c->ring.v.send_len = c->ring.v.recv_len = 300007 + P2P_GUARD;
  c->pipe.v.sc[0] = c->pipe.v.rc[0] = 5000;
  c->pipe.v.send_len = c->pipe.v.recv_len = 5000 + P2P_GUARD;
  return cap_alloc(&c->a2a, MOECOMM_FLOAT32) && cap_alloc(&c->a2av, MOECOMM_BFLOAT16) &&
         cap_alloc(&c->ring, MOECOMM_INT32) && cap_alloc(&c->pipe, MOECOMM_FLOAT16);
}

/* The graph's calls, in the order every rank issues them. */
static int cap_issue(cap_t *c) {
  const p2p_grp_t *w = &c->wg, *pp = &c->pp;
  const int next = (w->me + 1) % w->n, prev = (w->me + w->n - 1) % w->n;
  const size_t rn = c->ring.v.sc[0], pn = c->pipe.v.sc[0];
  int ok = MC_CHECK_RC(
      api, g_ctx,
      api->all_to_all(w->g, c->a2a.ds + c->a2a.v.sd[0] * 4, c->a2a.dr + c->a2a.v.rd[0] * 4,
                      c->a2a.v.sc[0], MOECOMM_FLOAT32, g_stream),
      MOECOMM_SUCCESS);
  ok = ok && MC_CHECK_RC(api, g_ctx,
                         api->all_to_all_v(w->g, c->a2av.ds, c->a2av.v.sc, c->a2av.v.sd, c->a2av.dr,
                                           c->a2av.v.rc, c->a2av.v.rd, MOECOMM_BFLOAT16, g_stream),
                         MOECOMM_SUCCESS);
  for (int half = 0; half < 2 && ok; half++) /* even members send first */
    ok = MC_CHECK_RC(api, g_ctx,
                     half == w->me % 2
                         ? api->send(w->g, c->ring.ds, rn, MOECOMM_INT32, next, g_stream)
                         : api->recv(w->g, c->ring.dr, rn, MOECOMM_INT32, prev, g_stream),
                     MOECOMM_SUCCESS);
  if (ok && pp->me > 0)
    ok = MC_CHECK_RC(api, g_ctx,
                     api->recv(pp->g, c->pipe.dr, pn, MOECOMM_FLOAT16, pp->me - 1, g_stream),
                     MOECOMM_SUCCESS);
  if (ok && pp->me < pp->n - 1)
    ok = MC_CHECK_RC(api, g_ctx,
                     api->send(pp->g, pp->me == 0 ? c->pipe.ds : c->pipe.dr, pn, MOECOMM_FLOAT16,
                               pp->me + 1, g_stream),
                     MOECOMM_SUCCESS);
  return ok;
}

/* New inputs for case `id` and poisoned outputs, uploaded on the stream. */
static int cap_upload(cap_t *c, uint64_t id) {
  const p2p_grp_t *w = &c->wg;
  cap_buf_t *bs[4] = {&c->a2a, &c->a2av, &c->ring, &c->pipe};
  c->a2a.v.case_id = id;
  c->a2av.v.case_id = id + 1;
  p2p_vfill_send(&c->a2a.v, c->a2a.hs, 4);
  p2p_vfill_send(&c->a2av.v, c->a2av.hs, 2);
  memset(c->ring.hs, P2P_POISON, c->ring.v.send_len * 4);
  p2p_fill(c->ring.hs, c->ring.v.sc[0] * 4, p2p_seed(id + 2, w->me, (w->me + 1) % w->n));
  memset(c->pipe.hs, P2P_POISON, c->pipe.v.send_len * 2);
  p2p_fill(c->pipe.hs, c->pipe.v.sc[0] * 2, p2p_seed(id + 3, 0, c->pp.n - 1));
  for (int i = 0; i < 4; i++) {
    memset(bs[i]->hr, P2P_POISON, bs[i]->v.recv_len * bs[i]->es);
    if (!dev_put(bs[i]->ds, bs[i]->hs, bs[i]->v.send_len * bs[i]->es) ||
        !dev_put(bs[i]->dr, bs[i]->hr, bs[i]->v.recv_len * bs[i]->es))
      return 0;
  }
  return 1;
}

/* Every output of replay `id`. */
static int cap_check(cap_t *c, uint64_t id, int replay) {
  const p2p_grp_t *w = &c->wg;
  cap_buf_t *bs[4] = {&c->a2a, &c->a2av, &c->ring, &c->pipe};
  const size_t rb = c->ring.v.rc[0] * 4, pb = c->pipe.v.rc[0] * 2;
  char what[64];
  int ok = 1;
  for (int i = 0; i < 4; i++)
    if (!dev_get(bs[i]->hr, bs[i]->dr, bs[i]->v.recv_len * bs[i]->es)) return 0;
  snprintf(what, sizeof(what), "replay %d: all_to_all", replay);
  ok &= p2p_vcheck(&c->a2a.v, c->a2a.hr, 4, what);
  snprintf(what, sizeof(what), "replay %d: all_to_all_v", replay);
  ok &= p2p_vcheck(&c->a2av.v, c->a2av.hr, 2, what);
  ok &= MC_CHECK(
      p2p_diff(c->ring.hr, rb, p2p_seed(id + 2, (w->me + w->n - 1) % w->n, w->me)) == SIZE_MAX &&
          p2p_unpoisoned(c->ring.hr + rb, P2P_GUARD * 4) == 0,
      "replay %d: ring step into member %d wrong", replay, w->me);
  if (c->pp.me > 0)
    ok &= MC_CHECK(p2p_diff(c->pipe.hr, pb, p2p_seed(id + 3, 0, c->pp.n - 1)) == SIZE_MAX &&
                       p2p_unpoisoned(c->pipe.hr + pb, P2P_GUARD * 2) == 0,
                   "replay %d: pipeline stage %d got wrong activations", replay, c->pp.me);
  return ok;
}

/* Capture (capture scope around stream capture in `mode`), then REPLAYS checked replays. */
static int captured_cases(enum cudaStreamCaptureMode mode, uint64_t *id) {
  cap_t c;
  cudaGraph_t graph = NULL;
  cudaGraphExec_t exec = NULL;
  int ok;
  memset(&c, 0, sizeof(c));
  ok = cap_setup(&c, *id) && cap_upload(&c, *id) && wait_stream(60000);
  ok = ok && MC_CHECK_RC(api, g_ctx, api->capture_begin(g_ctx, g_stream), MOECOMM_SUCCESS) &&
       MC_CUDA_OK(cudaStreamBeginCapture(g_stream, mode));
  if (ok) {
    int issued = cap_issue(&c);
    cudaError_t ce = cudaStreamEndCapture(g_stream, &graph);
    ok = issued && MC_CUDA_OK(ce);
    ok &= MC_CHECK_RC(api, g_ctx, api->capture_end(g_ctx, g_stream), MOECOMM_SUCCESS);
  }
  ok = ok && MC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int r = 1; r <= REPLAYS && ok; r++) {
    uint64_t rid = *id + 16u * (uint64_t)r;
    ok =
        cap_upload(&c, rid) && MC_CUDA_OK(cudaGraphLaunch(exec, g_stream)) && cap_check(&c, rid, r);
  }
  MC_CHECK(ok, "%d replays of the graph (capture mode %d)", REPLAYS, (int)mode);
  *id += 16u * (REPLAYS + 1);
  if (exec != NULL) (void)cudaGraphExecDestroy(exec);
  if (graph != NULL) (void)cudaGraphDestroy(graph);
  cap_free(&c.a2a);
  cap_free(&c.a2av);
  cap_free(&c.ring);
  cap_free(&c.pipe);
  return !ok;
}

/* One world: eager cases, then a graph on the same context (everything connected before
   capture, global capture mode); then a new context whose communicator and connections are all
   made inside the capture (thread-local mode, as NCCL's own threads then may allocate), and an
   eager all_to_all after the replays. */
static int world_rank(int rank, int world, void *arg) {
  const int pp = world >= 4 ? 4 : world;
  uint64_t id = (uint64_t)world * 1000000u;
  int failed = 0;
  (void)arg;
  if (!create(rank, world, pp)) return 1;
  failed += eager_cases(world, &id);
  failed += captured_cases(cudaStreamCaptureModeGlobal, &id);
  if (!destroy() || !create(rank, world, pp)) return 1;
  failed += captured_cases(cudaStreamCaptureModeThreadLocal, &id);
  {
    p2p_env_t e = env();
    p2p_grp_t wg;
    failed += !p2p_group(&e, MOECOMM_GROUP_WORLD, &wg) ||
              !p2p_a2a_case(&e, &wg, id++, MOECOMM_FLOAT16, 0, 4095, 0);
  }
  failed += !destroy();
  if (rank == 0) printf("world %d: eager and captured cases done\n", world);
  return failed != 0;
}

/* ---- failures (2 GPUs) ---- */

enum { F_SILENT, F_KILLED_EARLY, F_KILLED_LATE, F_KINDS };
static const char *const k_fault_names[F_KINDS] = {"a peer that never receives",
                                                   "a peer killed before the first send",
                                                   "a peer killed during a stream of sends"};

static void *killer(void *arg) {
  (void)arg;
  usleep(3000);
  kill(getpid(), SIGKILL);
  return NULL;
}

/* Polls the stream until it is no longer busy (done or failed): 0 when still busy at limit. */
static int stream_settles(double limit_ms) {
  struct timespec ts = {0, 1000000};
  double until = now_ms() + limit_ms;
  while (cudaStreamQuery(g_stream) == cudaErrorNotReady)
    if (now_ms() > until)
      return 0;
    else
      nanosleep(&ts, NULL);
  (void)cudaGetLastError();
  return 1;
}

/* Rank 1 misbehaves; rank 0 sends 1 MiB messages until a call fails, which must happen within
   the timeout and slack, with PEER or TIMEOUT (TIMEOUT for F_SILENT), naming rank 1. */
static int fault_rank(int rank, int world, void *arg) {
  const int kind = *(const int *)arg;
  const size_t n = 1u << 18;
  moecomm_group_t *g = NULL;
  float *d = NULL;
  moecomm_result_t r = MOECOMM_SUCCESS;
  double t0, dt;
  int calls = 0;
  if (!create(rank, world, 1) ||
      !MC_CHECK_RC(api, g_ctx, api->group_get(g_ctx, MOECOMM_GROUP_WORLD, &g), MOECOMM_SUCCESS) ||
      !MC_CUDA_OK(cudaMalloc((void **)&d, n * 4)) || !MC_CUDA_OK(cudaMemset(d, 0, n * 4)) ||
      !MC_CHECK_RC(api, g_ctx, api->all_reduce(g, d, d, n, MOECOMM_FLOAT32, MOECOMM_SUM, g_stream),
                   MOECOMM_SUCCESS) ||
      !wait_stream(60000))
    return 1;                  /* the communicator exists on both ranks */
  if (kind == F_KILLED_LATE) { /* connected: one message through first */
    r = rank == 0 ? api->send(g, d, n, MOECOMM_FLOAT32, 1, g_stream)
                  : api->recv(g, d, n, MOECOMM_FLOAT32, 0, g_stream);
    if (!MC_CHECK_RC(api, g_ctx, r, MOECOMM_SUCCESS) || !wait_stream(60000)) return 1;
  }
  if (rank == 1) {
    if (kind == F_SILENT) {
      usleep((FAULT_TIMEOUT_MS + 1500) * 1000);
      return !destroy();
    }
    mc_test_rank_expect_death();
    if (kind == F_KILLED_EARLY) kill(getpid(), SIGKILL);
    for (int i = 0;; i++) {
      pthread_t t;
      if (i == 10 && pthread_create(&t, NULL, killer, NULL) != 0) kill(getpid(), SIGKILL);
      if (api->recv(g, d, n, MOECOMM_FLOAT32, 0, g_stream) != MOECOMM_SUCCESS) pause();
      (void)stream_settles(60000);
    }
  }
  if (kind == F_KILLED_EARLY) usleep(300 * 1000);
  t0 = now_ms();
  while (r == MOECOMM_SUCCESS && now_ms() - t0 < FAULT_TIMEOUT_MS + SLACK_MS) {
    r = api->send(g, d, n, MOECOMM_FLOAT32, 1, g_stream);
    calls++;
    if (r == MOECOMM_SUCCESS && !MC_CHECK(stream_settles(FAULT_TIMEOUT_MS + SLACK_MS),
                                          "%s: the stream hung", k_fault_names[kind]))
      break;
  }
  dt = now_ms() - t0;
  MC_CHECK(kind == F_SILENT ? r == MOECOMM_ERR_TIMEOUT
                            : r == MOECOMM_ERR_PEER || r == MOECOMM_ERR_TIMEOUT,
           "%s: rank 0 got %d after %d calls: %s", k_fault_names[kind], (int)r, calls,
           api->last_error(g_ctx));
  MC_CHECK(dt <= FAULT_TIMEOUT_MS + SLACK_MS && (kind != F_SILENT || dt >= FAULT_TIMEOUT_MS - 500),
           "%s: the error came after %.0f ms (MOECOMM_TIMEOUT_MS=%d)", k_fault_names[kind], dt,
           FAULT_TIMEOUT_MS);
  MC_CHECK(strstr(api->last_error(g_ctx), "rank 1") != NULL ||
               strstr(api->last_error(g_ctx), "ranks 1") != NULL ||
               strstr(api->last_error(g_ctx), "ranks 0,1") != NULL,
           "%s: the message names neither rank 1 nor the group: %s", k_fault_names[kind],
           api->last_error(g_ctx));
  printf("%s: rank 0 failed after %.0f ms and %d calls: %s\n", k_fault_names[kind], dt, calls,
         api->last_error(g_ctx));
  t0 = now_ms();
  destroy();
  MC_CHECK(now_ms() - t0 < 10000.0, "%s: context_destroy took %.0f ms", k_fault_names[kind],
           now_ms() - t0);
  return 0;
}

int main(int argc, char **argv) {
  static const int worlds[] = {2, 3, 4, 8};
  char t[16];
  mc_test_init("p2p_gpu", argc, argv);
  if (!mc_test_need_gpus(2)) return mc_test_finish();
  setenv("MOECOMM_TIMEOUT_MS", "60000", 1);
  for (size_t i = 0; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
    if (worlds[i] > mc_test_gpu_count()) {
      mc_test_skip("world of more GPUs", "%d ranks need %d GPUs, this machine has %d", worlds[i],
                   worlds[i], mc_test_gpu_count());
      continue;
    }
    MC_CHECK(mc_test_ranks(worlds[i], world_rank, NULL, 600) == 0, "world %d", worlds[i]);
  }
  snprintf(t, sizeof(t), "%d", FAULT_TIMEOUT_MS);
  setenv("MOECOMM_TIMEOUT_MS", t, 1);
  printf("(launcher lines about rank 1 killed by signal 9 are expected)\n");
  for (int kind = 0; kind < F_KINDS; kind++)
    MC_CHECK(mc_test_ranks(2, fault_rank, &kind, 120) == 0, "%s", k_fault_names[kind]);
  return mc_test_finish();
}
