/* SPDX-License-Identifier: Apache-2.0 */
/* ep_kernels.c - expert-parallel dispatch and combine kernels (kernels/ep.cu) driven directly,
 * with 2, 4 and 8 simulated members on one GPU.
 *
 * Members are segments on one device, one stream per member; all members' kernels of a call are
 * launched together with grids small enough to be resident at once (the pattern of
 * custom_kernels.c).  The NCCL path's exchange is simulated with device copies between the pack
 * and unpack kernels.
 *
 * Eager cases, n = 2, 4, 8: every routing case of tests/common/ep_cases.h (empty experts, every
 * token to one expert, masked slots, all of a token's experts on one member with repeated ids),
 * member 0 with T_max tokens, member 1 with none, the others random counts; fp32, fp16, bf16 and
 * fp8 (with scales) payloads; integer and real data; two calls per case on the same segments;
 * grids of 1, 2 and 8-16 blocks.  Each path's whole output buffers (recv_x, recv_scales,
 * recv_counts, recv_src, out, with guard bytes after each, all poisoned before the call) must
 * equal the CPU reference's (plugin/ep_layout.c) byte for byte: same layout and bits on both paths,
 * nothing written past the counts or out of bounds.  With integer data the identity experts'
 * combine must also be exactly sum over kept k of w * x.  Capacity overflow (C = 3) and an invalid
 * expert id: the data error recorded as specified, outputs still equal to the reference. Errors: a
 * member that never launches (dispatch and combine) -> the others record a timeout naming it, and
 * their next call returns at once; a combine before any dispatch -> order error; a lost NCCL block
 * -> tag error naming its sender. Graph: each member captures dispatch + combine once; 1000
 * replays, each with new routing, token data and weights written into the captured buffers, each
 * checked against the reference. With --bench (or MC_EP_BENCH=1): median times of dispatch and
 * combine, 2 simulated members, DeepSeek-V3 and Qwen3-235B shapes, bf16.  With --sanitize: only
 * cases whose kernels never wait for another member's (for compute-sanitizer, which may
 * serialise kernels). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../kernels/mc_ep.h"
#include "../common/ep_cases.h"
#include "custom_util.h"

#define MAXN 8
#define GUARD 256
#define POISON 0xa5
#define TIMEOUT_NS 5000000000ull

/* 0 in --sanitize runs: only kernels that never wait for another member's kernel run (a
   sanitizer may serialise kernels): the NCCL path, and the NVLink path of a single member. */
static int g_nvl = 1;

/* One device buffer with GUARD poisoned bytes after it, and its host copies. */
typedef struct buf {
  size_t bytes; /* without the guard */
  char *dev;
  char *want; /* reference, poisoned like the device buffer */
  char *got;
} buf_t;

typedef struct member {
  int64_t tok;
  char *seg[2]; /* [0] NVLink layout, [1] NCCL layout */
  mc_ep_err_t *err_h, *err_d;
  int32_t *ids_h;
  void *x_h, *y_h;
  float *xs_h, *w_h;
  int32_t *ids_d;
  void *x_d, *y_d;
  float *xs_d, *w_d;
  buf_t rx, rs, cnt, src, out;
  int64_t *tot;
  uint8_t *kept;
} member_t;

typedef struct world {
  int n, blocks, identity;
  mc_ep_layout_t l[2];
  cudaStream_t s[MAXN];
  member_t m[MAXN];
  uint64_t timeout_ns;
} world_t;

/* ---- set-up -------------------------------------------------------------------------------- */

static int buf_alloc(buf_t *b, size_t bytes) {
  b->bytes = bytes;
  b->want = malloc(bytes + GUARD);
  b->got = malloc(bytes + GUARD);
  return MC_CHECK(b->want && b->got, "host buffers") &&
         MC_CUDA_OK(cudaMalloc((void **)&b->dev, bytes + GUARD));
}

static void buf_free(buf_t *b) {
  cudaFree(b->dev);
  free(b->want);
  free(b->got);
  memset(b, 0, sizeof(*b));
}

static void world_close(world_t *w) {
  (void)cudaDeviceSynchronize();
  for (int r = 0; r < w->n; r++) {
    member_t *m = &w->m[r];
    cudaFree(m->seg[0]);
    cudaFree(m->seg[1]);
    cudaFreeHost(m->err_h);
    cudaFree(m->ids_d);
    cudaFree(m->x_d);
    cudaFree(m->y_d);
    cudaFree(m->xs_d);
    cudaFree(m->w_d);
    free(m->ids_h);
    free(m->x_h);
    free(m->y_h);
    free(m->xs_h);
    free(m->w_h);
    free(m->tot);
    free(m->kept);
    buf_free(&m->rx);
    buf_free(&m->rs);
    buf_free(&m->cnt);
    buf_free(&m->src);
    buf_free(&m->out);
    if (w->s[r]) cudaStreamDestroy(w->s[r]);
  }
  memset(w, 0, sizeof(*w));
}

