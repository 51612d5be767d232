/* SPDX-License-Identifier: Apache-2.0 */
/* world.h - the picture of the world a context runs in: which host each rank is on, its process,
 * and whether a rank of this host is still alive.  Filled by bootstrap (bootstrap.h), read by
 * exchanges and backends to name a peer that died instead of waiting for it. */
#ifndef MC_WORLD_H_
#define MC_WORLD_H_

#include <stdint.h>

typedef struct mc_world {
  int size;            /* ranks in the world */
  int rank;            /* this process's rank */
  int local_rank;      /* index of this rank among the ranks of its host */
  int local_size;      /* ranks on this host */
  int num_hosts;       /* distinct hosts */
  uint64_t *host_hash; /* per rank: hash of its host identity */
  int32_t *pids;       /* per rank: process id (meaningful on this host only) */
} mc_world_t;

/* 1 when world rank r is alive as far as this process can tell: a rank of another host always
   is; a rank of this host is when its process exists. */
int mc_world_alive(const mc_world_t *w, int r);

/* 1 when world rank r is on this rank's host. */
int mc_world_same_host(const mc_world_t *w, int r);

/* Frees the arrays (the struct itself is the caller's). */
void mc_world_free(mc_world_t *w);

#endif
