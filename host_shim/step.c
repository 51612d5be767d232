/* SPDX-License-Identifier: Apache-2.0 */
/* step.c - what both variants of the MoE step share (step.h): buffers, new inputs and poison
 * before each run, eager runs, capture, replay and the timing rows.  The variants
 * (step_v10.c, step_v11.c) say which ops run and what their results must be; the pipeline
 * hand-off (step_pp.c) follows them when there is one. */
#include "step.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/report.h"

#define SHIM_MAX_PRINTED 5 /* mismatch lines per rank */

int shim_step_fail(shim_step_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof(s->err), fmt, ap);
  va_end(ap);
  return -1;
}

int shim_step_api_fail(shim_step_t *s, const char *call, const char *where, moecomm_result_t r) {
  return shim_step_fail(s, "%s on %s failed: %s: %s", call, where, s->api->result_string(r),
                        s->api->last_error(s->ctx));
}

int shim_step_group(shim_step_t *s, moecomm_group_kind_t kind, moecomm_group_t **group_p,
                    moecomm_group_stats_t *st) {
  const moecomm_api_t *api = s->api;
  moecomm_result_t r;
  char where[32];
  snprintf(where, sizeof(where), "group kind %d", (int)kind);
  r = api->group_get(s->ctx, kind, group_p);
  if (r != MOECOMM_SUCCESS) return shim_step_api_fail(s, "group_get", where, r);
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  r = api->group_stats(*group_p, st);
  if (r != MOECOMM_SUCCESS) return shim_step_api_fail(s, "group_stats", where, r);
  if (st->size < 1 || st->size > s->cfg.world || st->rank < 0 || st->rank >= st->size ||
      st->ranks == NULL)
    return shim_step_fail(s, "group_stats for %s returned an inconsistent group (size %d, rank %d)",
                          st->kind_name ? st->kind_name : "?", (int)st->size, (int)st->rank);
  return 0;
}

int shim_step_op_group(shim_step_t *s, shim_op_t *op, moecomm_group_kind_t kind,
                       moecomm_group_stats_t *st) {
  char ranks[128];
  if (shim_step_group(s, kind, &op->group, st) != 0) return -1;
  op->gsize = st->size;
  op->grank = st->rank;
  op->backend = st->backend_name ? st->backend_name : "?";
  op->granks = malloc((size_t)st->size * sizeof(int32_t));
  if (op->granks == NULL) return shim_step_fail(s, "out of host memory");
  memcpy(op->granks, st->ranks, (size_t)st->size * sizeof(int32_t));
  shim_format_ranks(op->granks, op->gsize, ranks, sizeof(ranks));
  snprintf(op->label, sizeof(op->label), "%s %s", st->kind_name ? st->kind_name : "?", ranks);
  return 0;
}

shim_op_t *shim_step_next_op(shim_step_t *s) {
  shim_op_t *op;
  if (s->n_ops == SHIM_STEP_MAX_OPS) {
    shim_step_fail(s, "step plan has more than %d ops", SHIM_STEP_MAX_OPS);
    return NULL;
  }
  op = &s->ops[s->n_ops];
  memset(op, 0, sizeof(*op));
  return op;
}

int shim_step_mismatch(shim_step_t *s) {
  s->mismatches++;
  if (s->printed == SHIM_MAX_PRINTED)
    fprintf(stderr, "rank %d: further mismatches are counted, not printed\n", s->cfg.rank);
  return s->printed++ < SHIM_MAX_PRINTED;
}

static const char *coll_call_name(shim_coll_t c) {
  switch (c) {
    case SHIM_ALL_REDUCE: return "all_reduce";
    case SHIM_ALL_GATHER: return "all_gather";
    case SHIM_REDUCE_SCATTER: return "reduce_scatter";
    case SHIM_SCATTER: return "scatter";
    case SHIM_SENDRECV: return "recv/send";
    case SHIM_MOE_DISPATCH: return "moe_dispatch";
    case SHIM_MOE_COMBINE: return "moe_combine";
  }
  return "?";
}

/* The step's ops: the variant's, then the hand-off (number n_ops) when there is one. */
static int step_count(const shim_step_t *s) {
  return s->n_ops + s->pp_on;
}

static shim_op_t *step_op(shim_step_t *s, int k) {
  return k < s->n_ops ? &s->ops[k] : &s->pp;
}

/* Whose hooks serve op k. */
static const shim_step_ops_t *step_hooks(const shim_step_t *s, int k) {
  return k < s->n_ops ? s->ops_of : &shim_step_pp;
}

/* Token counts, rows and element counts of every op for `tokens`; the buffers are not looked
   at. */
