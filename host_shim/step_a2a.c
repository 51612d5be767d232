/* SPDX-License-Identifier: Apache-2.0 */
/* step_a2a.c - the MoE all-to-all variant of the step (step.h, --moe-a2a, ABI 1.2): the
 * attention all-reduce on ATTN_TP (the ABI-1.0 step's op, step_v10.c), then the MoE layer as an
 * expert-parallel engine runs it: moe_dispatch on MOE_EP, the experts, moe_combine.
 *
 * Shape: n = MOE_EP's size, E = 4 n experts (4 per rank), top-4, every rank dispatching the
 * step's token count (T_max: the largest of its counts), capacity n * T_max (nothing dropped:
 * a token's experts are distinct).  The experts are identities (expert_out is the dispatch's
 * recv_x), so the combine's exact result is sum over unmasked k of w[t,k] * x[t]: inputs are
 * integers |x| <= 4 (lib/data.h) and weights +-1/2, +-1, +-2, so every partial sum is a
 * multiple of 1/2 below 64 and exact in bf16.  Routing (about one slot in eight masked) and
 * weights are regenerated per (seed, iteration, rank) like the inputs, so every rank rebuilds
 * what each member sent it and checks the dispatch's whole output byte for byte: the rows in the
 * row order (source, token, k), counts and sources, and poison (0xff) past the counts.
 *
 * Buffers, per op, in the step's dtype elements (es bytes; 4 is a multiple of es):
 *   dispatch send  [x: T x H][topk_ids: T x K int32];
 *   dispatch recv  [recv_x: El x C x H][recv_counts: El int32][recv_src: El x C x 3 int32];
 *   combine send   [topk_weights: T x K fp32]; expert_out is the dispatch's recv_x;
 *   combine recv   [out: T x H]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/data.h"
#include "lib/report.h"
#include "step.h"

#define A2A_TOP_K 4
#define A2A_EXPERTS_PER_RANK 4
#define A2A_ATTN 0
#define A2A_DISPATCH 1
#define A2A_COMBINE 2

static shim_data_key_t a2a_key(const shim_step_t *s, int iter, int rank, int op) {
  shim_data_key_t key;
  key.seed = s->cfg.seed;
  key.iter = iter;
  key.rank = rank;
  key.op = op;
  return key;
}

/* A random number of (seed, iteration, world rank, stream, index). */
static uint64_t a2a_rand(const shim_step_t *s, int iter, int rank, uint64_t stream, uint64_t i) {
  return shim_data_mix64(shim_data_mix64(s->cfg.seed ^ (stream << 56)) +
                         shim_data_mix64(((uint64_t)(uint32_t)iter << 32) | (uint32_t)rank) + i);
}

/* World rank `rank`'s routing of iteration iter: distinct experts per token, some masked. */
static void a2a_ids(const shim_step_t *s, int iter, int rank, int tokens, int32_t *ids) {
  const int K = s->a2a.top_k, E = s->a2a.experts;
  for (int t = 0; t < tokens; t++) {
    int32_t *row = ids + (size_t)t * K;
    for (int k = 0; k < K; k++) {
      uint64_t r = a2a_rand(s, iter, rank, 1, (uint64_t)t * 64 + (uint64_t)k);
      int dup;
      if (r % 8 == 0) {
        row[k] = -1;
        continue;
      }
      do {
        row[k] = (int32_t)((r >> 8) % (uint64_t)E);
        r = shim_data_mix64(r);
        dup = 0;
        for (int j = 0; j < k; j++) dup |= row[j] == row[k];
      } while (dup);
    }
  }
}

static float a2a_weight(const shim_step_t *s, int iter, int rank, size_t i) {
  static const float w[6] = {0.5f, -0.5f, 1.0f, -1.0f, 2.0f, -2.0f};
  return w[a2a_rand(s, iter, rank, 2, i) % 6];
}

static int a2a_configure(shim_step_t *s) {
  const shim_op_t *op = &s->ops[A2A_DISPATCH];
  moecomm_moe_config_t mc;
  moecomm_result_t r;
  memset(&mc, 0, sizeof(mc));
  mc.struct_size = sizeof(mc);
  mc.num_experts = s->a2a.experts;
  mc.top_k = s->a2a.top_k;
  mc.dtype = (int32_t)s->cfg.dtype;
  mc.max_tokens = (int32_t)s->a2a.t_max;
  mc.hidden = (size_t)s->cfg.hidden;
  mc.expert_capacity = (int32_t)s->a2a.cap;
  r = s->api->moe_configure(op->group, &mc);
  return r == MOECOMM_SUCCESS ? 0 : shim_step_api_fail(s, "moe_configure", op->label, r);
}

