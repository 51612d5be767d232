/* SPDX-License-Identifier: Apache-2.0 */
/* launch.h - runs N rank processes on this host and gives them a host all-gather for bootstrap.
 *
 * shim_launch forks before anything touches CUDA, runs fn(rank) in each child, and waits.  The
 * all-gather is what an engine would pass as moecomm_context_params_t.host_allgather; it works
 * between the children of one shim_launch (process-shared memory, no busy wait).  Each rank may
 * say what it is doing (shim_launch_phase); a run the launcher kills for its timeout is reported
 * with every rank's last phase. */
#ifndef SHIM_LAUNCH_H_
#define SHIM_LAUNCH_H_

#include <stddef.h>

#include "../../abi/moecomm.h"

typedef int (*shim_rank_fn_t)(int rank, int world, void *arg); /* returns the exit status */

/* Forks `world` children, runs fn in each; kills them all after timeout_s (0: no limit).
   Returns 0 when every child exited 0; otherwise prints one line per failed rank to stderr and
   returns the number of failed ranks. */
int shim_launch(int world, shim_rank_fn_t fn, void *arg, int timeout_s);

typedef struct shim_launch_cfg {
  int timeout_s;          /* kill every rank after this long; 0: no limit */
  const char *on_timeout; /* last line of the timeout message (how to raise it); NULL: none */
  int *wait_status;       /* NULL, or `world` entries: each rank's waitpid status (-1: the rank
                             never started); written before shim_launch_ex returns */
} shim_launch_cfg_t;

/* shim_launch with a configuration.  When the timeout killed the ranks the message names the
   phase each running rank was in (shim_launch_phase) and ends with cfg->on_timeout, and
   *timed_out_p (may be NULL) is set to 1, else 0. */
int shim_launch_ex(int world, shim_rank_fn_t fn, void *arg, const shim_launch_cfg_t *cfg,
                   int *timed_out_p);

/* In a child of shim_launch: records what this rank is doing now (printf text, cut at 95
   characters), for the launcher's timeout message.  Elsewhere it does nothing.  Cheap (no lock,
   no system call): call it at every phase. */
void shim_launch_phase(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* In a child of shim_launch: the `user` pointer for shim_host_allgather. */
void *shim_launch_hub(void);

/* moecomm_host_allgather_fn_t over the children of one shim_launch: blocks until every rank has
   contributed (or a rank died, or MOECOMM_TIMEOUT_MS passed: returns non-zero).  bytes must be
   the same on every rank and at most 1 MiB. */
int shim_host_allgather(void *user, const void *send, void *recv, size_t bytes);

/* Context parameters for a rank of shim_launch: the topology, the device and the launcher's
   host all-gather (for a world of one a plain copy, usable in any process). */
moecomm_context_params_t shim_launch_params(const moecomm_topology_t *topo, int device);

/* A topology of `world` ranks with tensor parallelism tp, seen from `rank`; every other size 0
   (the plugin's default). */
moecomm_topology_t shim_launch_topology(int world, int rank, int tp);

/* Rank and world from MOECOMM_RANK / MOECOMM_WORLD_SIZE (external launchers): 0 when both are set
   and valid; 1 when neither is set; -1 after a message on stderr otherwise. */
int shim_env_rank(int *rank_p, int *world_p);

/* Environment changes from a NULL-terminated list (NULL: none): "NAME=value" sets NAME, "NAME"
   unsets it (e.g. a rank's backend settings before it creates its context). */
void shim_env_apply(const char *const *env);

#endif
