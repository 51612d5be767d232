/* nccl_priv.h - state the NCCL backend keeps per communicator, shared by its files.
 *
 * nccl.c         ops table, probe, the collectives (hot path)
 * nccl_comm.c    comm_init / comm_fini: unique id, config choice (default or lean), init and
 *                warm-up with a timeout, memory measurement
 * nccl_step.c    setup steps that wait for peers, on a helper thread the caller can give up on
 * nccl_watch.c   failure handling: marking a comm failed, aborting it, the watchdog thread
 *
 * Locking: every NCCL call on `nc` is made with `mu` held, so that the watchdog can take the
 * communicator away (mark it failed, then abort it outside the lock) without racing a launch. */
#ifndef MC_NCCL_PRIV_H_
#define MC_NCCL_PRIV_H_

#include <pthread.h>
#include <stdint.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../../backend.h"

/* Oldest NCCL this backend runs with (init with a config). */
#define MC_NCCL_MIN_VERSION NCCL_VERSION(2, 19, 0)
/* maxCTAs of the lean config when MOECOMM_NCCL_LEAN_CTAS is unset.  Measured on 2x H200 (bench-mem,
   a MoE-only communicator after 1 MB all-reduces): 2: 40 MiB, 1 MB in 76.6 us; 4: 76 MiB, 40.5 us;
   8: 148 MiB, 22.5 us; NCCL's default: 484 MiB, 12.9 us.  4 is the largest that keeps such a
   communicator within 128 MiB; engines that prefer speed set 8 or MOECOMM_NCCL_CONFIG=default. */
#define MC_NCCL_LEAN_CTAS_DEFAULT 4
/* How often the watchdog looks at the communicator and its peers. */
#define MC_NCCL_WATCH_MS 50

typedef struct mc_nccl_comm {
  mc_comm_t *comm;    /* back pointer: label, ranks, context */
  ncclComm_t nc;      /* NULL once failed (aborted, or handed to an abandoned setup step) */
  pthread_mutex_t mu; /* held around every NCCL call on nc */
  int failed;         /* under mu: the comm is unusable; fail_msg says why */
  moecomm_result_t fail_code;
  char fail_msg[640];
  int lean;        /* created with the lean config */
  int max_ctas;    /* config.maxCTAs used, 0 = NCCL's default */

  /* watchdog (nccl_watch.c) */
  pthread_t wd_thread;
  pthread_cond_t wd_cond;
  int wd_started;
  int wd_stop; /* under mu */
} mc_nccl_comm_t;

/* ---- nccl_comm.c ---- */
moecomm_result_t mc_nccl_comm_init(mc_comm_t *comm);
void mc_nccl_comm_fini(mc_comm_t *comm);

/* ---- nccl_step.c ---- */

typedef struct mc_nccl_step mc_nccl_step_t;
typedef void (*mc_nccl_step_fn_t)(mc_nccl_step_t *s);

enum { MC_STEP_RUNNING = 0, MC_STEP_DONE, MC_STEP_ABANDONED };

/* One setup step.  Inputs are set before mc_nccl_step_run; outputs are readable only when it
   returned SUCCESS (the helper finished).  Fields used depend on the step. */
struct mc_nccl_step {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state;                 /* MC_STEP_*: written under mu with atomic stores */
  int refs;                  /* caller and helper: the last one frees */
  mc_nccl_step_fn_t body;    /* on the helper thread, device already set */
  mc_nccl_step_fn_t cleanup; /* on the helper, when the caller gave up: frees what s holds */
  int device;
  /* init (nccl_comm.c) */
  int nranks, rank, max_ctas;
  ncclUniqueId id;
  cudaStream_t stream;  /* out: private stream of the warm-up */
  void *scratch;        /* out: warm-up buffer (stream-ordered allocation on stream) */
  size_t scratch_bytes; /* in */
  size_t free0;         /* out: cudaMemGetInfo free before init */
  uint64_t rss0;        /* out: resident set before init */
  ncclComm_t nc;     /* out */
  ncclResult_t nr;   /* out: the failing NCCL call's result, ncclSuccess when all went well */
  cudaError_t ce;    /* out: the failing CUDA call's result */
  const char *where; /* out: which call failed */
  char last[256];    /* out: ncclGetLastError at the failure */
};

/* A step with refs = 1 (the caller's); NULL when out of memory. */
mc_nccl_step_t *mc_nccl_step_new(mc_nccl_step_fn_t body, mc_nccl_step_fn_t cleanup, int device);
/* Runs s->body on a detached helper thread and waits until it ends, a member on this host dies,
   or deadline_ms.  SUCCESS: the body ended (check s->nr, s->ce).  Otherwise p is marked failed
   with the reason (p->nc set to NULL: if it was in s, the helper owns it now) and the code is
   returned; s's resources then belong to the helper.  With p->mu held.  Either way the caller
   still calls mc_nccl_step_release(s). */
moecomm_result_t mc_nccl_step_run(mc_nccl_comm_t *p, mc_nccl_step_t *s, const char *what,
                                  int64_t deadline_ms);
void mc_nccl_step_release(mc_nccl_step_t *s);
/* In a body: records which call failed and NCCL's last error. */
void mc_nccl_step_fail(mc_nccl_step_t *s, const char *where, ncclComm_t nc);

/* ---- nccl_watch.c ---- */

/* Maps an NCCL result to a moecomm code (ncclRemoteError -> PEER, ...). */
moecomm_result_t mc_nccl_code(ncclResult_t r);

/* "; rank 1 of this host has exited" about dead members of comm, or "" (always terminated). */
void mc_nccl_dead_ranks(const mc_comm_t *comm, char *buf, size_t size);

/* With p->mu held: marks the comm failed with this message and returns the communicator the
   caller must abort after unlocking (NULL when it was already failed). */
ncclComm_t mc_nccl_fail_locked(mc_nccl_comm_t *p, moecomm_result_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Aborts a communicator taken by mc_nccl_fail_locked (never hangs on dead peers). */
void mc_nccl_abort(ncclComm_t nc);

moecomm_result_t mc_nccl_watch_start(mc_nccl_comm_t *p);
void mc_nccl_watch_stop(mc_nccl_comm_t *p);

#endif
