/* SPDX-License-Identifier: Apache-2.0 */
/* capture.c - the custom backend inside the context's capture scope.
 *
 * LL and one-shot kernels touch only the members' segments (registered at comm_init), so they are
 * captured as they are.  A captured two-shot kernel reads every member's input and writes every
 * member's output directly: at capture time it gets an entry of a device table (zeroed) and is
 * recorded here; capture_end exchanges the recorded buffers with the members, maps them and fills
 * the entries, so a replay reads registered peer memory.  A replay of an entry that was never
 * filled does nothing and reports an error instead of touching memory.
 *
 * capture_end is collective: every member makes the same exchanges whatever happened locally (a
 * member that failed before them says so in the first, and all stop there).  A member that fails
 * to map the others' buffers returns its error; the core's capture_end then agrees over the world,
 * so every rank fails with it and none keeps a graph its peers could not back (plugin/capture.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gpu.h"
#include "../../log.h"
#include "../../util.h"
#include "capture.h"

#include "peer.h"
#include "status.h"

/* A recorded op in the exchange: which of the member's allocations, and where inside. */
typedef struct mc_custom_opref {
  int32_t in_alloc, out_alloc;
  uint64_t in_off, out_off;
} mc_custom_opref_t;

/* What each member says in the agreement that opens capture_end. */
typedef struct mc_custom_cap_head {
  int32_t nops, nallocs;
} mc_custom_cap_head_t;

/* This member's captured ops, described by allocation and offset. */
typedef struct mc_custom_cap_desc {
  mc_custom_export_t *allocs;
  mc_custom_opref_t *refs;
  int nallocs, cap;
} mc_custom_cap_desc_t;

