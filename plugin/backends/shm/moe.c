/* SPDX-License-Identifier: Apache-2.0 */
/* moe.c - expert-parallel dispatch and combine on the shm backend (moe.h).
 *
 * The semantics are the CPU reference's (plugin/ep_layout.h), called on the data itself: each
 * member publishes its routing and payload in its region of a segment of its own, and after one
 * barrier of the communicator every member computes what it receives with mc_ep_ref_dispatch
 * reading the peers' regions in place; the combine sums with mc_ep_ref_combine_token.  So the
 * results are the reference's bit for bit, and the failure handling is the collectives': the
 * barrier is the comm's (sync.h: a peer that dies or is late is named within the timeout; the
 * first rank that gives up breaks the comm on every member with its code).
 *
 * Segment (mc_shm_segment_attach; its slots area): member r's region at slots + 2 r slot_bytes:
 *   [0]         header: the pair number of the latest dispatch and combine it published, T
 *   [ids_off]   int32 [T_max][K] its routing (ids outside [-1, E) published as -1)
 *   [x_off]     [T_max][row_bytes] its payload rows;  [scales_off] fp32 [T_max][S]
 *   [cin_off]   [T_max * K][crow_bytes] combine rows, slot t*K + k, written by the owner of the
 *               expert of item (t, k)
 * Call pair i:  dispatch: publish header, ids, rows; barrier D(i); read every region.
 *               combine: write each kept row of a local expert into its source's cin slot (the
 *               row rule recomputed from the published routing); barrier C(i); sum own cin.
 * Why nothing is overwritten before it is read (a member reads only between a barrier and its
 * arrival at the next one):
 *  - ids, rows, T of s: read by q in D(i) .. C(i) (dispatch, and the combine's push); s writes
 *    them again before D(i+1), after passing C(i), i.e. after q arrived at C(i).
 *  - cin of s: written by q before C(i), read by s in C(i) .. D(i+1); q writes it again before
 *    C(i+1), after passing D(i+1), i.e. after s arrived at D(i+1).
 * What a member needs of its own items for the combine (their rows) is computed at the dispatch
 * and kept in private memory.  The header's pair numbers show that every member made the same
 * call: a member elsewhere (another call, or out of step) breaks the comm on every member. */
#include "moe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../log.h"
#include "../../util.h"
#include "layout.h"
#include "segment.h"
#include "sync.h"

#define MC_SHM_MOE_ALIGN 64
#define MC_SHM_MOE_HDR 64

typedef struct mc_shm_moe_hdr {
  uint64_t dispatch_call; /* pair number of the latest dispatch published */
  uint64_t combine_call;  /* pair number of the latest combine published */
  int64_t tokens;         /* T of the latest dispatch */
} mc_shm_moe_hdr_t;

_Static_assert(sizeof(mc_shm_moe_hdr_t) <= MC_SHM_MOE_HDR, "header fits its bytes");

/* comm->be[MOECOMM_BACKEND_SHM].moe */
typedef struct mc_shm_moe {
  mc_shm_segment_t seg;
  mc_ep_layout_t layout;
  size_t region_bytes, ids_off, x_off, scales_off, cin_off;
  uint64_t pairs;          /* dispatches done: the latest pair's number */
  mc_ep_ref_rank_t *ranks; /* [n] the members' published data, for the reference */
  int32_t *item_row;       /* [T_max * K] row of each own item of the latest dispatch */
  int64_t *totals;         /* [El] rows each local expert got before the capacity cut */
  size_t private_bytes;
  moecomm_result_t report; /* a data error of a dispatch, reported by the next combine */
  mc_err_t report_err;
} mc_shm_moe_t;

/* ---- the segment's regions ---------------------------------------------------------------- */

/* *off = end aligned, end = *off + bytes; 0 on overflow. */
static int mc_shm_moe_place(size_t *end, int64_t bytes, size_t *off_p) {
  size_t off = (*end + MC_SHM_MOE_ALIGN - 1) / MC_SHM_MOE_ALIGN * MC_SHM_MOE_ALIGN;
  if (bytes < 0 || off < *end || __builtin_add_overflow(off, (size_t)bytes, end)) return 0;
  *off_p = off;
  return 1;
}

