/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_comm.c - creating and destroying the NCCL communicator of one mc_comm_t.
 *
 * comm_init (collective over the comm's members):
 *   1. the first member makes the unique id; one exchange through the rendezvous store gives
 *      every member the id and each member's NCCL version and wishes (config);
 *   2. on a helper thread (nccl_step.c): a private stream and a small scratch buffer, the memory
 *      baseline, ncclCommInitRankConfig, and a 1-element all-reduce on the scratch, which proves
 *      every member connected.  The caller waits with MOECOMM_TIMEOUT_MS and watches that the
 *      members are alive;
 *   3. the caller waits for the warm-up kernel (same deadline);
 *   4. cudaMemGetInfo and RSS after step 3 against the baseline give the device and host bytes.
 * Nothing is enqueued on the caller's stream, and the legacy default stream is never used.
 *
 * Config: communicators used only by MOE_EP / MOE_TP groups get the lean config (maxCTAs capped)
 * unless MOECOMM_NCCL_CONFIG says otherwise; NCCL allocates its buffers per channel, so fewer
 * channels is less memory.  Why these choices: bench/NOTES-nccl.md. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "nccl_comm.h"

#include "nccl_p2p.h"
#include "nccl_step.h"
#include "nccl_watch.h"

/* Scratch of the warm-up all-reduce (one element).  A larger warm-up measured the same memory:
   on NVLink NCCL allocates its buffers at init (bench/NOTES-nccl.md). */
#define MC_NCCL_SCRATCH_BYTES ((size_t)4096)

/* What every member tells the others before NCCL init. */
typedef struct mc_nccl_hello {
  ncclUniqueId id; /* meaningful from the comm's first member only */
  int32_t version; /* ncclGetVersion of the library this member loaded */
  int32_t lean;    /* wants the lean config */
  int32_t ctas;    /* its lean maxCTAs */
  int32_t pad;
} mc_nccl_hello_t;

static pthread_once_t mc_nccl_env_once = PTHREAD_ONCE_INIT;

/* NVLink SHARP (NVLS) buffers cost hundreds of MiB per communicator and need multicast objects:
   off unless the user asked for it (NCCL reads the variable at its first communicator). */
static void mc_nccl_env_defaults(void) {
  if (setenv("NCCL_NVLS_ENABLE", "0", 0) != 0) MC_INFO("could not default NCCL_NVLS_ENABLE=0");
}

static uint64_t mc_nccl_rss_bytes(void) {
  unsigned long long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%llu %llu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The members agree on one id and one config (any member's "no" to lean wins).  A member that
   failed before (rank 0 could not make the id) says so in the agreement: everyone fails at once
   with its message. */
static moecomm_result_t mc_nccl_agree(mc_nccl_comm_t *p, mc_nccl_hello_t *agreed_p) {
  mc_comm_t *comm = p->comm;
  mc_nccl_hello_t me, *all;
  moecomm_result_t r = MOECOMM_SUCCESS;
  ncclResult_t nr;
  int bad = -1;

  memset(&me, 0, sizeof(me));
  (void)ncclGetVersion(&me.version);
  me.lean = comm->hints.nccl_lean;
  me.ctas = comm->cfg->nccl.lean_ctas;
  if (comm->rank == 0 && (nr = ncclGetUniqueId(&me.id)) != ncclSuccess)
    r = mc_err_set(comm->err, mc_nccl_code(nr),
                   "ncclGetUniqueId for %s failed: %s (%s); NCCL needs a usable network "
                   "interface for its bootstrap (see NCCL_SOCKET_IFNAME)",
                   comm->label, ncclGetErrorString(nr), ncclGetLastError(NULL));
  all = calloc((size_t)comm->size, sizeof(*all));
  if (all == NULL) return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  r = mc_comm_agree(comm, "NCCL unique id", r, comm->err->msg, &me, all, sizeof(me), &bad);
  if (r != MOECOMM_SUCCESS) {
    free(all);
    return r;
  }
  *agreed_p = me;
  agreed_p->id = all[0].id;
  for (int i = 0; i < comm->size; i++) {
    const mc_nccl_hello_t *h = &all[i];
    if (h->version != me.version) {
      r = mc_err_set(comm->err, MOECOMM_ERR_CONFIG,
                     "%s: rank %d loaded NCCL %d.%d.%d but rank %d loaded %d.%d.%d; every rank "
                     "must use the same NCCL library",
                     comm->label, (int)comm->ranks[i], h->version / 10000, (h->version / 100) % 100,
                     h->version % 100, (int)comm->ranks[comm->rank], me.version / 10000,
                     (me.version / 100) % 100, me.version % 100);
      break;
    }
    agreed_p->lean &= h->lean;
    agreed_p->ctas = MC_MIN(agreed_p->ctas, h->ctas);
  }
  if (r == MOECOMM_SUCCESS && (agreed_p->lean != me.lean || agreed_p->ctas != me.ctas))
    MC_WARN(
        "%s: the ranks set MOECOMM_NCCL_CONFIG / _LEAN_CTAS differently; using lean=%d "
        "ctas=%d on all of them",
        comm->label, agreed_p->lean, agreed_p->ctas);
  free(all);
  return r;
}

/* ---- the init step (helper thread) -------------------------------------------------------- */

static void mc_nccl_init_body(mc_nccl_step_t *s) {
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  size_t total = 0;
  void *scratch = NULL;
  MC_STEP_CUDA(s, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  /* Stream-ordered: cudaMalloc/cudaFree may synchronise the whole device, which is invalid
     while the caller's stream is being captured (a first collective inside a graph). */
  MC_STEP_CUDA(s, cudaMallocAsync(&scratch, s->scratch_bytes, s->stream));
  s->scratch = scratch;
  MC_STEP_CUDA(s, cudaMemsetAsync(s->scratch, 0, s->scratch_bytes, s->stream));
  MC_STEP_CUDA(s, cudaStreamSynchronize(s->stream));
  MC_STEP_CUDA(s, cudaMemGetInfo(&s->free0, &total));
  s->rss0 = mc_nccl_rss_bytes();

  cfg.blocking = 1;
  if (s->max_ctas > 0) cfg.maxCTAs = s->max_ctas;
  s->nr = ncclCommInitRankConfig(&s->nc, s->nranks, s->id, s->rank, &cfg);
  if (s->nr != ncclSuccess) {
    mc_nccl_step_fail(s, "ncclCommInitRankConfig", s->nc);
    return;
  }
  s->nr = ncclAllReduce(s->scratch, s->scratch, 1, ncclFloat32, ncclSum, s->nc, s->stream);
  if (s->nr != ncclSuccess) mc_nccl_step_fail(s, "the warm-up all-reduce", s->nc);
}

/* Everything the init step holds: the caller gave up on it, or it failed. */
static void mc_nccl_init_cleanup(mc_nccl_step_t *s) {
  mc_nccl_abort(s->nc); /* its abort flag also stops warm-up kernels still running */
  s->nc = NULL;
  if (s->scratch != NULL) (void)cudaFreeAsync(s->scratch, s->stream);
  s->scratch = NULL;
  if (s->stream != NULL) {
    (void)cudaStreamSynchronize(s->stream);
    (void)cudaStreamDestroy(s->stream);
  }
  s->stream = NULL;
  (void)cudaGetLastError();
}

moecomm_result_t mc_nccl_stream_wait(mc_nccl_comm_t *p, cudaStream_t stream, const char *what,
                                     int64_t deadline_ms, ncclComm_t *victim_p) {
  mc_comm_t *comm = p->comm;
  char dead[320];
  for (long sleep_us = 20;; sleep_us = MC_MIN(sleep_us * 2, 1000)) {
    ncclResult_t st = ncclSuccess;
    cudaError_t ce = cudaStreamQuery(stream);
    if (ce == cudaSuccess) return MOECOMM_SUCCESS;
    if (ce != cudaErrorNotReady) {
      *victim_p = mc_nccl_fail_locked(p, MOECOMM_ERR_BACKEND, "%s on %s failed on the device: %s",
                                      what, comm->label, cudaGetErrorString(ce));
      return p->fail_code;
    }
    if (ncclCommGetAsyncError(p->nc, &st) != ncclSuccess) st = ncclInternalError;
    mc_nccl_dead_ranks(comm, dead, sizeof(dead));
    if (dead[0] || st != ncclSuccess) {
      *victim_p = mc_nccl_fail_locked(p, dead[0] ? MOECOMM_ERR_PEER : mc_nccl_code(st),
                                      "%s on %s did not complete: %s%s", what, comm->label,
                                      ncclGetErrorString(st), dead);
      return p->fail_code;
    }
    if (mc_now_ms() >= deadline_ms) {
      *victim_p = mc_nccl_fail_locked(
          p, MOECOMM_ERR_TIMEOUT,
          "%s on %s did not complete within %d ms (MOECOMM_TIMEOUT_MS): a member is not taking "
          "part",
          what, comm->label, comm->cfg->timeout_ms);
      return p->fail_code;
    }
    mc_sleep_us(sleep_us);
  }
}

/* The init step's own outcome (the helper ran to its end): a failed CUDA or NCCL call. */
static moecomm_result_t mc_nccl_init_result(mc_nccl_comm_t *p, const mc_nccl_step_t *step) {
  mc_comm_t *comm = p->comm;
  char dead[320];
  if (step->ce == cudaSuccess && step->nr == ncclSuccess) return MOECOMM_SUCCESS;
  if (step->ce != cudaSuccess)
    return mc_err_set(comm->err, MOECOMM_ERR_BACKEND,
                      "creating the NCCL communicator of %s: %s failed: %s", comm->label,
                      step->where, cudaGetErrorString(step->ce));
  mc_nccl_dead_ranks(comm, dead, sizeof(dead));
  return mc_err_set(comm->err, dead[0] ? MOECOMM_ERR_PEER : mc_nccl_code(step->nr),
                    "%s for %s (rank %d of %d, device %d%s) failed: %s (%s)%s", step->where,
                    comm->label, comm->rank, comm->size, comm->device,
                    p->lean ? ", lean config" : "", ncclGetErrorString(step->nr), step->last, dead);
}

/* The communicator is ready: hand it to the comm with what it cost. */
static void mc_nccl_publish(mc_nccl_comm_t *p, uint64_t device_bytes, uint64_t host_bytes) {
  mc_comm_t *comm = p->comm;
  comm->be[MOECOMM_BACKEND_NCCL].priv = p;
  comm->be[MOECOMM_BACKEND_NCCL].device_bytes = device_bytes;
  comm->be[MOECOMM_BACKEND_NCCL].host_bytes = host_bytes;
  MC_INFO(
      "NCCL communicator for %s: %d ranks, %s config (maxCTAs %d), %.1f MiB device, %.1f MiB "
      "host",
      comm->label, comm->size, p->lean ? "lean" : "default", p->max_ctas,
      (double)device_bytes / 1048576.0, (double)host_bytes / 1048576.0);
}

moecomm_result_t mc_nccl_comm_init(mc_comm_t *comm) {
  mc_err_t *err = comm->err;
  mc_nccl_comm_t *p;
  mc_nccl_hello_t agreed;
  mc_nccl_step_t *step = NULL;
  ncclComm_t victim = NULL;
  cudaStream_t stream = NULL;
  void *scratch = NULL;
  size_t free0 = 0, free1 = 0, total = 0;
  uint64_t rss0 = 0, rss1;
  int64_t deadline;
  moecomm_result_t r = MOECOMM_SUCCESS;

  memset(&agreed, 0, sizeof(agreed));
  pthread_once(&mc_nccl_env_once, mc_nccl_env_defaults);
  p = calloc(1, sizeof(*p));
  if (p == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "pthread_mutex_init failed");
  }
  p->comm = comm;
  pthread_mutex_lock(&p->mu); /* no watchdog yet; held for the helpers' locking convention */

  r = mc_nccl_agree(p, &agreed);
  if (r != MOECOMM_SUCCESS) goto fail;
  p->lean = agreed.lean;
  p->max_ctas = agreed.lean ? agreed.ctas : 0;

  step = mc_nccl_step_new(mc_nccl_init_body, mc_nccl_init_cleanup, comm->device);
  if (step == NULL) {
    r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto fail;
  }
  step->nranks = comm->size;
  step->rank = comm->rank;
  step->id = agreed.id;
  step->max_ctas = p->max_ctas;
  step->scratch_bytes = MC_NCCL_SCRATCH_BYTES;
  deadline = mc_now_ms() + comm->cfg->timeout_ms;
  r = mc_nccl_step_run(p, step, "communicator init", deadline);
  if (r != MOECOMM_SUCCESS) {
    /* Given up (the helper keeps the step's state), or no thread could be started. */
    if (p->failed) r = mc_err_set(err, p->fail_code, "%s", p->fail_msg);
    goto fail;
  }
  /* The helper finished: what the step holds is ours now. */
  stream = step->stream;
  scratch = step->scratch;
  free0 = step->free0;
  rss0 = step->rss0;
  p->nc = step->nc;
  if ((r = mc_nccl_init_result(p, step)) != MOECOMM_SUCCESS) goto fail;
  r = mc_nccl_stream_wait(p, stream, "NCCL warm-up all-reduce", deadline, &victim);
  if (r != MOECOMM_SUCCESS) {
    if (p->failed) r = mc_err_set(err, p->fail_code, "%s", p->fail_msg);
    goto fail;
  }
  MC_CUDA_GOTO(err, r, fail, cudaMemGetInfo(&free1, &total));
  rss1 = mc_nccl_rss_bytes();
  MC_CUDA_GOTO(err, r, fail, cudaFreeAsync(scratch, stream));
  scratch = NULL;
  MC_CUDA_GOTO(err, r, fail, cudaStreamSynchronize(stream));
  MC_CUDA_GOTO(err, r, fail, cudaStreamDestroy(stream));
  stream = NULL;
  r = mc_nccl_watch_start(p);
  if (r != MOECOMM_SUCCESS) goto fail;
  pthread_mutex_unlock(&p->mu);

  mc_nccl_step_release(step);
  mc_nccl_publish(p, free0 > free1 ? free0 - free1 : 0, rss1 > rss0 ? rss1 - rss0 : 0);
  return MOECOMM_SUCCESS;

fail:
  /* A communicator we still hold, failed or not, goes; an abandoned step keeps its own. */
  if (victim == NULL) victim = p->nc;
  p->nc = NULL;
  pthread_mutex_unlock(&p->mu);
  mc_nccl_abort(victim); /* also stops warm-up kernels still waiting on a peer */
  if (scratch != NULL) (void)cudaFreeAsync(scratch, stream);
  if (stream != NULL) {
    (void)cudaStreamSynchronize(stream);
    (void)cudaStreamDestroy(stream);
  }
  mc_nccl_step_release(step);
  (void)cudaGetLastError();
  pthread_mutex_destroy(&p->mu);
  free(p);
  return r;
}

void mc_nccl_comm_fini(mc_comm_t *comm) {
  mc_nccl_comm_t *p = comm->be[MOECOMM_BACKEND_NCCL].priv;
  ncclComm_t nc;
  int healthy = 0;
  if (p == NULL) return;
  mc_nccl_watch_stop(p);
  mc_nccl_p2p_fini(p);
  pthread_mutex_lock(&p->mu);
  nc = p->nc;
  p->nc = NULL;
  pthread_mutex_unlock(&p->mu);
  if (nc != NULL) {
    ncclResult_t st = ncclSuccess;
    char dead[320];
    mc_nccl_dead_ranks(comm, dead, sizeof(dead));
    healthy = !dead[0] && ncclCommGetAsyncError(nc, &st) == ncclSuccess && st == ncclSuccess;
  }
  if (healthy) {
    /* Local: by contract no work of this context is still running (abi/moecomm.h). */
    ncclResult_t r = ncclCommDestroy(nc);
    if (r != ncclSuccess) MC_INFO("ncclCommDestroy on %s: %s", comm->label, ncclGetErrorString(r));
  } else {
    /* A dead peer or an error: destroy could wait for kernels that never end. */
    mc_nccl_abort(nc);
  }
  (void)cudaGetLastError();
  pthread_mutex_destroy(&p->mu);
  free(p);
  comm->be[MOECOMM_BACKEND_NCCL].priv = NULL;
}
