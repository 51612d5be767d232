/* SPDX-License-Identifier: Apache-2.0 */
/* groups.h - the plugin's groups as the shim reads them, and --print-groups: every rank's group
 * rank lists, gathered to rank 0 and printed. */
#ifndef SHIM_GROUPS_H_
#define SHIM_GROUPS_H_

#include <stddef.h>

#include "../abi/moecomm.h"
#include "lib/memory.h"

/* A world all-gather (the host's, or one built on the plugin's WORLD group). */
typedef moecomm_host_allgather_fn_t shim_exchange_fn_t;

/* Collective over the world (every rank calls it, even after a local failure, so nobody waits
   forever).  Rank 0 prints each kind's distinct groups on stdout, e.g. "MOE_EP   [0,4] [1,5]",
   with the backend each kind uses.  Returns 0 when every rank's lists were consistent;
   otherwise -1 with err set (rank 0: the inconsistency; elsewhere: the local failure). */
int shim_groups_print(const moecomm_api_t *api, moecomm_context_t *ctx, int rank, int world,
                      shim_exchange_fn_t xfn, void *xarg, char *err, size_t errlen);

#endif
