/* SPDX-License-Identifier: Apache-2.0 */
/* ep.c - expert-parallel dispatch and combine latency per call (bench/run-ep.sh, make bench-ep),
 * on every visible GPU (MC_BENCH_GPU_RANKS=N: the first N; with one GPU a world of one, whose
 * numbers are kernel and HBM numbers, not NVLink numbers).
 *
 * MOE_EP is every rank (tp = ep = world).  Shapes: DeepSeek-V3 (hidden 7168, top-8, 256 experts)
 * and Qwen3-235B (hidden 4096, top-8, 128 experts), bf16, tokens per rank 1, 16, 128, 512, 4096;
 * each token's 8 experts distinct and uniformly random (as a trained router spreads them), the
 * same routing on every rank of a run (every rank regenerates every rank's); the capacity is the
 * busiest expert's rows at 4096 tokens (rounded up to 8), so nothing is dropped.  Paths, in one
 * run: the NVLink kernels (the default within a host) and the NCCL path
 * (MOECOMM_BACKEND_MOE_EP=nccl), one context per path and shape.
 * Method (DESIGN.md "Measuring"): per token count, one eager pair verified (identity experts,
 * integer data: out must be exactly x * sum of the weights), then a CUDA graph of 20 dispatch +
 * combine pairs with an external event node before each call, 3 warm-up + 15 timed replays:
 * the median of the 300 per-call times; the worse rank is reported.  Bytes moved: the rows this
 * rank sends to the other ranks (a token once per destination rank in the dispatch, one row per
 * (token, k) back in the combine), against the 478 GB/s of one H200's NVLink.
 * The rows each rank sends each rank go into the JSON ("splits"), so that
 * packaging/python/benchmarks/ep_a2a.py can time torch.distributed.all_to_all_single carrying the
 * same rows in the same run (bench/run-ep.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bench_gpu.h"
#include "common/bench_plugin.h"

#if !MC_WITH_CUDA
int main(void) {
  printf("SKIP bench-ep: this build has no CUDA support\n");
  return 0;
}
#else

#include <unistd.h>

#include "../host_shim/lib/data.h"
#include "../host_shim/lib/device.h"
#include "../host_shim/lib/launch.h"

#define MAXW 64
#define PAIRS 20
#define WARMUP 3
#define REPLAYS 15
#define NT 5
#define NSHAPES 2
#define NPATHS 2
#define TOP_K 8
#define T_MAX 4096
#define NVLINK_GBS 478.0
static const int k_tokens[NT] = {1, 16, 128, 512, T_MAX};
static const struct {
  const char *name;
  int hidden, experts;
} k_shapes[NSHAPES] = {{"DeepSeek-V3", 7168, 256}, {"Qwen3-235B", 4096, 128}};
static const char *const k_paths[NPATHS] = {"nvlink", "nccl"};

/* One (path, shape, token count) on one rank. */
typedef struct cell {
  double dispatch_us, combine_us;
  long wrong;
  char backend[16];
} cell_t;

typedef struct rres {
  int done;
  char err[512];
  mc_bench_gpu_t gpu;
  cell_t c[NPATHS][NSHAPES][NT];
  double ep_mib[NPATHS][NSHAPES]; /* device memory of the MOE_EP group */
} rres_t;

static const moecomm_api_t *g_api;
static rres_t *g_res; /* MAP_SHARED, world entries */

#define FAIL(r, ...) mc_bench_fail((r)->err, sizeof((r)->err), __VA_ARGS__)
#define CU(r, call) MC_BENCH_CU((r)->err, call)

/* ---- routing (the same on every rank) ---------------------------------------------------- */

/* Member q's T_MAX x TOP_K expert ids for shape sh: distinct, uniform; token counts below T_MAX
   use a prefix. */