static int a2a_plan(shim_step_t *s) {
  const moecomm_api_t *api = s->api;
  const size_t es = shim_dtype_size(s->cfg.dtype), h = (size_t)s->cfg.hidden;
  size_t el;
  if (!MOECOMM_API_HAS(api, moe_configure) || !MOECOMM_API_HAS(api, moe_dispatch) ||
      !MOECOMM_API_HAS(api, moe_combine))
    return shim_step_fail(s,
                          "--moe-a2a: the plugin's table has no moe_configure, moe_dispatch "
                          "and moe_combine (ABI 1.2)");
  s->a2a.t_max = s->cfg.tokens;
  for (size_t i = 0; i < s->cfg.n_sizes; i++)
    if (s->cfg.sizes[i] > s->a2a.t_max) s->a2a.t_max = s->cfg.sizes[i];
  if (shim_step_add_coll(s, "attn all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_ATTN_TP,
                         (size_t)s->cfg.tokens * h) != 0 ||
      shim_step_add_coll(s, "moe dispatch", SHIM_MOE_DISPATCH, MOECOMM_GROUP_MOE_EP, 0) != 0 ||
      shim_step_add_coll(s, "moe combine", SHIM_MOE_COMBINE, MOECOMM_GROUP_MOE_EP, 0) != 0)
    return -1;
  s->a2a.n = s->ops[A2A_DISPATCH].gsize;
  s->a2a.me = s->ops[A2A_DISPATCH].grank;
  s->a2a.experts = A2A_EXPERTS_PER_RANK * s->a2a.n;
  s->a2a.top_k = A2A_TOP_K;
  s->a2a.cap = (int64_t)s->a2a.n * s->a2a.t_max;
  el = A2A_EXPERTS_PER_RANK;
  s->a2a.rx_bytes = el * (size_t)s->a2a.cap * h * es;
  /* per token where the op scales with the token count; the dispatch's output does not */
  s->ops[A2A_ATTN].send_per_tok = s->ops[A2A_ATTN].recv_per_tok = h;
  s->ops[A2A_DISPATCH].send_per_tok = h + A2A_TOP_K * 4 / es;
  s->ops[A2A_DISPATCH].recv_count = (s->a2a.rx_bytes + 4 * (el + 3 * el * (size_t)s->a2a.cap)) / es;
  s->ops[A2A_COMBINE].send_per_tok = A2A_TOP_K * 4 / es;
  s->ops[A2A_COMBINE].recv_per_tok = h;
  return a2a_configure(s);
}

static int a2a_layout(shim_step_t *s, int tokens) {
  if (tokens > s->a2a.t_max)
    return shim_step_fail(s, "%d tokens: moe_configure was sized for %lld", tokens,
                          (long long)s->a2a.t_max);
  for (int k = 0; k < s->n_ops; k++) {
    s->ops[k].send_count = s->ops[k].send_per_tok * (size_t)tokens;
    if (k != A2A_DISPATCH) s->ops[k].recv_count = s->ops[k].recv_per_tok * (size_t)tokens;
  }
  return 0;
}

static void a2a_fini(shim_step_t *s) {
  free(s->a2a.ids);
  free(s->a2a.x);
  free(s->a2a.want);
  free(s->a2a.rows);
  s->a2a.ids = NULL;
  s->a2a.x = s->a2a.want = NULL;
  s->a2a.rows = NULL;
  shim_step_v10.fini(s);
}

static int a2a_alloc(shim_step_t *s) {
  const size_t es = shim_dtype_size(s->cfg.dtype), t_max = (size_t)s->a2a.t_max;
  s->a2a.ids = malloc(t_max * A2A_TOP_K * sizeof(int32_t));
  s->a2a.x = malloc(t_max * (size_t)s->cfg.hidden * es);
  s->a2a.want = malloc(s->ops[A2A_DISPATCH].recv_cap * es);
  s->a2a.rows = malloc(A2A_EXPERTS_PER_RANK * sizeof(int64_t));
  if (s->a2a.ids == NULL || s->a2a.x == NULL || s->a2a.want == NULL || s->a2a.rows == NULL)
    return shim_step_fail(s, "out of host memory for the all-to-all's expected values");
  return shim_step_v10.alloc(s); /* the attention all-reduce's scratch */
}

static void a2a_input(shim_step_t *s, int k, int iter) {
  shim_op_t *op = &s->ops[k];
  const size_t th = (size_t)s->cfg.tokens * (size_t)s->cfg.hidden;
  if (k == A2A_ATTN) {
    shim_step_v10.input(s, k, iter);
  } else if (k == A2A_DISPATCH) {
    const shim_data_key_t key = a2a_key(s, iter, s->cfg.rank, k);
    shim_data_fill(op->h_send, 0, th, s->cfg.dtype, &key);
    a2a_ids(s, iter, s->cfg.rank, s->cfg.tokens,
            (int32_t *)((char *)op->h_send + th * shim_dtype_size(s->cfg.dtype)));
  } else {
    for (size_t i = 0; i < (size_t)s->cfg.tokens * A2A_TOP_K; i++)
      ((float *)op->h_send)[i] = a2a_weight(s, iter, s->cfg.rank, i);
  }
}

