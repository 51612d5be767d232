/* SPDX-License-Identifier: Apache-2.0 */
/* topo.c - validates the parallel layout and derives every group's rank list.
 *
 * The formulas are DESIGN.md's ("Groups"): attention ranks are laid out (attn_dp, attn_cp,
 * attn_tp) and MoE ranks (moe_dp, ep, moe_tp) inside each TP block, tp fastest. */
#include "topo.h"

#include <string.h>
#include <strings.h>

#define MC_TOPO_MAX_WORLD 65536

static const char *const mc_kind_names[MC_GROUP_KIND_COUNT] = {
    "WORLD", "TP", "PP", "ATTN_TP", "ATTN_CP", "MOE_EP", "MOE_TP", "MOE_DP", "MOE_CP"};

const char *mc_topo_kind_name(int kind) {
  return kind >= 0 && kind < MC_GROUP_KIND_COUNT ? mc_kind_names[kind] : NULL;
}

int mc_topo_kind_from_name(const char *name) {
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++)
    if (strcasecmp(name, mc_kind_names[k]) == 0) return k;
  return -1;
}

/* Optional size: 0 means `dflt`; negative is an error. */
static moecomm_result_t mc_topo_opt(const char *name, int32_t v, int dflt, int *out,
                                    mc_err_t *err) {
  if (v < 0 || v > MC_TOPO_MAX_WORLD)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: %s=%d is out of range (0 means default, else 1..%d)", name, (int)v,
                      MC_TOPO_MAX_WORLD);
  *out = v == 0 ? dflt : (int)v;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_topo_init(const moecomm_topology_t *in, mc_topo_t *topo_p, mc_err_t *err) {
  moecomm_topology_t t;
  mc_topo_t o;
  moecomm_result_t r;
  size_t min_size = MOECOMM_STRUCT_SIZE(moecomm_topology_t, moe_dense_tp);

  if (in == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "topology is NULL");
  if (in->struct_size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "topology struct_size %zu is smaller than the ABI 1.0 layout (%zu bytes)",
                      in->struct_size, min_size);
  memset(&t, 0, sizeof(t));
  memcpy(&t, in, in->struct_size < sizeof(t) ? in->struct_size : sizeof(t));
  memset(&o, 0, sizeof(o));

  if (t.world_size < 1 || t.world_size > MC_TOPO_MAX_WORLD)
    return mc_err_set(err, MOECOMM_ERR_CONFIG, "topology: world_size=%d must be in 1..%d",
                      (int)t.world_size, MC_TOPO_MAX_WORLD);
  if (t.rank < 0 || t.rank >= t.world_size)
    return mc_err_set(err, MOECOMM_ERR_CONFIG, "topology: rank=%d must be in 0..world_size-1=%d",
                      (int)t.rank, (int)t.world_size - 1);
  if (t.tp < 1 || t.tp > t.world_size)
    return mc_err_set(err, MOECOMM_ERR_CONFIG, "topology: tp=%d must be in 1..world_size=%d",
                      (int)t.tp, (int)t.world_size);
  o.world = t.world_size;
  o.rank = t.rank;
  o.tp = t.tp;
  if ((r = mc_topo_opt("pp", t.pp, 1, &o.pp, err)) ||
      (r = mc_topo_opt("ep", t.ep, 1, &o.ep, err)) ||
      (r = mc_topo_opt("moe_dp", t.moe_dp, 1, &o.moe_dp, err)) ||
      (r = mc_topo_opt("attn_cp", t.attn_cp, 1, &o.attn_cp, err)) ||
      (r = mc_topo_opt("attn_dp", t.attn_dp, 1, &o.attn_dp, err)) ||
      (r = mc_topo_opt("moe_dense_tp", t.moe_dense_tp, o.tp, &o.moe_dense_tp, err)))
    return r;

  /* Products in 64 bits: each size may be up to MC_TOPO_MAX_WORLD, so two of them overflow int. */
  if (o.world % ((long long)o.tp * o.pp) != 0)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: tp=%d * pp=%d = %lld does not divide world_size=%d", o.tp, o.pp,
                      (long long)o.tp * o.pp, o.world);
  if (o.tp % ((long long)o.attn_dp * o.attn_cp) != 0)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: attn_dp=%d * attn_cp=%d = %lld does not divide tp=%d (attn_tp = "
                      "tp / (attn_dp * attn_cp))",
                      o.attn_dp, o.attn_cp, (long long)o.attn_dp * o.attn_cp, o.tp);
  if (o.tp % ((long long)o.ep * o.moe_dp) != 0)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: ep=%d * moe_dp=%d = %lld does not divide tp=%d (moe_tp = tp / (ep "
                      "* moe_dp))",
                      o.ep, o.moe_dp, (long long)o.ep * o.moe_dp, o.tp);
  if (o.moe_dense_tp != 1 && o.moe_dense_tp != o.tp)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: moe_dense_tp=%d must be 1 (dense MLP fully data-parallel) or "
                      "tp=%d",
                      o.moe_dense_tp, o.tp);
  /* MOE_DP aliases ATTN_CP when attn_cp > moe_dp, which is only the MoE-CP gather of MOE_FULL
     when moe_dp is 1; 1 < moe_dp < attn_cp has no consistent MoE token layout. */
  if (o.moe_dp > 1 && o.moe_dp < o.attn_cp)
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "topology: moe_dp=%d with attn_cp=%d: moe_dp must be 1 (MoE input gathered "
                      "over the attention CP group) or at least attn_cp",
                      o.moe_dp, o.attn_cp);
  o.attn_tp = o.tp / (o.attn_dp * o.attn_cp);
  o.moe_tp = o.tp / (o.ep * o.moe_dp);
  *topo_p = o;
  return MOECOMM_SUCCESS;
}

