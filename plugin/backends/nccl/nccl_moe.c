/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_moe.c - expert-parallel dispatch and combine over NCCL (nccl_moe.h).
 *
 * Each call is three steps on the caller's stream (kernels/mc_ep.h, "NCCL path"): a pack kernel
 * fills one fixed-size block per destination in the segment's staging area (its own block goes
 * straight to its inbox), one NCCL group sends block d to member d and receives member s's block
 * into inbox s, and an unpack kernel checks every block's tag and writes the caller's buffers.
 * Sizes never depend on the routing, so there is no host synchronisation and the whole call can
 * be captured into a CUDA graph (NCCL records its part itself).  NCCL calls are made under the
 * communicator's mutex, with the backend's failure handling (nccl_watch.h): an NCCL error, or a
 * member of this host that died, fails the communicator; the watchdog aborts it if a peer dies
 * while NCCL waits.  The segment, the error record and its reading are ep_dev.h's. */
#include "nccl_moe.h"

#include <stdlib.h>
#include <string.h>

#include "../../log.h"
#include "../../util.h"
#include "../ep_dev.h"
#include "nccl_priv.h"
#include "nccl_watch.h"

moecomm_result_t mc_nccl_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout) {
  mc_ep_dev_t *d = calloc(1, sizeof(*d));
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_NCCL];
  uint64_t dev_bytes = 0, host_bytes = 0;
  moecomm_result_t r;
  mc_err_t why;
  int bad = -1;
  mc_err_clear(&why);
  if (d == NULL)
    r = mc_err_set(&why, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  else
    r = mc_ep_dev_open(comm, layout, d, &why);
  /* every member learns whether every other one could allocate: none waits in a first exchange
     for a member that gave up */
  r = mc_comm_agree(comm, "NCCL expert-parallel buffers", r, why.msg, NULL, NULL, 0, &bad);
  if (r != MOECOMM_SUCCESS) {
    if (d != NULL) mc_ep_dev_close(d);
    free(d);
    return r;
  }
  mc_ep_dev_bytes(d, &dev_bytes, &host_bytes);
  be->moe = d;
  be->device_bytes += dev_bytes;
  be->host_bytes += host_bytes;
  MC_INFO("NCCL expert parallelism on %s: %.1f MiB of device memory per rank", comm->label,
          (double)dev_bytes / 1048576.0);
  return MOECOMM_SUCCESS;
}

void mc_nccl_moe_fini(mc_comm_t *comm) {
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_NCCL];
  uint64_t dev_bytes = 0, host_bytes = 0;
  if (be->moe == NULL) return;
  mc_ep_dev_bytes(be->moe, &dev_bytes, &host_bytes);
  be->device_bytes -= MC_MIN(be->device_bytes, dev_bytes);
  be->host_bytes -= MC_MIN(be->host_bytes, host_bytes);
  mc_ep_dev_close(be->moe);
  free(be->moe);
  be->moe = NULL;
}

/* One NCCL group: block d of [send_off] to member d, member s's block into [recv_off] + s. */
static moecomm_result_t mc_nccl_moe_exchange(mc_comm_t *comm, mc_ep_dev_t *d, int64_t send_off,
                                             int64_t recv_off, int64_t bytes, void *stream,
                                             const char *what) {
  mc_nccl_comm_t *p = comm->be[MOECOMM_BACKEND_NCCL].priv;
  const int n = comm->size, me = comm->rank;
  char *seg = d->proto.seg;
  ncclComm_t victim = NULL;
  ncclResult_t nr = ncclSuccess, ne;
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (n == 1) return MOECOMM_SUCCESS;
  pthread_mutex_lock(&p->mu);
  if (p->failed) goto out;
  if (ncclCommGetAsyncError(p->nc, &nr) != ncclSuccess) nr = ncclInternalError;
  if (nr != ncclSuccess) {
    victim = mc_nccl_fail_nr(p, nr, "an earlier NCCL operation");
    goto out;
  }
  nr = ncclGroupStart();
  for (int k = 1; nr == ncclSuccess && k < n; k++) {
    const int to = (me + k) % n, from = (me + n - k) % n;
    nr = ncclSend(seg + send_off + to * bytes, (size_t)bytes, ncclUint8, to, p->nc,
                  (cudaStream_t)stream);
    if (nr == ncclSuccess)
      nr = ncclRecv(seg + recv_off + from * bytes, (size_t)bytes, ncclUint8, from, p->nc,
                    (cudaStream_t)stream);
  }
  ne = ncclGroupEnd();
  if (nr == ncclSuccess) nr = ne;
  if (nr != ncclSuccess) victim = mc_nccl_fail_nr(p, nr, what);
out:
  if (p->failed) r = mc_err_set(comm->err, p->fail_code, "%s", p->fail_msg);
  pthread_mutex_unlock(&p->mu);
  mc_nccl_abort(victim);
  /* the pack kernel ran and its peers' blocks never came: nothing on this path works again */
  return r == MOECOMM_SUCCESS ? r : mc_ep_dev_fail(d, r);
}

static moecomm_result_t mc_nccl_moe_run(mc_comm_t *comm, const mc_moe_call_t *call, int combine) {
  mc_ep_dev_t *d = comm->be[MOECOMM_BACKEND_NCCL].moe;
  const mc_ep_layout_t *L = &d->proto.layout;
  moecomm_result_t report = MOECOMM_SUCCESS, r;
  mc_err_t msg;
  mc_ep_args_t a;
  if ((r = mc_ep_dev_begin(d, call, combine, &a, &report, &msg)) != MOECOMM_SUCCESS) return r;
  if (combine) {
    if ((r = mc_ep_dev_launched(d, mc_ep_combine_pack(&a, call->stream), "combine pack")) ||
        (r = mc_nccl_moe_exchange(comm, d, L->cstage_off, L->cin_off, L->cmsg_bytes, call->stream,
                                  "the combine's ncclSend/ncclRecv")) ||
        (r = mc_ep_dev_launched(d, mc_ep_combine_unpack(&a, call->stream), "combine unpack")))
      return r;
  } else {
    if ((r = mc_ep_dev_launched(d, mc_ep_dispatch_pack(&a, call->stream), "dispatch pack")) ||
        (r = mc_nccl_moe_exchange(comm, d, L->stage_off, L->inbox_off, L->mb_bytes, call->stream,
                                  "the dispatch's ncclSend/ncclRecv")) ||
        (r = mc_ep_dev_launched(d, mc_ep_dispatch_unpack(&a, call->stream), "dispatch unpack")))
      return r;
  }
  return mc_ep_dev_end(d, call, report, &msg);
}

moecomm_result_t mc_nccl_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call) {
  return mc_nccl_moe_run(comm, call, 0);
}

moecomm_result_t mc_nccl_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call) {
  return mc_nccl_moe_run(comm, call, 1);
}
