/* SPDX-License-Identifier: Apache-2.0 */
/* modes.h - the ABI-1.1 side of the MoE step: the scatter mode of each layer kind, the token
 * counts of the attention groups, and the groups each transition communicates on.
 *
 * The step runs, per iteration, the transitions an engine runs around its layers: the attention
 * output (partial sums over ATTN_TP) into the sparse MoE layer's input mode, the MoE output
 * (partial sums over the MoE replica) back to attention; and where the dense MLP's input mode
 * differs from the MoE's, the same pair for the dense MLP. */
#ifndef SHIM_MODES_H_
#define SHIM_MODES_H_

#include <stddef.h>
#include <stdint.h>

#include "../abi/moecomm.h"
#include "lib/scatter_ref.h"

#define SHIM_MODES_MAX_TRANSITIONS 4
#define SHIM_MODES_MAX_GROUPS 3 /* group kinds one transition communicates on */

typedef struct shim_transition {
  const char *name; /* "attn->moe" */
  int from, to;     /* moecomm_scatter_mode_t */
  int reduce;       /* 1: the input holds partial sums of the layer that made it */
} shim_transition_t;

typedef struct shim_modes {
  moecomm_scatter_mode_t attn, moe, dense; /* layer_mode of each layer kind */
  shim_transition_t tr[SHIM_MODES_MAX_TRANSITIONS];
  int n_tr;
  int split;       /* a transition goes from or to SCATTERED or FULL: counts split over attn_tp */
  char chain[256]; /* "attention TP_ATTN_FULL -> MoE MOE_FULL -> attention TP_ATTN_FULL ..." */
} shim_modes_t;

/* Asks the plugin for each layer kind's mode and lists the transitions.  0 on success; 1 when
   layer_mode answers MOECOMM_ERR_NOT_SUPPORTED for this topology (why says so: the caller may
   run the ABI-1.0 step instead); -1 when a call failed (why names it).  *m written only on 0. */
int shim_modes_plan(const moecomm_api_t *api, const moecomm_context_t *ctx, shim_modes_t *m,
                    char *why, size_t why_len);

/* Token counts T[g] of every attention group of every TP block (ref->world / ref->tp blocks of
   ref->ngroups counts, block k at k * ngroups) into out.  Even: every group gets `tokens`.
   Uneven: group g of block k gets the largest capture size plan_capture_sizes allows (and that is
   a multiple of the required multiple) at or below tokens * (2n - j) / 2n, j = (g + k) mod
   (n + 1), n = ngroups: block 0's group 0 keeps `tokens`, others get fewer (down to half), so
   MOE_FULL and FULL blocks carry padding and TP blocks differ.  `tokens` itself must be a
   multiple of the planner's multiple and, when split (the modes include SCATTERED or FULL, the
   scatter contract), of attn_tp; 0 on success, -1 with why naming the multiple otherwise. */
int shim_modes_tokens(const moecomm_api_t *api, const moecomm_context_t *ctx, const sref_t *ref,
                      int tokens, int uneven, int split, int32_t *out, char *why, size_t why_len);

/* The group kinds a transition communicates on, as the ABI describes scatter (abi/moecomm.h):
   ATTN_TP around TP_ATTN_FULL, MOE_CP into MOE_FULL, MOE_TP and MOE_EP for the MoE reduction
   out of MOE_FULL, TP into and out of FULL.  Returns how many (at most SHIM_MODES_MAX_GROUPS;
   0: local copies only). */
int shim_modes_groups(int from, int to, int reduce, moecomm_group_kind_t *kinds);

#endif
