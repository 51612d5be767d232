/* SPDX-License-Identifier: Apache-2.0 */
/* a2a.c - all_to_all and all_to_all_v of the shm backend, through the comm's segment.
 *
 * Every member takes part, with the barrier discipline of the other collectives (layout.h).  Per
 * use, each rank copies into its buffer one piece of its block for every peer, peer p's piece at
 * p * stride, passes a barrier, and copies out the piece each peer left for it.  Every rank makes
 * the same number of uses: as many as the largest block between two different members needs.
 *
 * all_to_all_v: the first use also carries each rank's send and recv counts in front of the
 * pieces.  After its barrier every rank checks every pair (send_counts[q] on rank p equals
 * recv_counts[p] on rank q) and counts the uses from the same numbers, so all reach the same
 * verdict: a mismatch is the same error on every rank, before anything reaches recv, and the
 * comm stays in step and usable.  A rank's own block is copied directly, after that check. */
#include <stdio.h>
#include <string.h>

#include "../../util.h"
#include "a2a.h"

#include "copy.h"
#include "shm.h"

/* Use k's pieces, into this rank's buffer b (in = 1) or out of the peers' buffers b: `head`
   bytes of counts, then one piece of at most `stride` bytes per member. */
static void a2a_pieces(mc_shm_t *shm, const mc_coll_t *c, int b, size_t k, size_t head,
                       size_t stride, int in) {
  const int n = shm->comm->size, me = shm->comm->rank;
  const size_t es = mc_dtype_size(c->dtype);
  for (int p = 0; p < n; p++) {
    size_t displ, count;
    if (p == me) continue;
    mc_coll_block(c, in, p, &displ, &count);
    const size_t bytes = count * es, off = k * stride;
    if (off >= bytes) continue;
    const size_t len = MC_MIN(stride, bytes - off);
    if (in)
      mc_shm_copy(mc_shm_slot(shm, me, b) + head + (size_t)p * stride,
                  (const unsigned char *)c->send + displ * es + off, len);
    else
      mc_shm_copy((unsigned char *)c->recv + displ * es + off,
                  mc_shm_slot(shm, p, b) + head + (size_t)me * stride, len);
  }
}

/* all_to_all_v's first use: this rank's send counts, then its recv counts. */
static void a2a_put_counts(unsigned char *slot, const mc_coll_t *c, int n) {
  uint64_t *w = (uint64_t *)slot;
  for (int p = 0; p < n; p++) {
    w[p] = c->send_counts[p];
    w[n + p] = c->recv_counts[p];
  }
}

/* After the first barrier of all_to_all_v: every pair's counts agree, and the uses the largest
   block between two members needs (*uses_p).  Every member reads the same counts. */
static moecomm_result_t a2a_check_counts(mc_shm_t *shm, int b, size_t es, size_t stride,
                                         size_t *uses_p) {
  const mc_comm_t *comm = shm->comm;
  const int n = comm->size;
  uint64_t most = 0, bad_sent = 0, bad_want = 0;
  int bad = 0, bad_s = 0, bad_d = 0;
  for (int s = 0; s < n; s++) {
    const uint64_t *sc = (const uint64_t *)mc_shm_slot(shm, s, b);
    for (int d = 0; d < n; d++) {
      const uint64_t sent = sc[d], want = ((const uint64_t *)mc_shm_slot(shm, d, b))[n + s];
      if (sent != want && bad++ == 0) {
        bad_s = s;
        bad_d = d;
        bad_sent = sent;
        bad_want = want;
      }
      if (s != d && sent > most) most = sent;
    }
  }
  if (bad > 0)
    return mc_err_set(comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "shm all_to_all_v on %s: rank %d sends %llu elements to rank %d, which "
                      "expects %llu from it (%d pair%s disagree%s); send_counts[q] on rank p must "
                      "equal recv_counts[p] on rank q",
                      comm->label, (int)comm->ranks[bad_s], (unsigned long long)bad_sent,
                      (int)comm->ranks[bad_d], (unsigned long long)bad_want, bad,
                      bad > 1 ? "s" : "", bad > 1 ? "" : "s");
  /* each count fits its own rank's buffers (checked there), so the product does not overflow */
  *uses_p = most == 0 ? 1 : ((size_t)most * es + stride - 1) / stride;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_all_to_all(mc_comm_t *comm, const mc_coll_t *c) {
  mc_shm_call_t call;
  moecomm_result_t res = mc_shm_coll_begin(comm, c, &call);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = call.shm;
  const int n = comm->size, me = comm->rank, v = c->kind == MC_COLL_ALL_TO_ALL_V;
  const size_t es = mc_dtype_size(c->dtype);
  const size_t head =
      v ? (2u * (size_t)n * sizeof(uint64_t) + MC_SHM_ALIGN - 1) / MC_SHM_ALIGN * MC_SHM_ALIGN : 0;
  /* slot_bytes >= 1 KiB per member (shm.c), so the stride is never 0 */
  const size_t stride = (shm->slot_bytes - head) / (size_t)n / MC_SHM_ALIGN * MC_SHM_ALIGN;
  size_t uses = v ? 1 : (c->count * es + stride - 1) / stride; /* v: known after the first use */

  for (size_t k = 0; k < uses; k++) {
    const int b = (int)(shm->uses++ & 1u);
    if (v && k == 0) a2a_put_counts(mc_shm_slot(shm, me, b), c, n);
    a2a_pieces(shm, c, b, k, head, stride, 1);
    res = mc_shm_coll_sync(&call);
    if (res == MOECOMM_SUCCESS && v && k == 0) res = a2a_check_counts(shm, b, es, stride, &uses);
    if (res != MOECOMM_SUCCESS) return res;
    a2a_pieces(shm, c, b, k, head, stride, 0);
  }
  size_t sd, sn, rd, rn;
  mc_coll_block(c, 1, me, &sd, &sn);
  mc_coll_block(c, 0, me, &rd, &rn);
  if (rn > 0)
    memmove((unsigned char *)c->recv + rd * es, (const unsigned char *)c->send + sd * es, rn * es);
  return MOECOMM_SUCCESS;
}
