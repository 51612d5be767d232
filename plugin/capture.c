/* SPDX-License-Identifier: Apache-2.0 */
/* capture.c - one capture scope per context, covering every group by construction.
 *
 * Inside the scope every collective on a capturing stream is counted per group (on a CPU context,
 * every collective: there is no graph, but the same consistency check applies).  capture_end:
 *   1. walks the communicators in one global order (by key, the same string on every member, so
 *      the pairwise exchanges cannot deadlock) and checks that all members captured the same
 *      number of operations on each group;
 *   2. agrees on that over the world (agree.h);
 *   3. if all agreed, runs the backends' registration hooks (collective over each comm);
 *   4. agrees again over the world on the hooks' outcome, on every rank whatever its own hook
 *      did, so that a hook failing on one rank fails every rank at once with that rank's message
 *      (not a timeout on the others) and no rank keeps a graph its peers rejected. */
#include "capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "util.h"

moecomm_result_t mc_capture_begin(mc_context_t *ctx) {
  if (ctx->capturing)
    return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                      "capture_begin: the capture scope is already open (capture_end was not "
                      "called for the previous capture_begin)");
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) ctx->groups[k].captured_ops = 0;
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = ctx->comms[c];
    for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++) {
      const mc_backend_ops_t *ops = mc_backend_get((moecomm_backend_t)b);
      moecomm_result_t r;
      if (!comm->be[b].created || ops == NULL || ops->capture_begin == NULL) continue;
      if ((r = ops->capture_begin(comm)) != MOECOMM_SUCCESS) return r;
    }
  }
  ctx->capturing = 1;
  MC_TRACE("capture scope opened");
  return MOECOMM_SUCCESS;
}

static int mc_capture_cmp_key(const void *a, const void *b) {
  return strcmp((*(mc_comm_t *const *)a)->key, (*(mc_comm_t *const *)b)->key);
}

/* Every member captured the same number of operations on each group that uses comm. */
static moecomm_result_t mc_capture_check_counts(mc_context_t *ctx, mc_comm_t *comm) {
  uint64_t mine[MC_GROUP_KIND_COUNT], *all;
  moecomm_result_t r;
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++)
    mine[k] = ctx->groups[k].comm == comm ? ctx->groups[k].captured_ops : 0;
  all = malloc(sizeof(mine) * (size_t)comm->size);
  if (all == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  r = mc_comm_exchange(comm, "capture_end operation counts", mine, all, sizeof(mine));
  for (int k = 0; r == MOECOMM_SUCCESS && k < MC_GROUP_KIND_COUNT; k++) {
    int differ = 0;
    char counts[512] = "";
    size_t w = 0;
    if (ctx->groups[k].comm != comm) continue;
    for (int i = 0; i < comm->size; i++) {
      differ |= all[(size_t)i * MC_GROUP_KIND_COUNT + k] != mine[k];
      if (w < sizeof(counts))
        w += (size_t)snprintf(counts + w, sizeof(counts) - w, "%srank %d: %llu", i ? ", " : "",
                              (int)comm->ranks[i],
                              (unsigned long long)all[(size_t)i * MC_GROUP_KIND_COUNT + k]);
    }
    if (differ)
      r = mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                     "capture_end: ranks captured different numbers of operations on group %s "
                     "(%s); every rank must issue the same collectives on a group",
                     mc_topo_kind_name(k), counts);
  }
  free(all);
  return r;
}

/* Every rank learns whether any rank failed; the first failing rank's message becomes every
   rank's error, as MOECOMM_ERR_CAPTURE. */
static moecomm_result_t mc_capture_agree(mc_context_t *ctx, const char *what,
                                         moecomm_result_t mine) {
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)ctx->topo.world);
  char msg[MC_ERR_MSG_MAX];
  mc_xchg_set_t set;
  moecomm_result_t r;
  int bad = -1;
  if (ranks == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  snprintf(msg, sizeof(msg), "%s", ctx->err.msg);
  mc_context_world_set(ctx, ranks, &set);
  r = mc_agree(&set, what, mine, msg, NULL, NULL, 0, &bad, &ctx->err);
  free(ranks);
  if (bad >= 0)
    return mc_err_wrap(&ctx->err, MOECOMM_ERR_CAPTURE,
                       "capture_end failed; the captured graph must not be replayed");
  return r;
}

/* Steps 3-4: every backend hook of every comm, in the global order. */
static moecomm_result_t mc_capture_hooks(mc_context_t *ctx, mc_comm_t *const *order) {
  moecomm_result_t r = MOECOMM_SUCCESS;
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = order[c];
    for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++) {
      const mc_backend_ops_t *ops = mc_backend_get((moecomm_backend_t)b);
      moecomm_result_t rh;
      if (!comm->be[b].created || ops == NULL || ops->capture_end == NULL) continue;
      /* Hooks make the same exchanges on every member whatever happened before: all run. */
      rh = ops->capture_end(comm);
      if (rh != MOECOMM_SUCCESS && r == MOECOMM_SUCCESS)
        r = mc_err_wrap(&ctx->err, rh, "registering captured buffers on %s (%s)", comm->label,
                        ops->name);
    }
  }
  return r;
}

moecomm_result_t mc_capture_end(mc_context_t *ctx) {
  mc_comm_t *order[MC_GROUP_KIND_COUNT];
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (!ctx->capturing)
    return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                      "capture_end: no capture scope is open (call capture_begin first)");
  memcpy(order, ctx->comms, sizeof(mc_comm_t *) * (size_t)ctx->num_comms);
  qsort(order, (size_t)ctx->num_comms, sizeof(order[0]), mc_capture_cmp_key);
  /* Every exchange below runs on every communicator even after a local failure (the first
     failure is kept), so that peers are never left waiting in an exchange this rank skipped. */
  for (int c = 0; c < ctx->num_comms; c++) {
    moecomm_result_t rc;
    if (order[c]->size == 1) continue;
    rc = mc_capture_check_counts(ctx, order[c]);
    if (r == MOECOMM_SUCCESS) r = rc;
  }
  if (ctx->topo.world > 1) r = mc_capture_agree(ctx, "capture_end operation counts", r);
  if (r == MOECOMM_SUCCESS) {
    r = mc_capture_hooks(ctx, order);
    if (ctx->topo.world > 1) r = mc_capture_agree(ctx, "capture_end registration", r);
  }
  ctx->capturing = 0;
  MC_TRACE("capture scope closed: %s", mc_result_string(r));
  return r;
}
