/* SPDX-License-Identifier: Apache-2.0 */
/* modes.c - layer modes, token counts and the groups of each transition (modes.h). */
#include "modes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A layer's output is partial sums unless the layer ran data-parallel on its own tokens
   (SCATTERED), where it is complete. */
static int partial_out(int mode) {
  return mode != MOECOMM_SCATTERED;
}

static void add_transition(shim_modes_t *m, const char *name, int from, int to) {
  shim_transition_t *t = &m->tr[m->n_tr++];
  t->name = name;
  t->from = from;
  t->to = to;
  t->reduce = partial_out(from);
}

int shim_modes_plan(const moecomm_api_t *api, const moecomm_context_t *ctx, shim_modes_t *m,
                    char *why, size_t why_len) {
  static const moecomm_layer_kind_t kinds[3] = {MOECOMM_LAYER_ATTENTION, MOECOMM_LAYER_SPARSE_MOE,
                                                MOECOMM_LAYER_DENSE_MLP};
  static const char *const names[3] = {"ATTENTION", "SPARSE_MOE", "DENSE_MLP"};
  shim_modes_t t;
  moecomm_scatter_mode_t *dst[3];
  memset(&t, 0, sizeof(t));
  dst[0] = &t.attn;
  dst[1] = &t.moe;
  dst[2] = &t.dense;
  for (int i = 0; i < 3; i++) {
    moecomm_result_t r = api->layer_mode(ctx, kinds[i], dst[i]);
    if (r != MOECOMM_SUCCESS) {
      snprintf(why, why_len, "layer_mode(%s) failed: %s: %s", names[i], api->result_string(r),
               api->last_error(ctx));
      return r == MOECOMM_ERR_NOT_SUPPORTED ? 1 : -1;
    }
    if ((int)*dst[i] < MOECOMM_SCATTERED || (int)*dst[i] > MOECOMM_MOE_FULL) {
      snprintf(why, why_len, "layer_mode(%s) answered %d, which is not a scatter mode", names[i],
               (int)*dst[i]);
      return -1;
    }
  }
  for (int i = 0; i < 3; i++) t.split |= *dst[i] == MOECOMM_SCATTERED || *dst[i] == MOECOMM_FULL;
  add_transition(&t, "attn->moe", t.attn, t.moe);
  add_transition(&t, "moe->attn", t.moe, t.attn);
  if (t.dense != t.moe) {
    add_transition(&t, "attn->dense", t.attn, t.dense);
    add_transition(&t, "dense->attn", t.dense, t.attn);
    snprintf(t.chain, sizeof(t.chain),
             "attention %s -> MoE %s -> attention %s -> dense MLP %s -> attention %s",
             sref_mode_name(t.attn), sref_mode_name(t.moe), sref_mode_name(t.attn),
             sref_mode_name(t.dense), sref_mode_name(t.attn));
  } else {
    snprintf(t.chain, sizeof(t.chain),
             "attention %s -> MoE %s -> attention %s (dense MLP input is %s too)",
             sref_mode_name(t.attn), sref_mode_name(t.moe), sref_mode_name(t.attn),
             sref_mode_name(t.dense));
  }
  *m = t;
  return 0;
}

