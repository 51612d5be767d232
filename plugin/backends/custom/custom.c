/* custom.c - the custom all-reduce backend: ops table, probe, limits and the all-reduce (hot
 * path).  It serves float all-reduces only (caps); the routing policy sends it nothing else and
 * picks the algorithm.  The launch path does no allocation, no system call and no store traffic:
 * one look at the host-mapped error word and one kernel launch. */
#include <stdio.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "custom.h"

#include "capture.h"
#include "setup.h"
#include "status.h"

static moecomm_result_t mc_custom_probe(const mc_config_t *cfg, int device, mc_err_t *err) {
  int major = 0, minor = 0;
  if (device < 0)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "the custom all-reduce needs a CUDA device");
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) !=
          cudaSuccess) {
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

static moecomm_result_t mc_custom_all_reduce(mc_comm_t *comm, const mc_coll_t *c) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  const size_t bytes = c->count * mc_dtype_size(c->dtype);
  mc_kern_ar_t a;
  moecomm_result_t r;
  int algo, e;

  /* a kernel's error arrives in host-mapped memory: one read of it per call */
  if (p->dead != MOECOMM_SUCCESS || ((const volatile mc_kern_err_t *)p->err_host)->code != 0)
    return mc_custom_check_dead(p);
  algo = c->algo; /* the routing policy's choice (plugin/route.c) */

  a = p->proto;
  a.algo = algo;
  a.dtype = (int)c->dtype;
  a.op = (int)c->op;
  a.count = c->count;
  a.in = c->send;
  a.out = c->recv;
  a.table = NULL;
  /* Captured two-shot reads and writes the callers' buffers: capture_end registers them. */
  if (algo == MC_KERN_TWOSHOT && c->capturing &&
      (r = mc_custom_capture_record(p, c->send, c->recv, &a.table)) != MOECOMM_SUCCESS)
    return r;
  e = mc_kern_all_reduce(&a, c->stream);
  if (e != 0) {
    /* The members' call counters are out of step now: nothing on this comm can work again. */
    p->dead = MOECOMM_ERR_BACKEND;
    snprintf(p->dead_msg, sizeof(p->dead_msg),
             "launching the custom all-reduce kernel (%s, %zu bytes) on %s failed: %s; the "
             "communicator is unusable",
             mc_kern_algo_name(algo), bytes, comm->label, cudaGetErrorString((cudaError_t)e));
    return mc_err_set(comm->err, p->dead, "%s", p->dead_msg);
  }
  return MOECOMM_SUCCESS;
}

/* What the routing policy needs to pick an algorithm (plugin/route.c). */
static void mc_custom_limits(const mc_comm_t *comm, mc_backend_limits_t *lim) {
  const mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  lim->ll_max_bytes = MC_KERN_LL_PAYLOAD(p->proto.ll_slot_bytes);
  lim->staged_max_bytes = p->proto.stage_half_bytes;
  lim->capture_slots = MC_CUSTOM_TABLE_CAP - p->table_used;
}

const mc_backend_ops_t mc_custom_ops = {
    .name = "custom",
    .id = MOECOMM_BACKEND_CUSTOM,
    .caps = {.colls = 1u << MC_COLL_ALL_REDUCE,
             .dtypes = (1u << MOECOMM_FLOAT32) | (1u << MOECOMM_FLOAT16) |
                       (1u << MOECOMM_BFLOAT16), /* the kernels reduce floats */
             .max_ranks = MC_KERN_MAX_RANKS,
             .one_host = 1,
             .gpu = 1},
    .probe = mc_custom_probe,
    .comm_init = mc_custom_comm_init,
    .comm_fini = mc_custom_comm_fini,
    .limits = mc_custom_limits,
    .coll = {[MC_COLL_ALL_REDUCE] = mc_custom_all_reduce},
    .capture_begin = mc_custom_capture_begin,
    .capture_end = mc_custom_capture_end,
};
