/* comm.h - the launch path of a collective (comm.c). */
#ifndef MC_COMM_H_
#define MC_COMM_H_

#include "backend.h"

/* Runs one validated collective on group: capture checks, size-1 copy, lazy creation, routing. */
moecomm_result_t mc_group_collective(mc_group_t *group, mc_coll_t *coll);

#endif
