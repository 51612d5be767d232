/* SPDX-License-Identifier: Apache-2.0 */
/* shm.c - the shm backend: collectives between CPU processes of one host over shared memory.
 *
 * Every collective streams its data through the comm's fixed segment in uses of at most one
 * buffer per rank (layout and the double-buffering argument: shm.h).
 *
 * all_reduce, per use: each rank copies into its buffer the parts of its input the other ranks
 * will reduce (everything but its own slice); barrier; rank r reduces slice r over ranks
 * 0, 1, ..., n-1 in that order (its own input read in place) and stores the result both into its
 * buffer and its output; barrier; each rank copies the other slices' results out.  So every
 * element is computed once, by one rank, in one order: every rank gets the same bits.
 * reduce_scatter is the first half (results go straight to the output); all_gather and broadcast
 * are copy in, barrier, copy out; so are all_to_all(_v) (a2a.c).  send/recv involve two members
 * only and have channels of their own (p2p.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../log.h"
#include "../../util.h"
#include "shm.h"

#include "a2a.h"
#include "copy.h"
#include "p2p.h"
#include "moe.h"
#include "reduce.h"
#include "segment.h"
#include "sync.h"

#define MC_SHM_SEG_TARGET (8u << 20) /* both buffers of every rank together, when it fits... */
#ifndef MC_SHM_SLOT_MAX
#define MC_SHM_SLOT_MAX (1u << 20) /* ...in buffers of at most 1 MiB */
#endif
#ifndef MC_SHM_SLOT_MIN
#define MC_SHM_SLOT_MIN (64u << 10)
#endif

/* Buffer size per rank: the segment stays near MC_SHM_SEG_TARGET whatever the group size, but
   never below MC_SHM_SLOT_MIN nor below 1 KiB per rank (reduce_scatter splits a buffer n ways);
   whole pages. */
static size_t mc_shm_slot_bytes(int size) {
  size_t slot = MC_SHM_SEG_TARGET / (2u * (size_t)size);
  if (slot > MC_SHM_SLOT_MAX) slot = MC_SHM_SLOT_MAX;
  if (slot < MC_SHM_SLOT_MIN) slot = MC_SHM_SLOT_MIN;
  if (slot < (size_t)size * 1024u) slot = (size_t)size * 1024u;
  return (slot + MC_SHM_PAGE - 1) / MC_SHM_PAGE * MC_SHM_PAGE;
}

/* ---- ops table entries ---- */

static moecomm_result_t mc_shm_probe(const mc_config_t *cfg, int device, mc_err_t *err) {
  if (device != MOECOMM_DEVICE_CPU)
    return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE,
                      "shm backend serves CPU contexts (host buffers) only; this context uses "
                      "GPU %d",
                      device);
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_shm_comm_init(mc_comm_t *comm) {
  if (!comm->same_host)
    return mc_err_set(comm->err, MOECOMM_ERR_UNAVAILABLE,
                      "shm backend: the ranks of %s are not all on one host; use "
                      "MOECOMM_BACKEND=nccl, or check MOECOMM_HOST_ID",
                      comm->label);
  mc_shm_t *shm = calloc(1, sizeof *shm);
  const void **in = calloc((size_t)comm->size, sizeof *in);
  if (shm == NULL || in == NULL) {
    free(shm);
    free(in);
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "shm: out of memory setting up %s",
                      comm->label);
  }
  moecomm_result_t res = mc_shm_segment_attach(comm, mc_shm_slot_bytes(comm->size), &shm->seg);
  if (res != MOECOMM_SUCCESS) {
    free(in);
    free(shm);
    return res;
  }
  unsigned char *base = shm->seg.base;
  shm->comm = comm;
  shm->hdr = (mc_shm_hdr_t *)base;
  shm->ctl = (mc_shm_ctl_t *)(base + mc_shm_ctl_offset());
  shm->notes = (char *)(base + mc_shm_notes_offset(comm->size));
  shm->slots = base + mc_shm_slots_offset(comm->size);
  shm->slot_bytes = (size_t)shm->hdr->slot_bytes;
  shm->in = in;
  mc_shm_wait_policy(comm, &shm->spin_ns, &shm->yields);
  comm->be[MOECOMM_BACKEND_SHM].priv = shm;
  comm->be[MOECOMM_BACKEND_SHM].host_bytes = shm->seg.bytes;
  return MOECOMM_SUCCESS;
}

