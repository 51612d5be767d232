/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_step.c - setup steps that wait for peers, run on a helper thread the caller can give up on.
 *
 * Communicator init with its first collective waits for every member.  moecomm's communicators are
 * blocking (a non-blocking NCCL communicator starts a thread inside NCCL for every collective, far
 * too slow for the hot path), and a blocking init cannot be interrupted safely: aborting a
 * communicator from another thread while its init runs frees it under NCCL.  So each such step runs
 * on a detached helper thread; the caller waits up to MOECOMM_TIMEOUT_MS, watching that the members
 * are alive.  If it gives up, the step and everything it holds (communicator, stream, buffers)
 * become the helper's, which releases them when NCCL returns: possibly never, if NCCL waits for a
 * peer that died before connecting.  A parked thread is the price of never hanging the caller. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../log.h"
#include "../../util.h"
#include "nccl_step.h"
#include "nccl_watch.h"

mc_nccl_step_t *mc_nccl_step_new(mc_nccl_step_fn_t body, mc_nccl_step_fn_t cleanup, int device) {
  mc_nccl_step_t *s = calloc(1, sizeof(*s));
  pthread_condattr_t ca;
  if (s == NULL) return NULL;
  if (pthread_mutex_init(&s->mu, NULL) != 0) goto fail;
  if (pthread_condattr_init(&ca) != 0) goto fail_mu;
  if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&s->cv, &ca) != 0) {
    pthread_condattr_destroy(&ca);
    goto fail_mu;
  }
  pthread_condattr_destroy(&ca);
  s->state = MC_STEP_RUNNING;
  s->refs = 1;
  s->body = body;
  s->cleanup = cleanup;
  s->device = device;
  s->nr = ncclSuccess;
  s->ce = cudaSuccess;
  return s;
fail_mu:
  pthread_mutex_destroy(&s->mu);
fail:
  free(s);
  return NULL;
}

void mc_nccl_step_release(mc_nccl_step_t *s) {
  if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

void mc_nccl_step_fail(mc_nccl_step_t *s, const char *where, ncclComm_t nc) {
  s->where = where;
  snprintf(s->last, sizeof(s->last), "%s", ncclGetLastError(nc));
}

static void *mc_nccl_step_main(void *arg) {
  mc_nccl_step_t *s = arg;
  enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  int abandoned;
  /* The device first: any runtime call on a new thread (its current device is 0) would create
     a CUDA context on device 0, ~500 MiB on another rank's GPU.  Then relaxed capture mode, so a
     global-mode capture on another thread does not forbid this thread's setup calls. */
  s->ce = cudaSetDevice(s->device);
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  if (s->ce != cudaSuccess)
    s->where = "cudaSetDevice";
  else
    s->body(s);
  pthread_mutex_lock(&s->mu);
  abandoned = s->state == MC_STEP_ABANDONED;
  if (!abandoned) __atomic_store_n(&s->state, MC_STEP_DONE, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (abandoned) {
    MC_INFO("an abandoned NCCL setup step returned (%s); releasing what it held",
            s->where ? s->where : "finished");
    s->cleanup(s);
  }
  mc_nccl_step_release(s);
  return NULL;
}

moecomm_result_t mc_nccl_step_run(mc_nccl_comm_t *p, mc_nccl_step_t *s, const char *what,
                                  int64_t deadline_ms) {
  mc_comm_t *comm = p->comm;
  pthread_attr_t attr;
  pthread_t th;
  char dead[320] = "";
  int rc, done;

  __atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
  rc = pthread_attr_init(&attr);
  if (rc == 0) {
    rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (rc == 0) rc = pthread_create(&th, &attr, mc_nccl_step_main, s);
    pthread_attr_destroy(&attr);
  }
  if (rc != 0) {
    __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
    return mc_err_set(comm->err, MOECOMM_ERR_BACKEND, "cannot start a thread for NCCL %s on %s: %s",
                      what, comm->label, strerror(rc));
  }
  pthread_mutex_lock(&s->mu);
  while (s->state == MC_STEP_RUNNING) {
    struct timespec ts;
    mc_nccl_dead_ranks(comm, dead, sizeof(dead));
    if (dead[0] || mc_now_ms() >= deadline_ms) {
      __atomic_store_n(&s->state, MC_STEP_ABANDONED, __ATOMIC_RELEASE);
      break;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 10 * 1000000L; /* look at the members every 10 ms */
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
  }
  done = s->state == MC_STEP_DONE;
  pthread_mutex_unlock(&s->mu);
  if (done) return MOECOMM_SUCCESS;
  /* The helper owns the step now, and the communicator in it: nothing to abort here. */
  if (dead[0])
    (void)mc_nccl_fail_locked(p, MOECOMM_ERR_PEER, "NCCL %s on %s cannot finish%s", what,
                              comm->label, dead);
  else
    (void)mc_nccl_fail_locked(
        p, MOECOMM_ERR_TIMEOUT,
        "NCCL %s on %s did not finish within %d ms (MOECOMM_TIMEOUT_MS): a member of the group "
        "is not taking part (stuck, or on a host whose processes cannot be checked from here)",
        what, comm->label, comm->cfg->timeout_ms);
  return p->fail_code;
}
