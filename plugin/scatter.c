/* SPDX-License-Identifier: Apache-2.0 */
/* scatter.c - scatter modes (ABI 1.1): which mode each layer's input must be in, and the
 * transitions between modes.  Every transition is a few group collectives plus local copies and
 * zero padding, so it runs on every backend and is counted and captured like any collective. */
#include "scatter.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "gpu.h"
#include "util.h"

static const char *const mc_mode_names[4] = {"SCATTERED", "TP_ATTN_FULL", "FULL", "MOE_FULL"};

moecomm_result_t mc_layer_mode(const mc_context_t *ctx, int layer, moecomm_scatter_mode_t *mode_p,
                               mc_err_t *err) {
  const mc_topo_t *t = &ctx->topo;
  moecomm_scatter_mode_t full = t->attn_tp == t->tp ? MOECOMM_TP_ATTN_FULL : MOECOMM_FULL;
  moecomm_scatter_mode_t m;
  switch (layer) {
    case MOECOMM_LAYER_ATTENTION: m = MOECOMM_TP_ATTN_FULL; break;
    case MOECOMM_LAYER_DENSE_MLP: m = t->moe_dense_tp == 1 ? MOECOMM_SCATTERED : full; break;
    case MOECOMM_LAYER_SPARSE_MOE:
      if (t->attn_cp > t->moe_dp) {
        /* MoE replicas span attention-DP slices that hold different tokens. */
        if (t->attn_dp > 1)
          return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                            "layer_mode: MOE_FULL (attn_cp=%d > moe_dp=%d) needs attn_dp=1, "
                            "got attn_dp=%d",
                            t->attn_cp, t->moe_dp, t->attn_dp);
        m = MOECOMM_MOE_FULL;
      } else if (t->ep * t->moe_tp == t->attn_tp) {
        m = MOECOMM_TP_ATTN_FULL; /* a MoE replica is one attention-TP group */
      } else if (t->moe_dp == 1) {
        m = full;
      } else {
        return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                          "layer_mode: a MoE replica of ep*moe_tp=%d ranks is neither one "
                          "attention-TP group (attn_tp=%d) nor the TP group (tp=%d)",
                          t->ep * t->moe_tp, t->attn_tp, t->tp);
      }
      break;
    default:
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "layer_mode: layer kind %d is not ATTENTION, DENSE_MLP or SPARSE_MOE",
                        layer);
  }
  *mode_p = m;
  return MOECOMM_SUCCESS;
}

/* Row geometry of this rank for token counts T (see moecomm_scatter_args_t). */
typedef struct mc_rows {
  int tp_rank;   /* index in the TP block */
  int group;     /* attention group g */
  int attn_rank; /* index in the ATTN_TP group */
  int cp_rank;   /* index in the MOE_CP group */
  int cp_size;
  size_t t_g;    /* T[g] */
  size_t n_g;    /* T[g] / attn_tp: SCATTERED rows */
  size_t s;      /* FULL block rows */
  size_t p;      /* MOE_FULL block rows */
  int split_ok;  /* every T[g] is a multiple of attn_tp: SCATTERED and FULL exist */
  int bad_group; /* first g whose T[g] is not (when !split_ok) */
} mc_rows_t;

static moecomm_result_t mc_rows_init(const mc_context_t *ctx, const int32_t *tokens,
                                     mc_rows_t *rows_p, mc_err_t *err) {
  const mc_topo_t *t = &ctx->topo;
  const mc_comm_t *cp = ctx->groups[MOECOMM_GROUP_MOE_CP].comm;
  int ngroups = t->attn_dp * t->attn_cp, b = t->rank / t->tp * t->tp;
  mc_rows_t r;
  if (tokens == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "scatter: tokens is NULL (pass the token count of each of the %d attention "
                      "groups of the TP block)",
                      ngroups);
  memset(&r, 0, sizeof(r));
  r.split_ok = 1;
  for (int g = 0; g < ngroups; g++) {
    if (tokens[g] < 0)
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "scatter: tokens[%d]=%d is negative", g,
                        (int)tokens[g]);
    if (r.split_ok && tokens[g] % t->attn_tp != 0) {
      r.split_ok = 0;
      r.bad_group = g;
    }
    r.s = MC_MAX(r.s, (size_t)tokens[g] / (size_t)t->attn_tp);
  }
  r.tp_rank = t->rank - b;
  r.group = r.tp_rank / t->attn_tp;
  r.attn_rank = r.tp_rank % t->attn_tp;
  r.t_g = (size_t)tokens[r.group];
  r.n_g = r.t_g / (size_t)t->attn_tp;
  r.cp_rank = cp->rank;
  r.cp_size = cp->size;
  for (int c = 0; c < cp->size; c++)
    r.p = MC_MAX(r.p, (size_t)tokens[(cp->ranks[c] - b) / t->attn_tp]);
  *rows_p = r;
  return MOECOMM_SUCCESS;
}

