/* SPDX-License-Identifier: Apache-2.0 */
/* reduce_scatter.c - reduce_scatter on the custom backend, for deterministic mode only: the
 * routing policy sends it nothing else, since NCCL's reduce-scatter moves half the bytes but its
 * result depends on the size (plugin/route.c, rule 10).
 *
 * Member q's block of the result is the all-reduce of every member's block q, so the call is one
 * all-reduce per block, in member order on every member, each in pieces of c->chunk elements
 * through the staged kernels (nothing to register inside a capture): the pieces of my own block
 * go to recv, the others' to the scratch, which nobody reads.  Every element gets the bits of the
 * all-reduce rule (kernels/mc_kernels.h), the same as shm's reduce_scatter, whatever the sizes.
 * It costs an all-reduce of the whole send buffer, about twice the bytes of a reduce-scatter.
 * In place (recv == send + rank * count) works: recv is written only by the all-reduce of my own
 * block, which is then in place itself (in == out, which the kernels allow). */
#include "reduce_scatter.h"

#include "../../util.h"
#include "launch.h"
#include "status.h"

moecomm_result_t mc_custom_reduce_scatter(mc_comm_t *comm, const mc_coll_t *c) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  const size_t es = mc_dtype_size(c->dtype);
  if (mc_custom_failed(p)) return mc_custom_check_dead(p);
  if (p->scratch == NULL || c->chunk == 0 || c->chunk > MC_CUSTOM_SCRATCH_BYTES / es)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                      "reduce_scatter on %s reached the custom backend outside deterministic "
                      "mode (scratch %s, pieces of %zu elements)",
                      comm->label, p->scratch != NULL ? "present" : "absent", c->chunk);
  for (int q = 0; q < comm->size; q++) {
    const char *block = (const char *)c->send + (size_t)q * c->count * es;
    for (size_t off = 0; off < c->count; off += c->chunk) {
      void *out = q == comm->rank ? (char *)c->recv + off * es : (void *)p->scratch;
      moecomm_result_t r =
          mc_custom_launch(p, c, block + off * es, out, MC_MIN(c->chunk, c->count - off), 1);
      if (r != MOECOMM_SUCCESS) return r;
    }
  }
  return MOECOMM_SUCCESS;
}