/* Appends `count` ranks start, start+step, ... to out; returns count. */
static int mc_topo_range(int32_t *out, int start, int count, int step) {
  for (int k = 0; k < count; k++) out[k] = start + k * step;
  return count;
}

int mc_topo_group_ranks(const mc_topo_t *t, moecomm_group_kind_t kind, int rank, int32_t *out) {
  int b = rank / t->tp * t->tp; /* first rank of this rank's TP block */
  int off = rank - b;
  switch (kind) {
    case MOECOMM_GROUP_WORLD: return mc_topo_range(out, 0, t->world, 1);
    case MOECOMM_GROUP_TP: return mc_topo_range(out, b, t->tp, 1);
    case MOECOMM_GROUP_PP: {
      int stride = t->world / t->pp;
      return mc_topo_range(out, rank % stride, t->pp, stride);
    }
    case MOECOMM_GROUP_ATTN_TP:
      return mc_topo_range(out, b + off / t->attn_tp * t->attn_tp, t->attn_tp, 1);
    case MOECOMM_GROUP_ATTN_CP: {
      int d = off / (t->attn_tp * t->attn_cp), i = off % t->attn_tp;
      return mc_topo_range(out, b + d * t->attn_tp * t->attn_cp + i, t->attn_cp, t->attn_tp);
    }
    case MOECOMM_GROUP_MOE_EP: {
      int d = off / (t->ep * t->moe_tp), i = off % t->moe_tp;
      return mc_topo_range(out, b + d * t->ep * t->moe_tp + i, t->ep, t->moe_tp);
    }
    case MOECOMM_GROUP_MOE_TP:
      return mc_topo_range(out, b + off / t->moe_tp * t->moe_tp, t->moe_tp, 1);
    case MOECOMM_GROUP_MOE_DP:
    case MOECOMM_GROUP_MOE_CP:
      if (t->attn_cp > t->moe_dp) return mc_topo_group_ranks(t, MOECOMM_GROUP_ATTN_CP, rank, out);
      return mc_topo_range(out, b + off % (t->moe_tp * t->ep), t->moe_dp, t->moe_tp * t->ep);
  }
  return 0;
}
