/* moe_step.c - the MoE layer step: plan, inputs, calls, capture, replay, exact checks
 * (moe_step.h).  The ops are collectives (ABI 1.0) or scatter-mode transitions (ABI 1.1); both
 * go through the same prepare / call / fetch / verify, eager and inside one CUDA graph. */
#include "moe_step.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_MAX_PRINTED 5 /* mismatch lines per rank */

static int step_fail(shim_step_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int step_fail(shim_step_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof(s->err), fmt, ap);
  va_end(ap);
  return -1;
}

/* A moecomm call failed: name the call, the group, the result and the plugin's own sentence. */
static int api_fail(shim_step_t *s, const char *call, const char *where, moecomm_result_t r) {
  return step_fail(s, "%s on %s failed: %s: %s", call, where, s->api->result_string(r),
                   s->api->last_error(s->ctx));
}

static const char *coll_call_name(shim_coll_t c) {
  switch (c) {
    case SHIM_ALL_REDUCE: return "all_reduce";
    case SHIM_ALL_GATHER: return "all_gather";
    case SHIM_REDUCE_SCATTER: return "reduce_scatter";
    case SHIM_SCATTER: return "scatter";
  }
  return "?";
}

/* This rank's group of `kind` and its stats, checked for consistency. */
static int group_info(shim_step_t *s, moecomm_group_kind_t kind, moecomm_group_t **group_p,
                      moecomm_group_stats_t *st) {
  const moecomm_api_t *api = s->api;
  moecomm_result_t r;
  char where[32];
  snprintf(where, sizeof(where), "group kind %d", (int)kind);
  r = api->group_get(s->ctx, kind, group_p);
  if (r != MOECOMM_SUCCESS) return api_fail(s, "group_get", where, r);
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  r = api->group_stats(*group_p, st);
  if (r != MOECOMM_SUCCESS) return api_fail(s, "group_stats", where, r);
  if (st->size < 1 || st->size > s->cfg.world || st->rank < 0 || st->rank >= st->size ||
      st->ranks == NULL)
    return step_fail(s, "group_stats for %s returned an inconsistent group (size %d, rank %d)",
                     st->kind_name ? st->kind_name : "?", (int)st->size, (int)st->rank);
  return 0;
}

static shim_op_t *next_op(shim_step_t *s) {
  shim_op_t *op;
  if (s->n_ops == SHIM_STEP_MAX_OPS) {
    step_fail(s, "step plan has more than %d ops", SHIM_STEP_MAX_OPS);
    return NULL;
  }
  op = &s->ops[s->n_ops];
  memset(op, 0, sizeof(*op));
  return op;
}

/* Adds one collective; `n` is the op's per-rank tensor (elements): all-reduce n -> n, all-gather
   n -> size*n, reduce-scatter size*n -> n. */
static int add_op(shim_step_t *s, const char *name, shim_coll_t coll, moecomm_group_kind_t kind,
                  size_t n) {
  shim_op_t *op = next_op(s);
  moecomm_group_stats_t st;
  char ranks[128];

  if (op == NULL) return -1;
  op->name = name;
  op->coll = coll;
  if (group_info(s, kind, &op->group, &st) != 0) return -1;
  if (coll != SHIM_ALL_GATHER && st.size > SHIM_DATA_MAX_ADDENDS)
    return step_fail(s,
                     "%s has %d ranks: exact verification of sums needs at most %d ranks per "
                     "reduction group",
                     st.kind_name ? st.kind_name : "?", (int)st.size, SHIM_DATA_MAX_ADDENDS);
  op->gsize = st.size;
  op->grank = st.rank;
  op->backend = st.backend_name ? st.backend_name : "?";
  op->granks = malloc((size_t)st.size * sizeof(int32_t));
  if (op->granks == NULL) return step_fail(s, "out of host memory");
  memcpy(op->granks, st.ranks, (size_t)st.size * sizeof(int32_t));
  shim_format_ranks(op->granks, op->gsize, ranks, sizeof(ranks));
  snprintf(op->label, sizeof(op->label), "%s %s", st.kind_name ? st.kind_name : "?", ranks);
  switch (coll) {
    case SHIM_ALL_REDUCE: op->send_count = op->recv_count = n; break;
    case SHIM_ALL_GATHER: op->send_count = n; op->recv_count = (size_t)op->gsize * n; break;
    case SHIM_REDUCE_SCATTER: op->send_count = (size_t)op->gsize * n; op->recv_count = n; break;
    case SHIM_SCATTER: break; /* transitions come through add_transition */
  }
  s->n_ops++;
  return 0;
}