/* SCATTERED and FULL slice each group's tokens over its attn_tp ranks. */
static moecomm_result_t mc_rows_need_split(const mc_context_t *ctx, const mc_rows_t *r,
                                           const int32_t *tokens, int mode, mc_err_t *err) {
  if (r->split_ok || (mode != MOECOMM_SCATTERED && mode != MOECOMM_FULL)) return MOECOMM_SUCCESS;
  return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                    "scatter: %s splits each attention group's tokens over attn_tp=%d ranks, but "
                    "tokens[%d]=%d is not a multiple of it (plan_capture_sizes gives counts that "
                    "are when the topology needs them)",
                    mode == MOECOMM_SCATTERED ? "SCATTERED" : "FULL", ctx->topo.attn_tp,
                    r->bad_group, (int)tokens[r->bad_group]);
}

static size_t mc_mode_rows_of(const mc_context_t *ctx, const mc_rows_t *r, int mode) {
  switch (mode) {
    case MOECOMM_SCATTERED: return r->n_g;
    case MOECOMM_TP_ATTN_FULL: return r->t_g;
    case MOECOMM_FULL: return (size_t)ctx->topo.tp * r->s;
    case MOECOMM_MOE_FULL: return (size_t)r->cp_size * r->p;
  }
  return 0;
}

/* MOE_FULL block rows of world rank `rank`: the largest count among its MOE_CP members' groups. */
static size_t mc_moe_block_rows(const mc_topo_t *t, int rank, const int32_t *tokens,
                                int32_t *scratch) {
  const int b = rank / t->tp * t->tp;
  const int n = mc_topo_group_ranks(t, MOECOMM_GROUP_MOE_CP, rank, scratch);
  size_t p = 0;
  for (int c = 0; c < n; c++) p = MC_MAX(p, (size_t)tokens[(scratch[c] - b) / t->attn_tp]);
  return p;
}

/* The MoE reduce of MOE_FULL rows runs over MOE_TP and MOE_EP: every member must hold as many
   rows as this rank.  Members whose MOE_CP groups see other counts (attention DP) would issue
   all-reduces of other sizes, so the call is refused before anything is issued.  All groups lie
   in this rank's TP block, whose token counts every rank was given. */
static moecomm_result_t mc_moe_reduce_consistent(const mc_context_t *ctx, const int32_t *tokens,
                                                 mc_err_t *err) {
  static const int kinds[2] = {MOECOMM_GROUP_MOE_TP, MOECOMM_GROUP_MOE_EP};
  const mc_topo_t *t = &ctx->topo;
  int32_t *ranks = malloc(sizeof(int32_t) * 2 * (size_t)t->world), *scratch;
  moecomm_result_t r = MOECOMM_SUCCESS;
  size_t mine;
  if (ranks == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  scratch = ranks + t->world;
  mine = mc_moe_block_rows(t, t->rank, tokens, scratch);
  for (int k = 0; k < 2 && r == MOECOMM_SUCCESS; k++) {
    int n = mc_topo_group_ranks(t, (moecomm_group_kind_t)kinds[k], t->rank, ranks);
    for (int i = 0; i < n && r == MOECOMM_SUCCESS; i++) {
      size_t theirs = mc_moe_block_rows(t, ranks[i], tokens, scratch);
      if (theirs != mine)
        r = mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                       "scatter: reducing MOE_FULL rows over %s needs the same block size on "
                       "every member, but rank %d's MoE-CP group holds up to %zu tokens and rank "
                       "%d's %zu (attention DP gives them different tokens); nothing was issued",
                       mc_topo_kind_name(kinds[k]), t->rank, mine, (int)ranks[i], theirs);
    }
  }
  free(ranks);
  return r;
}

