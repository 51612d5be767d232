/* SPDX-License-Identifier: Apache-2.0 */
/* bootstrap.h - how the ranks of a context find each other (context creation).
 *
 * Rank 0 serves a rendezvous store; every rank connects as a client.  The store's address reaches
 * the ranks through the host's all-gather callback (rank 0 listens on an ephemeral port) or through
 * MOECOMM_STORE=tcp://HOST:PORT (rank 0 listens there).  Every rank then publishes a record (pid,
 * host, topology) so that each knows the world's layout and checks that all ranks passed the same
 * topology.  The result is the exchange endpoint every later exchange uses (exchange.h).  This
 * module knows nothing of contexts, groups or backends. */
#ifndef MC_BOOTSTRAP_H_
#define MC_BOOTSTRAP_H_

#include "config.h"
#include "exchange.h"
#include "topo.h"
#include "world.h"

typedef struct mc_boot {
  mc_world_t world;   /* hosts and processes of every rank */
  mc_xchg_t xchg;     /* store connection, context id, timeout; xchg.world points to world */
  void *server;       /* rank 0: the store server it runs (shared by contexts on MOECOMM_STORE) */
  uint64_t world_seq; /* world exchanges done (mc_boot_world_set) */
} mc_boot_t;

/* Collective over the world: finds rank 0's store (host_ag, or MOECOMM_STORE when host_ag is
   NULL), connects, and learns the world's layout; checks that every rank passed the same
   topology.  uses_gpu is compared too (a mix of CPU and GPU ranks is a configuration error).
   *boot_p is written on success; on failure nothing is left running. */
moecomm_result_t mc_boot_init(const mc_topo_t *topo, const mc_config_t *cfg, int uses_gpu,
                              moecomm_host_allgather_fn_t host_ag, void *host_user,
                              mc_boot_t *boot_p, mc_err_t *err);

/* Local: closes the connection; rank 0 keeps serving until the other ranks have left or
   linger_ms passed (they may still be reading the keys of their last exchange). */
void mc_boot_fini(mc_boot_t *boot, int linger_ms);

/* The world as an exchange set (ranks: 0..size-1, which the caller provides with room for
   world.size entries). */
void mc_boot_world_set(mc_boot_t *boot, int32_t *ranks, mc_xchg_set_t *set_p);

#endif
