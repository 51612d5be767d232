/* SPDX-License-Identifier: Apache-2.0 */
/* step_v11.c - the ABI-1.1 variant of the MoE step (step.h): the scatter-mode transitions
 * around the layers, each result checked row by row against the reference model
 * (lib/scatter_ref.h), padding included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/report.h"
#include "step.h"

/* A transition's rows for the current token counts: the plugin's mode_rows, checked against the
   ABI's layout (the reference model). */
static int transition_rows(shim_step_t *s, shim_op_t *op) {
  const int32_t *mine = sref_tokens_of(&s->v11.ref, s->cfg.rank);
  size_t rows[2];
  for (int i = 0; i < 2; i++) {
    int mode = i == 0 ? op->tr->from : op->tr->to;
    size_t want = sref_rows(&s->v11.ref, s->cfg.rank, mode);
    moecomm_result_t r = s->api->mode_rows(s->ctx, (moecomm_scatter_mode_t)mode, mine, &rows[i]);
    if (r != MOECOMM_SUCCESS) return shim_step_api_fail(s, "mode_rows", sref_mode_name(mode), r);
    if (rows[i] != want)
      return shim_step_fail(s,
                            "mode_rows(%s) says %zu rows on rank %d, the ABI's layout has %zu "
                            "(token counts of the TP block: %d%s)",
                            sref_mode_name(mode), rows[i], s->cfg.rank, want, (int)mine[0],
                            s->v11.ref.ngroups > 1 ? ", ..." : "");
  }
  op->send_rows = rows[0];
  op->recv_rows = rows[1];
  op->send_count = rows[0] * (size_t)s->cfg.hidden;
  op->recv_count = rows[1] * (size_t)s->cfg.hidden;
  return 0;
}

/* Adds one scatter-mode transition and the groups it communicates on, for the report; its rows
   come with the token counts (v11_layout). */