/* Bytes of `rows` rows of `hidden` elements of esz bytes, or 0 when that is above PTRDIFF_MAX. */
static size_t mc_rows_bytes(size_t rows, size_t hidden, size_t esz) {
  size_t b;
  if (__builtin_mul_overflow(rows, hidden, &b) || __builtin_mul_overflow(b, esz, &b) ||
      b > PTRDIFF_MAX)
    return 0;
  return b;
}

moecomm_result_t mc_mode_rows(const mc_context_t *ctx, int mode, const int32_t *tokens,
                              size_t *rows_p, mc_err_t *err) {
  mc_rows_t r;
  moecomm_result_t res;
  if (mode < MOECOMM_SCATTERED || mode > MOECOMM_MOE_FULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "mode_rows: mode %d is not a scatter "
                      "mode",
                      mode);
  if (rows_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "mode_rows: rows_p is NULL");
  if ((res = mc_rows_init(ctx, tokens, &r, err)) != MOECOMM_SUCCESS) return res;
  if ((res = mc_rows_need_split(ctx, &r, tokens, mode, err)) != MOECOMM_SUCCESS) return res;
  *rows_p = mc_mode_rows_of(ctx, &r, mode);
  return MOECOMM_SUCCESS;
}

/* ---- the steps transitions are made of ---- */

typedef struct mc_xfer {
  mc_context_t *ctx;
  moecomm_dtype_t dtype;
  size_t row_bytes, hidden;
  void *stream;
} mc_xfer_t;

static char *mc_row(void *base, size_t row, const mc_xfer_t *x) {
  return (char *)base + row * x->row_bytes;
}

static moecomm_result_t mc_copy_rows(const mc_xfer_t *x, void *dst, const void *src, size_t rows) {
  size_t bytes = rows * x->row_bytes;
  if (bytes == 0 || dst == src) return MOECOMM_SUCCESS;
  if (x->ctx->device < 0) {
    memmove(dst, src, bytes);
    return MOECOMM_SUCCESS;
  }
  return mc_gpu_copy_async(dst, src, bytes, x->stream, &x->ctx->err);
}

static moecomm_result_t mc_zero_rows(const mc_xfer_t *x, void *dst, size_t rows) {
  size_t bytes = rows * x->row_bytes;
  if (bytes == 0) return MOECOMM_SUCCESS;
  if (x->ctx->device < 0) {
    memset(dst, 0, bytes);
    return MOECOMM_SUCCESS;
  }
  return mc_gpu_zero_async(dst, bytes, x->stream, &x->ctx->err);
}

static moecomm_result_t mc_coll_rows(const mc_xfer_t *x, int kind, int group, const void *send,
                                     void *recv, size_t rows) {
  mc_coll_t c = {.kind = (mc_coll_kind_t)kind,
                 .send = send,
                 .recv = recv,
                 .count = rows * x->hidden,
                 .dtype = x->dtype,
                 .op = MOECOMM_SUM,
                 .root = 0,
                 .stream = x->stream};
  return mc_group_collective(&x->ctx->groups[group], &c);
}

/* The MoE layer's partial sums are over its replica: MOE_TP, then MOE_EP. In place on buf. */
static moecomm_result_t mc_moe_reduce(const mc_xfer_t *x, void *buf, size_t rows) {
  moecomm_result_t r = mc_coll_rows(x, MC_COLL_ALL_REDUCE, MOECOMM_GROUP_MOE_TP, buf, buf, rows);
  if (r != MOECOMM_SUCCESS) return r;
  return mc_coll_rows(x, MC_COLL_ALL_REDUCE, MOECOMM_GROUP_MOE_EP, buf, buf, rows);
}

/* Puts this rank's TP_ATTN_FULL rows (reduced over ATTN_TP when asked) into its MOE_FULL block,
   pads, and gathers the blocks over MOE_CP in place. */