static moecomm_result_t mc_shm_moe_regions(mc_comm_t *comm, mc_shm_moe_t *m) {
  const mc_ep_layout_t *L = &m->layout;
  const size_t page2 = 2 * (size_t)MC_SHM_PAGE;
  size_t end = MC_SHM_MOE_HDR, whole;
  int64_t cin_bytes = -1; /* stays negative on overflow, which mc_shm_moe_place refuses */
  if (__builtin_mul_overflow(L->items, L->crow_bytes, &cin_bytes)) cin_bytes = -1;
  if (!mc_shm_moe_place(&end, 4 * L->items, &m->ids_off) ||
      !mc_shm_moe_place(&end, L->x_bytes, &m->x_off) ||
      !mc_shm_moe_place(&end, L->x_scales_bytes, &m->scales_off) ||
      !mc_shm_moe_place(&end, cin_bytes, &m->cin_off) || end > PTRDIFF_MAX / 2 ||
      __builtin_mul_overflow((end + page2 - 1) / page2 * page2, (size_t)comm->size, &whole) ||
      whole > PTRDIFF_MAX / 2)
    return mc_err_set(comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "shm expert parallelism on %s: %d regions of %lld tokens x %lld bytes do "
                      "not fit in memory",
                      comm->label, comm->size, (long long)L->cfg.t_max,
                      (long long)(L->row_bytes + L->cfg.top_k * L->crow_bytes));
  m->region_bytes = (end + page2 - 1) / page2 * page2; /* two whole-page slots of the segment */
  return MOECOMM_SUCCESS;
}

static unsigned char *mc_shm_moe_region(const mc_shm_moe_t *m, int r) {
  return (unsigned char *)m->seg.base + mc_shm_slots_offset(m->layout.cfg.ranks) +
         (size_t)r * m->region_bytes;
}

static mc_shm_moe_hdr_t *mc_shm_moe_hdr(const mc_shm_moe_t *m, int r) {
  return (mc_shm_moe_hdr_t *)mc_shm_moe_region(m, r);
}

static int32_t *mc_shm_moe_ids(const mc_shm_moe_t *m, int r) {
  return (int32_t *)(mc_shm_moe_region(m, r) + m->ids_off);
}

static unsigned char *mc_shm_moe_cin(const mc_shm_moe_t *m, int r) {
  return mc_shm_moe_region(m, r) + m->cin_off;
}

/* ---- creation ------------------------------------------------------------------------------ */

static void mc_shm_moe_free(mc_shm_moe_t *m) {
  if (m == NULL) return;
  mc_shm_segment_detach(&m->seg);
  free(m->ranks);
  free(m->item_row);
  free(m->totals);
  free(m);
}

/* What each member allocates for itself; the outcome goes through an agreement. */
static moecomm_result_t mc_shm_moe_local(mc_comm_t *comm, const mc_ep_layout_t *layout,
                                         mc_shm_moe_t **m_p) {
  mc_shm_moe_t *m = calloc(1, sizeof(*m));
  moecomm_result_t r;
  if (m == NULL) return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  *m_p = m;
  m->layout = *layout;
  if ((r = mc_shm_moe_regions(comm, m)) != MOECOMM_SUCCESS) return r;
  m->private_bytes = (size_t)comm->size * sizeof(*m->ranks) + (size_t)layout->items * 4 +
                     (size_t)layout->local_experts * 8;
  m->ranks = calloc((size_t)comm->size, sizeof(*m->ranks));
  m->item_row = calloc((size_t)layout->items, sizeof(*m->item_row));
  m->totals = calloc((size_t)layout->local_experts, sizeof(*m->totals));
  if (m->ranks == NULL || m->item_row == NULL || m->totals == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY,
                      "shm expert parallelism on %s: out of host memory (%zu bytes)", comm->label,
                      m->private_bytes);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_moe_init(mc_comm_t *comm, const mc_ep_layout_t *layout) {
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_SHM];
  mc_shm_moe_t *m = NULL;
  int bad = -1;
  moecomm_result_t r = mc_shm_moe_local(comm, layout, &m);
  r = mc_comm_agree(comm, "shm expert-parallel buffers", r, comm->err->msg, NULL, NULL, 0, &bad);
  if (r == MOECOMM_SUCCESS) r = mc_shm_segment_attach(comm, m->region_bytes / 2, &m->seg);
  if (r != MOECOMM_SUCCESS) {
    mc_shm_moe_free(m);
    return r;
  }
  be->moe = m;
  be->host_bytes += m->seg.bytes + m->private_bytes;
  MC_INFO("shm expert parallelism on %s: %zu bytes per member (T_max %lld, %d experts)",
          comm->label, m->region_bytes, (long long)layout->cfg.t_max, (int)layout->cfg.experts);
  return MOECOMM_SUCCESS;
}

void mc_shm_moe_fini(mc_comm_t *comm) {
  mc_comm_backend_t *be = &comm->be[MOECOMM_BACKEND_SHM];
  mc_shm_moe_t *m = be->moe;
  if (m == NULL) return;
  be->host_bytes -= MC_MIN(be->host_bytes, m->seg.bytes + m->private_bytes);
  mc_shm_moe_free(m);
  be->moe = NULL;
}

