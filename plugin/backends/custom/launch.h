/* SPDX-License-Identifier: Apache-2.0 */
/* launch.h - one custom all-reduce kernel launch (launch.c), for the calls built on it: the
 * all-reduce (custom.c) and reduce_scatter (reduce_scatter.c). */
#ifndef MC_CUSTOM_LAUNCH_H_
#define MC_CUSTOM_LAUNCH_H_

#include "custom_priv.h"

/* Enqueues the all-reduce of count elements in -> out with c's algorithm, dtype, op and stream.
   A captured two-shot registers (in, out) for capture_end unless staged (then it runs through
   the staging, as eagerly).  A failed launch makes p dead (status.h).  The caller checked that p
   has not failed. */
moecomm_result_t mc_custom_launch(mc_custom_comm_t *p, const mc_coll_t *c, const void *in,
                                  void *out, size_t count, int staged);

#endif