/* Segments zeroed (the initial state), error records cleared. */
static int world_reset(world_t *w) {
  for (int r = 0; r < w->n; r++) {
    memset(w->m[r].err_h, 0, sizeof(mc_ep_err_t));
    for (int p = 0; p < 2; p++)
      if (!MC_CUDA_OK(cudaMemset(w->m[r].seg[p], 0, (size_t)w->l[p].seg_bytes))) return 0;
  }
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

static int member_open(world_t *w, member_t *m) {
  const mc_ep_layout_t *l = &w->l[0];
  const size_t items = (size_t)l->items;
  m->ids_h = malloc(items * 4);
  m->w_h = malloc(items * 4);
  m->x_h = malloc((size_t)l->x_bytes);
  m->xs_h = malloc((size_t)l->x_scales_bytes + 16);
  m->y_h = malloc(w->identity ? 16 : (size_t)l->y_bytes); /* identity experts read recv_x */
  m->tot = malloc((size_t)l->local_experts * 8);
  m->kept = malloc(items);
  if (!MC_CHECK(m->ids_h && m->w_h && m->x_h && m->xs_h && m->y_h && m->tot && m->kept, "malloc"))
    return 0;
  for (int p = 0; p < 2; p++)
    if (!MC_CUDA_OK(cudaMalloc((void **)&m->seg[p], (size_t)w->l[p].seg_bytes))) return 0;
  return MC_CUDA_OK(cudaHostAlloc((void **)&m->err_h, sizeof(mc_ep_err_t), cudaHostAllocMapped)) &&
         MC_CUDA_OK(cudaHostGetDevicePointer((void **)&m->err_d, m->err_h, 0)) &&
         MC_CUDA_OK(cudaMalloc((void **)&m->ids_d, items * 4)) &&
         MC_CUDA_OK(cudaMalloc((void **)&m->w_d, items * 4)) &&
         MC_CUDA_OK(cudaMalloc((void **)&m->x_d, (size_t)l->x_bytes)) &&
         MC_CUDA_OK(cudaMalloc((void **)&m->xs_d, (size_t)l->x_scales_bytes + 16)) &&
         MC_CUDA_OK(cudaMalloc((void **)&m->y_d, w->identity ? 16 : (size_t)l->y_bytes)) &&
         buf_alloc(&m->rx, (size_t)l->recv_x_bytes) &&
         buf_alloc(&m->rs, (size_t)l->recv_scales_bytes) &&
         buf_alloc(&m->cnt, (size_t)l->recv_counts_bytes) &&
         buf_alloc(&m->src, (size_t)l->recv_src_bytes) && buf_alloc(&m->out, (size_t)l->out_bytes);
}

static int world_open(world_t *w, const mc_ep_config_t *cfg, int blocks) {
  mc_err_t err;
  mc_ep_config_t c = *cfg;
  memset(w, 0, sizeof(*w));
  w->n = cfg->ranks;
  w->blocks = blocks;
  w->identity = cfg->dtype == cfg->combine_dtype;
  w->timeout_ns = TIMEOUT_NS;
  for (int p = 0; p < 2; p++) {
    c.path = p == 0 ? MC_EP_PATH_NVLINK : MC_EP_PATH_NCCL;
    if (!MC_CHECK(mc_ep_layout_init(&c, &w->l[p], &err) == MOECOMM_SUCCESS, "layout: %s", err.msg))
      return 0;
  }
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaStreamCreateWithFlags(&w->s[r], cudaStreamNonBlocking)) ||
        !member_open(w, &w->m[r]))
      return 0;
  return world_reset(w);
}

/* ---- inputs, reference, upload ------------------------------------------------------------- */

/* New routing and data on every member; tok[r] < 0 picks member 0: T_max, 1: 0, others random. */
static void gen_inputs(world_t *w, const int64_t *tok, int route, int kind, uint64_t *st) {
  const mc_ep_config_t *c = &w->l[0].cfg;
  const int hot = (int)(mc_test_rand(st) % (uint64_t)c->experts);
  for (int r = 0; r < w->n; r++) {
    member_t *m = &w->m[r];
    m->tok = tok != NULL ? tok[r]
             : r == 0    ? c->t_max
             : r == 1    ? 0
                         : (int64_t)(mc_test_rand(st) % (uint64_t)(c->t_max + 1));
    ep_make_ids(m->ids_h, m->tok, c->top_k, c->experts, c->ranks, route, hot, st);
    ep_fill(m->x_h, (size_t)(m->tok * c->hidden), c->dtype, kind, st);
    ep_fill(m->xs_h, (size_t)(m->tok * c->scales), MOECOMM_FLOAT32, 1, st);
    ep_fill_weights(m->w_h, (size_t)(m->tok * c->top_k), kind, st);
    if (!w->identity)
      ep_fill(m->y_h, (size_t)(w->l[0].y_bytes / (w->l[0].crow_bytes / c->hidden)),
              c->combine_dtype, kind, st);
  }
}

static void ref_ranks(const world_t *w, mc_ep_ref_rank_t *rk) {
  for (int r = 0; r < w->n; r++) {
    const member_t *m = &w->m[r];
    rk[r].tokens = m->tok;
    rk[r].ids = m->ids_h;
    rk[r].x = m->x_h;
    rk[r].scales = m->xs_h;
    rk[r].weights = m->w_h;
  }
}

/* The reference's outputs (in poisoned buffers like the device's) and every member's kept items.
   An id outside [-1, E) is masked for the reference, as the kernels treat it. */
