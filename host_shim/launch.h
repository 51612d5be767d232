/* launch.h - runs N rank processes on this host and gives them a host all-gather for bootstrap.
 *
 * shim_launch forks before anything touches CUDA, runs fn(rank) in each child, and waits.  The
 * all-gather is what an engine would pass as moecomm_context_params_t.host_allgather; it works
 * between the children of one shim_launch (process-shared memory, no busy wait). */
#ifndef SHIM_LAUNCH_H_
#define SHIM_LAUNCH_H_

#include <stddef.h>

typedef int (*shim_rank_fn_t)(int rank, int world, void *arg); /* returns the exit status */

/* Forks `world` children, runs fn in each; kills them all after timeout_s (0: no limit).
   Returns 0 when every child exited 0; otherwise prints one line per failed rank to stderr and
   returns the number of failed ranks. */
int shim_launch(int world, shim_rank_fn_t fn, void *arg, int timeout_s);

/* In a child of shim_launch: the `user` pointer for shim_host_allgather. */
void *shim_launch_hub(void);

/* moecomm_host_allgather_fn_t over the children of one shim_launch: blocks until every rank has
   contributed (or a rank died, or MOECOMM_TIMEOUT_MS passed: returns non-zero).  bytes must be
   the same on every rank and at most 1 MiB. */
int shim_host_allgather(void *user, const void *send, void *recv, size_t bytes);

/* Rank and world from MOECOMM_RANK / MOECOMM_WORLD_SIZE (external launchers); 0 if both set. */
int shim_env_rank(int *rank_p, int *world_p);

#endif
