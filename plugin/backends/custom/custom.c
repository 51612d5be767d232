/* SPDX-License-Identifier: Apache-2.0 */
/* custom.c - the custom all-reduce backend: ops table, probe, limits and the all-reduce (hot
 * path).  It serves float all-reduces, the fused all_reduce_rmsnorm (rmsnorm.c) and, for
 * deterministic mode, reduce_scatter (reduce_scatter.c); the routing policy sends it nothing else
 * and picks the algorithm.  The launch path does no allocation, no system call and no store
 * traffic: one look at the host-mapped error word and one kernel launch (one per piece when
 * deterministic mode cut the call). */
#include <stdio.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "custom.h"

#include "capture.h"
#include "launch.h"
#include "moe.h"
#include "reduce_scatter.h"
#include "rmsnorm.h"
#include "setup.h"
#include "status.h"

static moecomm_result_t mc_custom_probe(const mc_config_t *cfg, int device, mc_err_t *err) {
  int major = 0, minor = 0;
  if (device < 0)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "the custom all-reduce needs a CUDA device");
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "cannot query CUDA device %d", device);
  }
  if (major < 9)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "the custom all-reduce kernels are built for sm_90 and newer; device %d "
                      "is sm_%d%d",
                      device, major, minor);
  return MOECOMM_SUCCESS;
}

/* One launch, or (deterministic mode, c->chunk) pieces of c->chunk elements in order: each
   element's bits do not depend on the piece it is in (mc_kernels.h). */
static moecomm_result_t mc_custom_all_reduce(mc_comm_t *comm, const mc_coll_t *c) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  const size_t es = mc_dtype_size(c->dtype);
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (mc_custom_failed(p)) return mc_custom_check_dead(p);
  if (c->chunk == 0) return mc_custom_launch(p, c, c->send, c->recv, c->count, 0);
  for (size_t off = 0; off < c->count && r == MOECOMM_SUCCESS; off += c->chunk)
    r = mc_custom_launch(p, c, (const char *)c->send + off * es, (char *)c->recv + off * es,
                         MC_MIN(c->chunk, c->count - off), 1);
  return r;
}

/* What the routing policy needs to pick an algorithm (plugin/route.c). */
static void mc_custom_limits(const mc_comm_t *comm, mc_backend_limits_t *lim) {
  const mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  lim->ll_max_bytes = MC_KERN_LL_PAYLOAD(p->proto.ll_slot_bytes);
  lim->staged_max_bytes = p->proto.stage_half_bytes;
  lim->capture_slots = MC_CUSTOM_TABLE_CAP - p->table_used;
  lim->scratch_bytes = p->scratch != NULL ? MC_CUSTOM_SCRATCH_BYTES : 0;
}

const mc_backend_ops_t mc_custom_ops = {
    .name = "custom",
    .id = MOECOMM_BACKEND_CUSTOM,
    /* reduce_scatter: deterministic mode only (route.c) */
    .caps = {.colls = (1u << MC_COLL_ALL_REDUCE) | (1u << MC_COLL_RMSNORM) |
                      (1u << MC_COLL_REDUCE_SCATTER),
             .dtypes = (1u << MOECOMM_FLOAT32) | (1u << MOECOMM_FLOAT16) |
                       (1u << MOECOMM_BFLOAT16), /* the kernels reduce floats */
             .max_ranks = MC_KERN_MAX_RANKS,
             .one_host = 1,
             .gpu = 1},
    .probe = mc_custom_probe,
    .comm_init = mc_custom_comm_init,
    .comm_fini = mc_custom_comm_fini,
    .limits = mc_custom_limits,
    .coll = {[MC_COLL_ALL_REDUCE] = mc_custom_all_reduce,
             [MC_COLL_REDUCE_SCATTER] = mc_custom_reduce_scatter,
             [MC_COLL_RMSNORM] = mc_custom_rmsnorm},
    .moe_init = mc_custom_moe_init,
    .moe_fini = mc_custom_moe_fini,
    .moe_dispatch = mc_custom_moe_dispatch,
    .moe_combine = mc_custom_moe_combine,
    .capture_begin = mc_custom_capture_begin,
    .capture_end = mc_custom_capture_end,
};
