/* SPDX-License-Identifier: Apache-2.0 */
/* rank.c - one rank: context, device, exchange, --print-groups or the step, teardown (rank.h). */
#include "rank.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/launch.h"
#include "lib/memory.h"
#include "progress.h"
#include "results.h"
#include "schedule.h"

/* shim_plugin_xchg_t's all-gather (shim_exchange_fn_t): bytes are padded to int32 words. */
static int plugin_exchange(void *arg, const void *send, void *recv, size_t bytes) {
  shim_plugin_xchg_t *x = arg;
  size_t words = (bytes + 3) / 4, wb = words * 4, total = (size_t)x->world * wb;
  moecomm_group_t *g = NULL;
  void *ds = NULL, *dr = NULL, *hs = NULL, *hr = NULL;
  moecomm_result_t r;
  int rc = 1;
  if (shim_dev_alloc(x->dev, wb, &ds) != 0 || shim_dev_alloc(x->dev, total, &dr) != 0 ||
      shim_host_alloc(x->dev, wb, &hs) != 0 || shim_host_alloc(x->dev, total, &hr) != 0) {
    fprintf(stderr, "rank %d: exchange buffers: %s\n", x->rank, x->dev->err);
    goto out;
  }
  memset(hs, 0, wb);
  memcpy(hs, send, bytes);
  r = x->api->group_get(x->ctx, MOECOMM_GROUP_WORLD, &g);
  if (r == MOECOMM_SUCCESS) {
    if (shim_dev_put(x->dev, ds, hs, wb) != 0) {
      fprintf(stderr, "rank %d: exchange: %s\n", x->rank, x->dev->err);
      goto out;
    }
    r = x->api->all_gather(g, ds, dr, words, MOECOMM_INT32, x->dev->stream);
  }
  if (r != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: all_gather on WORLD (result exchange) failed: %s: %s\n", x->rank,
            x->api->result_string(r), x->api->last_error(x->ctx));
    goto out;
  }
  if (shim_dev_get(x->dev, hr, dr, total) != 0 || shim_dev_sync(x->dev) != 0) {
    fprintf(stderr, "rank %d: exchange: %s\n", x->rank, x->dev->err);
    goto out;
  }
  for (int q = 0; q < x->world; q++)
    memcpy((char *)recv + (size_t)q * bytes, (char *)hr + (size_t)q * wb, bytes);
  rc = 0;
out:
  shim_host_free(x->dev, hr);
  shim_host_free(x->dev, hs);
  shim_dev_free(x->dev, dr);
  shim_dev_free(x->dev, ds);
  return rc;
}

/* context_create with the host's all-gather (forked ranks) or MOECOMM_STORE (external). */
static shim_status_t rank_context(shim_rank_t *r, void *hub) {
  const shim_opts_t *o = &r->job->o;
  moecomm_topology_t topo = shim_launch_topology(r->world, r->rank, o->tp);
  moecomm_context_params_t params = shim_launch_params(&topo, o->device);
  moecomm_result_t res;
  topo.pp = o->pp;
  topo.ep = o->ep;
  topo.moe_dp = o->moe_dp;
  topo.attn_cp = o->attn_cp;
  topo.attn_dp = o->attn_dp;
  topo.moe_dense_tp = o->moe_dense_tp;
  params.host_allgather = hub != NULL ? shim_host_allgather : NULL; /* NULL: MOECOMM_STORE */
  params.host_user = hub;
  shim_launch_phase("context_create (rendezvous of %d ranks)", r->world);
  res = r->api->context_create(&params, &r->ctx);
  if (res != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_create failed: %s: %s\n", r->rank, r->api->result_string(res),
            r->api->last_error(NULL));
    return SHIM_FAIL;
  }
  shim_progress(r->rank, "context created (%d ranks)", r->world);
  return SHIM_OK;
}