static int compute_ref(world_t *w) {
  const mc_ep_layout_t *l = &w->l[0];
  mc_ep_ref_rank_t rk[MAXN];
  const void *y[MAXN];
  int32_t *ids[MAXN];
  mc_err_t err;
  int ok = 1;
  ref_ranks(w, rk);
  for (int r = 0; r < w->n; r++) {
    ids[r] = malloc((size_t)l->items * 4);
    if (!MC_CHECK(ids[r] != NULL, "malloc")) return 0;
    for (int64_t i = 0; i < w->m[r].tok * l->cfg.top_k; i++) {
      const int32_t e = w->m[r].ids_h[i];
      ids[r][i] = e < -1 || e >= l->cfg.experts ? -1 : e;
    }
    rk[r].ids = ids[r];
  }
  for (int r = 0; ok && r < w->n; r++) {
    member_t *m = &w->m[r];
    memset(m->rx.want, POISON, m->rx.bytes + GUARD);
    memset(m->rs.want, POISON, m->rs.bytes + GUARD);
    memset(m->cnt.want, POISON, m->cnt.bytes + GUARD);
    memset(m->src.want, POISON, m->src.bytes + GUARD);
    memset(m->out.want, POISON, m->out.bytes + GUARD);
    ok = MC_CHECK(
        mc_ep_ref_dispatch(l, rk, r, m->rx.want, (float *)m->rs.want, (int32_t *)m->cnt.want,
                           (int32_t *)m->src.want, m->tot, &err) == 0,
        "reference dispatch: %s", err.msg);
    y[r] = w->identity ? (const void *)m->rx.want : m->y_h;
  }
  for (int r = 0; ok && r < w->n; r++)
    ok = MC_CHECK(mc_ep_ref_combine(l, rk, r, y, w->m[r].out.want, &err) == 0,
                  "reference combine: %s", err.msg);
  for (int r = 0; ok && r < w->n; r++) {
    int32_t *rows = malloc((size_t)l->items * 4);
    ok = MC_CHECK(rows != NULL && mc_ep_ref_item_rows(l, rk, r, rows, &err) == 0, "item rows");
    for (int64_t i = 0; ok && i < w->m[r].tok * l->cfg.top_k; i++)
      w->m[r].kept[i] = rows[i] >= 0 && rows[i] < l->cfg.capacity;
    free(rows);
  }
  for (int r = 0; r < w->n; r++) free(ids[r]);
  return ok;
}