static void make_ids(int q, int sh, int32_t *ids) {
  uint64_t st = 0x5eedull ^ ((uint64_t)sh << 40) ^ ((uint64_t)q << 20);
  const int experts = k_shapes[sh].experts;
  for (int t = 0; t < T_MAX; t++)
    for (int k = 0; k < TOP_K; k++) {
      int32_t *id = &ids[t * TOP_K + k];
      int dup;
      do {
        *id = (int32_t)(shim_data_rand(&st) % (uint64_t)experts);
        dup = 0;
        for (int j = 1; j <= k; j++) dup |= id[-j] == *id;
      } while (dup);
    }
}

/* The busiest expert's rows at T_MAX over every member, rounded up to 8. */
static int capacity_of(int world, int sh, int32_t *scratch) {
  int rows[1024] = {0}, cap = 0;
  for (int q = 0; q < world; q++) {
    make_ids(q, sh, scratch);
    for (int i = 0; i < T_MAX * TOP_K; i++)
      if (++rows[scratch[i]] > cap) cap = rows[scratch[i]];
  }
  return (cap + 7) / 8 * 8;
}

/* Rows member q sends member d at t tokens: dispatch (a token once per destination holding one
   of its experts) and combine (one per (token, k)). */
static void rows_to(const int32_t *ids, int t, int world, int experts, int64_t *disp,
                    int64_t *comb) {
  const int el = experts / world;
  for (int d = 0; d < world; d++) disp[d] = comb[d] = 0;
  for (int i = 0; i < t; i++) {
    uint64_t seen = 0;
    for (int k = 0; k < TOP_K; k++) {
      const int d = ids[i * TOP_K + k] / el;
      comb[d]++;
      if (!(seen >> d & 1)) disp[d]++;
      seen |= 1ull << d;
    }
  }
}

/* ---- one rank
   --------------------------------------------------------------------------------- */

typedef struct bench {
  rres_t *r;
  int rank, world;
  cudaStream_t s;
  cudaEvent_t ev[2 * PAIRS + 1];
  moecomm_context_t *ctx;
  moecomm_group_t *ep;
  int sh, cap;
  size_t rb;                   /* row bytes */
  char *x, *recv_x, *out;      /* device */
  int32_t *ids, *counts, *src; /* device */
  float *w;                    /* device */
  uint16_t *h_x, *h_out;       /* host */
  int32_t *h_ids;              /* host: this rank's routing */
  float *h_w;
  uint64_t handle;
} bench_t;

static void shape_free(bench_t *b) {
  void *d[] = {b->x, b->recv_x, b->out, b->ids, b->counts, b->src, b->w};
  for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) cudaFree(d[i]);
  free(b->h_x);
  free(b->h_out);
  free(b->h_w);
  b->x = b->recv_x = b->out = NULL;
  b->ids = b->counts = b->src = NULL;
  b->w = NULL;
  b->h_x = b->h_out = NULL;
  b->h_w = NULL;
  if (b->ctx != NULL) g_api->context_destroy(b->ctx);
  b->ctx = NULL;
}

/* Inputs of this rank for shape sh: integer payload, weights +-1/2, +-1, +-2. */
static int shape_inputs(bench_t *b) {
  static const float k_w[6] = {0.5f, -0.5f, 1.0f, -1.0f, 2.0f, -2.0f};
  const int h = k_shapes[b->sh].hidden;
  shim_data_key_t key = {0x5eedull, b->sh, b->rank, 0};
  uint64_t st = 77 + (uint64_t)b->rank;
  b->h_x = malloc((size_t)T_MAX * (size_t)h * 2);
  b->h_out = malloc((size_t)T_MAX * (size_t)h * 2);
  b->h_w = malloc((size_t)T_MAX * TOP_K * 4);
  if (b->h_x == NULL || b->h_out == NULL || b->h_w == NULL) return FAIL(b->r, "host memory");
  shim_data_fill(b->h_x, 0, (size_t)T_MAX * (size_t)h, MOECOMM_BFLOAT16, &key);
  for (int i = 0; i < T_MAX * TOP_K; i++) b->h_w[i] = k_w[shim_data_rand(&st) % 6];
  make_ids(b->rank, b->sh, b->h_ids);
  CU(b->r, cudaMemcpy(b->x, b->h_x, (size_t)T_MAX * b->rb, cudaMemcpyHostToDevice));
  CU(b->r, cudaMemcpy(b->ids, b->h_ids, (size_t)T_MAX * TOP_K * 4, cudaMemcpyHostToDevice));
  CU(b->r, cudaMemcpy(b->w, b->h_w, (size_t)T_MAX * TOP_K * 4, cudaMemcpyHostToDevice));
  return 1;
}