/* The context, its device (rank 0 says which), the stream and the world exchange. */
static shim_status_t rank_open(shim_rank_t *r) {
  void *hub = r->job->external ? NULL : shim_launch_hub();
  moecomm_context_info_t info;
  moecomm_result_t res;
  shim_status_t st = rank_context(r, hub);
  if (st != SHIM_OK) return st;
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  res = r->api->context_info(r->ctx, &info);
  if (res != MOECOMM_SUCCESS) {
    fprintf(stderr, "rank %d: context_info failed: %s: %s\n", r->rank, r->api->result_string(res),
            r->api->last_error(r->ctx));
    return SHIM_FAIL;
  }
  if (r->rank == 0) {
    if (info.device == MOECOMM_DEVICE_CPU)
      printf("backend: shm (no CUDA device)\n");
    else
      printf("device: cuda:%d on rank 0 (local rank %d of %d, %d host%s)\n", (int)info.device,
             (int)info.local_rank, (int)info.local_size, (int)info.num_hosts,
             info.num_hosts == 1 ? "" : "s");
    fflush(stdout);
  }
  if (shim_dev_open(&r->dev, info.device) != 0) {
    fprintf(stderr, "rank %d: %s\n", r->rank, r->dev.err);
    return SHIM_FAIL;
  }
  r->px.api = r->api;
  r->px.ctx = r->ctx;
  r->px.dev = &r->dev;
  r->px.rank = r->rank;
  r->px.world = r->world;
  r->hub = hub != NULL;
  r->xfn = hub != NULL ? shim_host_allgather : plugin_exchange;
  r->xarg = hub != NULL ? hub : (void *)&r->px;
  return SHIM_OK;
}

/* The MoE step and the results.  The results gather is also the barrier after which no peer
   touches this rank's buffers; a set-up failure (nothing issued, the step freed itself) skips
   it: the peers failed alike. */
static shim_status_t rank_step(shim_rank_t *r, shim_step_t *step, shim_sizes_t *sizes) {
  shim_rank_result_t mine;
  shim_status_t st;
  memset(&mine, 0, sizeof(mine));
  st = shim_schedule_run(r, step, sizes, &mine);
  if (st == SHIM_USAGE && r->job->usage != NULL)
    __atomic_store_n(r->job->usage, 1, __ATOMIC_RELAXED);
  if (st != SHIM_OK) return st;
  if (shim_mem_collect(r->api, r->ctx, &mine.mem) != 0)
    fprintf(stderr, "rank %d: group_stats failed: %s\n", r->rank, r->api->last_error(r->ctx));
  shim_launch_phase("exchanging results");
  return shim_results_report(r, step, sizes, &mine);
}

shim_status_t shim_rank_run(const shim_job_t *job, int rank, int world) {
  shim_rank_t r;
  shim_step_t step;
  shim_sizes_t sizes;
  shim_status_t st;
  moecomm_result_t res;
  memset(&r, 0, sizeof(r));
  memset(&step, 0, sizeof(step)); /* shim_step_fini is safe on it on every path */
  memset(&sizes, 0, sizeof(sizes));
  r.job = job;
  r.api = job->plugin->api;
  r.rank = rank;
  r.world = world;
  st = rank_open(&r);
  if (st == SHIM_OK && job->o.print_groups) {
    char err[512];
    st = shim_groups_print(r.api, r.ctx, rank, world, r.xfn, r.xarg, err, sizeof(err)) == 0
             ? SHIM_OK
             : SHIM_FAIL;
    if (st != SHIM_OK) fprintf(stderr, "rank %d: --print-groups: %s\n", rank, err);
  } else if (st == SHIM_OK) {
    st = rank_step(&r, &step, &sizes);
  }
  /* A call that failed can leave work on the stream that waits for a peer: no synchronise, free
     or destroy; the process ends and the OS reclaims everything. */
  if (st == SHIM_ABANDON) return st;
  shim_sizes_free(&sizes);
  if (r.ctx != NULL) {
    shim_launch_phase("context_destroy");
    res = r.api->context_destroy(r.ctx);
    if (res != MOECOMM_SUCCESS) {
      fprintf(stderr, "rank %d: context_destroy failed: %s: %s\n", rank, r.api->result_string(res),
              r.api->last_error(NULL));
      if (st == SHIM_OK) st = SHIM_FAIL;
    }
  }
  shim_step_fini(&step); /* the step's buffers go after the context that used them */
  shim_dev_close(&r.dev);
  fflush(NULL);
  return st;
}

int shim_rank_main(int rank, int world, void *arg) {
  return shim_exit_status(shim_rank_run(arg, rank, world));
}