moecomm_result_t mc_custom_capture_begin(mc_comm_t *comm) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  if (p != NULL) p->npending = 0; /* entries of an abandoned capture stay unfilled */
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_custom_capture_record(mc_custom_comm_t *p, const void *in, void *out,
                                          const mc_kern_ptrs_t **entry_p) {
  /* The routing policy sends no captured two-shot once the table is full (limits). */
  if (p->table_used >= MC_CUSTOM_TABLE_CAP)
    return mc_err_set(p->comm->err, MOECOMM_ERR_INTERNAL,
                      "%s: captured two-shot all-reduce routed to a full table (%d entries)",
                      p->comm->label, MC_CUSTOM_TABLE_CAP);
  if (p->npending == p->pending_cap) {
    int cap = p->pending_cap ? 2 * p->pending_cap : 64;
    mc_custom_op_t *ops = realloc(p->pending, sizeof(*ops) * (size_t)cap);
    if (ops == NULL) return mc_err_set(p->comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    p->pending = ops;
    p->pending_cap = cap;
  }
  p->pending[p->npending].in = in;
  p->pending[p->npending].out = out;
  p->pending[p->npending].slot = p->table_used;
  p->npending++;
  *entry_p = p->table + p->table_used++;
  return MOECOMM_SUCCESS;
}

/* Index of the allocation of ptr in allocs (added when new); -1 on failure (why set). */
static int mc_custom_alloc_index(const void *ptr, mc_custom_export_t **allocs, int *n, int *cap,
                                 uint64_t *off_p, mc_err_t *why) {
  mc_custom_export_t exp;
  if (mc_custom_export(ptr, &exp, why) != MOECOMM_SUCCESS) return -1;
  *off_p = (uint64_t)(uintptr_t)ptr - exp.base;
  for (int i = 0; i < *n; i++)
    if ((*allocs)[i].base == exp.base) return i;
  if (*n == *cap) {
    int c = *cap ? 2 * *cap : 8;
    mc_custom_export_t *a = realloc(*allocs, sizeof(*a) * (size_t)c);
    if (a == NULL) {
      mc_err_set(why, MOECOMM_ERR_NO_MEMORY, "out of host memory");
      return -1;
    }
    *allocs = a;
    *cap = c;
  }
  (*allocs)[*n] = exp;
  return (*n)++;
}

/* Maps every member's recorded buffers and fills the pending entries of the device table. */
static moecomm_result_t mc_custom_fill_table(mc_custom_comm_t *p, const char *payload,
                                             size_t rec_bytes, int max_allocs, mc_err_t *why) {
  mc_comm_t *comm = p->comm;
  const int n = p->npending;
  mc_kern_ptrs_t *entries = calloc((size_t)n, sizeof(*entries));
  char **bases = calloc((size_t)max_allocs + 1, sizeof(*bases));
  moecomm_result_t r = MOECOMM_SUCCESS;

  if (entries == NULL || bases == NULL) {
    r = mc_err_set(why, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto out;
  }
  for (int m = 0; m < comm->size && r == MOECOMM_SUCCESS; m++) {
    const char *rec = payload + (size_t)m * rec_bytes;
    const mc_custom_export_t *allocs = (const mc_custom_export_t *)rec;
    const mc_custom_opref_t *ops =
        (const mc_custom_opref_t *)(rec + sizeof(mc_custom_export_t) * (size_t)max_allocs);
    int nallocs = 0;
    /* the member's allocations actually used (the rest of its record is padding) */
    for (int k = 0; k < n && r == MOECOMM_SUCCESS; k++) {
      if (ops[k].in_alloc < 0 || ops[k].in_alloc >= max_allocs || ops[k].out_alloc < 0 ||
          ops[k].out_alloc >= max_allocs)
        r = mc_err_set(why, MOECOMM_ERR_INTERNAL, "rank %d sent a bad capture record",
                       (int)comm->ranks[m]);
      nallocs = MC_MAX(nallocs, MC_MAX(ops[k].in_alloc, ops[k].out_alloc) + 1);
    }
    for (int a = 0; a < nallocs && r == MOECOMM_SUCCESS; a++)
      r = mc_custom_open(p, m, &allocs[a], &bases[a], why);
    for (int k = 0; k < n && r == MOECOMM_SUCCESS; k++) {
      entries[k].in[m] = bases[ops[k].in_alloc] + ops[k].in_off;
      entries[k].out[m] = bases[ops[k].out_alloc] + ops[k].out_off;
    }
  }
  if (r == MOECOMM_SUCCESS && n > 0) {
    /* entries were handed out one after another since capture_begin */
    const int first = p->pending[0].slot;
    for (int k = 1; k < n; k++)
      if (p->pending[k].slot != first + k) {
        r = mc_err_set(why, MOECOMM_ERR_INTERNAL, "captured table entries are not contiguous");
        goto out;
      }
    MC_CUDA_GOTO(why, r, out,
                 cudaMemcpyAsync(p->table + first, entries, sizeof(*entries) * (size_t)n,
                                 cudaMemcpyHostToDevice, p->stream));
    MC_CUDA_GOTO(why, r, out, cudaStreamSynchronize(p->stream));
  }
out:
  free(entries);
  free(bases);
  return r;
}

/* The pending ops by allocation and offset (for the peers to map); the reason in why on failure. */
static moecomm_result_t mc_custom_capture_describe(mc_custom_comm_t *p, mc_custom_cap_desc_t *d,
                                                   mc_err_t *why) {
  const int nops = p->npending;
  if (mc_custom_check_dead(p) != MOECOMM_SUCCESS)
    return mc_err_set(why, p->dead, "%s", p->dead_msg);
  if (nops > 0 && (d->refs = calloc((size_t)nops, sizeof(*d->refs))) == NULL)
    return mc_err_set(why, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  for (int k = 0; k < nops; k++) {
    mc_custom_opref_t *ref = &d->refs[k];
    ref->in_alloc = mc_custom_alloc_index(p->pending[k].in, &d->allocs, &d->nallocs, &d->cap,
                                          &ref->in_off, why);
    if (ref->in_alloc >= 0)
      ref->out_alloc = mc_custom_alloc_index(p->pending[k].out, &d->allocs, &d->nallocs, &d->cap,
                                             &ref->out_off, why);
    if (ref->in_alloc < 0 || ref->out_alloc < 0) return MOECOMM_ERR_CAPTURE;
  }
  return MOECOMM_SUCCESS;
}

/* Every member's buffers to every member, then mapped into the table.  Records are padded to
   the largest allocation count: [allocs][ops] per member. */
static moecomm_result_t mc_custom_capture_register(mc_custom_comm_t *p,
                                                   const mc_custom_cap_desc_t *d, int max_allocs) {
  mc_comm_t *comm = p->comm;
  const int nops = p->npending;
  const size_t rec_bytes =
      sizeof(mc_custom_export_t) * (size_t)max_allocs + sizeof(mc_custom_opref_t) * (size_t)nops;
  char *mine = calloc(1, rec_bytes), *payload = calloc((size_t)comm->size, rec_bytes);
  moecomm_result_t r;
  if (mine == NULL || payload == NULL) {
    /* a member that cannot take part leaves the others to time out, named in their error */
    r = mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto out;
  }
  memcpy(mine, d->allocs, sizeof(*d->allocs) * (size_t)d->nallocs);
  memcpy(mine + sizeof(mc_custom_export_t) * (size_t)max_allocs, d->refs,
         sizeof(*d->refs) * (size_t)nops);
  r = mc_comm_exchange(comm, "custom captured buffers", mine, payload, rec_bytes);
  /* Map and fill; the core's agreement tells every rank if this failed anywhere. */
  if (r == MOECOMM_SUCCESS) r = mc_custom_fill_table(p, payload, rec_bytes, max_allocs, comm->err);
  if (r == MOECOMM_SUCCESS)
    MC_TRACE("%s: registered %d captured two-shot all-reduces (%d allocations here)", comm->label,
             nops, d->nallocs);
out:
  free(mine);
  free(payload);
  return r;
}

moecomm_result_t mc_custom_capture_end(mc_comm_t *comm) {
  mc_custom_comm_t *p = comm->be[MOECOMM_BACKEND_CUSTOM].priv;
  mc_custom_cap_desc_t d;
  mc_custom_cap_head_t head, *heads = NULL;
  int max_allocs = 0, bad = -1;
  moecomm_result_t r;
  mc_err_t why;

  if (p == NULL) return MOECOMM_SUCCESS;
  memset(&d, 0, sizeof(d));
  mc_err_clear(&why);
  r = mc_custom_capture_describe(p, &d, &why);
  head.nops = p->npending;
  head.nallocs = d.nallocs;
  heads = calloc((size_t)comm->size, sizeof(*heads));
  if (heads == NULL) {
    r = mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    goto out;
  }
  r = mc_comm_agree(comm, "custom capture records", r, why.msg, &head, heads, sizeof(head), &bad);
  if (r != MOECOMM_SUCCESS) goto out;
  for (int i = 0; i < comm->size; i++) {
    max_allocs = MC_MAX(max_allocs, heads[i].nallocs);
    if (heads[i].nops != head.nops && r == MOECOMM_SUCCESS)
      r = mc_err_set(comm->err, MOECOMM_ERR_CAPTURE,
                     "rank %d captured %d two-shot custom all-reduces on %s and rank %d "
                     "captured %d; every rank must capture the same all-reduces",
                     (int)comm->ranks[i], (int)heads[i].nops, comm->label,
                     (int)comm->ranks[comm->rank], head.nops);
  }
  if (r == MOECOMM_SUCCESS && head.nops > 0) r = mc_custom_capture_register(p, &d, max_allocs);

out:
  p->npending = 0;
  free(heads);
  free(d.allocs);
  free(d.refs);
  return r;
}
