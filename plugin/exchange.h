/* SPDX-License-Identifier: Apache-2.0 */
/* exchange.h - all-gathers among a set of ranks through the rendezvous store.
 *
 * Every exchange after bootstrap (NCCL ids, IPC handles, capture checks, agreements) is an
 * all-gather among the members of one set: each member sets "<ns>/<scope>/<seq>/<rank>" and reads
 * the others' keys.  The sequence number of a scope advances identically on every member, so the
 * n-th exchange of a scope has the same key everywhere and two exchanges never mix.  This module
 * knows nothing of contexts: it works on a narrow endpoint (the store connection, the context id,
 * the timeout, the world's liveness) and a member list. */
#ifndef MC_EXCHANGE_H_
#define MC_EXCHANGE_H_

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "store_client.h"
#include "world.h"

/* Largest payload one member may contribute to one exchange. */
#define MC_XCHG_MAX_BYTES (16u << 20)

/* Where exchanges go: one per context. */
typedef struct mc_xchg {
  mc_store_t *store;       /* this rank's connection to rank 0's store */
  char ns[48];             /* first part of every key: the context id ("" during bootstrap) */
  int timeout_ms;          /* how long any exchange may wait for a member */
  const mc_world_t *world; /* names a dead peer in a timeout; NULL before bootstrap knows it */
} mc_xchg_t;

/* The members of one exchange scope (the world, or one communicator). */
typedef struct mc_xchg_set {
  const mc_xchg_t *x;
  const char *scope;    /* "world", a communicator's key, "boot3" ... */
  uint64_t *seq;        /* exchanges done in this scope; each exchange advances it */
  const int32_t *ranks; /* members' world ranks, in member order */
  int n;                /* members */
  int me;               /* this rank's index in ranks */
  const char *label;    /* for messages: "TP (ranks 0,1)"; NULL for the world */
} mc_xchg_set_t;

/* All-gather of `bytes` from every member: recv gets n * bytes in member order.  `what` names the
   exchange in errors; a timeout names every member that never arrived (and whether a process of
   this host has exited); a member that sent another size is MOECOMM_ERR_PEER. */
moecomm_result_t mc_xchg_allgather(const mc_xchg_set_t *set, const char *what, const void *send,
                                   void *recv, size_t bytes, mc_err_t *err);

#endif