static int upload(world_t *w) {
  const mc_ep_layout_t *l = &w->l[0];
  for (int r = 0; r < w->n; r++) {
    member_t *m = &w->m[r];
    const size_t it = (size_t)(m->tok * l->cfg.top_k);
    if (!MC_CUDA_OK(cudaMemcpy(m->ids_d, m->ids_h, it * 4, cudaMemcpyHostToDevice)) ||
        !MC_CUDA_OK(cudaMemcpy(m->w_d, m->w_h, it * 4, cudaMemcpyHostToDevice)) ||
        !MC_CUDA_OK(
            cudaMemcpy(m->x_d, m->x_h, (size_t)(m->tok * l->row_bytes), cudaMemcpyHostToDevice)) ||
        !MC_CUDA_OK(cudaMemcpy(m->xs_d, m->xs_h, (size_t)(m->tok * l->cfg.scales) * 4,
                               cudaMemcpyHostToDevice)) ||
        (!w->identity &&
         !MC_CUDA_OK(cudaMemcpy(m->y_d, m->y_h, (size_t)l->y_bytes, cudaMemcpyHostToDevice))))
      return 0;
  }
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

/* ---- launches ------------------------------------------------------------------------------ */

static mc_ep_args_t member_args(const world_t *w, int r, int p) {
  const member_t *m = &w->m[r];
  mc_ep_args_t a;
  memset(&a, 0, sizeof(a));
  a.layout = w->l[p];
  a.rank = r;
  a.tokens = (int32_t)m->tok;
  a.seg = m->seg[p];
  if (p == 0)
    for (int q = 0; q < w->n; q++) a.peer[q] = w->m[q].seg[0];
  a.topk_ids = m->ids_d;
  a.x = m->x_d;
  a.x_scales = w->l[p].cfg.scales > 0 ? m->xs_d : NULL;
  a.recv_x = m->rx.dev;
  a.recv_scales = w->l[p].cfg.scales > 0 ? (float *)m->rs.dev : NULL;
  a.recv_counts = (int32_t *)m->cnt.dev;
  a.recv_src = (int32_t *)m->src.dev;
  a.y = w->identity ? (const void *)m->rx.dev : m->y_d;
  a.topk_weights = m->w_d;
  a.out = m->out.dev;
  a.err = m->err_d;
  a.timeout_ns = w->timeout_ns;
  a.max_blocks = w->blocks;
  return a;
}

typedef int (*launch_fn_t)(const mc_ep_args_t *, void *);

/* One kernel on every member but `skip` (-1: none), then waits for all. */
static int launch_all(const world_t *w, launch_fn_t fn, int p, int skip, const char *name) {
  for (int r = 0; r < w->n; r++) {
    if (r == skip) continue;
    const mc_ep_args_t a = member_args(w, r, p);
    const int e = fn(&a, w->s[r]);
    if (!MC_CHECK(e == 0, "%s on member %d: %s", name, r, cudaGetErrorString((cudaError_t)e)))
      return 0;
  }
  for (int r = 0; r < w->n; r++)
    if (!MC_CUDA_OK(cudaStreamSynchronize(w->s[r]))) return 0;
  return 1;
}

/* The simulated NCCL exchange: block (from -> to) of every ordered pair but `lost`. */
static int exchange(const world_t *w, int64_t send_off, int64_t recv_off, int64_t bytes,
                    int lost_from, int lost_to) {
  for (int s = 0; s < w->n; s++)
    for (int d = 0; d < w->n; d++)
      if (s != d && !(s == lost_from && d == lost_to) &&
          !MC_CUDA_OK(cudaMemcpy(w->m[d].seg[1] + recv_off + (int64_t)s * bytes,
                                 w->m[s].seg[1] + send_off + (int64_t)d * bytes, (size_t)bytes,
                                 cudaMemcpyDeviceToDevice)))
        return 0;
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

static int dispatch_path(const world_t *w, int p) {
  const mc_ep_layout_t *l = &w->l[1];
  if (p == 0) return launch_all(w, mc_ep_dispatch, 0, -1, "dispatch");
  return launch_all(w, mc_ep_dispatch_pack, 1, -1, "dispatch_pack") &&
         exchange(w, l->stage_off, l->inbox_off, l->mb_bytes, -1, -1) &&
         launch_all(w, mc_ep_dispatch_unpack, 1, -1, "dispatch_unpack");
}

static int combine_path(const world_t *w, int p) {
  const mc_ep_layout_t *l = &w->l[1];
  if (p == 0) return launch_all(w, mc_ep_combine, 0, -1, "combine");
  return launch_all(w, mc_ep_combine_pack, 1, -1, "combine_pack") &&
         exchange(w, l->cstage_off, l->cin_off, l->cmsg_bytes, -1, -1) &&
         launch_all(w, mc_ep_combine_unpack, 1, -1, "combine_unpack");
}

/* ---- checks -------------------------------------------------------------------------------- */

static int poison_outputs(world_t *w) {
  for (int r = 0; r < w->n; r++) {
    buf_t *b[5] = {&w->m[r].rx, &w->m[r].rs, &w->m[r].cnt, &w->m[r].src, &w->m[r].out};
    for (int i = 0; i < 5; i++)
      if (!MC_CUDA_OK(cudaMemset(b[i]->dev, POISON, b[i]->bytes + GUARD))) return 0;
  }
  return MC_CUDA_OK(cudaDeviceSynchronize());
}

/* The whole buffer, guard included, equals the reference's. */
static int same_buf(buf_t *b, const char *what, const char *name, int r) {
  if (!MC_CUDA_OK(cudaMemcpy(b->got, b->dev, b->bytes + GUARD, cudaMemcpyDeviceToHost))) return 0;
  if (memcmp(b->got, b->want, b->bytes + GUARD) == 0) return 1;
  size_t i = 0;
  while (b->got[i] == b->want[i]) i++;
  return MC_CHECK(0, "%s: member %d %s differs at byte %zu of %zu%s: %02x, reference %02x", what, r,
                  name, i, b->bytes, i >= b->bytes ? " (guard)" : "", (uint8_t)b->got[i],
                  (uint8_t)b->want[i]);
}

/* Error records: no fatal error; a data error exactly where the inputs call for one. */
static int check_errors(const world_t *w, const char *what, int bad_member, int bad_i) {
  const mc_ep_layout_t *l = &w->l[0];
  for (int r = 0; r < w->n; r++) {
    const mc_ep_err_t *e = w->m[r].err_h;
    int over = 0, hit = 0;
    for (int x = 0; x < l->local_experts; x++) {
      over |= w->m[r].tot[x] > l->cfg.capacity;
      hit |= e->data_expert == r * l->local_experts + x &&
             e->data_rows == w->m[r].tot[x] - l->cfg.capacity && w->m[r].tot[x] > l->cfg.capacity;
    }
    if (!MC_CHECK(e->code == 0, "%s: member %d recorded error %u (peer %d, op %u)", what, r,
                  e->code, e->peer, e->op))
      return 0;
    if (r == bad_member) {
      const int k_n = l->cfg.top_k;
      if (!MC_CHECK(e->data_code == MC_EP_ERR_EXPERT_ID && e->data_expert == w->m[r].ids_h[bad_i] &&
                        e->data_token == bad_i / k_n && e->data_rows == bad_i % k_n,
                    "%s: member %d invalid id: code %u expert %d token %d k %lld", what, r,
                    e->data_code, e->data_expert, e->data_token, (long long)e->data_rows))
        return 0;
    } else if (!MC_CHECK(over ? e->data_code == MC_EP_ERR_OVERFLOW && hit && e->data_token == -1
                              : e->data_code == 0,
                         "%s: member %d overflow %d: recorded code %u expert %d rows %lld", what, r,
                         over, e->data_code, e->data_expert, (long long)e->data_rows)) {
      return 0;
    }
  }
  return 1;
}

/* What the dispatch wrote on every member equals the reference's buffers. */
static int check_dispatch(world_t *w, const char *what) {
  int ok = 1;
  for (int r = 0; ok && r < w->n; r++)
    ok = same_buf(&w->m[r].cnt, what, "recv_counts", r) &&
         same_buf(&w->m[r].src, what, "recv_src", r) && same_buf(&w->m[r].rx, what, "recv_x", r) &&
         same_buf(&w->m[r].rs, what, "recv_scales", r);
  return ok;
}

/* The combine's out equals the reference's; with integer data and identity experts also the
   exact sum over kept k of w * x. */
static int check_combine(world_t *w, int kind, int exact, const char *what) {
  mc_ep_ref_rank_t rk[MAXN];
  int ok = 1;
  ref_ranks(w, rk);
  for (int r = 0; ok && r < w->n; r++)
    ok = same_buf(&w->m[r].out, what, "out", r) &&
         (kind != 0 || !w->identity || !exact ||
          ep_check_identity(&w->l[0], &rk[r], w->m[r].kept, w->m[r].out.got, what));
  return ok;
}

/* One call pair on path p, checked against the reference. */
static int run_path(world_t *w, int p, int kind, const char *what0, int bad_member, int bad_i) {
  char what[240];
  snprintf(what, sizeof(what), "%s %s", what0, p == 0 ? "nvlink" : "nccl-path");
  for (int r = 0; r < w->n; r++) memset(w->m[r].err_h, 0, sizeof(mc_ep_err_t));
  return poison_outputs(w) && dispatch_path(w, p) && check_dispatch(w, what) &&
         combine_path(w, p) && check_combine(w, kind, bad_member < 0, what) &&
         check_errors(w, what, bad_member, bad_i);
}

/* ---- cases --------------------------------------------------------------------------------- */

/* Combine dtype bf16 and 2 scales per token for an fp8 payload, else the payload's dtype. */
static mc_ep_config_t config(int n, int experts, int k_n, int dtype, int64_t t_max, int64_t hidden,
                             int64_t cap) {
  const int fp8 = dtype == MC_EP_FLOAT8_E4M3;
  return ep_config(n, experts, k_n, dtype, fp8 ? MOECOMM_BFLOAT16 : dtype, fp8 ? 2 : 0,
                   MC_EP_PATH_NVLINK, t_max, hidden, cap);
}

/* Two call pairs (integer data, then real) on both paths; bad >= 0: an invalid id on member 0. */
static int eager_case(const mc_ep_config_t *c, int route, int blocks, int bad, uint64_t seed) {
  world_t w;
  char what[200];
  uint64_t st = seed;
  int ok;
  snprintf(what, sizeof(what), "n%d E%d k%d dtype %d t_max %lld H %lld C %lld %s blocks %d%s",
           c->ranks, c->experts, c->top_k, c->dtype, (long long)c->t_max, (long long)c->hidden,
           (long long)c->capacity, ep_route_names[route], blocks, bad >= 0 ? " invalid id" : "");
  ok = world_open(&w, c, blocks);
  for (int kind = 0; ok && kind < 2; kind++) {
    gen_inputs(&w, NULL, route, kind, &st);
    if (bad >= 0) w.m[0].ids_h[bad] = c->experts + 5;
    ok = compute_ref(&w) && upload(&w) &&
         (!(g_nvl || c->ranks == 1) || run_path(&w, 0, kind, what, bad >= 0 ? 0 : -1, bad)) &&
         run_path(&w, 1, kind, what, bad >= 0 ? 0 : -1, bad);
  }
  world_close(&w);
  return MC_CHECK(ok, "%s", what);
}

static int eager_cases(void) {
  static const int ns[3] = {2, 4, 8};
  static const int dts[4] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MC_EP_FLOAT8_E4M3};
  uint64_t seed = 100;
  int ok = 1;
  for (int i = 0; ok && i < 3; i++) {
    const int n = ns[i], blocks = n == 8 ? 8 : 16;
    for (int route = 0; ok && route < EP_ROUTE_COUNT; route++) {
      for (int d = 0; ok && d < 4; d++) {
        const int experts = n * (1 + (route + d) % 4), k_n = 1 + (2 * route + 3 * d) % 8;
        /* 100 tokens x 8 slots: several ranking tiles; H 64 or 1032 (vectors past one round) */
        const mc_ep_config_t c =
            config(n, experts, k_n, dts[d], d == 1 ? 100 : 37, d == 3 ? 1040 : 64, 0);
        ok = eager_case(&c, route, blocks, -1, ++seed);
      }
      if (ok) { /* capacity 3: the one-expert and one-rank cases overflow */
        const mc_ep_config_t c = config(n, 2 * n, 4, MOECOMM_BFLOAT16, 20, 64, 3);
        ok = eager_case(&c, route, blocks, -1, ++seed);
      }
    }
    if (ok) { /* an invalid id; grids of 1 and 2 blocks */
      const mc_ep_config_t c = config(n, 4 * n, 8, MOECOMM_BFLOAT16, 50, 128, 0);
      ok = eager_case(&c, EP_ROUTE_RANDOM, blocks, 8 + 3, ++seed) &&
           eager_case(&c, EP_ROUTE_RANDOM, 1, -1, ++seed) &&
           eager_case(&c, EP_ROUTE_ONE_RANK, 2, -1, ++seed);
    }
  }
  return ok;
}

/* For compute-sanitizer: every routing case and dtype on the NCCL path (n = 2, 4) and on the
   NVLink path of one member, an overflow and an invalid id. */
static int sanitize_cases(void) {
  static const int dts[4] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MC_EP_FLOAT8_E4M3};
  uint64_t seed = 500;
  int ok = 1;
  g_nvl = 0;
  for (int route = 0; ok && route < EP_ROUTE_COUNT; route++) {
    const mc_ep_config_t one = config(1, 4, 4, dts[route % 4], 40, route == 3 ? 1040 : 64, 0);
    ok = eager_case(&one, route, 4, -1, ++seed);
    for (int n = 2; ok && n <= 4; n += 2) {
      const mc_ep_config_t c =
          config(n, 2 * n, 4, dts[(route + n) % 4], 40, 64, route == 1 ? 3 : 0);
      ok = eager_case(&c, route, 8, -1, ++seed);
    }
  }
  if (ok) {
    const mc_ep_config_t c = config(4, 16, 8, MOECOMM_BFLOAT16, 50, 128, 0);
    ok = eager_case(&c, EP_ROUTE_RANDOM, 8, 8 + 3, ++seed);
  }
  g_nvl = 1;
  return ok;
}