static int step_layout(shim_step_t *s, int tokens) {
  if (tokens < 1) return shim_step_fail(s, "token count %d: must be at least 1", tokens);
  if (s->ops_of->layout(s, tokens) != 0 || shim_step_pp.layout(s, tokens) != 0) return -1;
  s->cfg.tokens = tokens;
  return 0;
}

int shim_step_set_tokens(shim_step_t *s, int tokens) {
  int old = s->cfg.tokens;
  char why[sizeof(s->err)];
  if (step_layout(s, tokens) == 0) {
    int k;
    for (k = 0; k < step_count(s); k++)
      if (step_op(s, k)->send_count > step_op(s, k)->send_cap ||
          step_op(s, k)->recv_count > step_op(s, k)->recv_cap)
        break;
    if (k == step_count(s)) return 0;
    const shim_op_t *op = step_op(s, k);
    shim_step_fail(s,
                   "%d tokens: %s on %s needs %zu + %zu elements, its buffers hold %zu + %zu "
                   "(sized for the step's token counts only)",
                   tokens, op->name, op->label, op->send_count, op->recv_count, op->send_cap,
                   op->recv_cap);
  }
  /* Back to the previous layout, which fitted; keep the first reason. */
  snprintf(why, sizeof(why), "%s", s->err);
  step_layout(s, old);
  snprintf(s->err, sizeof(s->err), "%s", why);
  return -1;
}

/* The variant that runs: the all-to-all step when asked for; else ABI 1.1 first when the
   plugin speaks it, else (or when it cannot run this topology) ABI 1.0; then the hand-off when
   there are pipeline stages. */
static int step_plan(shim_step_t *s) {
  static const shim_step_ops_t *const variants[] = {&shim_step_v11, &shim_step_v10};
  int rc = -1;
  if (s->cfg.a2a) {
    s->ops_of = &shim_step_a2a;
    rc = s->ops_of->plan(s) == 0 ? 0 : -1;
  } else {
    for (size_t i = s->cfg.modes ? 0 : 1; i < sizeof(variants) / sizeof(variants[0]); i++) {
      s->ops_of = variants[i];
      rc = s->ops_of->plan(s);
      if (rc <= 0) break;
    }
  }
  return rc == 0 ? shim_step_pp.plan(s) : -1;
}

/* Every op's buffers, sized for the largest of the step's token counts; the step is left at
   cfg->tokens. */
static int step_buffers(shim_step_t *s) {
  const shim_step_cfg_t *cfg = &s->cfg;
  shim_dev_t *dev = s->dev;
  size_t dsz = shim_dtype_size(cfg->dtype);
  int tokens = cfg->tokens;
  for (size_t i = 0; i <= cfg->n_sizes; i++) {
    if (step_layout(s, i < cfg->n_sizes ? cfg->sizes[i] : tokens) != 0) return -1;
    for (int k = 0; k < step_count(s); k++) {
      shim_op_t *op = step_op(s, k);
      if (op->send_count > op->send_cap) op->send_cap = op->send_count;
      if (op->recv_count > op->recv_cap) op->recv_cap = op->recv_count;
    }
  }
  for (int k = 0; k < step_count(s); k++) {
    shim_op_t *op = step_op(s, k);
    /* At least one element: a mode may hold no rows on a rank (a group with no tokens). */
    size_t sb = (op->send_cap ? op->send_cap : 1) * dsz;
    size_t rb = (op->recv_cap ? op->recv_cap : 1) * dsz;
    if (shim_dev_alloc(dev, sb, &op->send) != 0 || shim_dev_alloc(dev, rb, &op->recv) != 0)
      return shim_step_fail(s, "buffers for %s on %s (%zu + %zu bytes): %s", op->name, op->label,
                            sb, rb, dev->err);
    if (shim_dev_is_gpu(dev)) {
      if (shim_host_alloc(dev, sb, &op->h_send) != 0 || shim_host_alloc(dev, rb, &op->h_recv) != 0)
        return shim_step_fail(s, "host staging for %s on %s: %s", op->name, op->label, dev->err);
    } else {
      /* Host memory already: inputs are made in place and results read in place. */
      op->h_send = op->send;
      op->h_recv = op->recv;
    }
  }
  return 0;
}

