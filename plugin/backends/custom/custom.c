/* custom.c - the custom all-reduce backend: ops table, probe and the all-reduce (hot path).
 *
 * Only all-reduce is served here; every other collective, int32 data, sizes above the policy's
 * limits and MOECOMM_ALGO=nccl go to NCCL (MC_DEFER before any work).  The launch path does no
 * allocation, no system call and no store traffic: one look at the host-mapped error word, the
 * policy, and one kernel launch. */
#include <stdio.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "custom.h"

static moecomm_result_t mc_custom_probe(mc_context_t *ctx, mc_err_t *err) {
  int major = 0, minor = 0;
  if (ctx->device < 0)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "the custom all-reduce needs a CUDA device");
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device) !=
          cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ctx->device) !=
          cudaSuccess) {
    (void)cudaGetLastError();
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "cannot query CUDA device %d", ctx->device);
  }
  if (major < 9)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "the custom all-reduce kernels are built for sm_90 and newer; device %d "
                      "is sm_%d%d",
                      ctx->device, major, minor);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_custom_check_dead(mc_custom_comm_t *p) {
  const volatile mc_kern_err_t *e = p->err_host;
  mc_comm_t *comm = p->comm;
  if (p->dead == MOECOMM_SUCCESS && e->code != 0) {
    const int peer = e->peer;
    const unsigned long long call = (unsigned long long)e->epoch;
    const char *algo = mc_custom_algo_name((int)e->algo);
    if (e->code == MC_KERN_ERR_TIMEOUT) {
      p->dead = MOECOMM_ERR_TIMEOUT;
      snprintf(p->dead_msg, sizeof(p->dead_msg),
               "the custom all-reduce kernel on %s gave up after MOECOMM_TIMEOUT_MS=%d ms: rank "
               "%d did not answer (call %llu on this communicator, %s); the communicator is "
               "unusable",
               comm->label, comm->ctx->cfg.timeout_ms,
               peer >= 0 && peer < comm->size ? (int)comm->ranks[peer] : -1, call, algo);
    } else {
      p->dead = MOECOMM_ERR_CAPTURE;
      snprintf(p->dead_msg, sizeof(p->dead_msg),
               "a captured custom all-reduce on %s was replayed before capture_end registered "
               "its buffers (capture_end failed or was not called; call %llu, %s); it did "
               "nothing and the communicator is unusable",
               comm->label, call, algo);
    }
  }
  if (p->dead == MOECOMM_SUCCESS) return MOECOMM_SUCCESS;
  return mc_err_set(&comm->ctx->err, p->dead, "%s", p->dead_msg);
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
  if (c->dtype == MOECOMM_INT32) return MC_DEFER; /* the kernels reduce floats */
  algo = mc_custom_policy_pick(p, bytes, c->capturing);
  MC_TRACE("custom all-reduce of %zu bytes on %s%s: %s", bytes, comm->label,
           c->capturing ? " (captured)" : "", algo ? mc_custom_algo_name(algo) : "handed to nccl");
  if (algo == 0) return MC_DEFER;

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
             mc_custom_algo_name(algo), bytes, comm->label, cudaGetErrorString((cudaError_t)e));
    return mc_err_set(&comm->ctx->err, p->dead, "%s", p->dead_msg);
  }
  return MOECOMM_SUCCESS;
}

const mc_backend_ops_t mc_custom_ops = {
    .name = "custom",
    .id = MOECOMM_BACKEND_CUSTOM,
    .fallback = MOECOMM_BACKEND_NCCL,
    .probe = mc_custom_probe,
    .comm_init = mc_custom_comm_init,
    .comm_fini = mc_custom_comm_fini,
    .coll = {[MC_COLL_ALL_REDUCE] = mc_custom_all_reduce},
    .capture_begin = mc_custom_capture_begin,
    .capture_end = mc_custom_capture_end,
};
