/* nccl_window.c - small eager all-reduces staged through a symmetric NCCL window.
 *
 * NCCL (2.27+) runs its symmetric-memory kernels only when both buffers lie in a window that
 * every rank registered with NCCL_WIN_COLL_SYMMETRIC.  The engine's buffers are not registered,
 * so when MOECOMM_NCCL_WINDOW_BYTES > 0 each communicator owns one ncclMemAlloc buffer
 * (a send half and a recv half of win_bytes each): an eager all-reduce that fits is copied in,
 * reduced window to window, and copied out, all on the caller's stream.  Whether the two copies
 * cost less than the symmetric kernel saves is what `make bench-mem` measures (NOTES-nccl.md).
 *
 * The decision to stage depends only on (count, dtype, capturing, win_bytes), which are equal on
 * every member, so all members run the same kind of kernel.  The buffer is shared by calls on
 * different streams: a call on a new stream first waits for the previous staged call's event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../log.h"
#include "../../util.h"
#include "nccl_priv.h"

#if MC_NCCL_HAVE_WINDOWS
/* Weak: an NCCL older than 2.27 lacks these, and the plugin must still load there. */
#pragma weak ncclCommWindowRegister
#pragma weak ncclCommWindowDeregister
#endif

/* Registration is collective: it runs on a helper thread (nccl_step.c). */
static void mc_nccl_register_body(mc_nccl_step_t *s) {
#if MC_NCCL_HAVE_WINDOWS
  s->nr = ncclCommWindowRegister(s->nc, s->buf, s->bytes, &s->win, NCCL_WIN_COLL_SYMMETRIC);
  s->nr = mc_nccl_step_settle(s, s->nc, s->nr);
  if (s->nr != ncclSuccess) mc_nccl_step_fail(s, "ncclCommWindowRegister", s->nc);
#else
  s->nr = ncclInvalidUsage;
  s->where = "ncclCommWindowRegister (not in this build)";
#endif
}

/* The caller gave up on the registration: the communicator and the buffer are ours to free. */
static void mc_nccl_register_cleanup(mc_nccl_step_t *s) {
  mc_nccl_abort(s->nc);
  s->nc = NULL;
  if (s->buf != NULL) (void)ncclMemFree(s->buf);
  s->buf = NULL;
}

static int mc_nccl_window_available(int version) {
#if MC_NCCL_HAVE_WINDOWS
  return ncclCommWindowRegister != NULL && ncclCommWindowDeregister != NULL &&
         version >= MC_NCCL_WINDOW_VERSION;
#else
  (void)version;
  return 0;
#endif
}