/* A context for path p, its MOE_EP group configured for shape sh, the buffers and inputs. */
static int shape_open(bench_t *b, int p, int sh) {
  const int h = k_shapes[sh].hidden, el = k_shapes[sh].experts / b->world;
  moecomm_topology_t topo = shim_launch_topology(b->world, b->rank, b->world);
  moecomm_context_params_t params;
  moecomm_moe_config_t mc;
  moecomm_result_t mr;
  if (p == 1)
    setenv("MOECOMM_BACKEND_MOE_EP", "nccl", 1);
  else
    unsetenv("MOECOMM_BACKEND_MOE_EP");
  b->sh = sh;
  b->rb = (size_t)h * 2;
  b->cap = capacity_of(b->world, sh, b->h_ids);
  topo.ep = b->world;
  params = shim_launch_params(&topo, b->rank);
  mr = g_api->context_create(&params, &b->ctx);
  if (mr != MOECOMM_SUCCESS)
    return FAIL(b->r, "context_create: %s: %s", g_api->result_string(mr), g_api->last_error(NULL));
  memset(&mc, 0, sizeof(mc));
  mc.struct_size = sizeof(mc);
  mc.num_experts = k_shapes[sh].experts;
  mc.top_k = TOP_K;
  mc.dtype = MOECOMM_BFLOAT16;
  mc.max_tokens = T_MAX;
  mc.hidden = (size_t)h;
  mc.expert_capacity = b->cap;
  if ((mr = g_api->group_get(b->ctx, MOECOMM_GROUP_MOE_EP, &b->ep)) != MOECOMM_SUCCESS ||
      (mr = g_api->moe_configure(b->ep, &mc)) != MOECOMM_SUCCESS)
    return FAIL(b->r, "moe_configure: %s: %s", g_api->result_string(mr), g_api->last_error(b->ctx));
  CU(b->r, cudaMalloc((void **)&b->x, (size_t)T_MAX * b->rb));
  CU(b->r, cudaMalloc((void **)&b->out, (size_t)T_MAX * b->rb));
  CU(b->r, cudaMalloc((void **)&b->recv_x, (size_t)el * (size_t)b->cap * b->rb));
  CU(b->r, cudaMalloc((void **)&b->ids, (size_t)T_MAX * TOP_K * 4));
  CU(b->r, cudaMalloc((void **)&b->w, (size_t)T_MAX * TOP_K * 4));
  CU(b->r, cudaMalloc((void **)&b->counts, (size_t)el * 4));
  CU(b->r, cudaMalloc((void **)&b->src, (size_t)el * (size_t)b->cap * 12));
  return shape_inputs(b);
}

static moecomm_result_t dispatch(bench_t *b, int t) {
  moecomm_moe_dispatch_args_t d;
  memset(&d, 0, sizeof(d));
  d.struct_size = sizeof(d);
  d.num_tokens = t;
  d.x = b->x;
  d.topk_ids = b->ids;
  d.recv_x = b->recv_x;
  d.recv_counts = b->counts;
  d.recv_src = b->src;
  return g_api->moe_dispatch(b->ep, &d, &b->handle, b->s);
}