/* ---- the calls ------------------------------------------------------------------------------- */

static moecomm_result_t mc_shm_moe_begin(mc_comm_t *comm, const char *what, mc_shm_t **shm_p,
                                         mc_shm_moe_t **m_p) {
  mc_shm_t *shm = comm->be[MOECOMM_BACKEND_SHM].priv;
  mc_shm_moe_t *m = comm->be[MOECOMM_BACKEND_SHM].moe;
  if (shm == NULL || m == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL, "shm %s on %s before its buffers exist",
                      what, comm->label);
  if (shm->broken != MOECOMM_SUCCESS)
    return mc_err_set(comm->err, MOECOMM_ERR_STATE,
                      "shm %s on %s: the communicator is unusable after an earlier error: %s", what,
                      comm->label, shm->cause);
  *shm_p = shm;
  *m_p = m;
  return MOECOMM_SUCCESS;
}

/* After the barrier: every member published this very call (pair number `pair`). */
static moecomm_result_t mc_shm_moe_in_step(mc_shm_t *shm, const mc_shm_moe_t *m, int combine,
                                           uint64_t pair, const char *what) {
  mc_comm_t *comm = shm->comm;
  for (int q = 0; q < comm->size; q++) {
    const mc_shm_moe_hdr_t *h = mc_shm_moe_hdr(m, q);
    const uint64_t got = combine ? h->combine_call : h->dispatch_call;
    moecomm_result_t r;
    if (got == pair) continue;
    r = mc_err_set(comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                   "shm %s on %s: rank %d reached this barrier without making call pair %llu "
                   "(its latest is %llu): every rank of a group must make the same calls in the "
                   "same order",
                   what, comm->label, (int)comm->ranks[q], (unsigned long long)pair,
                   (unsigned long long)got);
    mc_shm_break(shm, r);
    return r;
  }
  return MOECOMM_SUCCESS;
}

/* Own routing, payload and scales into the region; an id outside [-1, E) is published masked
   and recorded for the next combine to report (returns 1 then). */
static int mc_shm_moe_publish(mc_comm_t *comm, mc_shm_moe_t *m, const mc_moe_call_t *call) {
  const mc_ep_layout_t *L = &m->layout;
  const int64_t n_items = (int64_t)call->tokens * L->cfg.top_k;
  unsigned char *mine = mc_shm_moe_region(m, comm->rank);
  int32_t *ids = mc_shm_moe_ids(m, comm->rank);
  int bad = -1;
  for (int64_t i = 0; i < n_items; i++) {
    const int32_t e = call->topk_ids[i];
    const int ok = e >= -1 && e < L->cfg.experts;
    if (!ok && bad < 0) bad = (int)i;
    ids[i] = ok ? e : -1;
  }
  if (call->tokens > 0) {
    memcpy(mine + m->x_off, call->x, (size_t)(call->tokens * L->row_bytes));
    if (L->cfg.scales > 0)
      memcpy(mine + m->scales_off, call->x_scales, (size_t)call->tokens * L->cfg.scales * 4);
  }
  mc_shm_moe_hdr(m, comm->rank)->tokens = call->tokens;
  mc_shm_moe_hdr(m, comm->rank)->dispatch_call = m->pairs + 1;
  if (bad >= 0)
    m->report = mc_ep_report_bad_id(&m->report_err, L, m->pairs + 1, call->topk_ids[bad],
                                    bad / L->cfg.top_k, bad % L->cfg.top_k);
  return bad >= 0;
}

/* The first local expert over its capacity, recorded for the next combine to report. */
static void mc_shm_moe_overflow(mc_comm_t *comm, mc_shm_moe_t *m) {
  const mc_ep_layout_t *L = &m->layout;
  for (int e = 0; e < L->local_experts; e++) {
    if (m->totals[e] <= L->cfg.capacity) continue;
    m->report =
        mc_ep_report_overflow(&m->report_err, L, m->pairs, comm->rank * L->local_experts + e,
                              m->totals[e] - L->cfg.capacity);
    return;
  }
}

