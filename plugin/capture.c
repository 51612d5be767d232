/* capture.c - one capture scope per context, covering every group by construction.
 *
 * Inside the scope every collective on a capturing stream is counted per group (on a CPU context,
 * every collective: there is no graph, but the same consistency check applies).  capture_end walks
 * the communicators in one global order (by key, the same string on every member, so the
 * pairwise exchanges cannot deadlock), checks that all members captured the same number of
 * operations on each group, runs the backends' registration hooks, and finally agrees on the
 * outcome over the world so that no rank keeps a graph its peers rejected. */
#include "capture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "util.h"

moecomm_result_t mc_capture_begin(mc_context_t *ctx) {
  if (ctx->capturing)
    return mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                      "capture_begin: the capture scope is already open (capture_end was not "
                      "called for the previous capture_begin)");
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) ctx->groups[k].captured_ops = 0;
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = ctx->comms[c];
    for (int b = 1; b < 4; b++) {
      const mc_backend_ops_t *ops = mc_backends[b];
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

/* Every rank learns whether any rank failed, and the first failing rank's message. */
static moecomm_result_t mc_capture_agree(mc_context_t *ctx, moecomm_result_t mine) {
  struct {
    int32_t code;
    char msg[252];
  } rec, *all;
  moecomm_result_t r;
  memset(&rec, 0, sizeof(rec));
  rec.code = mine;
  if (mine != MOECOMM_SUCCESS) snprintf(rec.msg, sizeof(rec.msg), "%s", ctx->err.msg);
  all = calloc((size_t)ctx->topo.world, sizeof(rec));
  if (all == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  r = mc_world_exchange(ctx, "capture_end agreement", &rec, all, sizeof(rec));
  if (r == MOECOMM_SUCCESS && mine == MOECOMM_SUCCESS) {
    for (int i = 0; i < ctx->topo.world; i++) {
      if (all[i].code == MOECOMM_SUCCESS) continue;
      all[i].msg[sizeof(all[i].msg) - 1] = '\0';
      r = mc_err_set(&ctx->err, MOECOMM_ERR_CAPTURE,
                     "capture_end failed on rank %d: %s; the captured graph must not be "
                     "replayed",
                     i, all[i].msg);
      break;
    }
  }
  free(all);
  return mine != MOECOMM_SUCCESS ? mine : r;
}

moecomm_result_t mc_capture_end(mc_context_t *ctx) {
  mc_comm_t *order[MC_GROUP_KIND_COUNT];
  moecomm_result_t r = MOECOMM_SUCCESS;
  int agreed;
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
  if (ctx->topo.world > 1) r = mc_capture_agree(ctx, r);
  agreed = r == MOECOMM_SUCCESS;
  for (int c = 0; c < ctx->num_comms && agreed; c++) {
    mc_comm_t *comm = order[c];
    for (int b = 1; b < 4; b++) {
      const mc_backend_ops_t *ops = mc_backends[b];
      moecomm_result_t rh;
      if (!comm->be[b].created || ops == NULL || ops->capture_end == NULL) continue;
      rh = ops->capture_end(comm);
      if (rh != MOECOMM_SUCCESS && r == MOECOMM_SUCCESS)
        r = mc_err_wrap(&ctx->err, rh, "capture_end: registering captured buffers on %s (%s)",
                        comm->label, ops->name);
    }
  }
  if (ctx->topo.world > 1 && r == MOECOMM_SUCCESS) r = mc_capture_agree(ctx, r);
  ctx->capturing = 0;
  MC_TRACE("capture scope closed: %s", mc_result_string(r));
  return r;
}