moecomm_result_t mc_nccl_window_init(mc_nccl_comm_t *p, size_t bytes, int64_t deadline_ms,
                                     ncclComm_t *victim_p) {
  mc_comm_t *comm = p->comm;
  mc_err_t *err = &comm->ctx->err;
  int version = 0, ok, *all_ok = NULL;
  ncclResult_t nr;
  moecomm_result_t r = MOECOMM_SUCCESS;
  mc_nccl_step_t *step = NULL;
  void *buf = NULL;
  cudaEvent_t ev = NULL;

  (void)victim_p; /* a failure here leaves p->nc to the caller, or to an abandoned step */
  all_ok = calloc((size_t)comm->size, sizeof(int));
  if (all_ok == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  (void)ncclGetVersion(&version);
  ok = mc_nccl_window_available(version);
  if (ok) {
    nr = ncclMemAlloc(&buf, 2 * bytes);
    if (nr != ncclSuccess) {
      MC_INFO("ncclMemAlloc(%zu) for the staging window of %s: %s", 2 * bytes, comm->label,
              ncclGetErrorString(nr));
      buf = NULL;
      ok = 0;
    }
  }
  if (ok && cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
    (void)cudaGetLastError();
    ev = NULL;
    ok = 0;
  }
  /* Every member must know that every other one will register. */
  r = mc_comm_exchange(comm, "NCCL window allocation", &ok, all_ok, sizeof(int));
  if (r != MOECOMM_SUCCESS) goto fail;
  for (int i = 0; i < comm->size; i++) ok &= all_ok[i];
  if (!ok) {
    MC_INFO(
        "symmetric staging window off for %s (NCCL %d lacks windows, or a member could not "
        "allocate one)",
        comm->label, version);
    goto fail;
  }
  step = mc_nccl_step_new(mc_nccl_register_body, mc_nccl_register_cleanup, comm->ctx->device,
                          p->nonblocking);
  if (step == NULL) {
    r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto fail;
  }
  step->nc = p->nc;
  step->buf = buf;
  step->bytes = 2 * bytes;
  r = mc_nccl_step_run(p, step, "window registration", deadline_ms);
  if (r != MOECOMM_SUCCESS) {
    if (p->failed) {
      /* Given up: the helper owns the communicator (p->nc is NULL) and the buffer. */
      r = mc_err_set(err, p->fail_code, "%s", p->fail_msg);
      buf = NULL;
    }
    goto fail;
  }
  /* From here the buffer belongs to p: on a failure the caller aborts the communicator first
     and frees it after (mc_nccl_window_fini). */
  p->win_buf = buf;
  p->win_done = ev;
  p->win = step->win;
  buf = NULL;
  ev = NULL;
  if (step->nr != ncclSuccess) {
    r = mc_err_set(err, mc_nccl_code(step->nr),
                   "%s of %zu bytes on %s failed: %s (%s); set MOECOMM_NCCL_WINDOW_BYTES=0 to run "
                   "without the staging window",
                   step->where, 2 * bytes, comm->label, ncclGetErrorString(step->nr), step->last);
    goto fail;
  }
  /* NULL: this communicator has no symmetric support (e.g. no NVLink between the members).
     Every member computes that alike, but check: a mismatch would pair different kernels. */
  ok = p->win != NULL;
  r = mc_comm_exchange(comm, "NCCL window registration", &ok, all_ok, sizeof(int));
  if (r != MOECOMM_SUCCESS) goto fail;
  for (int i = 0; i < comm->size; i++) ok &= all_ok[i];
  if (!ok) {
    MC_INFO("symmetric staging window off for %s: NCCL has no symmetric support here", comm->label);
    mc_nccl_window_fini(p, p->nc);
    goto fail;
  }
  p->win_bytes = bytes;
  p->win_stream = NULL;
  p->win_used = 0;
  mc_nccl_step_release(step);
  free(all_ok);
  MC_INFO("%s: eager all-reduces up to %zu bytes are staged through a symmetric window",
          comm->label, bytes);
  return MOECOMM_SUCCESS;

fail:
  mc_nccl_step_release(step);
  if (ev != NULL) (void)cudaEventDestroy(ev);
  if (buf != NULL) (void)ncclMemFree(buf);
  free(all_ok);
  return r; /* SUCCESS when the window is merely off */
}

void mc_nccl_window_fini(mc_nccl_comm_t *p, ncclComm_t nc) {
  if (p->win_buf == NULL) return;
#if MC_NCCL_HAVE_WINDOWS
  if (nc != NULL && p->win != NULL) {
    ncclResult_t r = ncclCommWindowDeregister(nc, p->win);
    if (r != ncclSuccess) MC_INFO("ncclCommWindowDeregister: %s (ignored)", ncclGetErrorString(r));
  }
#else
  (void)nc;
#endif
  if (p->win_done != NULL) (void)cudaEventDestroy(p->win_done);
  (void)ncclMemFree(p->win_buf);
  p->win_buf = NULL;
  p->win = NULL;
  p->win_done = NULL;
  p->win_bytes = 0;
}

int mc_nccl_window_fits(const mc_nccl_comm_t *p, const mc_coll_t *coll, size_t bytes) {
  /* cudaStreamPerThread names a different stream in each thread: the event logic cannot follow. */
  return p->win_bytes != 0 && !coll->capturing && bytes <= p->win_bytes &&
         coll->stream != (void *)cudaStreamPerThread;
}

static moecomm_result_t mc_nccl_window_cuda_fail(mc_nccl_comm_t *p, const mc_coll_t *coll,
                                                 size_t bytes, cudaError_t ce) {
  (void)cudaGetLastError();
  return mc_err_set(&p->comm->ctx->err, MOECOMM_ERR_BACKEND,
                    "staging %zu bytes through the NCCL window of %s on stream %p failed: %s "
                    "(the stream must belong to device %d; MOECOMM_NCCL_WINDOW_BYTES=0 turns "
                    "staging off)",
                    bytes, p->comm->label, coll->stream, cudaGetErrorString(ce),
                    p->comm->ctx->device);
}

moecomm_result_t mc_nccl_window_stage_in(mc_nccl_comm_t *p, const mc_coll_t *coll, size_t bytes,
                                         const void **send_p, void **recv_p) {
  cudaStream_t s = (cudaStream_t)coll->stream;
  cudaError_t ce;
  /* The previous staged call may still be reading the window on another stream. */
  if (p->win_used && s != p->win_stream) {
    ce = cudaStreamWaitEvent(s, p->win_done, 0);
    if (ce != cudaSuccess) return mc_nccl_window_cuda_fail(p, coll, bytes, ce);
  }
  ce = cudaMemcpyAsync(p->win_buf, coll->send, bytes, cudaMemcpyDeviceToDevice, s);
  if (ce != cudaSuccess) return mc_nccl_window_cuda_fail(p, coll, bytes, ce);
  *send_p = p->win_buf;
  *recv_p = (char *)p->win_buf + p->win_bytes;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_nccl_window_stage_out(mc_nccl_comm_t *p, const mc_coll_t *coll, size_t bytes) {
  cudaStream_t s = (cudaStream_t)coll->stream;
  cudaError_t ce;
  ce = cudaMemcpyAsync(coll->recv, (char *)p->win_buf + p->win_bytes, bytes,
                       cudaMemcpyDeviceToDevice, s);
  if (ce != cudaSuccess) return mc_nccl_window_cuda_fail(p, coll, bytes, ce);
  ce = cudaEventRecord(p->win_done, s);
  if (ce != cudaSuccess) return mc_nccl_window_cuda_fail(p, coll, bytes, ce);
  p->win_stream = s;
  p->win_used = 1;
  return MOECOMM_SUCCESS;
}
