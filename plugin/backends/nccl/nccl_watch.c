/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_watch.c - what the NCCL backend does when a communicator goes bad.
 *
 * NCCL kernels waiting for a peer that died spin on the GPU for ever; the host thread that
 * synchronises on them never returns.  So a watchdog thread per communicator looks every
 * MC_NCCL_WATCH_MS at NCCL's asynchronous error and at whether the members on this host are
 * still alive; on a failure it marks the communicator failed and aborts it (NCCL's abort flag
 * makes the spinning kernels quit).  The next moecomm call on it returns the reason.  Marking
 * happens under the comm's mutex; the abort itself runs outside it, because ncclCommAbort can
 * block (it waits for graphs that still reference the comm) and must not hold up the caller. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../log.h"
#include "../../util.h"
#include "nccl_watch.h"

moecomm_result_t mc_nccl_code(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return MOECOMM_SUCCESS;
    case ncclRemoteError: return MOECOMM_ERR_PEER;
    case ncclInvalidArgument:
    case ncclInvalidUsage: return MOECOMM_ERR_INTERNAL; /* the core validated the arguments */
    default: return MOECOMM_ERR_BACKEND;
  }
}

void mc_nccl_dead_ranks(const mc_comm_t *comm, char *buf, size_t size) {
  int32_t dead[64];
  int n = 0;
  char list[256];
  buf[0] = '\0';
  for (int i = 0; i < comm->size && n < 64; i++)
    if (i != comm->rank && !mc_world_alive(comm->world, comm->ranks[i])) dead[n++] = comm->ranks[i];
  if (n == 0) return;
  mc_format_ranks(dead, n, list, sizeof(list));
  snprintf(buf, size, "; rank%s %s of this host %s exited", n > 1 ? "s" : "", list,
           n > 1 ? "have" : "has");
}

ncclComm_t mc_nccl_fail_locked(mc_nccl_comm_t *p, moecomm_result_t code, const char *fmt, ...) {
  ncclComm_t victim;
  va_list ap;
  if (p->failed) return NULL;
  va_start(ap, fmt);
  vsnprintf(p->fail_msg, sizeof(p->fail_msg), fmt, ap);
  va_end(ap);
  p->failed = 1;
  p->fail_code = code;
  victim = p->nc;
  p->nc = NULL;
  return victim;
}

ncclComm_t mc_nccl_fail_nr(mc_nccl_comm_t *p, ncclResult_t nr, const char *what) {
  char dead[320];
  mc_nccl_dead_ranks(p->comm, dead, sizeof(dead));
  return mc_nccl_fail_locked(p, dead[0] ? MOECOMM_ERR_PEER : mc_nccl_code(nr),
                             "%s on %s failed: %s (%s)%s", what, p->comm->label,
                             ncclGetErrorString(nr), ncclGetLastError(p->nc), dead);
}

int mc_nccl_usable_locked(mc_nccl_comm_t *p, ncclComm_t *victim_p) {
  ncclResult_t nr = ncclSuccess;
  if (p->failed) return 0;
  if (ncclCommGetAsyncError(p->nc, &nr) != ncclSuccess) nr = ncclInternalError;
  if (nr == ncclSuccess) return 1;
  *victim_p = mc_nccl_fail_nr(p, nr, "an earlier NCCL operation");
  return 0;
}

moecomm_result_t mc_nccl_unlock(mc_nccl_comm_t *p, ncclComm_t victim) {
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (p->failed) r = mc_err_set(p->comm->err, p->fail_code, "%s", p->fail_msg);
  pthread_mutex_unlock(&p->mu);
  mc_nccl_abort(victim);
  return r;
}

void mc_nccl_abort(ncclComm_t nc) {
  ncclResult_t r;
  if (nc == NULL) return;
  r = ncclCommAbort(nc);
  if (r != ncclSuccess) MC_INFO("ncclCommAbort: %s (ignored)", ncclGetErrorString(r));
}

/* ---- the watchdog ---------------------------------------------------------------------- */

static void *mc_nccl_watch_main(void *arg) {
  mc_nccl_comm_t *p = arg;
  char dead[320];
  /* This thread may abort the communicator: any CUDA call it causes must land on the context's
     device, not create a context on device 0 (a new thread's default). */
  if (cudaSetDevice(p->comm->device) != cudaSuccess) (void)cudaGetLastError();
  pthread_mutex_lock(&p->mu);
  while (!p->wd_stop && !p->failed) {
    struct timespec ts;
    ncclResult_t st = ncclSuccess;
    ncclComm_t victim = NULL;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)MC_NCCL_WATCH_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->wd_cond, &p->mu, &ts);
    if (p->wd_stop || p->failed || p->nc == NULL) break;
    if (ncclCommGetAsyncError(p->nc, &st) != ncclSuccess) st = ncclInternalError;
    mc_nccl_dead_ranks(p->comm, dead, sizeof(dead));
    if (dead[0])
      victim = mc_nccl_fail_locked(p, MOECOMM_ERR_PEER,
                                   "the NCCL communicator of %s was aborted%s; work queued on it "
                                   "was cancelled and its results are undefined",
                                   p->comm->label, dead);
    else if (st != ncclSuccess)
      victim = mc_nccl_fail_locked(p, mc_nccl_code(st),
                                   "the NCCL communicator of %s reported an asynchronous error and "
                                   "was aborted: %s (%s)",
                                   p->comm->label, ncclGetErrorString(st), ncclGetLastError(p->nc));
    if (victim != NULL) {
      pthread_mutex_unlock(&p->mu);
      MC_INFO("watchdog: %s", p->fail_msg);
      mc_nccl_abort(victim);
      return NULL;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

moecomm_result_t mc_nccl_watch_start(mc_nccl_comm_t *p) {
  pthread_condattr_t ca;
  int rc;
  if ((rc = pthread_condattr_init(&ca)) != 0) goto fail;
  if ((rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
      (rc = pthread_cond_init(&p->wd_cond, &ca)) != 0) {
    pthread_condattr_destroy(&ca);
    goto fail;
  }
  pthread_condattr_destroy(&ca);
  p->wd_stop = 0;
  if ((rc = pthread_create(&p->wd_thread, NULL, mc_nccl_watch_main, p)) != 0) {
    pthread_cond_destroy(&p->wd_cond);
    goto fail;
  }
  p->wd_started = 1;
  return MOECOMM_SUCCESS;
fail:
  return mc_err_set(p->comm->err, MOECOMM_ERR_BACKEND,
                    "cannot start the NCCL watchdog thread for %s: %s", p->comm->label,
                    strerror(rc));
}

void mc_nccl_watch_stop(mc_nccl_comm_t *p) {
  if (!p->wd_started) return;
  pthread_mutex_lock(&p->mu);
  p->wd_stop = 1;
  pthread_cond_signal(&p->wd_cond);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->wd_thread, NULL);
  pthread_cond_destroy(&p->wd_cond);
  p->wd_started = 0;
}
