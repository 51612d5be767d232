/* SPDX-License-Identifier: Apache-2.0 */
/* step_pp.c - the pipeline hand-off of the step (step.h): with pp > 1 the step ends with one more
 * op, on the PP group, as a pipeline-parallel engine ends a stage's layers: this stage's
 * activations (tokens x hidden) go to the next stage with send, and the previous stage's arrive
 * with recv.  Stage s receives first and then sends, so the chain starts at stage 0 and nothing
 * waits in a circle (on a CPU context a send waits for its receiver).  What arrives must be,
 * bit for bit, the previous stage's input, regenerated from (seed, iteration, its world rank,
 * op).  It is not an op of the variants: step.c routes this op's hooks here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/report.h"
#include "step.h"

static shim_data_key_t pp_key(const shim_step_t *s, int iter, int rank) {
  shim_data_key_t key;
  key.seed = s->cfg.seed;
  key.iter = iter;
  key.rank = rank;
  key.op = s->n_ops; /* the op's index: after the variant's ops */
  return key;
}

/* The op, when pp > 1 and the plugin has send and recv (else s->pp_note says why not). */
static int pp_plan(shim_step_t *s) {
  shim_op_t *op = &s->pp;
  moecomm_group_stats_t st;
  if (s->cfg.pp < 2) return 0;
  if (!s->cfg.p2p || !MOECOMM_API_HAS(s->api, send) || !MOECOMM_API_HAS(s->api, recv)) {
    snprintf(s->pp_note, sizeof(s->pp_note), "pp %d, but %s: no hand-off between the stages",
             s->cfg.pp,
             s->cfg.p2p ? "the plugin's table has no send/recv"
                        : "send/recv need ABI 1.2 and an older one was negotiated");
    return 0;
  }
  if (s->n_ops >= SHIM_STEP_MAX_OPS)
    return shim_step_fail(s, "step plan has more than %d ops", SHIM_STEP_MAX_OPS);
  memset(op, 0, sizeof(*op));
  op->name = "pp hand-off";
  op->coll = SHIM_SENDRECV;
  if (shim_step_op_group(s, op, MOECOMM_GROUP_PP, &st) != 0) return -1;
  /* The first stage only sends, the last only receives. */
  op->send_per_tok = op->grank < op->gsize - 1 ? (size_t)s->cfg.hidden : 0;
  op->recv_per_tok = op->grank > 0 ? (size_t)s->cfg.hidden : 0;
  s->pp_on = 1;
  return 0;
}

static int pp_layout(shim_step_t *s, int tokens) {
  s->pp.send_count = s->pp.send_per_tok * (size_t)tokens;
  s->pp.recv_count = s->pp.recv_per_tok * (size_t)tokens;
  return 0;
}

static int pp_alloc(shim_step_t *s) {
  (void)s;
  return 0;
}

static void pp_fini(shim_step_t *s) {
  (void)s;
}

static void pp_input(shim_step_t *s, int k, int iter) {
  shim_data_key_t key = pp_key(s, iter, s->cfg.rank);
  (void)k;
  shim_data_fill(s->pp.h_send, 0, s->pp.send_count, s->cfg.dtype, &key);
}

static moecomm_result_t pp_call(shim_step_t *s, shim_op_t *op) {
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (op->recv_count > 0)
    r = s->api->recv(op->group, op->recv, op->recv_count, s->cfg.dtype, op->grank - 1,
                     s->dev->stream);
  if (r == MOECOMM_SUCCESS && op->send_count > 0)
    r = s->api->send(op->group, op->send, op->send_count, s->cfg.dtype, op->grank + 1,
                     s->dev->stream);
  return r;
}

/* What arrived against the previous stage's input, element by element. */
static void pp_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->pp;
  const moecomm_dtype_t dt = s->cfg.dtype;
  shim_data_key_t key;
  (void)k;
  if (op->recv_count == 0) return;
  key = pp_key(s, iter, op->granks[op->grank - 1]);
  for (size_t i = 0; i < op->recv_count; i++) {
    uint32_t want = shim_data_encode(shim_data_value(&key, i), dt);
    uint32_t got = shim_data_bits(op->h_recv, i, dt);
    if (shim_data_same(got, want, dt) || !shim_step_mismatch(s)) continue;
    fprintf(stderr,
            "rank %d: MISMATCH %s on %s, %s iteration %d: element %zu of %zu from stage %d: got "
            "%g (0x%x), want %g (0x%x)\n",
            s->cfg.rank, op->name, op->label, phase, iter, i, op->recv_count, op->grank - 1,
            shim_data_decode(got, dt), (unsigned)got, shim_data_decode(want, dt), (unsigned)want);
  }
}

static void pp_describe(const shim_step_t *s, FILE *f) {
  if (s->pp_note[0]) fprintf(f, "  (%s)\n", s->pp_note);
  if (s->pp_on)
    fprintf(f,
            "  then %s on %s: each stage receives the previous stage's [%d x %d] %s, then "
            "sends its own to the next\n",
            s->pp.name, s->pp.label, s->cfg.tokens, s->cfg.hidden, shim_dtype_name(s->cfg.dtype));
}

const shim_step_ops_t shim_step_pp = {
    .name = "pipeline hand-off",
    .tokens_per = "rank",
    .plan = pp_plan,
    .layout = pp_layout,
    .alloc = pp_alloc,
    .fini = pp_fini,
    .input = pp_input,
    .call = pp_call,
    .verify = pp_verify,
    .describe = pp_describe,
};