static moecomm_result_t combine(bench_t *b, int t) {
  moecomm_moe_combine_args_t c;
  memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(c);
  c.num_tokens = t;
  c.handle = b->handle;
  c.expert_out = b->recv_x; /* identity experts */
  c.topk_weights = b->w;
  c.out = b->out;
  return g_api->moe_combine(b->ep, &c, b->s);
}

static int call_ok(bench_t *b, moecomm_result_t mr, const char *what, int t) {
  if (mr == MOECOMM_SUCCESS) return 1;
  return FAIL(b->r, "%s of %d tokens (%s): %s: %s", what, t, k_shapes[b->sh].name,
              g_api->result_string(mr), g_api->last_error(b->ctx));
}

/* One eager pair of t tokens: out must be exactly x * (sum of the token's weights). */
static int verify(bench_t *b, int t, long *wrong_p) {
  const int h = k_shapes[b->sh].hidden;
  long wrong = 0;
  CU(b->r, cudaMemsetAsync(b->out, 0xff, (size_t)t * b->rb, b->s));
  if (!call_ok(b, dispatch(b, t), "moe_dispatch", t) ||
      !call_ok(b, combine(b, t), "moe_combine", t))
    return 0;
  CU(b->r, cudaStreamSynchronize(b->s));
  CU(b->r, cudaMemcpy(b->h_out, b->out, (size_t)t * b->rb, cudaMemcpyDeviceToHost));
  for (int i = 0; i < t; i++) {
    float ws = 0;
    for (int k = 0; k < TOP_K; k++) ws += b->h_w[i * TOP_K + k];
    for (int j = 0; j < h; j++) {
      const size_t e = (size_t)i * (size_t)h + (size_t)j;
      wrong += b->h_out[e] != mc_bench_f2bf(mc_bench_bf2f(b->h_x[e]) * ws);
    }
  }
  *wrong_p = wrong;
  return 1;
}

/* A graph of PAIRS pairs of t tokens, an external event node before each call and at the end. */
static int capture(bench_t *b, int t, cudaGraphExec_t *exec_p) {
  cudaGraph_t graph = NULL;
  moecomm_result_t mr;
  int good = 1;
  if ((mr = g_api->capture_begin(b->ctx, b->s)) != MOECOMM_SUCCESS)
    return call_ok(b, mr, "capture_begin", t);
  CU(b->r, cudaStreamBeginCapture(b->s, cudaStreamCaptureModeGlobal));
  for (int i = 0; good && i < PAIRS; i++)
    good =
        cudaEventRecordWithFlags(b->ev[2 * i], b->s, cudaEventRecordExternal) == cudaSuccess &&
        call_ok(b, dispatch(b, t), "captured moe_dispatch", t) &&
        cudaEventRecordWithFlags(b->ev[2 * i + 1], b->s, cudaEventRecordExternal) == cudaSuccess &&
        call_ok(b, combine(b, t), "captured moe_combine", t);
  good = good &&
         cudaEventRecordWithFlags(b->ev[2 * PAIRS], b->s, cudaEventRecordExternal) == cudaSuccess;
  if (cudaStreamEndCapture(b->s, &graph) != cudaSuccess || !good)
    good = FAIL(b->r, "capturing %d pairs of %d tokens: %s", PAIRS, t,
                cudaGetErrorString(cudaGetLastError()));
  if (good && cudaGraphInstantiate(exec_p, graph, 0) != cudaSuccess)
    good = FAIL(b->r, "cudaGraphInstantiate: %s", cudaGetErrorString(cudaGetLastError()));
  if (graph != NULL) cudaGraphDestroy(graph);
  mr = g_api->capture_end(b->ctx, b->s); /* collective: whatever happened above */
  return good && call_ok(b, mr, "capture_end", t);
}