moecomm_result_t mc_shm_moe_dispatch(mc_comm_t *comm, const mc_moe_call_t *call) {
  mc_shm_t *shm;
  mc_shm_moe_t *m;
  int bad_id;
  moecomm_result_t r = mc_shm_moe_begin(comm, "moe_dispatch", &shm, &m);
  if (r != MOECOMM_SUCCESS) return r;
  /* a data error of this dispatch replaces one not reported yet (the kernels' rule) */
  bad_id = mc_shm_moe_publish(comm, m, call);
  if ((r = mc_shm_barrier(shm, "moe_dispatch")) != MOECOMM_SUCCESS ||
      (r = mc_shm_moe_in_step(shm, m, 0, m->pairs + 1, "moe_dispatch")) != MOECOMM_SUCCESS)
    return r;
  for (int q = 0; q < comm->size; q++) {
    unsigned char *region = mc_shm_moe_region(m, q);
    m->ranks[q].tokens = mc_shm_moe_hdr(m, q)->tokens;
    m->ranks[q].ids = mc_shm_moe_ids(m, q);
    m->ranks[q].x = region + m->x_off;
    m->ranks[q].scales = (const float *)(region + m->scales_off);
  }
  r = mc_ep_ref_dispatch(&m->layout, m->ranks, comm->rank, call->recv_x, call->recv_scales,
                         call->recv_counts, call->recv_src, m->totals, comm->err);
  if (r == MOECOMM_SUCCESS)
    r = mc_ep_ref_item_rows(&m->layout, m->ranks, comm->rank, m->item_row, comm->err);
  if (r != MOECOMM_SUCCESS) { /* a peer published what its own checks refuse: out of step */
    r = mc_err_wrap(comm->err, MOECOMM_ERR_INTERNAL, "shm moe_dispatch on %s", comm->label);
    mc_shm_break(shm, r);
    return r;
  }
  m->pairs++;
  if (!bad_id) mc_shm_moe_overflow(comm, m);
  return MOECOMM_SUCCESS;
}

/* Every kept row of every local expert into its source's combine slot: the row rule (members in
   order, then items in order; the first C rows of an expert kept) over the published routing,
   which stays in place until every member has passed this combine's barrier. */
static void mc_shm_moe_push(mc_comm_t *comm, const mc_shm_moe_t *m, const void *y) {
  const mc_ep_layout_t *L = &m->layout;
  const int64_t el = L->local_experts, first = (int64_t)comm->rank * el, crb = L->crow_bytes;
  int64_t next[MC_EP_MAX_EXPERTS];
  memset(next, 0, sizeof(int64_t) * (size_t)el);
  for (int q = 0; q < comm->size; q++) {
    const int32_t *ids = mc_shm_moe_ids(m, q);
    const int64_t items = mc_shm_moe_hdr(m, q)->tokens * L->cfg.top_k;
    unsigned char *cin = mc_shm_moe_cin(m, q);
    for (int64_t i = 0; i < items; i++) {
      const int64_t e = (int64_t)ids[i] - first;
      int64_t row;
      if (e < 0 || e >= el) continue;
      row = next[e]++;
      if (row < L->cfg.capacity)
        memcpy(cin + i * crb, (const char *)y + (e * L->cfg.capacity + row) * crb, (size_t)crb);
    }
  }
}

moecomm_result_t mc_shm_moe_combine(mc_comm_t *comm, const mc_moe_call_t *call) {
  mc_shm_t *shm;
  mc_shm_moe_t *m;
  const void *rows[MC_EP_MAX_TOPK];
  const unsigned char *cin;
  int64_t k_n, crb;
  moecomm_result_t r = mc_shm_moe_begin(comm, "moe_combine", &shm, &m);
  if (r != MOECOMM_SUCCESS) return r;
  k_n = m->layout.cfg.top_k;
  crb = m->layout.crow_bytes;
  mc_shm_moe_push(comm, m, call->expert_out);
  mc_shm_moe_hdr(m, comm->rank)->combine_call = m->pairs;
  if ((r = mc_shm_barrier(shm, "moe_combine")) != MOECOMM_SUCCESS ||
      (r = mc_shm_moe_in_step(shm, m, 1, m->pairs, "moe_combine")) != MOECOMM_SUCCESS)
    return r;
  cin = mc_shm_moe_cin(m, comm->rank);
  for (int64_t t = 0; t < call->tokens; t++) {
    for (int64_t k = 0; k < k_n; k++) {
      const int64_t i = t * k_n + k, row = m->item_row[i];
      rows[k] = row >= 0 && row < m->layout.cfg.capacity ? cin + i * crb : NULL;
    }
    mc_ep_ref_combine_token(&m->layout, call->topk_weights + t * k_n, rows,
                            (char *)call->out + t * crb);
  }
  if (m->report == MOECOMM_SUCCESS) return MOECOMM_SUCCESS;
  *call->ran_p = 1;
  r = mc_err_set(comm->err, m->report, "%s", m->report_err.msg);
  m->report = MOECOMM_SUCCESS;
  return r;
}