static int gcd(int a, int b) {
  while (b != 0) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

int shim_modes_tokens(const moecomm_api_t *api, const moecomm_context_t *ctx, const sref_t *ref,
                      int tokens, int uneven, int split, int32_t *out, char *why, size_t why_len) {
  int32_t *sizes = NULL, mult = 1;
  size_t n = 0;
  int req, blocks = ref->world / ref->tp, ng = ref->ngroups;
  if (MOECOMM_API_HAS(api, plan_capture_sizes)) {
    moecomm_plan_params_t pp;
    moecomm_result_t r;
    memset(&pp, 0, sizeof(pp));
    pp.struct_size = sizeof(pp); /* no candidates: the engines' usual list */
    r = api->plan_capture_sizes(ctx, &pp, NULL, 0, &n, &mult);
    if (r == MOECOMM_SUCCESS && n > 0) {
      sizes = malloc(n * sizeof(*sizes));
      if (sizes == NULL) {
        snprintf(why, why_len, "out of host memory for %zu capture sizes", n);
        return -1;
      }
      r = api->plan_capture_sizes(ctx, &pp, sizes, n, &n, &mult);
    }
    if (r != MOECOMM_SUCCESS) {
      snprintf(why, why_len, "plan_capture_sizes failed: %s: %s", api->result_string(r),
               api->last_error(ctx));
      free(sizes);
      return -1;
    }
  }
  if (mult < 1) mult = 1;
  /* Only SCATTERED and FULL split a group's tokens over its attn_tp ranks (abi/moecomm.h). */
  req = split ? ref->attn_tp / gcd(ref->attn_tp, mult) * mult : mult; /* lcm */
  if (tokens % req != 0) {
    if (split)
      snprintf(why, why_len,
               "--tokens %d: each attention group's token count must be a multiple of "
               "attn_tp=%d (SCATTERED and FULL split it, the scatter contract) and of %d "
               "(plan_capture_sizes), i.e. of %d; use --tokens %d, or --abi-max 1.0 for the "
               "ABI-1.0 step",
               tokens, ref->attn_tp, (int)mult, req, (tokens / req + 1) * req);
    else
      snprintf(why, why_len,
               "--tokens %d: each attention group's token count must be a multiple of %d "
               "(plan_capture_sizes); use --tokens %d, or --abi-max 1.0 for the ABI-1.0 step",
               tokens, req, (tokens / req + 1) * req);
    free(sizes);
    return -1;
  }
  for (int k = 0; k < blocks; k++) {
    for (int g = 0; g < ng; g++) {
      int j = uneven ? (g + k) % (ng + 1) : 0;
      long long target = (long long)tokens * (2 * ng - j) / (2 * ng);
      int32_t best = 0;
      if (j == 0) {
        best = tokens;
      } else {
        for (size_t i = 0; i < n; i++)
          if (sizes[i] % req == 0 && sizes[i] <= target && sizes[i] > best) best = sizes[i];
        if (best == 0) best = (int32_t)(target / req * req);
        if (best < req) best = req;
      }
      out[(size_t)k * (size_t)ng + (size_t)g] = best;
    }
  }
  free(sizes);
  return 0;
}

static int push_kind(moecomm_group_kind_t *kinds, int n, moecomm_group_kind_t k) {
  kinds[n] = k;
  return n + 1;
}

int shim_modes_groups(int from, int to, int reduce, moecomm_group_kind_t *kinds) {
  int n = 0;
  if (from == MOECOMM_FULL || to == MOECOMM_FULL) {
    /* Into FULL: this rank's slice (reduce-scattered on ATTN_TP), then the TP all-gather.  Out
       of FULL: the TP reduce-scatter, then the ATTN_TP all-gather of the group's tokens. */
    int other = from == MOECOMM_FULL ? to : from;
    int into = to == MOECOMM_FULL;
    if (from == to) return reduce ? push_kind(kinds, n, MOECOMM_GROUP_TP) : 0;
    if (into || reduce) n = push_kind(kinds, n, MOECOMM_GROUP_TP);
    if (other == MOECOMM_TP_ATTN_FULL && reduce) n = push_kind(kinds, n, MOECOMM_GROUP_ATTN_TP);
    return n;
  }
  if (from == MOECOMM_MOE_FULL) {
    if (reduce) {
      n = push_kind(kinds, n, MOECOMM_GROUP_MOE_TP);
      n = push_kind(kinds, n, MOECOMM_GROUP_MOE_EP);
    }
    return n;
  }
  if (to == MOECOMM_MOE_FULL) {
    if (from == MOECOMM_SCATTERED || reduce) n = push_kind(kinds, n, MOECOMM_GROUP_ATTN_TP);
    return push_kind(kinds, n, MOECOMM_GROUP_MOE_CP);
  }
  /* SCATTERED and TP_ATTN_FULL: the ATTN_TP all-gather, reduce-scatter or all-reduce. */
  if (from == to && !reduce) return 0;
  if (from == MOECOMM_TP_ATTN_FULL && to == MOECOMM_SCATTERED && !reduce) return 0;
  return push_kind(kinds, n, MOECOMM_GROUP_ATTN_TP);
}