static moecomm_result_t a2a_call(shim_step_t *s, shim_op_t *op) {
  const size_t th = (size_t)s->cfg.tokens * (size_t)s->cfg.hidden;
  char *rx = s->ops[A2A_DISPATCH].recv;
  if (op->coll == SHIM_MOE_DISPATCH) {
    moecomm_moe_dispatch_args_t d;
    memset(&d, 0, sizeof(d));
    d.struct_size = sizeof(d);
    d.num_tokens = s->cfg.tokens;
    d.x = op->send;
    d.topk_ids = (const int32_t *)((char *)op->send + th * shim_dtype_size(s->cfg.dtype));
    d.recv_x = rx;
    d.recv_counts = (int32_t *)(rx + s->a2a.rx_bytes);
    d.recv_src = d.recv_counts + A2A_EXPERTS_PER_RANK;
    return s->api->moe_dispatch(op->group, &d, &s->a2a.handle, s->dev->stream);
  }
  if (op->coll == SHIM_MOE_COMBINE) {
    moecomm_moe_combine_args_t c;
    memset(&c, 0, sizeof(c));
    c.struct_size = sizeof(c);
    c.num_tokens = s->cfg.tokens;
    c.handle = s->a2a.handle;
    c.expert_out = rx; /* identity experts */
    c.topk_weights = op->send;
    c.out = op->recv;
    return s->api->moe_combine(op->group, &c, s->dev->stream);
  }
  return shim_step_v10.call(s, op);
}

/* The dispatch's whole output as it must be: every member's tokens routed to this rank's
   experts, in (source, token, k) order; poison elsewhere. */
static void a2a_expect_dispatch(shim_step_t *s, int iter) {
  const shim_op_t *op = &s->ops[A2A_DISPATCH];
  const size_t es = shim_dtype_size(s->cfg.dtype), rb = (size_t)s->cfg.hidden * es;
  const int K = s->a2a.top_k, el = A2A_EXPERTS_PER_RANK, first = s->a2a.me * el;
  int32_t *cnt = (int32_t *)(s->a2a.want + s->a2a.rx_bytes), *src = cnt + el;
  memset(s->a2a.want, 0xff, op->recv_count * es);
  memset(s->a2a.rows, 0, el * sizeof(int64_t));
  for (int q = 0; q < s->a2a.n; q++) {
    const shim_data_key_t key = a2a_key(s, iter, op->granks[q], A2A_DISPATCH);
    shim_data_fill(s->a2a.x, 0, (size_t)s->cfg.tokens * (size_t)s->cfg.hidden, s->cfg.dtype, &key);
    a2a_ids(s, iter, op->granks[q], s->cfg.tokens, s->a2a.ids);
    for (int i = 0; i < s->cfg.tokens * K; i++) {
      const int e = s->a2a.ids[i] - first;
      int64_t r;
      if (e < 0 || e >= el || (r = s->a2a.rows[e]++) >= s->a2a.cap) continue;
      memcpy(s->a2a.want + ((size_t)e * (size_t)s->a2a.cap + (size_t)r) * rb,
             s->a2a.x + (size_t)(i / K) * rb, rb);
      src[(e * s->a2a.cap + r) * 3] = q;
      src[(e * s->a2a.cap + r) * 3 + 1] = i / K;
      src[(e * s->a2a.cap + r) * 3 + 2] = i % K;
    }
  }
  for (int e = 0; e < el; e++)
    cnt[e] = (int32_t)(s->a2a.rows[e] < s->a2a.cap ? s->a2a.rows[e] : s->a2a.cap);
}

/* What a byte offset of the dispatch's output is, for a mismatch line. */
static void a2a_where(const shim_step_t *s, size_t off, char *buf, size_t cap) {
  const size_t rb = (size_t)s->cfg.hidden * shim_dtype_size(s->cfg.dtype);
  if (off < s->a2a.rx_bytes)
    snprintf(buf, cap, "recv_x local expert %zu row %zu byte %zu", off / rb / (size_t)s->a2a.cap,
             off / rb % (size_t)s->a2a.cap, off % rb);
  else if (off < s->a2a.rx_bytes + 4 * A2A_EXPERTS_PER_RANK)
    snprintf(buf, cap, "recv_counts[%zu]", (off - s->a2a.rx_bytes) / 4);
  else
    snprintf(buf, cap, "recv_src entry %zu", (off - s->a2a.rx_bytes) / 4 - A2A_EXPERTS_PER_RANK);
}