static moecomm_result_t mc_to_moe_full(const mc_xfer_t *x, const mc_rows_t *r, int from, int reduce,
                                       void *send, void *recv) {
  char *own = mc_row(recv, (size_t)r->cp_rank * r->p, x);
  moecomm_result_t res;
  /* No padding and nothing to sum (or a one-rank ATTN_TP): gather straight from send.  Ranks
     that take this path and ranks that do not still issue the same MOE_CP all-gather. */
  if (from == MOECOMM_TP_ATTN_FULL && r->t_g == r->p &&
      (!reduce || x->ctx->groups[MOECOMM_GROUP_ATTN_TP].comm->size == 1))
    return mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_MOE_CP, send, recv, r->p);
  if (from == MOECOMM_SCATTERED)
    res = mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_ATTN_TP, send, own, r->n_g);
  else if (reduce)
    res = mc_coll_rows(x, MC_COLL_ALL_REDUCE, MOECOMM_GROUP_ATTN_TP, send, own, r->t_g);
  else
    res = mc_copy_rows(x, own, send, r->t_g);
  if (res == MOECOMM_SUCCESS) res = mc_zero_rows(x, mc_row(own, r->t_g, x), r->p - r->t_g);
  if (res == MOECOMM_SUCCESS)
    res = mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_MOE_CP, own, recv, r->p);
  return res;
}

/* Puts this rank's SCATTERED rows (from TP_ATTN_FULL: reduce-scattered or sliced) into its FULL
   block, pads, and gathers the blocks over TP in place. */
static moecomm_result_t mc_to_full(const mc_xfer_t *x, const mc_rows_t *r, int from, int reduce,
                                   void *send, void *recv) {
  char *own = mc_row(recv, (size_t)r->tp_rank * r->s, x);
  moecomm_result_t res;
  if (from == MOECOMM_SCATTERED && r->n_g == r->s) /* no padding: gather straight from send */
    return mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_TP, send, recv, r->s);
  if (from == MOECOMM_SCATTERED)
    res = mc_copy_rows(x, own, send, r->n_g);
  else if (reduce)
    res = mc_coll_rows(x, MC_COLL_REDUCE_SCATTER, MOECOMM_GROUP_ATTN_TP, send, own, r->n_g);
  else
    res = mc_copy_rows(x, own, mc_row(send, (size_t)r->attn_rank * r->n_g, x), r->n_g);
  if (res == MOECOMM_SUCCESS) res = mc_zero_rows(x, mc_row(own, r->n_g, x), r->s - r->n_g);
  if (res == MOECOMM_SUCCESS)
    res = mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_TP, own, recv, r->s);
  return res;
}

/* From FULL: reduce-scatter over TP in place (each rank's block), then the wanted rows. */
static moecomm_result_t mc_from_full(const mc_xfer_t *x, const mc_rows_t *r, int to, int reduce,
                                     void *send, void *recv) {
  char *own = mc_row(send, (size_t)r->tp_rank * r->s, x);
  moecomm_result_t res = MOECOMM_SUCCESS;
  if (reduce) res = mc_coll_rows(x, MC_COLL_REDUCE_SCATTER, MOECOMM_GROUP_TP, send, own, r->s);
  if (res != MOECOMM_SUCCESS) return res;
  if (to == MOECOMM_SCATTERED) return mc_copy_rows(x, recv, own, r->n_g);
  if (reduce) return mc_coll_rows(x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_ATTN_TP, own, recv, r->n_g);
  /* Unreduced: the group's rows sit in its members' blocks. */
  for (int j = 0; j < x->ctx->topo.attn_tp && res == MOECOMM_SUCCESS; j++)
    res =
        mc_copy_rows(x, mc_row(recv, (size_t)j * r->n_g, x),
                     mc_row(send, (size_t)(r->group * x->ctx->topo.attn_tp + j) * r->s, x), r->n_g);
  return res;
}

/* 1 when the MoE replica is exactly the MOE_CP group, member for member: then block c of a
   MOE_FULL buffer belongs to MOE_EP's c-th rank. */
