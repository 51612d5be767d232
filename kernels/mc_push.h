/* SPDX-License-Identifier: Apache-2.0 */
/* mc_push.h - launcher of the barrier-free push all-reduce kernels (kernels/push.cu), called by
 * mc_kern_all_reduce for MC_KERN_TWOSHOT_PUSH and MC_KERN_ONESHOT_PUSH. */
#ifndef MC_PUSH_H_
#define MC_PUSH_H_

#include "kernels/mc_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Enqueues a push all-reduce (args->algo one of the three); a cudaError_t, 0 on success. */
int mc_kern_push_all_reduce(const mc_kern_ar_t *args, void *stream);

#ifdef __cplusplus
}
#endif

#endif