/* A transition's rows for the current token counts (s->tokens): the plugin's mode_rows, checked
   against the ABI's layout (the reference model). */
static int transition_rows(shim_step_t *s, shim_op_t *op) {
  const int32_t *mine = sref_tokens_of(&s->ref, s->cfg.rank);
  size_t rows[2];
  for (int i = 0; i < 2; i++) {
    int mode = i == 0 ? op->tr->from : op->tr->to;
    size_t want = sref_rows(&s->ref, s->cfg.rank, mode);
    moecomm_result_t r =
        s->api->mode_rows(s->ctx, (moecomm_scatter_mode_t)mode, mine, &rows[i]);
    if (r != MOECOMM_SUCCESS) return api_fail(s, "mode_rows", sref_mode_name(mode), r);
    if (rows[i] != want)
      return step_fail(s,
                       "mode_rows(%s) says %zu rows on rank %d, the ABI's layout has %zu (token "
                       "counts of the TP block: %d%s)",
                       sref_mode_name(mode), rows[i], s->cfg.rank, want, (int)mine[0],
                       s->ref.ngroups > 1 ? ", ..." : "");
  }
  op->send_rows = rows[0];
  op->recv_rows = rows[1];
  op->send_count = rows[0] * (size_t)s->cfg.hidden;
  op->recv_count = rows[1] * (size_t)s->cfg.hidden;
  return 0;
}

/* Adds one scatter-mode transition and the groups it communicates on, for the report; its rows
   come with the token counts (step_layout). */
static int add_transition(shim_step_t *s, const shim_transition_t *tr) {
  shim_op_t *op = next_op(s);
  moecomm_group_kind_t kinds[SHIM_MODES_MAX_GROUPS];
  int nk;

  if (op == NULL) return -1;
  op->name = tr->name;
  op->coll = SHIM_SCATTER;
  op->tr = tr;
  op->backend = op->backends;
  snprintf(op->label, sizeof(op->label), "%s->%s", sref_mode_name(tr->from),
           sref_mode_name(tr->to));
  nk = shim_modes_groups(tr->from, tr->to, tr->reduce, kinds);
  for (int i = 0; i < nk; i++) {
    moecomm_group_t *g;
    moecomm_group_stats_t st;
    char ranks[128];
    const char *bn;
    if (group_info(s, kinds[i], &g, &st) != 0) return -1;
    if (st.size == 1) continue; /* nothing to communicate */
    shim_format_ranks(st.ranks, st.size, ranks, sizeof(ranks));
    shim_append(op->groups, sizeof(op->groups), "%s%s %s", op->groups[0] ? ", " : "",
                st.kind_name ? st.kind_name : "?", ranks);
    bn = st.backend_name ? st.backend_name : "?";
    if (strstr(op->backends, bn) == NULL)
      shim_append(op->backends, sizeof(op->backends), "%s%s", op->backends[0] ? "+" : "", bn);
  }
  if (op->groups[0] == '\0') snprintf(op->groups, sizeof(op->groups), "local copies only");
  if (op->backends[0] == '\0') snprintf(op->backends, sizeof(op->backends), "-");
  s->n_ops++;
  return 0;
}

/* The ABI-1.1 set-up: layer modes, reference model, transitions.  0: modes planned; 1: the
   plugin refuses this topology's modes (s->note says why; the ABI-1.0 step runs); -1: failure. */
