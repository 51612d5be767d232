/* SPDX-License-Identifier: Apache-2.0 */
/* rmsnorm.h - all_reduce_rmsnorm on the custom backend: the fused kernels (rmsnorm.c). */
#ifndef MC_CUSTOM_RMSNORM_H_
#define MC_CUSTOM_RMSNORM_H_

#include "custom_priv.h"

/* c->norm's operands through the fused kernel c->algo (MC_KERN_LL, MC_KERN_ONESHOT_PUSH or
   MC_KERN_TWOSHOT_PUSH), which the routing policy checked they fit (plugin/route.c, rule 12). */
moecomm_result_t mc_custom_rmsnorm(mc_comm_t *comm, const mc_coll_t *c);

#endif
