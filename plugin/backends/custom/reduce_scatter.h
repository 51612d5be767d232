/* SPDX-License-Identifier: Apache-2.0 */
/* reduce_scatter.h - reduce_scatter on the custom backend, deterministic mode only
 * (reduce_scatter.c). */
#ifndef MC_CUSTOM_REDUCE_SCATTER_H_
#define MC_CUSTOM_REDUCE_SCATTER_H_

#include "custom_priv.h"

/* The routing policy set c->algo and c->chunk (elements per launch, within the scratch). */
moecomm_result_t mc_custom_reduce_scatter(mc_comm_t *comm, const mc_coll_t *c);

#endif
