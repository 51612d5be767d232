/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_p2p.c - send, recv and the all-to-alls of the NCCL backend.
 *
 * send and recv are ncclSend and ncclRecv on the caller's stream; all_to_all(_v) is one NCCL
 * group of a send and a receive per member with elements to move (this rank's own block too:
 * NCCL copies it).  They are enqueued like the collectives (nccl.c): under the comm's lock,
 * after the check for an earlier or asynchronous failure, and can be captured into a graph.
 *
 * Connections: NCCL connects two ranks for point-to-point the first time they exchange data,
 * on the host inside ncclGroupEnd, and that waits for the peer: a peer that never comes would
 * hold the caller, and the comm's lock the watchdog needs, for ever.  So the first call that
 * involves a member connects this rank with it first, as a setup step on a helper thread the
 * caller can give up on (nccl_step.c): a one-element exchange with each new peer on a private
 * stream, within MOECOMM_TIMEOUT_MS, watching that the members are alive; a step that fails or
 * is given up fails the communicator.  Both sides of a pair connect at the same point, their
 * first call that involves the other: sends and receives between two ranks match in order, and
 * an all-to-all (every member calls it) connects every pair not connected yet.  What the
 * connections cost is added to the communicator's device bytes. */
#include <stdlib.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "nccl_p2p.h"

#include "nccl_comm.h"
#include "nccl_step.h"
#include "nccl_watch.h"

static const ncclDataType_t mc_nccl_p2p_dtype[4] = {ncclFloat32, ncclFloat16, ncclBfloat16,
                                                    ncclInt32};

static const char *mc_nccl_p2p_name(mc_coll_kind_t kind) {
  switch (kind) {
    case MC_COLL_SEND: return "ncclSend";
    case MC_COLL_RECV: return "ncclRecv";
    default: return "the all-to-all's NCCL group";
  }
}

/* ---- connecting (the step runs on a helper thread) ---------------------------------------- */

static void mc_nccl_connect_body(mc_nccl_step_t *s) {
  float *buf = NULL;
  size_t total = 0;
  ncclResult_t end;
  MC_STEP_CUDA(s, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  /* stream-ordered, as in communicator init: valid while another stream is being captured */
  MC_STEP_CUDA(s, cudaMallocAsync((void **)&buf, s->scratch_bytes, s->stream));
  s->scratch = buf;
  MC_STEP_CUDA(s, cudaMemsetAsync(buf, 0, s->scratch_bytes, s->stream));
  MC_STEP_CUDA(s, cudaStreamSynchronize(s->stream));
  MC_STEP_CUDA(s, cudaMemGetInfo(&s->free0, &total));
  if ((s->nr = ncclGroupStart()) != ncclSuccess) {
    mc_nccl_step_fail(s, "ncclGroupStart", s->nc);
    return;
  }
  for (int q = 0; q < s->nranks && s->nr == ncclSuccess; q++) {
    if (!s->peers[q]) continue;
    s->nr = ncclSend(buf, 1, ncclFloat32, q, s->nc, s->stream);
    if (s->nr == ncclSuccess) s->nr = ncclRecv(buf + 1 + q, 1, ncclFloat32, q, s->nc, s->stream);
  }
  end = ncclGroupEnd(); /* connects: returns once every new peer took part */
  if (s->nr == ncclSuccess) s->nr = end;
  if (s->nr != ncclSuccess) mc_nccl_step_fail(s, "the point-to-point connection exchange", s->nc);
}

/* The caller gave up on the step: the communicator, taken from the comm then, is the helper's
   to abort (which also stops exchange kernels still waiting), with the rest. */
static void mc_nccl_connect_cleanup(mc_nccl_step_t *s) {
  mc_nccl_abort(s->nc);
  s->nc = NULL;
  if (s->scratch != NULL) (void)cudaFreeAsync(s->scratch, s->stream);
  if (s->stream != NULL) (void)cudaStreamDestroy(s->stream);
  s->scratch = NULL;
  s->stream = NULL;
  free(s->peers);
  s->peers = NULL;
  (void)cudaGetLastError();
}

/* The step ran to its end: its outcome, the exchange kernels, what the connections cost.  The
   scratch and stream are released without waiting (stream-ordered), so a failed exchange still
   spinning until the abort cannot hold this up. */
static moecomm_result_t mc_nccl_connect_finish(mc_nccl_comm_t *p, mc_nccl_step_t *s,
                                               int64_t deadline_ms, ncclComm_t *victim_p) {
  mc_comm_t *comm = p->comm;
  const char *what = "the point-to-point connection exchange";
  size_t free1 = 0, total = 0;
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (s->ce != cudaSuccess)
    *victim_p = mc_nccl_fail_locked(p, MOECOMM_ERR_BACKEND,
                                    "connecting %s for point-to-point: %s failed: %s", comm->label,
                                    s->where, cudaGetErrorString(s->ce));
  else if (s->nr != ncclSuccess)
    *victim_p = mc_nccl_fail_nr(p, s->nr, what);
  else
    r = mc_nccl_stream_wait(p, s->stream, what, deadline_ms, victim_p);
  if (!p->failed && cudaMemGetInfo(&free1, &total) == cudaSuccess && s->free0 > free1)
    comm->be[MOECOMM_BACKEND_NCCL].device_bytes += s->free0 - free1;
  if (s->scratch != NULL) (void)cudaFreeAsync(s->scratch, s->stream);
  if (s->stream != NULL) (void)cudaStreamDestroy(s->stream);
  s->scratch = NULL;
  s->stream = NULL;
  (void)cudaGetLastError();
  return p->failed ? p->fail_code : r;
}

/* With p->mu held: runs the connection step for the members marked in want (which it takes).
   On the calling thread it waits, queries the private stream and measures memory in relaxed
   capture mode: the call may be the first of a pair inside a graph capture. */
static moecomm_result_t mc_nccl_connect_run(mc_nccl_comm_t *p, unsigned char *want,
                                            ncclComm_t *victim_p) {
  mc_comm_t *comm = p->comm;
  const int64_t deadline = mc_now_ms() + comm->cfg->timeout_ms;
  mc_nccl_step_t *step =
      mc_nccl_step_new(mc_nccl_connect_body, mc_nccl_connect_cleanup, comm->device);
  mc_gpu_scope_t scope;
  moecomm_result_t r = step == NULL ? mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY,
                                                 "out of host memory connecting %s", comm->label)
                                    : mc_gpu_scope_enter(comm->device, &scope, comm->err);
  if (r != MOECOMM_SUCCESS) {
    free(want);
    mc_nccl_step_release(step);
    *victim_p = mc_nccl_fail_locked(p, r, "%s", comm->err->msg);
    return r;
  }
  step->nc = p->nc;
  step->nranks = comm->size;
  step->peers = want;
  step->scratch_bytes = ((size_t)comm->size + 1) * sizeof(float);
  r = mc_nccl_step_run(p, step, "point-to-point connection", deadline);
  if (r == MOECOMM_SUCCESS) {
    r = mc_nccl_connect_finish(p, step, deadline, victim_p);
    for (int q = 0; q < comm->size && r == MOECOMM_SUCCESS; q++) p->p2p_connected[q] |= want[q];
    free(want);
  } else if (!p->failed) { /* no helper thread: nothing ran */
    free(want);
    *victim_p = mc_nccl_fail_locked(p, r, "%s", comm->err->msg);
  } /* else given up: the helper owns want and the communicator now */
  mc_gpu_scope_leave(&scope);
  mc_nccl_step_release(step);
  return r;
}

