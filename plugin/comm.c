/* SPDX-License-Identifier: Apache-2.0 */
/* comm.c - the communicator object and its exchanges (comm.h). */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mc_comm_t *mc_comm_new(const int32_t *ranks, int n, int my_rank, const char *key,
                       const char *label) {
  mc_comm_t *comm = calloc(1, sizeof(*comm));
  if (comm == NULL) return NULL;
  comm->ranks = malloc(sizeof(int32_t) * (size_t)n);
  if (comm->ranks == NULL) {
    free(comm);
    return NULL;
  }
  memcpy(comm->ranks, ranks, sizeof(int32_t) * (size_t)n);
  comm->size = n;
  for (int i = 0; i < n; i++)
    if (ranks[i] == my_rank) comm->rank = i;
  snprintf(comm->key, sizeof(comm->key), "%s", key);
  snprintf(comm->label, sizeof(comm->label), "%s", label);
  return comm;
}

void mc_comm_free(mc_comm_t *comm) {
  if (comm == NULL) return;
  free(comm->ranks);
  free(comm);
}

static void mc_comm_set(mc_comm_t *comm, mc_xchg_set_t *set) {
  memset(set, 0, sizeof(*set));
  set->x = comm->xchg;
  set->scope = comm->key;
  set->seq = &comm->seq;
  set->ranks = comm->ranks;
  set->n = comm->size;
  set->me = comm->rank;
  set->label = comm->label;
}

moecomm_result_t mc_comm_exchange(mc_comm_t *comm, const char *what, const void *send, void *recv,
                                  size_t bytes) {
  mc_xchg_set_t set;
  mc_comm_set(comm, &set);
  return mc_xchg_allgather(&set, what, send, recv, bytes, comm->err);
}

moecomm_result_t mc_comm_agree(mc_comm_t *comm, const char *what, moecomm_result_t mine,
                               const char *mine_msg, const void *payload, void *all_payload,
                               size_t payload_bytes, int *bad_p) {
  mc_xchg_set_t set;
  mc_comm_set(comm, &set);
  return mc_agree(&set, what, mine, mine_msg, payload, all_payload, payload_bytes, bad_p,
                  comm->err);
}