static void a2a_verify_dispatch(shim_step_t *s, int iter, const char *phase) {
  const shim_op_t *op = &s->ops[A2A_DISPATCH];
  const unsigned char *got = op->h_recv;
  const size_t bytes = op->recv_count * shim_dtype_size(s->cfg.dtype);
  a2a_expect_dispatch(s, iter);
  for (size_t i = 0; i < bytes; i += 4) { /* 4-byte words: an int32, or a row's elements */
    char where[96];
    if (memcmp(got + i, s->a2a.want + i, 4) == 0 || !shim_step_mismatch(s)) continue;
    a2a_where(s, i, where, sizeof(where));
    fprintf(stderr,
            "rank %d: MISMATCH %s on %s, %s iteration %d: %s: got 0x%02x%02x%02x%02x, want "
            "0x%02x%02x%02x%02x\n",
            s->cfg.rank, op->name, op->label, phase, iter, where, got[i + 3], got[i + 2],
            got[i + 1], got[i], s->a2a.want[i + 3], s->a2a.want[i + 2], s->a2a.want[i + 1],
            s->a2a.want[i]);
  }
}

static uint32_t a2a_encode(float v, moecomm_dtype_t dt) {
  uint32_t u;
  if (dt == MOECOMM_BFLOAT16) return shim_data_to_bf16(v);
  if (dt == MOECOMM_FLOAT16) return shim_data_to_half(v);
  memcpy(&u, &v, sizeof(u));
  return u;
}

/* out[t] = sum over unmasked k of w[t,k] * x[t]: exact (see the top of the file). */
static void a2a_verify_combine(shim_step_t *s, int iter, const char *phase) {
  const shim_op_t *op = &s->ops[A2A_COMBINE];
  const shim_data_key_t key = a2a_key(s, iter, s->cfg.rank, A2A_DISPATCH);
  const moecomm_dtype_t dt = s->cfg.dtype;
  const size_t h = (size_t)s->cfg.hidden;
  a2a_ids(s, iter, s->cfg.rank, s->cfg.tokens, s->a2a.ids);
  for (size_t t = 0; t < (size_t)s->cfg.tokens; t++) {
    float w = 0;
    for (int k = 0; k < A2A_TOP_K; k++)
      if (s->a2a.ids[t * A2A_TOP_K + (size_t)k] >= 0)
        w += a2a_weight(s, iter, s->cfg.rank, t * A2A_TOP_K + (size_t)k);
    for (size_t j = 0; j < h; j++) {
      const uint32_t want = a2a_encode(w * (float)shim_data_value(&key, t * h + j), dt);
      const uint32_t got = shim_data_bits(op->h_recv, t * h + j, dt);
      if (shim_data_same(got, want, dt) || !shim_step_mismatch(s)) continue;
      fprintf(stderr,
              "rank %d: MISMATCH %s on %s, %s iteration %d: token %zu element %zu: got %g, want "
              "%g\n",
              s->cfg.rank, op->name, op->label, phase, iter, t, j, shim_data_decode(got, dt),
              shim_data_decode(want, dt));
    }
  }
}

static void a2a_verify(shim_step_t *s, int k, int iter, const char *phase) {
  moecomm_group_stats_t st;
  if (k == A2A_ATTN) {
    shim_step_v10.verify(s, k, iter, phase);
    return;
  }
  if (k == A2A_DISPATCH)
    a2a_verify_dispatch(s, iter, phase);
  else
    a2a_verify_combine(s, iter, phase);
  /* the path that served it (NVLink kernels or NCCL) is known once the buffers exist */
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (s->api->group_stats(s->ops[k].group, &st) == MOECOMM_SUCCESS && st.backend_name != NULL)
    s->ops[k].backend = st.backend_name;
}

static void a2a_describe(const shim_step_t *s, FILE *f) {
  fprintf(f,
          "step: MoE all-to-all (ABI 1.2), 3 ops per iteration on [%d x %d] %s per rank: %s on "
          "%s, %s on %s (%d experts, top-%d, capacity %lld rows), identity experts, %s\n",
          s->cfg.tokens, s->cfg.hidden, shim_dtype_name(s->cfg.dtype), s->ops[A2A_ATTN].name,
          s->ops[A2A_ATTN].label, s->ops[A2A_DISPATCH].name, s->ops[A2A_DISPATCH].label,
          s->a2a.experts, s->a2a.top_k, (long long)s->a2a.cap, s->ops[A2A_COMBINE].name);
}

const shim_step_ops_t shim_step_a2a = {
    .name = "MoE all-to-all",
    .tokens_per = "rank",
    .plan = a2a_plan,
    .layout = a2a_layout,
    .alloc = a2a_alloc,
    .fini = a2a_fini,
    .input = a2a_input,
    .call = a2a_call,
    .verify = a2a_verify,
    .describe = a2a_describe,
};