/* ---- errors -------------------------------------------------------------------------------- */

/* Every member but `skip` recorded `code` naming `peer` in call pair 1 of `op`. */
static int expect_fatal(const world_t *w, int skip, uint32_t code, int peer, uint32_t op,
                        const char *what) {
  for (int r = 0; r < w->n; r++) {
    const mc_ep_err_t *e = w->m[r].err_h;
    if (r == skip) continue;
    if (!MC_CHECK(e->code == code && e->peer == peer && e->op == op && e->epoch == 1,
                  "%s: member %d recorded code %u peer %d op %u call %llu, want %u %d %u 1", what,
                  r, e->code, e->peer, e->op, (unsigned long long)e->epoch, code, peer, op))
      return 0;
  }
  return 1;
}

static int error_cases(void) {
  const mc_ep_config_t c = config(4, 8, 2, MOECOMM_BFLOAT16, 16, 64, 0);
  world_t w;
  uint64_t st = 7;
  int ok = world_open(&w, &c, 8);
  if (ok) {
    gen_inputs(&w, NULL, EP_ROUTE_RANDOM, 0, &st);
    ok = upload(&w);
  }
  w.timeout_ns = 300000000ull;
  /* member 2 never dispatches: the others time out naming it; their combine returns at once */
  ok = ok && launch_all(&w, mc_ep_dispatch, 0, 2, "dispatch") &&
       expect_fatal(&w, 2, MC_EP_ERR_TIMEOUT, 2, MC_EP_OP_DISPATCH, "member 2 absent") &&
       launch_all(&w, mc_ep_combine, 0, 2, "combine after a timeout") &&
       expect_fatal(&w, 2, MC_EP_ERR_TIMEOUT, 2, MC_EP_OP_DISPATCH, "combine after a timeout");
  /* member 3 never combines */
  ok = ok && world_reset(&w) && launch_all(&w, mc_ep_dispatch, 0, -1, "dispatch") &&
       launch_all(&w, mc_ep_combine, 0, 3, "combine") &&
       expect_fatal(&w, 3, MC_EP_ERR_TIMEOUT, 3, MC_EP_OP_COMBINE, "member 3 absent");
  /* a combine first, on both paths */
  ok = ok && world_reset(&w) && launch_all(&w, mc_ep_combine, 0, -1, "combine first") &&
       expect_fatal(&w, -1, MC_EP_ERR_ORDER, -1, MC_EP_OP_COMBINE, "combine first") &&
       world_reset(&w) && launch_all(&w, mc_ep_combine_pack, 1, -1, "combine_pack first") &&
       expect_fatal(&w, -1, MC_EP_ERR_ORDER, -1, MC_EP_OP_COMBINE, "combine_pack first");
  /* NCCL path: the block from member 0 to member 1 is lost */
  ok = ok && world_reset(&w) && launch_all(&w, mc_ep_dispatch_pack, 1, -1, "dispatch_pack") &&
       exchange(&w, w.l[1].stage_off, w.l[1].inbox_off, w.l[1].mb_bytes, 0, 1) &&
       launch_all(&w, mc_ep_dispatch_unpack, 1, -1, "dispatch_unpack");
  for (int r = 0; ok && r < w.n; r++) {
    const mc_ep_err_t *e = w.m[r].err_h;
    ok = MC_CHECK(r == 1 ? e->code == MC_EP_ERR_TAG && e->peer == 0 && e->op == MC_EP_OP_DISPATCH
                         : e->code == 0,
                  "lost block 0 -> 1: member %d recorded code %u peer %d op %u", r, e->code,
                  e->peer, e->op);
  }
  world_close(&w);
  return ok;
}

