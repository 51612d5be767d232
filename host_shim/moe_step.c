/* moe_step.c - the MoE layer step: plan, inputs, calls, capture, replay, exact checks
 * (moe_step.h). */
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
  }
  return "?";
}

/* Adds one op; `n` is the op's per-rank tensor (elements): all-reduce n -> n, all-gather
   n -> size*n, reduce-scatter size*n -> n. */
static int add_op(shim_step_t *s, const char *name, shim_coll_t coll, moecomm_group_kind_t kind,
                  size_t n) {
  const moecomm_api_t *api = s->api;
  shim_op_t *op;
  moecomm_group_stats_t st;
  moecomm_result_t r;
  char ranks[128];

  if (s->n_ops == SHIM_STEP_MAX_OPS)
    return step_fail(s, "step plan has more than %d ops", SHIM_STEP_MAX_OPS);
  op = &s->ops[s->n_ops];
  memset(op, 0, sizeof(*op));
  op->name = name;
  op->coll = coll;
  op->kind = kind;
  r = api->group_get(s->ctx, kind, &op->group);
  if (r != MOECOMM_SUCCESS) {
    snprintf(op->label, sizeof(op->label), "group kind %d", (int)kind);
    return api_fail(s, "group_get", op->label, r);
  }
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  r = api->group_stats(op->group, &st);
  if (r != MOECOMM_SUCCESS) {
    snprintf(op->label, sizeof(op->label), "group kind %d", (int)kind);
    return api_fail(s, "group_stats", op->label, r);
  }
  if (st.size < 1 || st.size > s->cfg.world || st.rank < 0 || st.rank >= st.size ||
      st.ranks == NULL)
    return step_fail(s, "group_stats for %s returned an inconsistent group (size %d, rank %d)",
                     st.kind_name ? st.kind_name : "?", (int)st.size, (int)st.rank);
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
  }
  s->n_ops++;
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
  return 0;
}

int shim_step_init(shim_step_t *s, const moecomm_api_t *api, moecomm_context_t *ctx,
                   shim_dev_t *dev, const shim_step_cfg_t *cfg) {
  size_t dsz = shim_dtype_size(cfg->dtype), acc_n = 0;
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
  if (step_plan(s) != 0) goto fail;

  for (int k = 0; k < s->n_ops; k++) {
    shim_op_t *op = &s->ops[k];
    size_t sb = op->send_count * dsz, rb = op->recv_count * dsz;
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
    if (op->recv_count > acc_n) acc_n = op->recv_count;
  }
  s->acc = malloc((acc_n ? acc_n : 1) * sizeof(int32_t));
  if (s->acc == NULL) {
    step_fail(s, "out of host memory for %zu expected values", acc_n);
    goto fail;
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
  s->acc = NULL;
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
  }
  return MOECOMM_ERR_INTERNAL;
}

static int call_fail(shim_step_t *s, shim_op_t *op, int iter, const char *phase,
                     moecomm_result_t r) {
  char where[256];
  snprintf(where, sizeof(where), "%s (%s, %s iteration %d)", op->label, op->name, phase, iter);
  return api_fail(s, coll_call_name(op->coll), where, r);
}

/* Compares n results at element `off` of op->h_recv with the exact sums in s->acc. */
static void compare(shim_step_t *s, shim_op_t *op, int iter, const char *phase, size_t off,
                    size_t n) {
  moecomm_dtype_t dt = s->cfg.dtype;
  for (size_t i = 0; i < n; i++) {
    int32_t v = s->acc[i];
    uint32_t want = (v >= -256 && v <= 256) ? s->enc[v + 256] : shim_data_encode(v, dt);
    uint32_t got = shim_data_bits(op->h_recv, off + i, dt);
    if (shim_data_same(got, want, dt)) continue;
    op->mismatches++;
    s->mismatches++;
    if (s->printed < SHIM_MAX_PRINTED) {
      fprintf(stderr,
              "rank %d: MISMATCH %s on %s, %s iteration %d: element %zu of %zu: got %g (0x%x), "
              "want %g (0x%x)\n",
              s->cfg.rank, op->name, op->label, phase, iter, off + i, op->recv_count,
              shim_data_decode(got, dt), (unsigned)got, shim_data_decode(want, dt),
              (unsigned)want);
    } else if (s->printed == SHIM_MAX_PRINTED) {
      fprintf(stderr, "rank %d: further mismatches are counted, not printed\n", s->cfg.rank);
    }
    s->printed++;
  }
}

/* The exact result of op k in iteration iter, from every member's regenerated input. */
static void op_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->ops[k];
  size_t n = op->coll == SHIM_ALL_GATHER ? op->send_count : op->recv_count;
  s->checked++;
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
  shim_data_fill(op->h_send, 0, op->send_count, s->cfg.dtype, &key);
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

int shim_step_eager(shim_step_t *s, int timed) {
  int iter = s->iter++;
  for (int k = 0; k < s->n_ops; k++) {
    shim_op_t *op = &s->ops[k];
    moecomm_result_t r;
    double us = 0;
    if (op_prepare(s, k, iter) != 0) return -1;
    if (shim_timer_mark(s->dev, &s->timer, 0) != 0)
      return step_fail(s, "timer: %s", s->dev->err);
    r = op_call(s, op);
    if (r != MOECOMM_SUCCESS) return call_fail(s, op, iter, "eager", r);
    if (shim_timer_mark(s->dev, &s->timer, 1) != 0)
      return step_fail(s, "timer: %s", s->dev->err);
    if (op_fetch(s, k) != 0) return -1;
    if (shim_dev_sync(s->dev) != 0)
      return step_fail(s, "after %s on %s (eager iteration %d): %s", op->name, op->label, iter,
                       s->dev->err);
    if (shim_timer_us(s->dev, &s->timer, &us) != 0) return step_fail(s, "timer: %s", s->dev->err);
    if (timed && shim_samples_add(&op->eager_us, us) != 0)
      return step_fail(s, "out of host memory for timings");
    op_verify(s, k, iter, "eager");
  }
  return 0;
}

int shim_step_capture(shim_step_t *s, shim_graph_t *g, int *supported_p) {
  const moecomm_api_t *api = s->api;
  moecomm_result_t r;
  *supported_p = 1;
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

int shim_step_replay(shim_step_t *s, shim_graph_t *g) {
  int iter = s->iter++;
  double us = 0;
  for (int k = 0; k < s->n_ops; k++)
    if (op_prepare(s, k, iter) != 0) return -1;
  if (shim_timer_mark(s->dev, &s->timer, 0) != 0) return step_fail(s, "timer: %s", s->dev->err);
  if (shim_graph_launch(s->dev, g) != 0)
    return step_fail(s, "graph replay %d: %s", iter, s->dev->err);
  if (shim_timer_mark(s->dev, &s->timer, 1) != 0) return step_fail(s, "timer: %s", s->dev->err);
  for (int k = 0; k < s->n_ops; k++)
    if (op_fetch(s, k) != 0) return -1;
  if (shim_dev_sync(s->dev) != 0)
    return step_fail(s, "graph replay (iteration %d): %s", iter, s->dev->err);
  if (shim_timer_us(s->dev, &s->timer, &us) != 0) return step_fail(s, "timer: %s", s->dev->err);
  if (shim_samples_add(&s->graph_us, us / (double)s->n_ops) != 0)
    return step_fail(s, "out of host memory for timings");
  for (int k = 0; k < s->n_ops; k++) op_verify(s, k, iter, "graph");
  return 0;
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