/* Median per-call times of the graph's dispatches and combines over the timed replays. */
static int time_graph(bench_t *b, cudaGraphExec_t exec, cell_t *c) {
  static double td[REPLAYS * PAIRS], tc[REPLAYS * PAIRS];
  for (int rep = 0; rep < WARMUP + REPLAYS; rep++) {
    CU(b->r, cudaGraphLaunch(exec, b->s));
    CU(b->r, cudaStreamSynchronize(b->s));
    for (int i = 0; rep >= WARMUP && i < PAIRS; i++) {
      float d = 0, k = 0;
      CU(b->r, cudaEventElapsedTime(&d, b->ev[2 * i], b->ev[2 * i + 1]));
      CU(b->r, cudaEventElapsedTime(&k, b->ev[2 * i + 1], b->ev[2 * i + 2]));
      td[(rep - WARMUP) * PAIRS + i] = 1000.0 * d;
      tc[(rep - WARMUP) * PAIRS + i] = 1000.0 * k;
    }
  }
  c->dispatch_us = mc_bench_median(td, REPLAYS * PAIRS);
  c->combine_us = mc_bench_median(tc, REPLAYS * PAIRS);
  return 1;
}

static int run_shape(bench_t *b, int p, int sh) {
  moecomm_group_stats_t st;
  int ok = shape_open(b, p, sh);
  for (int i = 0; ok && i < NT; i++) {
    cell_t *c = &b->r->c[p][sh][i];
    cudaGraphExec_t exec = NULL;
    shim_launch_phase("%s %s %d tokens", k_paths[p], k_shapes[sh].name, k_tokens[i]);
    ok = verify(b, k_tokens[i], &c->wrong) && capture(b, k_tokens[i], &exec) &&
         time_graph(b, exec, c);
    if (exec != NULL) cudaGraphExecDestroy(exec);
  }
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (ok && g_api->group_stats(b->ep, &st) == MOECOMM_SUCCESS) {
    b->r->ep_mib[p][sh] = (double)st.device_bytes / 1048576.0;
    for (int i = 0; i < NT; i++)
      snprintf(b->r->c[p][sh][i].backend, sizeof(b->r->c[p][sh][i].backend), "%s",
               st.backend_name ? st.backend_name : "?");
  }
  shape_free(b);
  return ok;
}

static int rank_main(int rank, int world, void *arg) {
  bench_t b;
  int ok;
  (void)arg;
  memset(&b, 0, sizeof(b));
  b.rank = rank;
  b.world = world;
  b.r = &g_res[rank];
  b.h_ids = malloc((size_t)T_MAX * TOP_K * 4);
  ok = b.h_ids != NULL ? 1 : FAIL(b.r, "host memory");
  ok = ok && mc_bench_rank_gpu(rank, &b.r->gpu, b.r->err, sizeof(b.r->err));
  ok = ok && cudaStreamCreateWithFlags(&b.s, cudaStreamNonBlocking) == cudaSuccess;
  for (int i = 0; ok && i < 2 * PAIRS + 1; i++) ok = cudaEventCreate(&b.ev[i]) == cudaSuccess;
  if (ok) g_api = mc_bench_plugin();
  for (int p = 0; ok && p < NPATHS; p++)
    for (int sh = 0; ok && sh < NSHAPES; sh++) ok = run_shape(&b, p, sh);
  b.r->done = ok;
  fflush(stdout);
  fflush(stderr);
  _exit(ok ? 0 : 1); /* a peer may still wait in a call after a failure: no teardown */
}

/* ---- report ------------------------------------------------------------------------------- */

/* The worse rank's cell and the summed wrong elements. */
static cell_t worst(const rres_t *res, int world, int p, int sh, int i) {
  cell_t c = res[0].c[p][sh][i];
  c.wrong = 0;
  for (int q = 0; q < world; q++) {
    const cell_t *o = &res[q].c[p][sh][i];
    if (o->dispatch_us > c.dispatch_us) c.dispatch_us = o->dispatch_us;
    if (o->combine_us > c.combine_us) c.combine_us = o->combine_us;
    c.wrong += o->wrong;
  }
  return c;
}