/* ---- graph --------------------------------------------------------------------------------- */

/* Each member captures dispatch + combine once; every replay gets new routing and data. */
static int graph_case(int replays) {
  static const int64_t tok[4] = {12, 0, 7, 12};
  const mc_ep_config_t c = config(4, 8, 4, MOECOMM_BFLOAT16, 12, 64, 0);
  cudaGraph_t g[MAXN] = {0};
  cudaGraphExec_t ge[MAXN] = {0};
  world_t w;
  uint64_t st = 99;
  int ok = world_open(&w, &c, 8), done = 0;
  for (int r = 0; ok && r < w.n; r++) w.m[r].tok = tok[r]; /* captured with the launch */
  for (int r = 0; ok && r < w.n; r++) {
    const mc_ep_args_t a = member_args(&w, r, 0);
    int e1, e2;
    ok = MC_CUDA_OK(cudaStreamBeginCapture(w.s[r], cudaStreamCaptureModeThreadLocal));
    if (!ok) break;
    e1 = mc_ep_dispatch(&a, w.s[r]);
    e2 = mc_ep_combine(&a, w.s[r]);
    ok = MC_CUDA_OK(cudaStreamEndCapture(w.s[r], &g[r])) &&
         MC_CHECK(e1 == 0 && e2 == 0, "capture: launches returned %d %d", e1, e2) &&
         MC_CUDA_OK(cudaGraphInstantiate(&ge[r], g[r], 0));
  }
  for (int rep = 0; ok && rep < replays; rep++) {
    char what[64];
    snprintf(what, sizeof(what), "graph replay %d", rep);
    gen_inputs(&w, tok, rep % EP_ROUTE_COUNT, rep & 1, &st);
    for (int r = 0; r < w.n; r++) memset(w.m[r].err_h, 0, sizeof(mc_ep_err_t)); /* read: clear */
    ok = compute_ref(&w) && upload(&w) && poison_outputs(&w);
    for (int r = 0; ok && r < w.n; r++) ok = MC_CUDA_OK(cudaGraphLaunch(ge[r], w.s[r]));
    for (int r = 0; ok && r < w.n; r++) ok = MC_CUDA_OK(cudaStreamSynchronize(w.s[r]));
    ok = ok && check_dispatch(&w, what) && check_combine(&w, rep & 1, 1, what) &&
         check_errors(&w, what, -1, -1);
    done += ok;
  }
  for (int r = 0; r < MAXN; r++) {
    if (ge[r]) cudaGraphExecDestroy(ge[r]);
    if (g[r]) cudaGraphDestroy(g[r]);
  }
  world_close(&w);
  return MC_CHECK(ok && done == replays, "graph: %d of %d replays matched the reference", done,
                  replays);
}

