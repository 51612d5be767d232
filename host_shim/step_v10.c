/* SPDX-License-Identifier: Apache-2.0 */
/* step_v10.c - the ABI-1.0 variant of the MoE step (step.h): collectives on the MoE groups,
 * each result the exact sum (or concatenation) of every member's regenerated input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/report.h"
#include "step.h"

int shim_step_add_coll(shim_step_t *s, const char *name, shim_coll_t coll,
                       moecomm_group_kind_t kind, size_t n) {
  shim_op_t *op = shim_step_next_op(s);
  moecomm_group_stats_t st;

  if (op == NULL) return -1;
  op->name = name;
  op->coll = coll;
  if (shim_step_op_group(s, op, kind, &st) != 0) return -1;
  if (coll != SHIM_ALL_GATHER && st.size > SHIM_DATA_MAX_ADDENDS)
    return shim_step_fail(s,
                          "%s has %d ranks: exact verification of sums needs at most %d ranks per "
                          "reduction group",
                          st.kind_name ? st.kind_name : "?", (int)st.size, SHIM_DATA_MAX_ADDENDS);
  switch (coll) {
    case SHIM_ALL_REDUCE: op->send_count = op->recv_count = n; break;
    case SHIM_ALL_GATHER:
      op->send_count = n;
      op->recv_count = (size_t)op->gsize * n;
      break;
    case SHIM_REDUCE_SCATTER:
      op->send_count = (size_t)op->gsize * n;
      op->recv_count = n;
      break;
    default: break; /* not a collective of this variant */
  }
  s->n_ops++;
  return 0;
}