/* Rows rank 0 sends to the other ranks (dispatch, combine) at t tokens. */
static void rank0_rows(int world, int sh, int t, int32_t *ids, int64_t *disp, int64_t *comb) {
  int64_t d[MAXW], c[MAXW];
  make_ids(0, sh, ids);
  rows_to(ids, t, world, k_shapes[sh].experts, d, c);
  *disp = *comb = 0;
  for (int q = 1; q < world; q++) {
    *disp += d[q];
    *comb += c[q];
  }
}

static long print_tables(const rres_t *res, int world, int32_t *ids) {
  long wrong = 0;
  for (int sh = 0; sh < NSHAPES; sh++) {
    const double rb = 2.0 * k_shapes[sh].hidden;
    printf(
        "\n%s: hidden %d, top-%d, %d experts, bf16; MOE_EP device MiB: nvlink %.1f, nccl "
        "%.1f\n",
        k_shapes[sh].name, k_shapes[sh].hidden, TOP_K, k_shapes[sh].experts, res[0].ep_mib[0][sh],
        res[0].ep_mib[1][sh]);
    printf("%6s %9s %9s | %10s %10s %8s %6s | %10s %10s %8s | %6s\n", "tokens", "rows out",
           "rows back", "nvl disp", "nvl comb", "GB/s", "%478", "nccl disp", "nccl comb", "GB/s",
           "#wrong");
    for (int i = 0; i < NT; i++) {
      const cell_t v = worst(res, world, 0, sh, i), n = worst(res, world, 1, sh, i);
      int64_t dr = 0, cr = 0;
      double gv, gn;
      rank0_rows(world, sh, k_tokens[i], ids, &dr, &cr);
      gv = (double)dr * rb / (v.dispatch_us * 1e3);
      gn = (double)dr * rb / (n.dispatch_us * 1e3);
      printf("%6d %9lld %9lld | %10.1f %10.1f %8.1f %6.1f | %10.1f %10.1f %8.1f | %6ld\n",
             k_tokens[i], (long long)dr, (long long)cr, v.dispatch_us, v.combine_us, gv,
             100.0 * gv / NVLINK_GBS, n.dispatch_us, n.combine_us, gn, v.wrong + n.wrong);
      wrong += v.wrong + n.wrong;
    }
  }
  return wrong;
}

/* The splits every rank's all_to_all_single needs to carry the same rows (ep_a2a.py). */
static void json_splits(FILE *jf, int world, int sh, int t, int32_t *ids) {
  for (int which = 0; which < 2; which++) {
    fprintf(jf, ", \"%s_rows\": [", which ? "combine" : "dispatch");
    for (int q = 0; q < world; q++) {
      int64_t d[MAXW], c[MAXW];
      make_ids(q, sh, ids);
      rows_to(ids, t, world, k_shapes[sh].experts, d, c);
      fprintf(jf, "%s[", q ? ", " : "");
      for (int r = 0; r < world; r++)
        fprintf(jf, "%s%lld", r ? ", " : "", (long long)(which ? c[r] : d[r]));
      fprintf(jf, "]");
    }
    fprintf(jf, "]");
  }
}

