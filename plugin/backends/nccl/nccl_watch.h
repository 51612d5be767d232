/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_watch.h - failure handling: marking a comm failed, aborting it, the watchdog
   (nccl_watch.c). */
#ifndef MC_NCCL_WATCH_H_
#define MC_NCCL_WATCH_H_

#include "nccl_priv.h"

/* Maps an NCCL result to a moecomm code (ncclRemoteError -> PEER, ...). */
moecomm_result_t mc_nccl_code(ncclResult_t r);

/* "; rank 1 of this host has exited" about dead members of comm, or "" (always terminated). */
void mc_nccl_dead_ranks(const mc_comm_t *comm, char *buf, size_t size);

/* With p->mu held: marks the comm failed with this message and returns the communicator the
   caller must abort after unlocking (NULL when it was already failed). */
ncclComm_t mc_nccl_fail_locked(mc_nccl_comm_t *p, moecomm_result_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* With p->mu held: marks p failed after NCCL answered `nr` to `what` on it (a dead member on this
   host makes it MOECOMM_ERR_PEER); returns the communicator to abort once unlocked. */
ncclComm_t mc_nccl_fail_nr(mc_nccl_comm_t *p, ncclResult_t nr, const char *what);

/* With p->mu held, before NCCL calls on p->nc: 1 when p can take them; 0 when it failed earlier
   or NCCL reports an asynchronous error on it now (which marks it failed: *victim_p is then the
   communicator to abort once unlocked). */
int mc_nccl_usable_locked(mc_nccl_comm_t *p, ncclComm_t *victim_p);

/* Ends a call: unlocks p->mu, aborts victim (may be NULL), and returns p's failure (its code,
   its message in comm->err) or MOECOMM_SUCCESS when p is healthy. */
moecomm_result_t mc_nccl_unlock(mc_nccl_comm_t *p, ncclComm_t victim);

/* Aborts a communicator taken by mc_nccl_fail_locked (never hangs on dead peers). */
void mc_nccl_abort(ncclComm_t nc);

moecomm_result_t mc_nccl_watch_start(mc_nccl_comm_t *p);
void mc_nccl_watch_stop(mc_nccl_comm_t *p);

#endif