/* ---- timing -------------------------------------------------------------------------------- */

/* Distinct uniformly random experts for every slot (no masking), as a trained router spreads. */
static void bench_ids(int32_t *ids, int64_t tokens, int k_n, int experts, uint64_t *st) {
  for (int64_t t = 0; t < tokens; t++)
    for (int k = 0; k < k_n; k++) {
      int32_t *id = &ids[t * k_n + k];
      int dup;
      do {
        *id = (int32_t)(mc_test_rand(st) % (uint64_t)experts);
        dup = 0;
        for (int j = 1; j <= k; j++) dup |= id[-j] == *id;
      } while (dup);
    }
}

static void host_sleep(void *arg) {
  (void)arg;
  usleep(200);
}

/* Microseconds of one kernel on every member, from the first start to the last end; a host
   function holds every stream until all launches are queued, so the members start together. */
static double time_op(world_t *w, launch_fn_t fn, int p, cudaStream_t gate_s) {
  cudaEvent_t gate, s0[MAXN], e0[MAXN];
  float first = 1e30f, last = -1e30f;
  (void)cudaEventCreate(&gate);
  for (int r = 0; r < w->n; r++) {
    (void)cudaEventCreate(&s0[r]);
    (void)cudaEventCreate(&e0[r]);
  }
  (void)cudaLaunchHostFunc(gate_s, host_sleep, NULL);
  (void)cudaEventRecord(gate, gate_s);
  for (int r = 0; r < w->n; r++) {
    const mc_ep_args_t a = member_args(w, r, p);
    (void)cudaStreamWaitEvent(w->s[r], gate, 0);
    (void)cudaEventRecord(s0[r], w->s[r]);
    (void)fn(&a, w->s[r]);
    (void)cudaEventRecord(e0[r], w->s[r]);
  }
  (void)cudaDeviceSynchronize();
  for (int r = 0; r < w->n; r++) {
    float a = 0, b = 0;
    (void)cudaEventElapsedTime(&a, s0[0], s0[r]);
    (void)cudaEventElapsedTime(&b, s0[0], e0[r]);
    first = a < first ? a : first;
    last = b > last ? b : last;
  }
  (void)cudaEventDestroy(gate);
  for (int r = 0; r < w->n; r++) {
    (void)cudaEventDestroy(s0[r]);
    (void)cudaEventDestroy(e0[r]);
  }
  return 1000.0 * (double)(last - first);
}

static double median(double *t, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
      const double x = t[j];
      t[j] = t[j - 1];
      t[j - 1] = x;
    }
  return t[n / 2];
}

#define BENCH_ITERS 21

/* Median times of the NVLink kernels and of the NCCL path's pack + unpack (exchange excluded). */
static void bench_times(world_t *w, cudaStream_t gate_s, double *t4) {
  const mc_ep_layout_t *l = &w->l[1];
  double t[4][BENCH_ITERS];
  for (int i = 0; i < BENCH_ITERS; i++) {
    t[0][i] = time_op(w, mc_ep_dispatch, 0, gate_s);
    t[1][i] = time_op(w, mc_ep_combine, 0, gate_s);
    t[2][i] = time_op(w, mc_ep_dispatch_pack, 1, gate_s);
    (void)exchange(w, l->stage_off, l->inbox_off, l->mb_bytes, -1, -1);
    t[2][i] += time_op(w, mc_ep_dispatch_unpack, 1, gate_s);
    t[3][i] = time_op(w, mc_ep_combine_pack, 1, gate_s);
    (void)exchange(w, l->cstage_off, l->cin_off, l->cmsg_bytes, -1, -1);
    t[3][i] += time_op(w, mc_ep_combine_unpack, 1, gate_s);
  }
  for (int k = 0; k < 4; k++) t4[k] = median(t[k], BENCH_ITERS);
}