static int mc_moe_replica_is_cp(const mc_context_t *ctx) {
  const mc_comm_t *ep = ctx->groups[MOECOMM_GROUP_MOE_EP].comm;
  const mc_comm_t *cp = ctx->groups[MOECOMM_GROUP_MOE_CP].comm;
  return ctx->groups[MOECOMM_GROUP_MOE_TP].comm->size == 1 && ep->size == cp->size &&
         memcmp(ep->ranks, cp->ranks, sizeof(int32_t) * (size_t)ep->size) == 0;
}

/* From MOE_FULL: the MoE reduction when asked, then the slice back.  Each rank needs only its
   own block reduced, so where the replica is the MOE_CP group a reduce-scatter does it with half
   the traffic of an all-reduce. */
static moecomm_result_t mc_from_moe_full(const mc_xfer_t *x, const mc_rows_t *r, int to, int reduce,
                                         void *send, void *recv) {
  char *own = mc_row(send, (size_t)r->cp_rank * r->p, x);
  moecomm_result_t res = MOECOMM_SUCCESS;
  if (reduce && mc_moe_replica_is_cp(x->ctx))
    res = mc_coll_rows(x, MC_COLL_REDUCE_SCATTER, MOECOMM_GROUP_MOE_EP, send, own, r->p);
  else if (reduce)
    res = mc_moe_reduce(x, send, (size_t)r->cp_size * r->p);
  if (res != MOECOMM_SUCCESS) return res;
  if (to == MOECOMM_SCATTERED)
    return mc_copy_rows(x, recv, mc_row(own, (size_t)r->attn_rank * r->n_g, x), r->n_g);
  return mc_copy_rows(x, recv, own, r->t_g);
}

