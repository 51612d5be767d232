/* SPDX-License-Identifier: Apache-2.0 */
/* shm.h - the shm backend: collectives between the CPU processes of one host over shared memory
 * (shm.c; the segment's layout and the double-buffering argument: layout.h). */
#ifndef MC_SHM_H_
#define MC_SHM_H_

#include "../../backend.h"
#include "layout.h"

extern const mc_backend_ops_t mc_shm_ops;

/* The comm's shm state, when it is set up and not broken by an earlier failure (else an error
   naming `what`).  *shm_p written on success. */
moecomm_result_t mc_shm_state(mc_comm_t *comm, const char *what, mc_shm_t **shm_p);

/* One collective through the segment, from begin to its last barrier. */
typedef struct mc_shm_call {
  mc_shm_t *shm;
  uint64_t desc;    /* what this member published (kind, count, dtype, op, root) */
  const char *what; /* the collective's name, for errors */
  int first;        /* no barrier passed yet: the next one also compares descriptors */
} mc_shm_call_t;

/* Start of a collective through the segment (every member takes part): the comm must be set up
   and healthy; publishes the call's descriptor.  *call_p written on success. */
moecomm_result_t mc_shm_coll_begin(mc_comm_t *comm, const mc_coll_t *c, mc_shm_call_t *call_p);

/* The call's next barrier; its first one also checks that every member published the same
   descriptor. */
moecomm_result_t mc_shm_coll_sync(mc_shm_call_t *call);

#endif
