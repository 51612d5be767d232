/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_priv.h - the state the NCCL backend keeps per communicator, shared by its files:
 *
 * nccl.c         ops table, probe, the collectives (hot path)
 * nccl_comm.c    comm_init / comm_fini: unique id, config (default or lean, as the routing
 *                policy hints), init and warm-up with a timeout, memory measurement
 * nccl_step.c    setup steps that wait for peers, on a helper thread the caller can give up on
 * nccl_watch.c   failure handling: marking a comm failed, aborting it, the watchdog thread
 * nccl_p2p.c     send, recv and the all-to-alls; connecting pairs on first use
 *
 * Locking: every NCCL call on `nc` is made with `mu` held, so that the watchdog can take the
 * communicator away (mark it failed, then abort it outside the lock) without racing a launch. */
#ifndef MC_NCCL_PRIV_H_
#define MC_NCCL_PRIV_H_

#include <pthread.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "../../backend.h"
#include "nccl_lib.h"

/* How often the watchdog looks at the communicator and its peers. */
#define MC_NCCL_WATCH_MS 50

typedef struct mc_nccl_comm {
  mc_comm_t *comm;    /* back pointer: label, ranks, context */
  ncclComm_t nc;      /* NULL once failed (aborted, or handed to an abandoned setup step) */
  pthread_mutex_t mu; /* held around every NCCL call on nc */
  int failed;         /* under mu: the comm is unusable; fail_msg says why */
  moecomm_result_t fail_code;
  char fail_msg[640];
  int lean;                     /* created with the lean config */
  int max_ctas;                 /* config.maxCTAs used, 0 = NCCL's default */
  unsigned char *p2p_connected; /* nccl_p2p.c: per member, connected for send/recv (under mu) */

  /* watchdog (nccl_watch.c) */
  pthread_t wd_thread;
  pthread_cond_t wd_cond;
  int wd_started;
  int wd_stop; /* under mu */
} mc_nccl_comm_t;

#endif
