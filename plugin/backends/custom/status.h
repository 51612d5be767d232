/* SPDX-License-Identifier: Apache-2.0 */
/* status.h - the sticky failure of a custom communicator (status.c). */
#ifndef MC_CUSTOM_STATUS_H_
#define MC_CUSTOM_STATUS_H_

#include "custom_priv.h"

/* Whether p failed: a failed launch, or a kernel's error in host-mapped memory (one read). */
static inline int mc_custom_failed(const mc_custom_comm_t *p) {
  return p->dead != MOECOMM_SUCCESS || ((const volatile mc_kern_err_t *)p->err_host)->code != 0;
}

/* The sticky failure of p (a kernel's timeout, a failed launch) as this call's error. */
moecomm_result_t mc_custom_check_dead(mc_custom_comm_t *p);

/* A launch of `what` (algorithm algo, bytes of data) returned cudaError_t cuda_err: the members'
   call counters are out of step now, so p is dead from here on; returns the error. */
moecomm_result_t mc_custom_launch_failed(mc_custom_comm_t *p, const char *what, int algo,
                                         size_t bytes, int cuda_err);

#endif