/* The step's ops, in the order an engine issues them (step.h). */
static int v10_plan(shim_step_t *s) {
  size_t th = (size_t)s->cfg.tokens * (size_t)s->cfg.hidden;
  size_t moe_n = th;
  if (shim_step_add_coll(s, "attn all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_ATTN_TP, th) != 0)
    return -1;
  if (s->cfg.gather_moe) {
    if (shim_step_add_coll(s, "moe all-gather", SHIM_ALL_GATHER, MOECOMM_GROUP_MOE_CP, th) != 0)
      return -1;
    moe_n = s->ops[s->n_ops - 1].recv_count;
  }
  if (shim_step_add_coll(s, "moe-tp all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_MOE_TP, moe_n) != 0)
    return -1;
  if (shim_step_add_coll(s, "moe-ep all-reduce", SHIM_ALL_REDUCE, MOECOMM_GROUP_MOE_EP, moe_n) != 0)
    return -1;
  if (shim_step_add_coll(s, "attn reduce-scatter", SHIM_REDUCE_SCATTER, MOECOMM_GROUP_ATTN_TP,
                         th) != 0)
    return -1;
  /* Every count above is tokens times a whole number of elements. */
  for (int k = 0; k < s->n_ops; k++) {
    s->ops[k].send_per_tok = s->ops[k].send_count / (size_t)s->cfg.tokens;
    s->ops[k].recv_per_tok = s->ops[k].recv_count / (size_t)s->cfg.tokens;
  }
  return 0;
}

static int v10_layout(shim_step_t *s, int tokens) {
  for (int k = 0; k < s->n_ops; k++) {
    s->ops[k].send_count = s->ops[k].send_per_tok * (size_t)tokens;
    s->ops[k].recv_count = s->ops[k].recv_per_tok * (size_t)tokens;
  }
  return 0;
}

static int v10_alloc(shim_step_t *s) {
  size_t acc_n = 0;
  for (int k = 0; k < s->n_ops; k++)
    if (s->ops[k].recv_cap > acc_n) acc_n = s->ops[k].recv_cap;
  s->v10.acc = malloc((acc_n ? acc_n : 1) * sizeof(int32_t));
  if (s->v10.acc == NULL)
    return shim_step_fail(s, "out of host memory for %zu expected values", acc_n);
  for (int v = -256; v <= 256; v++) s->v10.enc[v + 256] = shim_data_encode(v, s->cfg.dtype);
  return 0;
}

static void v10_fini(shim_step_t *s) {
  free(s->v10.acc);
  s->v10.acc = NULL;
}

static shim_data_key_t key_of(const shim_step_t *s, int iter, int rank, int op) {
  shim_data_key_t key;
  key.seed = s->cfg.seed;
  key.iter = iter;
  key.rank = rank;
  key.op = op;
  return key;
}

static void v10_input(shim_step_t *s, int k, int iter) {
  shim_op_t *op = &s->ops[k];
  shim_data_key_t key = key_of(s, iter, s->cfg.rank, k);
  shim_data_fill(op->h_send, 0, op->send_count, s->cfg.dtype, &key);
}

static moecomm_result_t v10_call(shim_step_t *s, shim_op_t *op) {
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
    default: break;
  }
  return MOECOMM_ERR_INTERNAL;
}

/* Compares n results at element `off` of op->h_recv with the exact sums in s->v10.acc. */
static void compare(shim_step_t *s, shim_op_t *op, int iter, const char *phase, size_t off,
                    size_t n) {
  moecomm_dtype_t dt = s->cfg.dtype;
  for (size_t i = 0; i < n; i++) {
    int32_t v = s->v10.acc[i];
    uint32_t want = (v >= -256 && v <= 256) ? s->v10.enc[v + 256] : shim_data_encode(v, dt);
    uint32_t got = shim_data_bits(op->h_recv, off + i, dt);
    if (shim_data_same(got, want, dt) || !shim_step_mismatch(s)) continue;
    fprintf(stderr,
            "rank %d: MISMATCH %s on %s, %s iteration %d: element %zu of %zu: got %g (0x%x), "
            "want %g (0x%x)\n",
            s->cfg.rank, op->name, op->label, phase, iter, off + i, op->recv_count,
            shim_data_decode(got, dt), (unsigned)got, shim_data_decode(want, dt), (unsigned)want);
  }
}

/* The exact result of op k in iteration iter, from every member's regenerated input. */
static void v10_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->ops[k];
  size_t n = op->coll == SHIM_ALL_GATHER ? op->send_count : op->recv_count;
  if (op->coll == SHIM_ALL_GATHER) {
    for (int j = 0; j < op->gsize; j++) {
      shim_data_key_t key = key_of(s, iter, op->granks[j], k);
      memset(s->v10.acc, 0, n * sizeof(int32_t));
      shim_data_accumulate(s->v10.acc, 0, n, &key);
      compare(s, op, iter, phase, (size_t)j * n, n);
    }
    return;
  }
  /* All-reduce: every element; reduce-scatter: this rank's block of every member's input. */
  memset(s->v10.acc, 0, n * sizeof(int32_t));
  for (int j = 0; j < op->gsize; j++) {
    shim_data_key_t key = key_of(s, iter, op->granks[j], k);
    size_t first = op->coll == SHIM_REDUCE_SCATTER ? (size_t)op->grank * n : 0;
    shim_data_accumulate(s->v10.acc, first, n, &key);
  }
  compare(s, op, iter, phase, 0, n);
}

static void v10_describe(const shim_step_t *s, FILE *f) {
  fprintf(f, "step: ABI 1.0 collectives, %d ops per iteration on [%d x %d] %s per rank:", s->n_ops,
          s->cfg.tokens, s->cfg.hidden, shim_dtype_name(s->cfg.dtype));
  for (int k = 0; k < s->n_ops; k++)
    fprintf(f, "%s %s on %s", k ? "," : "", s->ops[k].name, s->ops[k].label);
  fprintf(f, "\n");
  if (s->note[0]) fprintf(f, "      (not the scatter-mode step: %s)\n", s->note);
  if (s->cfg.uneven)
    fprintf(f, "      (--uneven: the ABI-1.0 collectives need equal counts; ignored)\n");
}

const shim_step_ops_t shim_step_v10 = {
    .name = "ABI 1.0 collectives",
    .tokens_per = "rank",
    .plan = v10_plan,
    .layout = v10_layout,
    .alloc = v10_alloc,
    .fini = v10_fini,
    .input = v10_input,
    .call = v10_call,
    .verify = v10_verify,
    .describe = v10_describe,
};
