/* nccl.c - the NCCL backend: probe and the collectives (the hot path).
 *
 * One NCCL communicator per mc_comm_t (one distinct rank list), created by comm_init on the
 * first collective routed here (nccl_comm.c).  Communicators are non-blocking (config.blocking =
 * 0) so that no call can hang on a dead peer: a call that answers ncclInProgress is polled
 * against MOECOMM_TIMEOUT_MS.  Before each call one atomic read (ncclCommGetAsyncError) makes a
 * communicator that failed in the background report instead of hanging the next call. */
#include <stdio.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "nccl_priv.h"

static const ncclDataType_t mc_nccl_dtype[4] = {ncclFloat32, ncclFloat16, ncclBfloat16, ncclInt32};
static const ncclRedOp_t mc_nccl_redop[3] = {ncclSum, ncclMax, ncclMin};
static const char *const mc_nccl_coll_name[MC_COLL_KIND_COUNT] = {
    "ncclAllReduce", "ncclAllGather", "ncclReduceScatter", "ncclBroadcast"};

static moecomm_result_t mc_nccl_probe(mc_context_t *ctx, mc_err_t *err) {
  int v = 0;
  ncclResult_t r;
  (void)ctx;
  if (mc_gpu_device_count() <= 0)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "no CUDA device is visible to this process (no GPU, no driver, or "
                      "CUDA_VISIBLE_DEVICES hides them all); NCCL needs one");
  r = ncclGetVersion(&v);
  if (r != ncclSuccess)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "ncclGetVersion failed: %s",
                      ncclGetErrorString(r));
  if (v < MC_NCCL_MIN_VERSION)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "the loaded NCCL is %d.%d.%d; moecomm needs 2.19 or newer (put a newer "
                      "libnccl.so.2 first on LD_LIBRARY_PATH)",
                      v / 10000, (v / 100) % 100, v % 100);
  return MOECOMM_SUCCESS;
}

/* The reason a failed communicator gave, as this call's error. */
static moecomm_result_t mc_nccl_report(mc_nccl_comm_t *p) {
  return mc_err_set(&p->comm->ctx->err, p->fail_code, "%s", p->fail_msg);
}

/* All four collectives: the core validated the arguments and guarantees comm->size >= 2. */
static moecomm_result_t mc_nccl_coll(mc_comm_t *comm, const mc_coll_t *c) {
  mc_nccl_comm_t *p = comm->be[MOECOMM_BACKEND_NCCL].priv;
  ncclDataType_t dt = mc_nccl_dtype[c->dtype];
  ncclRedOp_t op = mc_nccl_redop[c->op];
  cudaStream_t s = (cudaStream_t)c->stream;
  const void *send = c->send;
  void *recv = c->recv;
  ncclComm_t victim = NULL;
  ncclResult_t nr = ncclSuccess, st = ncclSuccess;
  moecomm_result_t r = MOECOMM_SUCCESS;
  size_t bytes = 0;
  int staged = 0;

  pthread_mutex_lock(&p->mu);
  if (p->failed) goto out;
  if (ncclCommGetAsyncError(p->nc, &st) != ncclSuccess) st = ncclInternalError;
  if (st != ncclSuccess) {
    if (st == ncclInProgress)
      r = mc_nccl_wait_ready(p, "previous operation", mc_now_ms() + comm->ctx->cfg.timeout_ms,
                             &victim);
    else {
      char dead[320];
      mc_nccl_dead_ranks(comm, dead, sizeof(dead));
      victim = mc_nccl_fail_locked(p, dead[0] ? MOECOMM_ERR_PEER : mc_nccl_code(st),
                                   "the NCCL communicator of %s has failed: %s (%s)%s", comm->label,
                                   ncclGetErrorString(st), ncclGetLastError(p->nc), dead);
    }
    if (p->failed) goto out;
  }
  switch (c->kind) {
    case MC_COLL_ALL_REDUCE:
      bytes = c->count * mc_dtype_size(c->dtype);
      if (p->win_bytes != 0 && mc_nccl_window_fits(p, c, bytes)) {
        r = mc_nccl_window_stage_in(p, c, bytes, &send, &recv);
        if (r != MOECOMM_SUCCESS) goto out;
        staged = 1;
      }
      nr = ncclAllReduce(send, recv, c->count, dt, op, p->nc, s);
      break;
    case MC_COLL_ALL_GATHER: nr = ncclAllGather(send, recv, c->count, dt, p->nc, s); break;
    case MC_COLL_REDUCE_SCATTER:
      nr = ncclReduceScatter(send, recv, c->count, dt, op, p->nc, s);
      break;
    case MC_COLL_BROADCAST:
      /* Only the root reads send; others may pass NULL, which NCCL need not see. */
      if (c->root != comm->rank) send = recv;
      nr = ncclBroadcast(send, recv, c->count, dt, c->root, p->nc, s);
      break;
    default:
      r = mc_err_set(&comm->ctx->err, MOECOMM_ERR_INTERNAL, "unknown collective kind %d",
                     (int)c->kind);
      goto out;
  }
  if (nr == ncclInProgress) {
    /* Launch continues in NCCL's thread; nothing may follow it on the stream before it ends. */
    r = mc_nccl_wait_ready(p, mc_nccl_coll_name[c->kind], mc_now_ms() + comm->ctx->cfg.timeout_ms,
                           &victim);
  } else if (nr != ncclSuccess) {
    /* Peers may have launched their part: the communicator cannot be trusted any more. */
    char dead[320];
    mc_nccl_dead_ranks(comm, dead, sizeof(dead));
    victim =
        mc_nccl_fail_locked(p, dead[0] ? MOECOMM_ERR_PEER : mc_nccl_code(nr),
                            "%s on %s failed: %s (%s)%s", mc_nccl_coll_name[c->kind], comm->label,
                            ncclGetErrorString(nr), ncclGetLastError(p->nc), dead);
  }
  if (r == MOECOMM_SUCCESS && !p->failed && staged) r = mc_nccl_window_stage_out(p, c, bytes);

out:
  if (p->failed) r = mc_nccl_report(p);
  pthread_mutex_unlock(&p->mu);
  mc_nccl_abort(victim);
  return r;
}

const mc_backend_ops_t mc_nccl_ops = {
    .name = "nccl",
    .id = MOECOMM_BACKEND_NCCL,
    .fallback = MOECOMM_BACKEND_NONE,
    .probe = mc_nccl_probe,
    .comm_init = mc_nccl_comm_init,
    .comm_fini = mc_nccl_comm_fini,
    .coll = {mc_nccl_coll, mc_nccl_coll, mc_nccl_coll, mc_nccl_coll},
    .capture_begin = NULL, /* NCCL records its kernels into the graph itself */
    .capture_end = NULL,
};