static int modes_setup(shim_step_t *s) {
  const shim_step_cfg_t *c = &s->cfg;
  char why[sizeof(s->note)];
  size_t nblocks;
  int rc;
  if (!MOECOMM_API_HAS(s->api, layer_mode) || !MOECOMM_API_HAS(s->api, mode_rows) ||
      !MOECOMM_API_HAS(s->api, scatter)) {
    snprintf(s->note, sizeof(s->note),
             "the plugin negotiated ABI 1.1 but its table lacks layer_mode, mode_rows or "
             "scatter");
    return 1;
  }
  rc = shim_modes_plan(s->api, s->ctx, &s->plan, why, sizeof(why));
  if (rc == 1) {
    snprintf(s->note, sizeof(s->note), "%s", why);
    return 1;
  }
  if (rc != 0) return step_fail(s, "%s", why);
  if (c->tp < 1 || c->tp > SREF_MAX_RANKS || c->world % c->tp != 0)
    return step_fail(s,
                     "tp=%d: the step's exact reference covers TP groups of 1..%d ranks that "
                     "divide the world (%d ranks)",
                     c->tp, SREF_MAX_RANKS, c->world);
  s->ref = sref_make(c->world, c->tp, c->ep, c->moe_dp, c->attn_cp, c->attn_dp);
  if (s->ref.attn_tp < 1 || s->ref.moe_tp < 1)
    return step_fail(s, "tp=%d does not split into attn_dp*attn_cp=%d or ep*moe_dp=%d", c->tp,
                     s->ref.ngroups, s->ref.ep * s->ref.moe_dp);
  s->ref.dtype = c->dtype;
  s->ref.hidden = (size_t)c->hidden;
  nblocks = (size_t)(c->world / c->tp);
  s->tokens = malloc(nblocks * (size_t)s->ref.ngroups * sizeof(int32_t));
  if (s->tokens == NULL) return step_fail(s, "out of host memory for token counts");
  s->ref.tokens = s->tokens;
  for (int i = 0; i < s->plan.n_tr; i++)
    if (add_transition(s, &s->plan.tr[i]) != 0) return -1;
  return 0;
}