static int write_json(const mc_bench_run_t *run, const rres_t *res, int world, const char *nccl,
                      long wrong, int32_t *ids) {
  FILE *jf = mc_bench_json_open(run->json, "ep", run, &res[0].gpu, 1, nccl);
  if (jf == NULL) return 1;
  fprintf(jf, ",\n  \"world\": %d,\n  \"nvlink_numbers\": %s,\n  \"nvlink_gbs\": %.0f,\n", world,
          world > 1 ? "true" : "false", NVLINK_GBS);
  fprintf(jf,
          "  \"method\": \"CUDA graph of %d dispatch+combine pairs, an external event node "
          "before each call, %d warm-up + %d timed replays, median per call, worse rank\",\n",
          PAIRS, WARMUP, REPLAYS);
  fprintf(jf, "  \"results\": [\n");
  for (int sh = 0; sh < NSHAPES; sh++)
    for (int i = 0; i < NT; i++) {
      int64_t dr = 0, cr = 0;
      rank0_rows(world, sh, k_tokens[i], ids, &dr, &cr);
      fprintf(jf,
              "    {\"shape\": \"%s\", \"hidden\": %d, \"top_k\": %d, \"experts\": %d, "
              "\"dtype\": \"bf16\", \"tokens_per_rank\": %d, \"rank0_rows_out\": %lld, "
              "\"rank0_rows_back\": %lld",
              k_shapes[sh].name, k_shapes[sh].hidden, TOP_K, k_shapes[sh].experts, k_tokens[i],
              (long long)dr, (long long)cr);
      for (int p = 0; p < NPATHS; p++) {
        const cell_t c = worst(res, world, p, sh, i);
        fprintf(jf,
                ", \"%s\": {\"backend\": \"%s\", \"dispatch_us\": %.3f, \"combine_us\": %.3f, "
                "\"dispatch_gbs\": %.3f, \"wrong\": %ld, \"ep_device_mib\": %.1f}",
                k_paths[p], c.backend, c.dispatch_us, c.combine_us,
                (double)dr * 2.0 * k_shapes[sh].hidden / (c.dispatch_us * 1e3), c.wrong,
                res[0].ep_mib[p][sh]);
      }
      json_splits(jf, world, sh, k_tokens[i], ids);
      fprintf(jf, "}%s\n", sh + 1 < NSHAPES || i + 1 < NT ? "," : "");
    }
  fprintf(jf, "  ],\n  \"wrong\": %ld\n}\n", wrong);
  if (fclose(jf) != 0) return 1;
  printf("\nwrote %s\n", run->json);
  return 0;
}

int main(int argc, char **argv) {
  mc_bench_run_t run;
  rres_t *res;
  char nccl[32];
  int world = 0, bad = 0;
  long wrong;
  int32_t *ids = malloc((size_t)T_MAX * TOP_K * 4);
  int rc =
      mc_bench_gpu_begin(argc, argv, "bench-ep", shim_gpu_devices() == 1 ? 1 : 0, &run, &world);
  if (rc >= 0 || ids == NULL) return ids == NULL ? 1 : rc;
  if (world > MAXW) world = MAXW;
  mc_bench_nccl_version(nccl, sizeof(nccl));
  if ((res = mc_bench_shared(sizeof(rres_t) * (size_t)world)) == NULL) return 1;
  g_res = res;
  if (shim_launch(world, rank_main, NULL, 900) != 0) bad = 1;
  for (int q = 0; q < world; q++)
    if (!res[q].done) {
      printf("bench-ep: FAILED: rank %d: %s\n", q, res[q].err[0] ? res[q].err : "did not finish");
      bad = 1;
    }
  if (bad) return 1;
  mc_bench_print_facts("bench-ep", &run, &res[0].gpu, nccl);
  printf(
      "%d rank%s, MOE_EP = every rank; method: CUDA graph of %d dispatch+combine pairs, %d "
      "warm-up + %d timed replays, median per call (us), worse rank\n",
      world, world > 1 ? "s" : "", PAIRS, WARMUP, REPLAYS);
  printf(
      "rows out / back: rows rank 0 sends the other ranks in a dispatch / combine; GB/s = rows "
      "out x row bytes / dispatch time, against %.0f GB/s of NVLink\n",
      NVLINK_GBS);
  if (world == 1)
    printf(
        "ONE GPU: a world of one moves nothing over NVLink; these are kernel and HBM numbers, "
        "NOT NVLink numbers\n");
  wrong = print_tables(res, world, ids);
  if (run.json != NULL) bad |= write_json(&run, res, world, nccl, wrong, ids);
  if (wrong != 0) printf("bench-ep: %ld wrong elements\n", wrong);
  free(ids);
  return wrong != 0 || bad;
}

#endif
