/* SPDX-License-Identifier: Apache-2.0 */
/* launch.c - one custom all-reduce kernel launch (launch.h). */
#include "launch.h"

#include "../../util.h"
#include "capture.h"
#include "status.h"

moecomm_result_t mc_custom_launch(mc_custom_comm_t *p, const mc_coll_t *c, const void *in,
                                  void *out, size_t count, int staged) {
  mc_kern_ar_t a = p->proto;
  moecomm_result_t r;
  int e;
  a.algo = c->algo; /* the routing policy's choice (plugin/route.c) */
  a.dtype = (int)c->dtype;
  a.op = (int)c->op;
  a.count = count;
  a.in = in;
  a.out = out;
  a.table = NULL;
  /* Captured two-shot reads and writes the callers' buffers: capture_end registers them. */
  if (a.algo == MC_KERN_TWOSHOT && c->capturing && !staged &&
      (r = mc_custom_capture_record(p, in, out, &a.table)) != MOECOMM_SUCCESS)
    return r;
  e = mc_kern_all_reduce(&a, c->stream);
  if (e != 0)
    return mc_custom_launch_failed(p, "custom all-reduce", a.algo, count * mc_dtype_size(c->dtype),
                                   e);
  return MOECOMM_SUCCESS;
}
