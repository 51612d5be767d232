/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm.c - all_reduce_rmsnorm on the custom backend: one launch of the fused all-reduce +
 * residual add + RMSNorm (kernels/mc_rmsnorm.h) over the communicator's segment.  The kernels
 * touch only the caller's buffers and the segments, so a captured call needs no registration,
 * and they share the segment's epoch with the all-reduces, so the two interleave freely. */
#include "rmsnorm.h"

#include <string.h>

#include "../../../kernels/mc_rmsnorm.h"
#include "status.h"

moecomm_result_t mc_custom_rmsnorm(mc_comm_t *comm, const mc_coll_t *c) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  const mc_rmsnorm_t *n = c->norm;
  mc_kern_arn_t a;
  int e;
  if (mc_custom_failed(p)) return mc_custom_check_dead(p);
  memset(&a, 0, sizeof(a));
  a.algo = c->algo; /* the routing policy's choice (plugin/route.c) */
  a.dtype = (int)c->dtype;
  a.rank = p->proto.rank;
  a.size = p->proto.size;
  a.rows = n->tokens;
  a.hidden = n->hidden;
  a.x = n->x;
  a.residual = n->residual;
  a.weight = n->weight;
  a.eps = n->eps;
  a.y = n->out;
  a.y_fp8 = n->out_fp8;
  a.y_scale = n->out_scale;
  memcpy(a.seg, p->proto.seg, sizeof(a.seg));
  a.ll_off = p->proto.ll_off;
  a.ll_slot_bytes = p->proto.ll_slot_bytes;
  a.stage_off = p->proto.stage_off;
  a.stage_half_bytes = p->proto.stage_half_bytes;
  a.err = p->proto.err;
  a.timeout_ns = p->proto.timeout_ns;
  a.pdl = p->proto.pdl;
  a.max_blocks = p->proto.max_blocks;
  e = mc_kern_ar_rmsnorm(&a, c->stream);
  if (e != 0)
    return mc_custom_launch_failed(p, "fused all-reduce + RMSNorm", c->algo,
                                   n->tokens * n->hidden * 2, e);
  return MOECOMM_SUCCESS;
}