moecomm_result_t mc_scatter(mc_context_t *ctx, const moecomm_scatter_args_t *args, void *stream) {
  moecomm_scatter_args_t a;
  size_t min_size = MOECOMM_STRUCT_SIZE(moecomm_scatter_args_t, recv), esz;
  mc_err_t *err = &ctx->err;
  mc_rows_t r;
  mc_xfer_t x;
  moecomm_result_t res;
  int from, to;

  if (args == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "scatter: args is NULL");
  if (args->struct_size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "scatter args struct_size %zu is smaller than the ABI 1.1 layout (%zu)",
                      args->struct_size, min_size);
  memset(&a, 0, sizeof(a));
  memcpy(&a, args, MC_MIN(args->struct_size, sizeof(a)));
  from = a.from;
  to = a.to;
  esz = mc_dtype_size((moecomm_dtype_t)a.dtype);
  if (from < 0 || from > 3 || to < 0 || to > 3)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "scatter: from=%d / to=%d are not scatter modes (0..3)", from, to);
  if (esz == 0 || a.hidden == 0 || a.hidden > PTRDIFF_MAX / esz)
    return mc_err_set(
        err, MOECOMM_ERR_INVALID_ARGUMENT,
        "scatter: dtype %d / hidden %zu invalid (hidden > 0, dtype a moecomm_dtype_t)",
        (int)a.dtype, a.hidden);
  if (ctx->device < 0 && stream != NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "scatter: stream must be NULL on a CPU context");
  if ((res = mc_rows_init(ctx, a.tokens, &r, err)) != MOECOMM_SUCCESS ||
      (res = mc_rows_need_split(ctx, &r, a.tokens, from, err)) != MOECOMM_SUCCESS ||
      (res = mc_rows_need_split(ctx, &r, a.tokens, to, err)) != MOECOMM_SUCCESS)
    return res;
  {
    /* Every buffer and every collective the transition issues stays within these sizes. */
    const size_t rows_from = mc_mode_rows_of(ctx, &r, from), rows_to = mc_mode_rows_of(ctx, &r, to);
    const size_t s_bytes = mc_rows_bytes(rows_from, a.hidden, esz);
    const size_t r_bytes = mc_rows_bytes(rows_to, a.hidden, esz);
    uintptr_t s0 = (uintptr_t)a.send, r0 = (uintptr_t)a.recv;
    if ((rows_from > 0 && s_bytes == 0) || (rows_to > 0 && r_bytes == 0))
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "scatter: %zu or %zu rows of hidden %zu %s elements exceed the address "
                        "space",
                        rows_from, rows_to, a.hidden, mc_dtype_name((moecomm_dtype_t)a.dtype));
    if ((rows_from > 0 && a.send == NULL) || (rows_to > 0 && a.recv == NULL))
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "scatter: send or recv is NULL");
    if (s_bytes > 0 && r_bytes > 0 && s0 < r0 + r_bytes && r0 < s0 + s_bytes)
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "scatter: send (%zu bytes) and recv (%zu bytes) overlap", s_bytes, r_bytes);
  }
  if (from == MOECOMM_MOE_FULL && (a.reduce || to == MOECOMM_MOE_FULL) &&
      (res = mc_moe_reduce_consistent(ctx, a.tokens, err)) != MOECOMM_SUCCESS)
    return res;
  x.ctx = ctx;
  x.dtype = (moecomm_dtype_t)a.dtype;
  x.hidden = a.hidden;
  x.row_bytes = a.hidden * esz;
  x.stream = stream;

  if (from == MOECOMM_SCATTERED && a.reduce) goto unsupported; /* no layer leaves partial slices */
  if (from == to && !a.reduce)
    return mc_copy_rows(&x, a.recv, a.send, mc_mode_rows_of(ctx, &r, from));
  switch (from * 4 + to) {
    case MOECOMM_SCATTERED * 4 + MOECOMM_TP_ATTN_FULL:
      return mc_coll_rows(&x, MC_COLL_ALL_GATHER, MOECOMM_GROUP_ATTN_TP, a.send, a.recv, r.n_g);
    case MOECOMM_TP_ATTN_FULL * 4 + MOECOMM_SCATTERED:
      if (a.reduce)
        return mc_coll_rows(&x, MC_COLL_REDUCE_SCATTER, MOECOMM_GROUP_ATTN_TP, a.send, a.recv,
                            r.n_g);
      return mc_copy_rows(&x, a.recv, mc_row(a.send, (size_t)r.attn_rank * r.n_g, &x), r.n_g);
    case MOECOMM_TP_ATTN_FULL * 4 + MOECOMM_TP_ATTN_FULL:
      return mc_coll_rows(&x, MC_COLL_ALL_REDUCE, MOECOMM_GROUP_ATTN_TP, a.send, a.recv, r.t_g);
    case MOECOMM_FULL * 4 + MOECOMM_FULL:
      return mc_coll_rows(&x, MC_COLL_ALL_REDUCE, MOECOMM_GROUP_TP, a.send, a.recv,
                          (size_t)ctx->topo.tp * r.s);
    case MOECOMM_MOE_FULL * 4 + MOECOMM_MOE_FULL:
      res = mc_moe_reduce(&x, a.send, (size_t)r.cp_size * r.p);
      return res != MOECOMM_SUCCESS ? res
                                    : mc_copy_rows(&x, a.recv, a.send, (size_t)r.cp_size * r.p);
    case MOECOMM_SCATTERED * 4 + MOECOMM_MOE_FULL:
    case MOECOMM_TP_ATTN_FULL * 4 + MOECOMM_MOE_FULL:
      return mc_to_moe_full(&x, &r, from, a.reduce, a.send, a.recv);
    case MOECOMM_SCATTERED * 4 + MOECOMM_FULL:
    case MOECOMM_TP_ATTN_FULL * 4 + MOECOMM_FULL:
      return mc_to_full(&x, &r, from, a.reduce, a.send, a.recv);
    case MOECOMM_FULL * 4 + MOECOMM_SCATTERED:
    case MOECOMM_FULL * 4 + MOECOMM_TP_ATTN_FULL:
      return mc_from_full(&x, &r, to, a.reduce, a.send, a.recv);
    case MOECOMM_MOE_FULL * 4 + MOECOMM_SCATTERED:
    case MOECOMM_MOE_FULL * 4 + MOECOMM_TP_ATTN_FULL:
      return mc_from_moe_full(&x, &r, to, a.reduce, a.send, a.recv);
    default: break;
  }
unsupported:
  return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                    "scatter: %s -> %s%s is not a transition moecomm performs (go through "
                    "TP_ATTN_FULL)",
                    mc_mode_names[from], mc_mode_names[to], a.reduce ? " with reduce" : "");
}