int shim_step_init(shim_step_t *s, const moecomm_api_t *api, moecomm_context_t *ctx,
                   shim_dev_t *dev, const shim_step_cfg_t *cfg) {
  size_t dsz = shim_dtype_size(cfg->dtype);
  memset(s, 0, sizeof(*s));
  s->api = api;
  s->ctx = ctx;
  s->dev = dev;
  s->cfg = *cfg;
  if (dsz == 0 || cfg->dtype == MOECOMM_INT32)
    return shim_step_fail(s, "the step runs bf16, fp16 or fp32, not %s",
                          shim_dtype_name(cfg->dtype));
  if (!MOECOMM_API_HAS(api, group_get) || !MOECOMM_API_HAS(api, group_stats) ||
      !MOECOMM_API_HAS(api, all_reduce) || !MOECOMM_API_HAS(api, all_gather) ||
      !MOECOMM_API_HAS(api, reduce_scatter))
    return shim_step_fail(s,
                          "the plugin's table lacks group_get, group_stats, all_reduce, "
                          "all_gather or reduce_scatter: the step needs all five");
  if (step_plan(s) != 0 || step_buffers(s) != 0 || s->ops_of->alloc(s) != 0) goto fail;
  if (cfg->barrier != NULL) {
    s->sync = malloc((size_t)cfg->world * sizeof(*s->sync));
    if (s->sync == NULL) {
      shim_step_fail(s, "out of host memory for %d ranks' barrier words", cfg->world);
      goto fail;
    }
  }
  if (shim_timer_init(dev, &s->timer) != 0) {
    shim_step_fail(s, "timer: %s", dev->err);
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
  for (int k = 0; k < step_count(s); k++) {
    shim_op_t *op = step_op(s, k);
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
  s->pp_on = 0;
  shim_samples_free(&s->graph_us);
  free(s->sync);
  s->sync = NULL;
  if (s->ops_of != NULL) s->ops_of->fini(s);
}

/* New inputs into op k's send buffer and poison into its output (stream-ordered on a GPU). */
static int op_prepare(shim_step_t *s, int k, int iter) {
  shim_op_t *op = step_op(s, k);
  size_t dsz = shim_dtype_size(s->cfg.dtype);
  step_hooks(s, k)->input(s, k, iter);
  if (op->h_recv != op->recv) memset(op->h_recv, 0xff, op->recv_count * dsz);
  if (shim_dev_put(s->dev, op->send, op->h_send, op->send_count * dsz) != 0 ||
      shim_dev_poison(s->dev, op->recv, op->recv_count * dsz) != 0)
    return shim_step_fail(s, "inputs for %s on %s: %s", op->name, op->label, s->dev->err);
  return 0;
}

static int op_fetch(shim_step_t *s, int k) {
  shim_op_t *op = step_op(s, k);
  if (shim_dev_get(s->dev, op->h_recv, op->recv, op->recv_count * shim_dtype_size(s->cfg.dtype)) !=
      0)
    return shim_step_fail(s, "result of %s on %s: %s", op->name, op->label, s->dev->err);
  return 0;
}

static int call_fail(shim_step_t *s, shim_op_t *op, int iter, const char *phase,
                     moecomm_result_t r) {
  char where[256];
  snprintf(where, sizeof(where), "%s (%s, %s iteration %d)", op->label, op->name, phase, iter);
  return shim_step_api_fail(s, coll_call_name(op->coll), where, r);
}

/* The step's timer: a start (0) or stop (1) mark, and the microseconds between them. */
static int step_mark(shim_step_t *s, int which) {
  if (shim_timer_mark(s->dev, &s->timer, which) != 0)
    return shim_step_fail(s, "timer: %s", s->dev->err);
  return 0;
}

static int step_elapsed(shim_step_t *s, double *us_p) {
  if (shim_timer_us(s->dev, &s->timer, us_p) != 0)
    return shim_step_fail(s, "timer: %s", s->dev->err);
  return 0;
}

/* Every rank here before the timed call (cfg.barrier), op k of iteration iter. */
static int step_barrier(shim_step_t *s, int k, int iter) {
  int32_t mine = iter * SHIM_STEP_MAX_OPS + k;
  if (s->cfg.barrier == NULL) return 0;
  if (s->cfg.barrier(s->cfg.barrier_arg, &mine, s->sync, sizeof(mine)) != 0)
    return shim_step_fail(s, "the barrier before %s (iteration %d) failed: a rank is gone",
                          step_op(s, k)->name, iter);
  return 0;
}

/* One eager iteration; phase names it in messages ("eager", "captured"). */
static int step_run(shim_step_t *s, int timed, const char *phase) {
  int iter = s->iter++;
  for (int k = 0; k < step_count(s); k++) {
    shim_op_t *op = step_op(s, k);
    moecomm_result_t r;
    double us = 0;
    if (op_prepare(s, k, iter) != 0) return -1;
    if (timed && step_barrier(s, k, iter) != 0) return -1;
    if (step_mark(s, 0) != 0) return -1;
    r = step_hooks(s, k)->call(s, op);
    if (r != MOECOMM_SUCCESS) return call_fail(s, op, iter, phase, r);
    if (step_mark(s, 1) != 0) return -1;
    if (op_fetch(s, k) != 0) return -1;
    if (shim_dev_sync(s->dev) != 0)
      return shim_step_fail(s, "after %s on %s (%s iteration %d): %s", op->name, op->label, phase,
                            iter, s->dev->err);
    if (step_elapsed(s, &us) != 0) return -1;
    if (timed && shim_samples_add(&op->eager_us, us) != 0)
      return shim_step_fail(s, "out of host memory for timings");
    s->checked++;
    step_hooks(s, k)->verify(s, k, iter, phase);
  }
  return 0;
}

int shim_step_eager(shim_step_t *s, int timed) {
  return step_run(s, timed, "eager");
}

/* Inside the capture scope: the ops into g (GPU), or one verified eager run (CPU). */
static int capture_ops(shim_step_t *s, shim_graph_t *g) {
  if (!shim_dev_is_gpu(s->dev)) return step_run(s, 0, "captured");
  if (shim_graph_begin(s->dev) != 0) return shim_step_fail(s, "stream capture: %s", s->dev->err);
  /* Only the calls are captured: inputs and poison are written before each replay. */
  for (int k = 0; k < step_count(s); k++) {
    moecomm_result_t r = step_hooks(s, k)->call(s, step_op(s, k));
    if (r != MOECOMM_SUCCESS) {
      call_fail(s, step_op(s, k), s->iter, "captured", r);
      shim_graph_abort(s->dev);
      return -1;
    }
  }
  if (shim_graph_end(s->dev, g) != 0) return shim_step_fail(s, "stream capture: %s", s->dev->err);
  return 0;
}

/* capture_begin / capture_end answered MOECOMM_ERR_NOT_SUPPORTED: say why, in s->err. */
static int capture_refused(shim_step_t *s, const char *call, moecomm_result_t r, int *supported_p) {
  *supported_p = 0;
  snprintf(s->err, sizeof(s->err), "%s: %s: %s", call, s->api->result_string(r),
           s->api->last_error(s->ctx));
  return 0;
}

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
  if (r == MOECOMM_ERR_NOT_SUPPORTED) return capture_refused(s, "capture_begin", r, supported_p);
  if (r != MOECOMM_SUCCESS) return shim_step_api_fail(s, "capture_begin", "the context", r);
  if (capture_ops(s, g) != 0) return -1;
  r = api->capture_end(s->ctx, s->dev->stream);
  if (r != MOECOMM_SUCCESS) shim_graph_destroy(g);
  if (r == MOECOMM_ERR_NOT_SUPPORTED) return capture_refused(s, "capture_end", r, supported_p);
  if (r != MOECOMM_SUCCESS) return shim_step_api_fail(s, "capture_end", "the context", r);
  return 0;
}

int shim_step_replay(shim_step_t *s, shim_graph_t *g, int timed, double *us_p) {
  int iter = s->iter++;
  double us = 0;
  for (int k = 0; k < step_count(s); k++)
    if (op_prepare(s, k, iter) != 0) return -1;
  if (step_mark(s, 0) != 0) return -1;
  if (shim_graph_launch(s->dev, g) != 0)
    return shim_step_fail(s, "graph replay %d: %s", iter, s->dev->err);
  if (step_mark(s, 1) != 0) return -1;
  for (int k = 0; k < step_count(s); k++)
    if (op_fetch(s, k) != 0) return -1;
  if (shim_dev_sync(s->dev) != 0)
    return shim_step_fail(s, "graph replay (iteration %d): %s", iter, s->dev->err);
  if (step_elapsed(s, &us) != 0) return -1;
  if (timed && shim_samples_add(&s->graph_us, us / (double)step_count(s)) != 0)
    return shim_step_fail(s, "out of host memory for timings");
  for (int k = 0; k < step_count(s); k++) {
    s->checked++;
    step_hooks(s, k)->verify(s, k, iter, "graph");
  }
  if (us_p != NULL) *us_p = us;
  return 0;
}

void shim_step_describe(const shim_step_t *s, FILE *f) {
  s->ops_of->describe(s, f);
  shim_step_pp.describe(s, f);
}

int shim_step_report_rows(const shim_step_t *s, shim_report_row_t *rows) {
  size_t dsz = shim_dtype_size(s->cfg.dtype);
  for (int k = 0; k < step_count(s); k++) {
    const shim_op_t *op = k < s->n_ops ? &s->ops[k] : &s->pp;
    rows[k].op = op->name;
    rows[k].group = op->label;
    rows[k].backend = op->backend;
    rows[k].bytes = (op->send_count > op->recv_count ? op->send_count : op->recv_count) * dsz;
    rows[k].eager = &op->eager_us;
    rows[k].graph = &s->graph_us;
  }
  return step_count(s);
}