/* The step's ops, in the order an engine issues them (moe_step.h). */
static int step_plan(shim_step_t *s) {
  size_t th = (size_t)s->cfg.tokens * (size_t)s->cfg.hidden;
  size_t moe_n = th;
  if (add_op(s, "attn all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_ATTN_TP, th) != 0) return -1;
  if (s->cfg.gather_moe) {
    if (add_op(s, "moe all-gather", SHIM_ALL_GATHER, MOECOMM_GROUP_MOE_CP, th) != 0) return -1;
    moe_n = s->ops[s->n_ops - 1].recv_count;
  }
  if (add_op(s, "moe-tp all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_MOE_TP, moe_n) != 0) return -1;
  if (add_op(s, "moe-ep all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_MOE_EP, moe_n) != 0) return -1;
  if (add_op(s, "attn reduce-scatter", SHIM_REDUCE_SCATTER, MOECOMM_GROUP_ATTN_TP, th) != 0)
    return -1;
  /* Every count above is tokens times a whole number of elements. */
  for (int k = 0; k < s->n_ops; k++) {
    s->ops[k].send_per_tok = s->ops[k].send_count / (size_t)s->cfg.tokens;
    s->ops[k].recv_per_tok = s->ops[k].recv_count / (size_t)s->cfg.tokens;
  }
  return 0;
}

/* Token counts, rows and element counts of every op for `tokens` (moe_step.h); the buffers are
   not looked at. */
static int step_layout(shim_step_t *s, int tokens) {
  if (tokens < 1) return step_fail(s, "token count %d: must be at least 1", tokens);
  if (s->modes) {
    char why[sizeof(s->err)];
    if (shim_modes_tokens(s->api, s->ctx, &s->ref, tokens, s->cfg.uneven, s->plan.split,
                          s->tokens, why, sizeof(why)) != 0)
      return step_fail(s, "%s", why);
    for (int k = 0; k < s->n_ops; k++)
      if (transition_rows(s, &s->ops[k]) != 0) return -1;
  } else {
    for (int k = 0; k < s->n_ops; k++) {
      s->ops[k].send_count = s->ops[k].send_per_tok * (size_t)tokens;
      s->ops[k].recv_count = s->ops[k].recv_per_tok * (size_t)tokens;
    }
  }
  s->cfg.tokens = tokens;
  return 0;
}

int shim_step_set_tokens(shim_step_t *s, int tokens) {
  int old = s->cfg.tokens;
  char why[sizeof(s->err)];
  if (step_layout(s, tokens) == 0) {
    int k;
    for (k = 0; k < s->n_ops; k++)
      if (s->ops[k].send_count > s->ops[k].send_cap || s->ops[k].recv_count > s->ops[k].recv_cap)
        break;
    if (k == s->n_ops) return 0;
    step_fail(s,
              "%d tokens: %s on %s needs %zu + %zu elements, its buffers hold %zu + %zu (sized "
              "for the step's token counts only)",
              tokens, s->ops[k].name, s->ops[k].label, s->ops[k].send_count,
              s->ops[k].recv_count, s->ops[k].send_cap, s->ops[k].recv_cap);
  }
  /* Back to the previous layout, which fitted; keep the first reason. */
  snprintf(why, sizeof(why), "%s", s->err);
  step_layout(s, old);
  snprintf(s->err, sizeof(s->err), "%s", why);
  return -1;
}

int shim_step_init(shim_step_t *s, const moecomm_api_t *api, moecomm_context_t *ctx,
                   shim_dev_t *dev, const shim_step_cfg_t *cfg) {
  size_t dsz = shim_dtype_size(cfg->dtype), acc_n = 0, want_n = 0;
  memset(s, 0, sizeof(*s));
  s->api = api;
  s->ctx = ctx;
  s->dev = dev;
  s->cfg = *cfg;
  if (dsz == 0 || cfg->dtype == MOECOMM_INT32)
    return step_fail(s, "the step runs bf16, fp16 or fp32, not %s", shim_dtype_name(cfg->dtype));
  if (!MOECOMM_API_HAS(api, group_get) || !MOECOMM_API_HAS(api, group_stats) ||
      !MOECOMM_API_HAS(api, all_reduce) || !MOECOMM_API_HAS(api, all_gather) ||
      !MOECOMM_API_HAS(api, reduce_scatter))
    return step_fail(s, "the plugin's table lacks group_get, group_stats, all_reduce, all_gather "
                        "or reduce_scatter: the step needs all five");
  for (int v = -256; v <= 256; v++) s->enc[v + 256] = shim_data_encode(v, cfg->dtype);
  if (cfg->modes) {
    int rc = modes_setup(s);
    if (rc < 0) goto fail;
    s->modes = rc == 0;
  }
  if (!s->modes && step_plan(s) != 0) goto fail;
  /* The buffers fit the largest layout of every token count; cfg->tokens last, so the step is
     left there. */
  for (size_t i = 0; i <= cfg->n_sizes; i++) {
    if (step_layout(s, i < cfg->n_sizes ? cfg->sizes[i] : cfg->tokens) != 0) goto fail;
    for (int k = 0; k < s->n_ops; k++) {
      shim_op_t *op = &s->ops[k];
      if (op->send_count > op->send_cap) op->send_cap = op->send_count;
      if (op->recv_count > op->recv_cap) op->recv_cap = op->recv_count;
    }
  }

  for (int k = 0; k < s->n_ops; k++) {
    shim_op_t *op = &s->ops[k];
    /* At least one element: a mode may hold no rows on a rank (a group with no tokens). */
    size_t sb = (op->send_cap ? op->send_cap : 1) * dsz;
    size_t rb = (op->recv_cap ? op->recv_cap : 1) * dsz;
    if (shim_dev_alloc(dev, sb, &op->send) != 0 || shim_dev_alloc(dev, rb, &op->recv) != 0) {
      step_fail(s, "buffers for %s on %s (%zu + %zu bytes): %s", op->name, op->label, sb, rb,
                dev->err);
      goto fail;
    }
    if (shim_dev_is_gpu(dev)) {
      if (shim_host_alloc(dev, sb, &op->h_send) != 0 ||
          shim_host_alloc(dev, rb, &op->h_recv) != 0) {
        step_fail(s, "host staging for %s on %s: %s", op->name, op->label, dev->err);
        goto fail;
      }
    } else {
      /* Host memory already: inputs are made in place and results read in place. */
      op->h_send = op->send;
      op->h_recv = op->recv;
    }
    if (op->coll == SHIM_SCATTER) {
      if (op->recv_cap > want_n) want_n = op->recv_cap;
    } else if (op->recv_cap > acc_n) {
      acc_n = op->recv_cap;
    }
  }
  s->acc = malloc((acc_n ? acc_n : 1) * sizeof(int32_t));
  if (s->acc == NULL) {
    step_fail(s, "out of host memory for %zu expected values", acc_n);
    goto fail;
  }
  if (s->modes) {
    s->want = malloc((want_n ? want_n : 1) * dsz);
    s->scratch = malloc((size_t)cfg->hidden * dsz);
    if (s->want == NULL || s->scratch == NULL) {
      step_fail(s, "out of host memory for %zu expected values", want_n);
      goto fail;
    }
  }
  if (shim_timer_init(dev, &s->timer) != 0) {
    step_fail(s, "timer: %s", dev->err);
    goto fail;
  }
  s->timer_ready = 1;
  return 0;

fail:
  shim_step_fini(s);
  return -1;
}

void shim_step_fini(shim_step_t *s) {
  if (s->timer_ready) shim_timer_fini(s->dev, &s->timer);
  s->timer_ready = 0;
  for (int k = 0; k < s->n_ops; k++) {
    shim_op_t *op = &s->ops[k];
    if (op->h_send != op->send) shim_host_free(s->dev, op->h_send);
    if (op->h_recv != op->recv) shim_host_free(s->dev, op->h_recv);
    shim_dev_free(s->dev, op->send);
    shim_dev_free(s->dev, op->recv);
    free(op->granks);
    shim_samples_free(&op->eager_us);
    op->send = op->recv = op->h_send = op->h_recv = NULL;
    op->granks = NULL;
  }
  s->n_ops = 0;
  shim_samples_free(&s->graph_us);
  free(s->acc);
  free(s->want);
  free(s->scratch);
  free(s->tokens);
  s->acc = NULL;
  s->want = s->scratch = NULL;
  s->tokens = NULL;
  s->ref.tokens = NULL;
}

static shim_data_key_t key_of(const shim_step_t *s, int iter, int rank, int op) {
  shim_data_key_t key;
  key.seed = s->cfg.seed;
  key.iter = iter;
  key.rank = rank;
  key.op = op;
  return key;
}

static moecomm_result_t op_call(shim_step_t *s, shim_op_t *op) {
  const moecomm_api_t *api = s->api;
  switch (op->coll) {
    case SHIM_ALL_REDUCE:
      return api->all_reduce(op->group, op->send, op->recv, op->send_count, s->cfg.dtype,
                             MOECOMM_SUM, s->dev->stream);
    case SHIM_ALL_GATHER:
      return api->all_gather(op->group, op->send, op->recv, op->send_count, s->cfg.dtype,
                             s->dev->stream);
    case SHIM_REDUCE_SCATTER:
      return api->reduce_scatter(op->group, op->send, op->recv, op->recv_count, s->cfg.dtype,
                                 MOECOMM_SUM, s->dev->stream);
    case SHIM_SCATTER: {
      moecomm_scatter_args_t a;
      memset(&a, 0, sizeof(a));
      a.struct_size = sizeof(a);
      a.from = op->tr->from;
      a.to = op->tr->to;
      a.reduce = op->tr->reduce;
      a.dtype = s->cfg.dtype;
      a.hidden = (size_t)s->cfg.hidden;
      a.tokens = sref_tokens_of(&s->ref, s->cfg.rank);
      a.send = op->send;
      a.recv = op->recv;
      return api->scatter(s->ctx, &a, s->dev->stream);
    }
  }
  return MOECOMM_ERR_INTERNAL;
}

static int call_fail(shim_step_t *s, shim_op_t *op, int iter, const char *phase,
                     moecomm_result_t r) {
  char where[256];
  snprintf(where, sizeof(where), "%s (%s, %s iteration %d)", op->label, op->name, phase, iter);
  return api_fail(s, coll_call_name(op->coll), where, r);
}

/* Counts one wrong element; 1 when its line should be printed (the first few per rank). */
static int count_mismatch(shim_step_t *s) {
  s->mismatches++;
  if (s->printed == SHIM_MAX_PRINTED)
    fprintf(stderr, "rank %d: further mismatches are counted, not printed\n", s->cfg.rank);
  return s->printed++ < SHIM_MAX_PRINTED;
}

/* Compares n results at element `off` of op->h_recv with the exact sums in s->acc. */
static void compare(shim_step_t *s, shim_op_t *op, int iter, const char *phase, size_t off,
                    size_t n) {
  moecomm_dtype_t dt = s->cfg.dtype;
  for (size_t i = 0; i < n; i++) {
    int32_t v = s->acc[i];
    uint32_t want = (v >= -256 && v <= 256) ? s->enc[v + 256] : shim_data_encode(v, dt);
    uint32_t got = shim_data_bits(op->h_recv, off + i, dt);
    if (shim_data_same(got, want, dt) || !count_mismatch(s)) continue;
    fprintf(stderr,
            "rank %d: MISMATCH %s on %s, %s iteration %d: element %zu of %zu: got %g (0x%x), "
            "want %g (0x%x)\n",
            s->cfg.rank, op->name, op->label, phase, iter, off + i, op->recv_count,
            shim_data_decode(got, dt), (unsigned)got, shim_data_decode(want, dt), (unsigned)want);
  }
}

/* The reference model's seed for transition k of iteration iter: inputs differ per iteration
   and per transition, and every rank derives the same seed. */
static void ref_seed(shim_step_t *s, int iter, int k) {
  uint64_t st = s->cfg.seed ^ ((uint64_t)(uint32_t)iter << 20) ^ (uint64_t)(uint32_t)k;
  s->ref.seed = sref_rand(&st);
}

/* Transition k's output against the reference model, every row: tokens exact, padding zero. */
static void transition_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->ops[k];
  moecomm_dtype_t dt = s->cfg.dtype;
  size_t hidden = (size_t)s->cfg.hidden;
  ref_seed(s, iter, k);
  sref_expect(&s->ref, s->cfg.rank, op->tr->from, op->tr->to, op->tr->reduce, s->want,
              s->scratch);
  for (size_t i = 0; i < op->recv_count; i++) {
    uint32_t got = shim_data_bits(op->h_recv, i, dt), want = shim_data_bits(s->want, i, dt);
    int group;
    size_t tok;
    char what[96];
    if (shim_data_same(got, want, dt) || !count_mismatch(s)) continue;
    if (sref_row_token(&s->ref, s->cfg.rank, op->tr->to, i / hidden, &group, &tok))
      snprintf(what, sizeof(what), "token %zu of attention group %d", tok, group);
    else
      snprintf(what, sizeof(what), "padding");
    fprintf(stderr,
            "rank %d: MISMATCH %s (%s%s), %s iteration %d: row %zu of %zu (%s), element %zu: "
            "got %g (0x%x), want %g (0x%x)\n",
            s->cfg.rank, op->name, op->label, op->tr->reduce ? ", reduce" : "", phase, iter,
            i / hidden, op->recv_rows, what, i % hidden, shim_data_decode(got, dt),
            (unsigned)got, shim_data_decode(want, dt), (unsigned)want);
  }
}

/* The exact result of op k in iteration iter, from every member's regenerated input. */
static void op_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->ops[k];
  size_t n = op->coll == SHIM_ALL_GATHER ? op->send_count : op->recv_count;
  s->checked++;
  if (op->coll == SHIM_SCATTER) {
    transition_verify(s, k, iter, phase);
    return;
  }
  if (op->coll == SHIM_ALL_GATHER) {
    for (int j = 0; j < op->gsize; j++) {
      shim_data_key_t key = key_of(s, iter, op->granks[j], k);
      memset(s->acc, 0, n * sizeof(int32_t));
      shim_data_accumulate(s->acc, 0, n, &key);
      compare(s, op, iter, phase, (size_t)j * n, n);
    }
    return;
  }
  /* All-reduce: every element; reduce-scatter: this rank's block of every member's input. */
  memset(s->acc, 0, n * sizeof(int32_t));
  for (int j = 0; j < op->gsize; j++) {
    shim_data_key_t key = key_of(s, iter, op->granks[j], k);
    size_t first = op->coll == SHIM_REDUCE_SCATTER ? (size_t)op->grank * n : 0;
    shim_data_accumulate(s->acc, first, n, &key);
  }
  compare(s, op, iter, phase, 0, n);
}

/* New inputs into op k's send buffer and poison into its output (stream-ordered on a GPU). */
static int op_prepare(shim_step_t *s, int k, int iter) {
  shim_op_t *op = &s->ops[k];
  size_t dsz = shim_dtype_size(s->cfg.dtype);
  shim_data_key_t key = key_of(s, iter, s->cfg.rank, k);
  if (op->coll == SHIM_SCATTER) {
    /* Partial sums in the token rows; zero or garbage padding, as the model says. */
    ref_seed(s, iter, k);
    sref_input(&s->ref, s->cfg.rank, op->tr->from, op->tr->to, op->tr->reduce, op->h_send);
  } else {
    shim_data_fill(op->h_send, 0, op->send_count, s->cfg.dtype, &key);
  }
  if (op->h_recv != op->recv) memset(op->h_recv, 0xff, op->recv_count * dsz);
  if (shim_dev_put(s->dev, op->send, op->h_send, op->send_count * dsz) != 0 ||
      shim_dev_poison(s->dev, op->recv, op->recv_count * dsz) != 0)
    return step_fail(s, "inputs for %s on %s: %s", op->name, op->label, s->dev->err);
  return 0;
}

static int op_fetch(shim_step_t *s, int k) {
  shim_op_t *op = &s->ops[k];
  if (shim_dev_get(s->dev, op->h_recv, op->recv, op->recv_count * shim_dtype_size(s->cfg.dtype)) !=
      0)
    return step_fail(s, "result of %s on %s: %s", op->name, op->label, s->dev->err);
  return 0;
}

/* The step's timer: a start (0) or stop (1) mark, and the microseconds between them. */
static int step_mark(shim_step_t *s, int which) {
  if (shim_timer_mark(s->dev, &s->timer, which) != 0)
    return step_fail(s, "timer: %s", s->dev->err);
  return 0;
}

static int step_elapsed(shim_step_t *s, double *us_p) {
  if (shim_timer_us(s->dev, &s->timer, us_p) != 0) return step_fail(s, "timer: %s", s->dev->err);
  return 0;
}

/* One eager iteration; phase names it in messages ("eager", "captured"). */
static int step_run(shim_step_t *s, int timed, const char *phase) {
  int iter = s->iter++;
  for (int k = 0; k < s->n_ops; k++) {
    shim_op_t *op = &s->ops[k];
    moecomm_result_t r;
    double us = 0;
    if (op_prepare(s, k, iter) != 0) return -1;
    if (step_mark(s, 0) != 0) return -1;
    r = op_call(s, op);
    if (r != MOECOMM_SUCCESS) return call_fail(s, op, iter, phase, r);
    if (step_mark(s, 1) != 0) return -1;
    if (op_fetch(s, k) != 0) return -1;
    if (shim_dev_sync(s->dev) != 0)
      return step_fail(s, "after %s on %s (%s iteration %d): %s", op->name, op->label, phase,
                       iter, s->dev->err);
    if (step_elapsed(s, &us) != 0) return -1;
    if (timed && shim_samples_add(&op->eager_us, us) != 0)
      return step_fail(s, "out of host memory for timings");
    op_verify(s, k, iter, phase);
  }
  return 0;
}

int shim_step_eager(shim_step_t *s, int timed) { return step_run(s, timed, "eager"); }

int shim_step_capture(shim_step_t *s, shim_graph_t *g, int *supported_p) {
  const moecomm_api_t *api = s->api;
  moecomm_result_t r;
  *supported_p = 1;
  memset(g, 0, sizeof(*g));
  if (!MOECOMM_API_HAS(api, capture_begin) || !MOECOMM_API_HAS(api, capture_end)) {
    *supported_p = 0;
    snprintf(s->err, sizeof(s->err), "the plugin's table has no capture_begin/capture_end");
    return 0;
  }
  r = api->capture_begin(s->ctx, s->dev->stream);
  if (r == MOECOMM_ERR_NOT_SUPPORTED) {
    *supported_p = 0;
    snprintf(s->err, sizeof(s->err), "capture_begin: %s: %s", api->result_string(r),
             api->last_error(s->ctx));
    return 0;
  }
  if (r != MOECOMM_SUCCESS) return api_fail(s, "capture_begin", "the context", r);
  if (!shim_dev_is_gpu(s->dev)) {
    if (step_run(s, 0, "captured") != 0) return -1;
  } else {
    if (shim_graph_begin(s->dev) != 0) return step_fail(s, "stream capture: %s", s->dev->err);
    /* Only the collectives are captured: inputs and poison are written before each replay. */
    for (int k = 0; k < s->n_ops; k++) {
      r = op_call(s, &s->ops[k]);
      if (r != MOECOMM_SUCCESS) {
        call_fail(s, &s->ops[k], s->iter, "captured", r);
        shim_graph_abort(s->dev);
        return -1;
      }
    }
    if (shim_graph_end(s->dev, g) != 0) return step_fail(s, "stream capture: %s", s->dev->err);
  }
  r = api->capture_end(s->ctx, s->dev->stream);
  if (r == MOECOMM_ERR_NOT_SUPPORTED) {
    *supported_p = 0;
    snprintf(s->err, sizeof(s->err), "capture_end: %s: %s", api->result_string(r),
             api->last_error(s->ctx));
    shim_graph_destroy(g);
    return 0;
  }
  if (r != MOECOMM_SUCCESS) {
    api_fail(s, "capture_end", "the context", r);
    shim_graph_destroy(g);
    return -1;
  }
  return 0;
}

int shim_step_replay(shim_step_t *s, shim_graph_t *g, int timed, double *us_p) {
  int iter = s->iter++;
  double us = 0;
  for (int k = 0; k < s->n_ops; k++)
    if (op_prepare(s, k, iter) != 0) return -1;
  if (step_mark(s, 0) != 0) return -1;
  if (shim_graph_launch(s->dev, g) != 0)
    return step_fail(s, "graph replay %d: %s", iter, s->dev->err);
  if (step_mark(s, 1) != 0) return -1;
  for (int k = 0; k < s->n_ops; k++)
    if (op_fetch(s, k) != 0) return -1;
  if (shim_dev_sync(s->dev) != 0)
    return step_fail(s, "graph replay (iteration %d): %s", iter, s->dev->err);
  if (step_elapsed(s, &us) != 0) return -1;
  if (timed && shim_samples_add(&s->graph_us, us / (double)s->n_ops) != 0)
    return step_fail(s, "out of host memory for timings");
  for (int k = 0; k < s->n_ops; k++) op_verify(s, k, iter, "graph");
  if (us_p != NULL) *us_p = us;
  return 0;
}

void shim_step_describe(const shim_step_t *s, FILE *f) {
  if (!s->modes) {
    fprintf(f, "step: ABI 1.0 collectives, %d ops per iteration on [%d x %d] %s per rank:",
            s->n_ops, s->cfg.tokens, s->cfg.hidden, shim_dtype_name(s->cfg.dtype));
    for (int k = 0; k < s->n_ops; k++)
      fprintf(f, "%s %s on %s", k ? "," : "", s->ops[k].name, s->ops[k].label);
    fprintf(f, "\n");
    if (s->note[0]) fprintf(f, "      (not the scatter-mode step: %s)\n", s->note);
    if (s->cfg.uneven)
      fprintf(f, "      (--uneven: the ABI-1.0 collectives need equal counts; ignored)\n");
    return;
  }
  fprintf(f, "step: ABI 1.1 scatter modes, %d transitions per iteration, hidden %d %s\n",
          s->n_ops, s->cfg.hidden, shim_dtype_name(s->cfg.dtype));
  fprintf(f, "  modes: %s\n", s->plan.chain);
  fprintf(f, "  tokens per attention group (attn_tp %d):", s->ref.attn_tp);
  for (int b = 0; b < s->ref.world / s->ref.tp; b++) {
    fprintf(f, "%s [", b ? "," : "");
    for (int g = 0; g < s->ref.ngroups; g++)
      fprintf(f, "%s%d", g ? "," : "", (int)s->tokens[(size_t)b * (size_t)s->ref.ngroups + g]);
    fprintf(f, "]");
  }
  fprintf(f, "%s\n", s->ref.world > s->ref.tp ? " (per TP block)" : "");
  for (int k = 0; k < s->n_ops; k++) {
    const shim_op_t *op = &s->ops[k];
    fprintf(f, "  %-12s %s%s, rows %zu -> %zu: %s\n", op->name, op->label,
            op->tr->reduce ? " reduce" : "", op->send_rows, op->recv_rows, op->groups);
  }
}

int shim_step_report_rows(const shim_step_t *s, shim_report_row_t *rows) {
  size_t dsz = shim_dtype_size(s->cfg.dtype);
  for (int k = 0; k < s->n_ops; k++) {
    const shim_op_t *op = &s->ops[k];
    rows[k].op = op->name;
    rows[k].group = op->label;
    rows[k].backend = op->backend;
    rows[k].bytes = (op->send_count > op->recv_count ? op->send_count : op->recv_count) * dsz;
    rows[k].eager = &op->eager_us;
    rows[k].graph = &s->graph_us;
  }
  return s->n_ops;
}