static void mc_shm_comm_fini(mc_comm_t *comm) {
  mc_shm_t *shm = comm->be[MOECOMM_BACKEND_SHM].priv;
  if (shm == NULL) return;
  mc_shm_p2p_fini(shm);
  mc_shm_segment_detach(&shm->seg);
  free(shm->in);
  free(shm);
  comm->be[MOECOMM_BACKEND_SHM].priv = NULL;
  comm->be[MOECOMM_BACKEND_SHM].host_bytes = 0;
}

/* ---- the descriptor check: every member must be running the same collective ---- */

static uint64_t mc_shm_desc(const mc_coll_t *c) {
  int reduces = c->kind == MC_COLL_ALL_REDUCE || c->kind == MC_COLL_REDUCE_SCATTER;
  uint64_t d = (uint64_t)c->kind & 0xfu;
  d |= ((uint64_t)c->dtype & 0xfu) << 4;
  d |= ((uint64_t)(reduces ? c->op : 0) & 0xfu) << 8;
  d |= ((uint64_t)(c->kind == MC_COLL_BROADCAST ? c->root : 0) & 0xfffu) << 12;
  d |= ((uint64_t)c->count & 0xffffffffffull) << 24;
  return d;
}

static int mc_shm_desc_format(uint64_t d, char *buf, size_t cap) {
  unsigned kind = (unsigned)(d & 0xfu), dtype = (unsigned)((d >> 4) & 0xfu);
  unsigned op = (unsigned)((d >> 8) & 0xfu), root = (unsigned)((d >> 12) & 0xfffu);
  unsigned long long count = (unsigned long long)(d >> 24);
  const char *dn = mc_dtype_name((moecomm_dtype_t)dtype);
  const char *kn = mc_coll_name((mc_coll_kind_t)kind);
  if (kind == MC_COLL_ALL_REDUCE || kind == MC_COLL_REDUCE_SCATTER) {
    const char *on = mc_redop_name((moecomm_redop_t)op);
    return snprintf(buf, cap, "%s of %llu %s (%s)", kn, count, dn ? dn : "?", on ? on : "?");
  }
  if (kind == MC_COLL_BROADCAST)
    return snprintf(buf, cap, "%s of %llu %s from %u", kn, count, dn ? dn : "?", root);
  if (kind == MC_COLL_ALL_TO_ALL_V) return snprintf(buf, cap, "%s of %s", kn, dn ? dn : "?");
  return snprintf(buf, cap, "%s of %llu %s", kn, count, dn ? dn : "?");
}

/* After the first barrier of an op: compare every member's descriptor with ours.  A peer is at
   most one op ahead, so it writes the other desc slot and this one is stable until we arrive at
   our next barrier. */
