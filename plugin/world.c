/* SPDX-License-Identifier: Apache-2.0 */
/* world.c - liveness and placement of the world's ranks (world.h). */
#include "world.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int mc_world_same_host(const mc_world_t *w, int r) {
  if (w == NULL || w->host_hash == NULL || r < 0 || r >= w->size) return 0;
  return w->host_hash[r] == w->host_hash[w->rank];
}

int mc_world_alive(const mc_world_t *w, int r) {
  if (w == NULL || w->pids == NULL || r < 0 || r >= w->size) return 1;
  if (!mc_world_same_host(w, r)) return 1;
  /* EPERM: the process exists but belongs to another user. */
  return kill(w->pids[r], 0) == 0 || errno == EPERM;
}

void mc_world_free(mc_world_t *w) {
  free(w->host_hash);
  free(w->pids);
  w->host_hash = NULL;
  w->pids = NULL;
}
