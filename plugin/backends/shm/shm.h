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

/* Start of a collective through the segment (every member takes part): the comm must be set up
   and healthy; publishes the call's descriptor.  *shm_p and *desc_p written on success. */
moecomm_result_t mc_shm_coll_begin(mc_comm_t *comm, const mc_coll_t *c, mc_shm_t **shm_p,
                                   uint64_t *desc_p);

/* The next barrier of a collective; while *first is set (its first barrier) it also checks that
   every member published the same descriptor, and clears *first. */
moecomm_result_t mc_shm_coll_sync(mc_shm_t *shm, const char *what, uint64_t desc, int *first);

#endif