/* With p->mu held: connects this rank with the members c involves that it has not exchanged
   data with yet.  Any failure fails p (*victim_p: the communicator to abort once unlocked, when
   it is still ours). */
static moecomm_result_t mc_nccl_connect(mc_nccl_comm_t *p, const mc_coll_t *c,
                                        ncclComm_t *victim_p) {
  mc_comm_t *comm = p->comm;
  const int all = c->kind == MC_COLL_ALL_TO_ALL || c->kind == MC_COLL_ALL_TO_ALL_V;
  unsigned char *want = NULL;
  int any = 0;
  if (p->p2p_connected == NULL) p->p2p_connected = calloc((size_t)comm->size, 1);
  if (p->p2p_connected != NULL) want = calloc((size_t)comm->size, 1);
  if (want == NULL) {
    *victim_p =
        mc_nccl_fail_locked(p, MOECOMM_ERR_NO_MEMORY,
                            "out of host memory connecting %s for point-to-point", comm->label);
    return MOECOMM_ERR_NO_MEMORY;
  }
  for (int q = 0; q < comm->size; q++) {
    want[q] = q != comm->rank && !p->p2p_connected[q] && (all || q == c->peer);
    any |= want[q];
  }
  if (!any) {
    free(want);
    return MOECOMM_SUCCESS;
  }
  MC_INFO("connecting %s for point-to-point (%s)", comm->label, all ? "every member" : "one peer");
  return mc_nccl_connect_run(p, want, victim_p);
}

/* ---- the calls ------------------------------------------------------------------------------ */

static ncclResult_t mc_nccl_p2p_launch(mc_nccl_comm_t *p, const mc_coll_t *c) {
  const ncclDataType_t dt = mc_nccl_p2p_dtype[c->dtype];
  const size_t es = mc_dtype_size(c->dtype);
  cudaStream_t s = (cudaStream_t)c->stream;
  ncclResult_t nr, end;
  if (c->kind == MC_COLL_SEND) return ncclSend(c->send, c->count, dt, c->peer, p->nc, s);
  if (c->kind == MC_COLL_RECV) return ncclRecv(c->recv, c->count, dt, c->peer, p->nc, s);
  if ((nr = ncclGroupStart()) != ncclSuccess) return nr;
  for (int q = 0; q < p->comm->size && nr == ncclSuccess; q++) {
    size_t sd, sn, rd, rn;
    mc_coll_block(c, 1, q, &sd, &sn);
    mc_coll_block(c, 0, q, &rd, &rn);
    if (sn > 0) nr = ncclSend((const char *)c->send + sd * es, sn, dt, q, p->nc, s);
    if (nr == ncclSuccess && rn > 0) nr = ncclRecv((char *)c->recv + rd * es, rn, dt, q, p->nc, s);
  }
  end = ncclGroupEnd(); /* closes the group even after a failed call in it */
  return nr != ncclSuccess ? nr : end;
}

moecomm_result_t mc_nccl_p2p(mc_comm_t *comm, const mc_coll_t *c) {
  mc_nccl_comm_t *p = comm->be[MOECOMM_BACKEND_NCCL].priv;
  ncclComm_t victim = NULL;
  pthread_mutex_lock(&p->mu);
  if (mc_nccl_usable_locked(p, &victim) && mc_nccl_connect(p, c, &victim) == MOECOMM_SUCCESS) {
    ncclResult_t nr = mc_nccl_p2p_launch(p, c);
    /* a peer may have launched its part: the communicator cannot be trusted any more */
    if (nr != ncclSuccess) victim = mc_nccl_fail_nr(p, nr, mc_nccl_p2p_name(c->kind));
  }
  return mc_nccl_unlock(p, victim);
}

void mc_nccl_p2p_fini(mc_nccl_comm_t *p) {
  free(p->p2p_connected);
  p->p2p_connected = NULL;
}
