/* SPDX-License-Identifier: Apache-2.0 */
/* topo.h - the parallel layout: validated sizes and every group's rank list (DESIGN.md
   "Groups"). */
#ifndef MC_TOPO_H_
#define MC_TOPO_H_

#include <stdint.h>

#include "error.h"

#define MC_GROUP_KIND_COUNT 9 /* MOECOMM_GROUP_WORLD .. MOECOMM_GROUP_MOE_CP */

typedef struct mc_topo {
  int world, rank;
  int tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp; /* inputs, defaults applied */
  int attn_tp, moe_tp;                                    /* derived */
} mc_topo_t;

/* Validates the host's struct (in_size bytes are valid) and derives attn_tp, moe_tp.  Errors name
   the sizes that do not fit.  *topo_p written only on success. */
moecomm_result_t mc_topo_init(const moecomm_topology_t *in, mc_topo_t *topo_p, mc_err_t *err);

/* Rank list of the `kind` group that contains `rank`, in group order, into out (room for
   topo->world entries).  Returns the group size. */
int mc_topo_group_ranks(const mc_topo_t *topo, moecomm_group_kind_t kind, int rank, int32_t *out);

/* "TP", "MOE_EP", ...; NULL for a kind out of range. */
const char *mc_topo_kind_name(int kind);

/* Kind for a name as used in MOECOMM_BACKEND_<GROUP>; -1 when unknown. */
int mc_topo_kind_from_name(const char *name);

#endif
