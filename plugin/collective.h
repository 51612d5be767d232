/* SPDX-License-Identifier: Apache-2.0 */
/* collective.h - the launch path of one collective on a group. */
#ifndef MC_COLLECTIVE_H_
#define MC_COLLECTIVE_H_

#include "backend.h"
#include "context.h"

/* Runs one validated collective on group: capture checks, routing (route.h), then the backend
   (or a local copy on a group of one rank).  Counts the call per serving backend. */
moecomm_result_t mc_group_collective(mc_group_t *group, mc_coll_t *coll);

#endif
