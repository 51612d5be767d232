/* SPDX-License-Identifier: Apache-2.0 */
/* planner.c - graph-capture sizes every group can split.
 *
 * The rule is the engines' (sglang's CUDA-graph runner): when gathered buffers are required
 * (dense MLP fully data-parallel, or DP attention), the attention-TP reduce-scatter splits the
 * tokens over attn_tp ranks, so counts must be multiples of attn_tp, times attn_cp when attn_tp
 * is not divisible by attn_cp.  Otherwise every count splits (all-reduces need no division).
 * moecomm adds one case engines do not have (they turn capture off with attention CP): whenever
 * attention is split into several attention-TP groups inside a TP group (attn_tp < tp, from
 * attn_cp or attn_dp), the FULL transitions scatter each group's tokens over its attn_tp ranks,
 * so the same multiple applies.  Two-batch overlap splits each step into two micro-batches that
 * must each satisfy the rule, so counts must also be at least twice the multiple.  No case is
 * relaxed. */
#include "planner.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

/* Used when the host passes no candidates: the engines' usual capture batch sizes. */
static int mc_plan_default(int32_t *out) {
  int n = 0;
  static const int32_t head[] = {1, 2, 4, 8, 12, 16, 24};
  for (size_t i = 0; i < MC_ARRAY_LEN(head); i++) out[n++] = head[i];
  for (int v = 32; v <= 256; v += 8) out[n++] = v;
  for (int v = 272; v <= 512; v += 16) out[n++] = v;
  return n;
}
#define MC_PLAN_DEFAULT_MAX 64

/* The multiple token counts must be of, and why (a sentence for messages). */
static int mc_plan_multiple(const mc_topo_t *t, uint32_t flags, char *why, size_t why_size) {
  int dense_dp = (flags & MOECOMM_PLAN_DENSE_DP) || t->moe_dense_tp == 1;
  int dp_attn = (flags & MOECOMM_PLAN_DP_ATTENTION) || t->attn_dp > 1;
  int split = t->attn_tp < t->tp;
  const char *because = dense_dp  ? "the dense MLP runs data-parallel (moe_dense_tp=1)"
                        : dp_attn ? "attention runs data-parallel"
                                  : "attention is split into attention-TP groups smaller than tp "
                                    "(attention CP), whose tokens are scattered over attn_tp ranks";
  int mult;
  if (!dense_dp && !dp_attn && !split) {
    snprintf(why, why_size,
             "no gathered buffers are required (dense MLP is tensor-parallel and "
             "attention is not data-parallel)");
    return 1;
  }
  mult = t->attn_tp;
  if (t->attn_tp % t->attn_cp != 0) {
    mult *= t->attn_cp;
    snprintf(why, why_size,
             "attn_tp=%d times attn_cp=%d (attn_tp is not divisible by attn_cp), "
             "because %s",
             t->attn_tp, t->attn_cp, because);
  } else {
    snprintf(why, why_size, "attn_tp=%d, because %s", t->attn_tp, because);
  }
  return mult;
}

moecomm_result_t mc_plan_capture_sizes(const mc_context_t *ctx, const moecomm_plan_params_t *params,
                                       int32_t *sizes, size_t capacity, size_t *num_p,
                                       int32_t *multiple_p, mc_err_t *err) {
  moecomm_plan_params_t p;
  size_t min_size = MOECOMM_STRUCT_SIZE(moecomm_plan_params_t, num_candidates);
  int32_t defaults[MC_PLAN_DEFAULT_MAX];
  const int32_t *cand;
  size_t ncand, nvalid = 0, w = 0;
  char why[256], list[256];
  int mult, tbo;

  if (params == NULL || num_p == NULL || multiple_p == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: params, num_p and multiple_p must not be NULL");
  if (params->struct_size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "plan params struct_size %zu is smaller than the ABI 1.0 layout (%zu)",
                      params->struct_size, min_size);
  memset(&p, 0, sizeof(p));
  memcpy(&p, params, MC_MIN(params->struct_size, sizeof(p)));
  if (p.flags & ~(uint32_t)(MOECOMM_PLAN_DENSE_DP | MOECOMM_PLAN_DP_ATTENTION |
                            MOECOMM_PLAN_TWO_BATCH_OVERLAP))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: unknown flag bits 0x%x", (unsigned)p.flags);
  if (p.candidates == NULL && p.num_candidates > 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: candidates is NULL with num_candidates %zu",
                      p.num_candidates);
  if (sizes == NULL && capacity > 0)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: sizes is NULL with capacity %zu", capacity);
  cand = p.candidates;
  ncand = p.num_candidates;
  if (ncand == 0) {
    ncand = (size_t)mc_plan_default(defaults);
    cand = defaults;
  }
  for (size_t i = 0; i < ncand; i++)
    if (cand[i] <= 0)
      return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                        "plan_capture_sizes: candidate %zu is %d; token counts must be > 0", i,
                        (int)cand[i]);

  mult = mc_plan_multiple(&ctx->topo, p.flags, why, sizeof(why));
  tbo = (p.flags & MOECOMM_PLAN_TWO_BATCH_OVERLAP) != 0;
  for (size_t i = 0; i < ncand; i++) nvalid += cand[i] % mult == 0 && (!tbo || cand[i] >= 2 * mult);
  if (nvalid == 0) {
    for (size_t i = 0; i < ncand && w < sizeof(list); i++)
      w += (size_t)snprintf(list + w, sizeof(list) - w, "%s%d", i ? "," : "", (int)cand[i]);
    if (w >= sizeof(list)) strcpy(list + sizeof(list) - 4, "...");
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "no capture size fits: token counts must be multiples of %d (%s)%s; "
                      "candidates were %s",
                      mult, why, tbo ? " and at least twice that for two-batch overlap" : "", list);
  }
  if (sizes != NULL && capacity < nvalid)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "plan_capture_sizes: capacity %zu is smaller than the %zu valid sizes "
                      "(call with sizes NULL and capacity 0 to ask for the number)",
                      capacity, nvalid);
  if (sizes != NULL) {
    size_t k = 0;
    for (size_t i = 0; i < ncand; i++)
      if (cand[i] % mult == 0 && (!tbo || cand[i] >= 2 * mult)) sizes[k++] = cand[i];
  }
  *num_p = nvalid;
  *multiple_p = mult;
  return MOECOMM_SUCCESS;
}