static moecomm_result_t mc_shm_check_desc(mc_shm_t *shm, uint64_t mine, const char *what) {
  mc_comm_t *comm = shm->comm;
  const int slot = (int)(shm->ops & 1u);
  for (int r = 0; r < comm->size; r++) {
    uint64_t d = atomic_load_explicit(&shm->ctl[r].desc[slot], memory_order_relaxed);
    if (d == mine) continue;
    char a[128], b[128];
    mc_shm_desc_format(mine, a, sizeof a);
    mc_shm_desc_format(d, b, sizeof b);
    moecomm_result_t res = mc_err_set(
        comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
        "shm %s on %s: ranks called different collectives (call %llu): rank %d %s, rank %d %s; "
        "every rank of a group must make the same calls in the same order",
        what, comm->label, (unsigned long long)shm->ops + 1u, (int)comm->ranks[comm->rank], a,
        (int)comm->ranks[r], b);
    mc_shm_break(shm, res);
    return res;
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_state(mc_comm_t *comm, const char *what, mc_shm_t **shm_p) {
  mc_shm_t *shm = comm->be[MOECOMM_BACKEND_SHM].priv;
  if (shm == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                      "shm %s on %s called before the communicator was set up", what, comm->label);
  if (shm->broken != MOECOMM_SUCCESS)
    return mc_err_set(comm->err, MOECOMM_ERR_STATE,
                      "shm %s on %s: the communicator is unusable after an earlier error: %s", what,
                      comm->label, shm->cause);
  *shm_p = shm;
  return MOECOMM_SUCCESS;
}

/* Common start of a collective: the comm must be healthy; publish what we are about to do. */
moecomm_result_t mc_shm_coll_begin(mc_comm_t *comm, const mc_coll_t *c, mc_shm_call_t *call_p) {
  mc_shm_t *shm;
  moecomm_result_t res = mc_shm_state(comm, mc_coll_name(c->kind), &shm);
  if (res != MOECOMM_SUCCESS) return res;
  uint64_t d = mc_shm_desc(c);
  atomic_store_explicit(&shm->ctl[comm->rank].desc[shm->ops & 1u], d, memory_order_relaxed);
  call_p->shm = shm;
  call_p->desc = d;
  call_p->what = mc_coll_name(c->kind);
  call_p->first = 1;
  return MOECOMM_SUCCESS;
}

/* Barrier; the first one of an op also checks the descriptors. */
moecomm_result_t mc_shm_coll_sync(mc_shm_call_t *call) {
  moecomm_result_t res = mc_shm_barrier(call->shm, call->what);
  if (res != MOECOMM_SUCCESS || !call->first) return res;
  call->first = 0;
  res = mc_shm_check_desc(call->shm, call->desc, call->what);
  call->shm->ops++;
  return res;
}

/* Slice of a use of m elements that rank r reduces: [lo, hi), cache-line aligned starts. */
static inline void mc_shm_slice(size_t m, int n, int r, size_t align, size_t *lo_p, size_t *hi_p) {
  size_t per = (m + (size_t)n - 1) / (size_t)n;
  per = (per + align - 1) / align * align;
  size_t lo = MC_MIN((size_t)r * per, m);
  *lo_p = lo;
  *hi_p = MC_MIN(lo + per, m);
}

/* ---- collectives ---- */

static moecomm_result_t mc_shm_all_reduce(mc_comm_t *comm, const mc_coll_t *c) {
  mc_shm_call_t call;
  moecomm_result_t res = mc_shm_coll_begin(comm, c, &call);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = call.shm;
  const int n = comm->size, me = comm->rank;
  const size_t es = mc_dtype_size(c->dtype);
  const size_t align = MC_SHM_ALIGN / es;
  const size_t per_use = shm->slot_bytes / es;
  const unsigned char *send = c->send;
  unsigned char *recv = c->recv;

  for (size_t off = 0; off < c->count; off += per_use) {
    const size_t m = MC_MIN(per_use, c->count - off);
    const int b = (int)(shm->uses++ & 1u);
    unsigned char *mine = mc_shm_slot(shm, me, b);
    const unsigned char *src = send + off * es;
    unsigned char *dst = recv + off * es;
    size_t lo, hi;
    mc_shm_slice(m, n, me, align, &lo, &hi);

    /* Copy in what the others reduce; our own slice is read from send directly. */
    mc_shm_copy(mine, src, lo * es);
    mc_shm_copy(mine + hi * es, src + hi * es, (m - hi) * es);
    res = mc_shm_coll_sync(&call);
    if (res != MOECOMM_SUCCESS) return res;

    if (hi > lo) {
      for (int r = 0; r < n; r++)
        shm->in[r] = r == me ? src + lo * es : mc_shm_slot(shm, r, b) + lo * es;
      mc_shm_reduce(mine + lo * es, dst + lo * es, shm->in, n, hi - lo, c->dtype, c->op);
    }
    res = mc_shm_barrier(shm, call.what);
    if (res != MOECOMM_SUCCESS) return res;

    for (int r = 0; r < n; r++) {
      if (r == me) continue;
      size_t rlo, rhi;
      mc_shm_slice(m, n, r, align, &rlo, &rhi);
      if (rhi > rlo)
        mc_shm_copy(dst + rlo * es, mc_shm_slot(shm, r, b) + rlo * es, (rhi - rlo) * es);
    }
  }
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_shm_reduce_scatter(mc_comm_t *comm, const mc_coll_t *c) {
  mc_shm_call_t call;
  moecomm_result_t res = mc_shm_coll_begin(comm, c, &call);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = call.shm;
  const int n = comm->size, me = comm->rank;
  const size_t es = mc_dtype_size(c->dtype);
  const size_t align = MC_SHM_ALIGN / es;
  /* A buffer holds n sub-blocks, one per destination rank, at this stride (elements). */
  const size_t stride = shm->slot_bytes / (size_t)n / es / align * align;
  const size_t rc = c->count;
  const unsigned char *send = c->send;
  unsigned char *recv = c->recv;

  for (size_t off = 0; off < rc; off += stride) {
    const size_t m = MC_MIN(stride, rc - off);
    const int b = (int)(shm->uses++ & 1u);
    unsigned char *mine = mc_shm_slot(shm, me, b);
    for (int r = 0; r < n; r++) {
      if (r == me) continue;
      mc_shm_copy(mine + (size_t)r * stride * es, send + ((size_t)r * rc + off) * es, m * es);
    }
    res = mc_shm_coll_sync(&call);
    if (res != MOECOMM_SUCCESS) return res;
    for (int r = 0; r < n; r++)
      shm->in[r] = r == me ? send + ((size_t)me * rc + off) * es
                           : mc_shm_slot(shm, r, b) + (size_t)me * stride * es;
    mc_shm_reduce(recv + off * es, NULL, shm->in, n, m, c->dtype, c->op);
  }
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_shm_all_gather(mc_comm_t *comm, const mc_coll_t *c) {
  mc_shm_call_t call;
  moecomm_result_t res = mc_shm_coll_begin(comm, c, &call);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = call.shm;
  const int n = comm->size, me = comm->rank;
  const size_t bytes = c->count * mc_dtype_size(c->dtype);
  const unsigned char *send = c->send;
  unsigned char *recv = c->recv;

  if (send != recv + (size_t)me * bytes) memmove(recv + (size_t)me * bytes, send, bytes);
  for (size_t off = 0; off < bytes; off += shm->slot_bytes) {
    const size_t m = MC_MIN(shm->slot_bytes, bytes - off);
    const int b = (int)(shm->uses++ & 1u);
    mc_shm_copy(mc_shm_slot(shm, me, b), send + off, m);
    res = mc_shm_coll_sync(&call);
    if (res != MOECOMM_SUCCESS) return res;
    for (int r = 0; r < n; r++)
      if (r != me) mc_shm_copy(recv + (size_t)r * bytes + off, mc_shm_slot(shm, r, b), m);
  }
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_shm_broadcast(mc_comm_t *comm, const mc_coll_t *c) {
  mc_shm_call_t call;
  moecomm_result_t res = mc_shm_coll_begin(comm, c, &call);
  if (res != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = call.shm;
  const int me = comm->rank, root = c->root;
  const size_t bytes = c->count * mc_dtype_size(c->dtype);
  const unsigned char *send = c->send; /* read on the root only */
  unsigned char *recv = c->recv;

  if (me == root && send != recv) memmove(recv, send, bytes);
  for (size_t off = 0; off < bytes; off += shm->slot_bytes) {
    const size_t m = MC_MIN(shm->slot_bytes, bytes - off);
    const int b = (int)(shm->uses++ & 1u);
    if (me == root) mc_shm_copy(mc_shm_slot(shm, root, b), send + off, m);
    res = mc_shm_coll_sync(&call);
    if (res != MOECOMM_SUCCESS) return res;
    if (me != root) mc_shm_copy(recv + off, mc_shm_slot(shm, root, b), m);
  }
  return MOECOMM_SUCCESS;
}

const mc_backend_ops_t mc_shm_ops = {
    .name = "shm",
    .id = MOECOMM_BACKEND_SHM,
    .caps = {.colls = MC_COLLS_GENERAL,
             .dtypes = MC_DTYPES_GENERAL,
             .max_ranks = 0,
             .one_host = 1,
             .gpu = 0},
    .probe = mc_shm_probe,
    .comm_init = mc_shm_comm_init,
    .comm_fini = mc_shm_comm_fini,
    .limits = NULL,
    .coll = {[MC_COLL_ALL_REDUCE] = mc_shm_all_reduce,
             [MC_COLL_ALL_GATHER] = mc_shm_all_gather,
             [MC_COLL_REDUCE_SCATTER] = mc_shm_reduce_scatter,
             [MC_COLL_BROADCAST] = mc_shm_broadcast,
             [MC_COLL_SEND] = mc_shm_send,
             [MC_COLL_RECV] = mc_shm_recv,
             [MC_COLL_ALL_TO_ALL] = mc_shm_all_to_all,
             [MC_COLL_ALL_TO_ALL_V] = mc_shm_all_to_all},
    .moe_init = mc_shm_moe_init,
    .moe_fini = mc_shm_moe_fini,
    .moe_dispatch = mc_shm_moe_dispatch,
    .moe_combine = mc_shm_moe_combine,
    .capture_begin = NULL,
    .capture_end = NULL,
};
