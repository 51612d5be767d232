/* SPDX-License-Identifier: Apache-2.0 */
/* nccl.c - the NCCL backend: probe and the collectives (the hot path).
 *
 * One NCCL communicator per mc_comm_t (one distinct rank list), created by comm_init on the
 * first collective routed here (nccl_comm.c).  Communicators are blocking (a non-blocking one
 * costs a thread hand-off inside NCCL per call: +55 us measured, bench/NOTES-nccl.md); that no
 * call hangs on a dead peer is the watchdog's job (nccl_watch.c).  Before each call one atomic
 * read (ncclCommGetAsyncError) makes a communicator that failed in the background report instead
 * of hanging the next call. */
#include <stdio.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "nccl.h"

#include "nccl_comm.h"
#include "nccl_p2p.h"
#include "nccl_moe.h"
#include "nccl_watch.h"

static const ncclDataType_t mc_nccl_dtype[4] = {ncclFloat32, ncclFloat16, ncclBfloat16, ncclInt32};
static const ncclRedOp_t mc_nccl_redop[3] = {ncclSum, ncclMax, ncclMin};
static const char *const mc_nccl_coll_name[MC_COLL_BROADCAST + 1] = {
    "ncclAllReduce", "ncclAllGather", "ncclReduceScatter", "ncclBroadcast"};

static moecomm_result_t mc_nccl_probe(const mc_config_t *cfg, int device, mc_err_t *err) {
  if (device < 0 || mc_gpu_device_count() <= 0)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "no CUDA device is visible to this process (no GPU, no driver, or "
                      "CUDA_VISIBLE_DEVICES hides them all); NCCL needs one");
  return mc_nccl_lib_load(cfg, err); /* found, loaded and new enough (nccl_lib.h) */
}

/* The four collectives: the core validated the arguments and guarantees comm->size >= 2. */
static moecomm_result_t mc_nccl_coll(mc_comm_t *comm, const mc_coll_t *c) {
  mc_nccl_comm_t *p = comm->be[MOECOMM_BACKEND_NCCL].priv;
  ncclDataType_t dt = mc_nccl_dtype[c->dtype];
  ncclRedOp_t op = mc_nccl_redop[c->op];
  cudaStream_t s = (cudaStream_t)c->stream;
  /* Only a broadcast's root reads send; others may pass NULL, which NCCL need not see. */
  const void *send = c->kind == MC_COLL_BROADCAST && c->root != comm->rank ? c->recv : c->send;
  ncclComm_t victim = NULL;
  ncclResult_t nr = ncclSuccess;

  if (c->kind > MC_COLL_BROADCAST)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL, "unknown collective kind %d", (int)c->kind);
  pthread_mutex_lock(&p->mu);
  if (mc_nccl_usable_locked(p, &victim)) {
    switch (c->kind) {
      case MC_COLL_ALL_REDUCE: nr = ncclAllReduce(send, c->recv, c->count, dt, op, p->nc, s); break;
      case MC_COLL_ALL_GATHER: nr = ncclAllGather(send, c->recv, c->count, dt, p->nc, s); break;
      case MC_COLL_REDUCE_SCATTER:
        nr = ncclReduceScatter(send, c->recv, c->count, dt, op, p->nc, s);
        break;
      default: nr = ncclBroadcast(send, c->recv, c->count, dt, c->root, p->nc, s); break;
    }
    /* Peers may have launched their part: the communicator cannot be trusted any more. */
    if (nr != ncclSuccess) victim = mc_nccl_fail_nr(p, nr, mc_nccl_coll_name[c->kind]);
  }
  return mc_nccl_unlock(p, victim);
}

const mc_backend_ops_t mc_nccl_ops = {
    .name = "nccl",
    .id = MOECOMM_BACKEND_NCCL,
    .caps = {.colls = MC_COLLS_GENERAL,
             .dtypes = MC_DTYPES_GENERAL,
             .max_ranks = 0,
             .one_host = 0,
             .gpu = 1},
    .probe = mc_nccl_probe,
    .comm_init = mc_nccl_comm_init,
    .comm_fini = mc_nccl_comm_fini,
    .limits = NULL,
    .coll = {[MC_COLL_ALL_REDUCE] = mc_nccl_coll,
             [MC_COLL_ALL_GATHER] = mc_nccl_coll,
             [MC_COLL_REDUCE_SCATTER] = mc_nccl_coll,
             [MC_COLL_BROADCAST] = mc_nccl_coll,
             [MC_COLL_SEND] = mc_nccl_p2p,
             [MC_COLL_RECV] = mc_nccl_p2p,
             [MC_COLL_ALL_TO_ALL] = mc_nccl_p2p,
             [MC_COLL_ALL_TO_ALL_V] = mc_nccl_p2p},
    .moe_init = mc_nccl_moe_init,
    .moe_fini = mc_nccl_moe_fini,
    .moe_dispatch = mc_nccl_moe_dispatch,
    .moe_combine = mc_nccl_moe_combine,
    .capture_begin = NULL, /* NCCL records its kernels into the graph itself */
    .capture_end = NULL,
};