/* One shape and token count on 2 members: capacity = the largest expert's rows of this routing
   (rounded up to 8, so nothing overflows); checked against the reference once (T <= 512, both
   paths), then timed. */
static int bench_one(const char *model, int64_t h, int experts, int64_t tokens,
                     cudaStream_t gate_s) {
  mc_ep_config_t c = config(2, experts, 8, MOECOMM_BFLOAT16, tokens, h, 0);
  const int64_t tok[2] = {tokens, tokens}, items = tokens * 8;
  int64_t cnt[MC_EP_MAX_EXPERTS] = {0}, cap = 0, sent = 0;
  int32_t *ids = malloc((size_t)(2 * items) * 4);
  double t[4];
  world_t w;
  uint64_t st = 4242 + (uint64_t)tokens;
  int ok = MC_CHECK(ids != NULL, "malloc");
  if (!ok) return 0;
  bench_ids(ids, 2 * tokens, 8, experts, &st);
  for (int64_t i = 0; i < 2 * items; i++) cap = ++cnt[ids[i]] > cap ? cnt[ids[i]] : cap;
  for (int64_t t0 = 0; t0 < 2 * tokens; t0++) { /* rows sent: one per (token, member) */
    int dst[2] = {0, 0};
    for (int k = 0; k < 8; k++) dst[ids[t0 * 8 + k] / (experts / 2)] = 1;
    sent += dst[0] + dst[1];
  }
  c.capacity = (cap + 7) / 8 * 8;
  ok = world_open(&w, &c, 64);
  if (ok) {
    gen_inputs(&w, tok, EP_ROUTE_RANDOM, 1, &st);
    memcpy(w.m[0].ids_h, ids, (size_t)items * 4);
    memcpy(w.m[1].ids_h, ids + items, (size_t)items * 4);
    for (int r = 0; r < 2; r++) /* no overflow by the choice of C (compute_ref recounts) */
      memset(w.m[r].tot, 0, (size_t)w.l[0].local_experts * 8);
    ok = (tokens > 512 || compute_ref(&w)) && upload(&w);
    for (int p = 0; ok && p < 2; p++)
      ok = poison_outputs(&w) && dispatch_path(&w, p) && combine_path(&w, p) &&
           (tokens > 512 || (check_dispatch(&w, model) && check_combine(&w, 1, 0, model))) &&
           check_errors(&w, model, -1, -1);
  }
  if (ok) {
    bench_times(&w, gate_s, t);
    ok = MC_CUDA_OK(cudaDeviceSynchronize()) && check_errors(&w, model, -1, -1);
    printf("%-11s %5lld %5lld %6lld %9.1f %9.1f %8.1f %9.1f %9.1f\n", model, (long long)tokens,
           (long long)c.capacity, (long long)sent / 2, t[0], t[1],
           (double)sent / 2 * (double)w.l[0].row_bytes / (t[0] * 1e3), t[2], t[3]);
  }
  world_close(&w);
  free(ids);
  return ok;
}

static int bench(void) {
  static const int64_t ts[5] = {1, 16, 128, 512, 4096};
  cudaStream_t gate_s;
  int ok = MC_CUDA_OK(cudaStreamCreateWithFlags(&gate_s, cudaStreamNonBlocking));
  printf(
      "EP timings: 2 SIMULATED MEMBERS ON ONE GPU (kernel overhead and HBM, not NVLink); bf16,\n"
      "top-8, 64 blocks per member, uniformly random distinct experts; median of %d; us per "
      "call,\nfrom the first member's start to the last one's end.  rows = token rows each "
      "member sends;\nGB/s = rows x row bytes / dispatch time.  nccl-path = pack + unpack "
      "kernels, exchange excluded.\n",
      BENCH_ITERS);
  printf("%-11s %5s %5s %6s %9s %9s %8s %9s %9s\n", "model", "T", "C", "rows", "dispatch",
         "combine", "GB/s", "nccl-dsp", "nccl-cmb");
  for (int i = 0; ok && i < 5; i++) ok = bench_one("DeepSeek-V3", 7168, 256, ts[i], gate_s);
  for (int i = 0; ok && i < 5; i++) ok = bench_one("Qwen3-235B", 4096, 128, ts[i], gate_s);
  (void)cudaStreamDestroy(gate_s);
  return ok;
}

int main(int argc, char **argv) {
  const char *env = getenv("MC_EP_BENCH");
  int do_bench = env != NULL && strcmp(env, "1") == 0, do_sanitize = 0;
  for (int i = 1; i < argc; i++) {
    do_bench |= strcmp(argv[i], "--bench") == 0;
    do_sanitize |= strcmp(argv[i], "--sanitize") == 0;
  }
  mc_test_init("ep_kernels", argc, argv);
  if (!mc_test_need_gpus(1)) return mc_test_finish();
  if (!MC_CUDA_OK(cudaSetDevice(0))) return mc_test_finish();
  if (!MC_CHECK(mc_ep_check_device() == 0, "the kernels have no image for device 0"))
    return mc_test_finish();
  if (do_bench || do_sanitize) {
    if (do_bench) bench();
    if (do_sanitize) sanitize_cases();
    return mc_test_finish();
  }
  if (eager_cases() && error_cases()) graph_case(1000);
  return mc_test_finish();
}