static int add_transition(shim_step_t *s, const shim_transition_t *tr) {
  shim_op_t *op = shim_step_next_op(s);
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
    if (shim_step_group(s, kinds[i], &g, &st) != 0) return -1;
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

/* Layer modes, reference model, transitions.  1 (nothing allocated, no op added): the plugin
   cannot run this topology's modes; s->note says why and the ABI-1.0 step runs instead. */
static int v11_plan(shim_step_t *s) {
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
  rc = shim_modes_plan(s->api, s->ctx, &s->v11.plan, why, sizeof(why));
  if (rc == 1) {
    snprintf(s->note, sizeof(s->note), "%s", why);
    return 1;
  }
  if (rc != 0) return shim_step_fail(s, "%s", why);
  if (c->tp < 1 || c->tp > SREF_MAX_RANKS || c->world % c->tp != 0)
    return shim_step_fail(s,
                          "tp=%d: the step's exact reference covers TP groups of 1..%d ranks that "
                          "divide the world (%d ranks)",
                          c->tp, SREF_MAX_RANKS, c->world);
  s->v11.ref = sref_make(c->world, c->tp, c->ep, c->moe_dp, c->attn_cp, c->attn_dp);
  if (s->v11.ref.attn_tp < 1 || s->v11.ref.moe_tp < 1)
    return shim_step_fail(s, "tp=%d does not split into attn_dp*attn_cp=%d or ep*moe_dp=%d", c->tp,
                          s->v11.ref.ngroups, s->v11.ref.ep * s->v11.ref.moe_dp);
  s->v11.ref.dtype = c->dtype;
  s->v11.ref.hidden = (size_t)c->hidden;
  nblocks = (size_t)(c->world / c->tp);
  s->v11.tokens = malloc(nblocks * (size_t)s->v11.ref.ngroups * sizeof(int32_t));
  if (s->v11.tokens == NULL) return shim_step_fail(s, "out of host memory for token counts");
  s->v11.ref.tokens = s->v11.tokens;
  for (int i = 0; i < s->v11.plan.n_tr; i++)
    if (add_transition(s, &s->v11.plan.tr[i]) != 0) return -1;
  return 0;
}

static int v11_layout(shim_step_t *s, int tokens) {
  char why[sizeof(s->err)];
  if (shim_modes_tokens(s->api, s->ctx, &s->v11.ref, tokens, s->cfg.uneven, s->v11.plan.split,
                        s->v11.tokens, why, sizeof(why)) != 0)
    return shim_step_fail(s, "%s", why);
  for (int k = 0; k < s->n_ops; k++)
    if (transition_rows(s, &s->ops[k]) != 0) return -1;
  return 0;
}

static int v11_alloc(shim_step_t *s) {
  size_t dsz = shim_dtype_size(s->cfg.dtype), want_n = 0;
  for (int k = 0; k < s->n_ops; k++)
    if (s->ops[k].recv_cap > want_n) want_n = s->ops[k].recv_cap;
  s->v11.want = malloc((want_n ? want_n : 1) * dsz);
  s->v11.scratch = malloc((size_t)s->cfg.hidden * dsz);
  if (s->v11.want == NULL || s->v11.scratch == NULL)
    return shim_step_fail(s, "out of host memory for %zu expected values", want_n);
  return 0;
}

static void v11_fini(shim_step_t *s) {
  free(s->v11.want);
  free(s->v11.scratch);
  free(s->v11.tokens);
  s->v11.want = s->v11.scratch = NULL;
  s->v11.tokens = NULL;
  s->v11.ref.tokens = NULL;
}

/* The reference model's seed for transition k of iteration iter: inputs differ per iteration
   and per transition, and every rank derives the same seed. */
static void ref_seed(shim_step_t *s, int iter, int k) {
  uint64_t st = s->cfg.seed ^ ((uint64_t)(uint32_t)iter << 20) ^ (uint64_t)(uint32_t)k;
  s->v11.ref.seed = shim_data_rand(&st);
}

/* Partial sums in the token rows; zero or garbage padding, as the model says. */
static void v11_input(shim_step_t *s, int k, int iter) {
  const shim_transition_t *tr = s->ops[k].tr;
  ref_seed(s, iter, k);
  sref_input(&s->v11.ref, s->cfg.rank, tr->from, tr->to, tr->reduce, s->ops[k].h_send);
}

static moecomm_result_t v11_call(shim_step_t *s, shim_op_t *op) {
  moecomm_scatter_args_t a =
      sref_args(op->tr->from, op->tr->to, op->tr->reduce, s->cfg.dtype, (size_t)s->cfg.hidden,
                sref_tokens_of(&s->v11.ref, s->cfg.rank), op->send, op->recv);
  return s->api->scatter(s->ctx, &a, s->dev->stream);
}

/* Transition k's output against the reference model, every row: tokens exact, padding zero. */
static void v11_verify(shim_step_t *s, int k, int iter, const char *phase) {
  shim_op_t *op = &s->ops[k];
  moecomm_dtype_t dt = s->cfg.dtype;
  size_t hidden = (size_t)s->cfg.hidden, dsz = shim_dtype_size(dt);
  const sref_t *ref = &s->v11.ref;
  ref_seed(s, iter, k);
  sref_expect(ref, s->cfg.rank, op->tr->from, op->tr->to, op->tr->reduce, s->v11.want,
              s->v11.scratch);
  for (size_t i = 0; i < op->recv_count; i++) {
    uint32_t got, want;
    int group;
    size_t tok;
    char what[96];
    /* A whole row equal bit for bit is right (only +0 / -0 may differ and still be right). */
    if (i % hidden == 0 &&
        memcmp((char *)op->h_recv + i * dsz, (char *)s->v11.want + i * dsz, hidden * dsz) == 0) {
      i += hidden - 1;
      continue;
    }
    got = shim_data_bits(op->h_recv, i, dt);
    want = shim_data_bits(s->v11.want, i, dt);
    if (shim_data_same(got, want, dt) || !shim_step_mismatch(s)) continue;
    if (sref_row_token(ref, s->cfg.rank, op->tr->to, i / hidden, &group, &tok))
      snprintf(what, sizeof(what), "token %zu of attention group %d", tok, group);
    else
      snprintf(what, sizeof(what), "padding");
    fprintf(stderr,
            "rank %d: MISMATCH %s (%s%s), %s iteration %d: row %zu of %zu (%s), element %zu: "
            "got %g (0x%x), want %g (0x%x)\n",
            s->cfg.rank, op->name, op->label, op->tr->reduce ? ", reduce" : "", phase, iter,
            i / hidden, op->recv_rows, what, i % hidden, shim_data_decode(got, dt), (unsigned)got,
            shim_data_decode(want, dt), (unsigned)want);
  }
}

static void v11_describe(const shim_step_t *s, FILE *f) {
  const sref_t *ref = &s->v11.ref;
  fprintf(f, "step: ABI 1.1 scatter modes, %d transitions per iteration, hidden %d %s\n", s->n_ops,
          s->cfg.hidden, shim_dtype_name(s->cfg.dtype));
  fprintf(f, "  modes: %s\n", s->v11.plan.chain);
  fprintf(f, "  tokens per attention group (attn_tp %d):", ref->attn_tp);
  for (int b = 0; b < ref->world / ref->tp; b++) {
    fprintf(f, "%s [", b ? "," : "");
    for (int g = 0; g < ref->ngroups; g++)
      fprintf(f, "%s%d", g ? "," : "", (int)s->v11.tokens[(size_t)b * (size_t)ref->ngroups + g]);
    fprintf(f, "]");
  }
  fprintf(f, "%s\n", ref->world > ref->tp ? " (per TP block)" : "");
  for (int k = 0; k < s->n_ops; k++) {
    const shim_op_t *op = &s->ops[k];
    fprintf(f, "  %-12s %s%s, rows %zu -> %zu: %s\n", op->name, op->label,
            op->tr->reduce ? " reduce" : "", op->send_rows, op->recv_rows, op->groups);
  }
}

const shim_step_ops_t shim_step_v11 = {
    .name = "ABI 1.1 scatter modes",
    .tokens_per = "attention group",
    .plan = v11_plan,
    .layout = v11_layout,
    .alloc = v11_alloc,
    .fini = v11_fini,
    .input = v11_input,
    .call = v11_call,
    .verify = v11_verify,
    .describe = v11_describe,
};
