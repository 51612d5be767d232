/* SPDX-License-Identifier: Apache-2.0 */
/* context.c - building a context: environment, topology, device, bootstrap, groups, and the
 * communicator objects shared by groups with the same rank list.  Nothing here creates backend
 * resources: that is the first call's job (lazy.c); which backend a group uses is the routing
 * policy's (route.c). */
#include "context.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "log.h"
#include "registry.h"
#include "route.h"
#include "util.h"

/* The key names a communicator the same way on every member: its rank list (and the group kind
   when sharing is off), or a hash of a long list. */
static void mc_context_comm_key(const int32_t *ranks, int n, const char *kind_suffix, char *key,
                                size_t size) {
  char list[64];
  uint64_t h = 1469598103934665603ull;
  int w = 0;
  for (int i = 0; i < n && w < (int)sizeof(list); i++)
    w += snprintf(list + w, sizeof(list) - (size_t)w, "%s%d", i ? "." : "", (int)ranks[i]);
  if (w >= (int)sizeof(list)) {
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)(uint32_t)ranks[i]) * 1099511628211ull;
    snprintf(list, sizeof(list), "h%016llx-%d", (unsigned long long)h, n);
  }
  snprintf(key, size, "c%s%s%s", list, kind_suffix[0] ? "." : "", kind_suffix);
}

/* "TP/MOE_EP (ranks 0,1)": a communicator's label names every group kind that uses it. */
static void mc_context_label_add(mc_comm_t *comm, int kind) {
  char *paren = strstr(comm->label, " (");
  char rest[128];
  if (paren == NULL) return;
  snprintf(rest, sizeof(rest), "%s", paren);
  snprintf(paren, sizeof(comm->label) - (size_t)(paren - comm->label), "/%s%s",
           mc_topo_kind_name(kind), rest);
}

/* The communicator of rank list `ranks` (found, or made) for group kind k. */
static moecomm_result_t mc_context_comm_for(mc_context_t *ctx, int k, const int32_t *ranks, int n,
                                            mc_comm_t **comm_p) {
  char key[96], list[64], label[128];
  mc_comm_t *comm;
  mc_context_comm_key(ranks, n, ctx->cfg.share_comms ? "" : mc_topo_kind_name(k), key, sizeof(key));
  for (int c = 0; c < ctx->num_comms; c++)
    if (strcmp(ctx->comms[c]->key, key) == 0) {
      mc_context_label_add(ctx->comms[c], k);
      *comm_p = ctx->comms[c];
      return MOECOMM_SUCCESS;
    }
  mc_format_ranks(ranks, n, list, sizeof(list));
  snprintf(label, sizeof(label), "%s (ranks %s)", mc_topo_kind_name(k), list);
  comm = mc_comm_new(ranks, n, ctx->topo.rank, key, label);
  if (comm == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  comm->id = ctx->num_comms;
  comm->same_host = 1;
  for (int i = 0; i < n; i++) comm->same_host &= mc_world_same_host(&ctx->boot.world, ranks[i]);
  comm->cfg = &ctx->cfg;
  comm->err = &ctx->err;
  comm->device = ctx->device;
  comm->world = &ctx->boot.world;
  comm->xchg = &ctx->boot.xchg;
  comm->capturing = &ctx->capturing;
  ctx->comms[ctx->num_comms++] = comm;
  *comm_p = comm;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_context_build_groups(mc_context_t *ctx) {
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)ctx->topo.world);
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (ranks == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  for (int k = 0; k < MC_GROUP_KIND_COUNT && r == MOECOMM_SUCCESS; k++) {
    int n = mc_topo_group_ranks(&ctx->topo, (moecomm_group_kind_t)k, ctx->topo.rank, ranks);
    mc_group_t *g = &ctx->groups[k];
    r = mc_context_comm_for(ctx, k, ranks, n, &g->comm);
    g->ctx = ctx;
    g->kind = k;
  }
  free(ranks);
  return r;
}

/* Where the context runs: a CUDA ordinal, or the CPU.  The ordinal for MOECOMM_DEVICE_AUTO
   needs the local rank, so it is finished after bootstrap (mc_context_pick_ordinal). */
static moecomm_result_t mc_context_pick_device(mc_context_t *ctx, int32_t requested) {
  mc_err_t why;
  int count;
  if (requested == MOECOMM_DEVICE_CPU) {
    ctx->device = MOECOMM_DEVICE_CPU;
    return MOECOMM_SUCCESS;
  }
  if (requested < MOECOMM_DEVICE_AUTO)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "device=%d: pass a CUDA ordinal, MOECOMM_DEVICE_CPU (-1) or "
                      "MOECOMM_DEVICE_AUTO (-2)",
                      (int)requested);
  count = mc_gpu_device_count();
  if (requested == MOECOMM_DEVICE_AUTO) {
    if (ctx->cfg.backend == MC_CHOICE_SHM) {
      MC_INFO("MOECOMM_BACKEND=shm: running on the CPU");
      ctx->device = MOECOMM_DEVICE_CPU;
    } else if (count == 0) {
      MC_INFO("no CUDA device: running on the CPU with the shm backend");
      ctx->device = MOECOMM_DEVICE_CPU;
    } else if (!mc_backend_usable(MOECOMM_BACKEND_NCCL, &ctx->cfg, 0, &why)) {
      /* GPU contexts need NCCL (it serves what the custom kernels do not): without it, the
         same as without a GPU */
      MC_INFO("%d CUDA device%s but %s: running on the CPU with the shm backend", count,
              count == 1 ? "" : "s", why.msg);
      ctx->device = MOECOMM_DEVICE_CPU;
    } else {
      ctx->device = 0; /* ordinal chosen after bootstrap */
    }
    return MOECOMM_SUCCESS;
  }
  if (requested >= count)
    return mc_err_set(&ctx->err, MOECOMM_ERR_UNAVAILABLE,
                      "device=%d requested but this process sees %d CUDA device%s", (int)requested,
                      count, count == 1 ? "" : "s");
  ctx->device = requested;
  return MOECOMM_SUCCESS;
}

/* Ranks that drive the same GPU cannot communicate through it (NCCL and the custom kernels need
   one GPU per rank): found at creation on every rank alike (each compares everyone's identity),
   with what to do instead.  Collective over the world. */
static moecomm_result_t mc_context_check_gpus(mc_context_t *ctx) {
  const int world = ctx->topo.world;
  mc_gpu_id_t mine, *all = calloc((size_t)world, sizeof(*all));
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)world);
  mc_xchg_set_t set;
  moecomm_result_t r = mc_gpu_identity(ctx->device, &mine, &ctx->err);
  int bad = -1;
  if (all == NULL || ranks == NULL) {
    free(all);
    free(ranks);
    return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  }
  mc_context_world_set(ctx, ranks, &set);
  r = mc_agree(&set, "checking which GPU each rank drives", r, ctx->err.msg, &mine, all,
               sizeof(mine), &bad, &ctx->err);
  for (int a = 0; r == MOECOMM_SUCCESS && a < world; a++)
    for (int b = a + 1; r == MOECOMM_SUCCESS && b < world; b++)
      if (memcmp(all[a].uuid, all[b].uuid, sizeof(all[a].uuid)) == 0)
        r = mc_err_set(&ctx->err, MOECOMM_ERR_CONFIG,
                       "ranks %d and %d both drive GPU %.24s: moecomm needs one GPU per rank. "
                       "Give each rank its own device (CUDA_VISIBLE_DEVICES, or the device "
                       "ordinal in the context params), or run CPU ranks on the shm backend "
                       "(device MOECOMM_DEVICE_CPU)",
                       a, b, all[a].bus_id);
  free(all);
  free(ranks);
  return r;
}

/* Copies the caller's params (min of the two sizes, the rest zero) and checks them. */
static moecomm_result_t mc_context_read_params(const moecomm_context_params_t *params,
                                               moecomm_context_params_t *p, mc_err_t *err) {
  const size_t min_size = MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device);
  if (params == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params is NULL");
  if (params->struct_size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "context params struct_size %zu is smaller than the ABI 1.0 layout (%zu)",
                      params->struct_size, min_size);
  memset(p, 0, sizeof(*p));
  memcpy(p, params, MC_MIN(params->struct_size, sizeof(*p)));
  if (p->topology == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params->topology is NULL");
  if (p->flags & ~(MOECOMM_CONTEXT_SEPARATE_COMMS | MOECOMM_CONTEXT_DETERMINISTIC))
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params->flags has unknown bits 0x%llx",
                      (unsigned long long)(p->flags & ~(MOECOMM_CONTEXT_SEPARATE_COMMS |
                                                        MOECOMM_CONTEXT_DETERMINISTIC)));
  return MOECOMM_SUCCESS;
}

static void mc_context_free(mc_context_t *ctx, int booted) {
  mc_gpu_scope_t scope;
  int scoped = ctx->device >= 0 && ctx->num_comms > 0 &&
               mc_gpu_scope_enter(ctx->device, &scope, NULL) == MOECOMM_SUCCESS;
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = ctx->comms[c];
    /* Reverse order of the registry: custom (may sit on NCCL) before nccl before shm; a
       backend's expert-parallel state before its communicator. */
    for (int b = MC_BACKEND_COUNT - 1; b > MOECOMM_BACKEND_NONE; b--) {
      const mc_backend_ops_t *ops = mc_backend_get((moecomm_backend_t)b);
      if (ops == NULL) continue;
      if (comm->be[b].moe != NULL && ops->moe_fini != NULL) ops->moe_fini(comm);
      if (comm->be[b].created && ops->comm_fini != NULL) ops->comm_fini(comm);
    }
    mc_comm_free(comm);
  }
  if (scoped) mc_gpu_scope_leave(&scope);
  if (booted) mc_boot_fini(&ctx->boot, ctx->cfg.timeout_ms);
  free(ctx);
}

moecomm_result_t mc_context_create(const moecomm_context_params_t *params, mc_context_t **ctx_p,
                                   mc_err_t *err) {
  moecomm_context_params_t p;
  mc_context_t *ctx;
  moecomm_result_t r;
  int booted = 0;

  if (ctx_p == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "ctx_p is NULL");
  if ((r = mc_context_read_params(params, &p, err)) != MOECOMM_SUCCESS) return r;
  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  if ((r = mc_config_load(&ctx->cfg, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
  if (p.flags & MOECOMM_CONTEXT_SEPARATE_COMMS) ctx->cfg.share_comms = 0;
  if (p.flags & MOECOMM_CONTEXT_DETERMINISTIC) ctx->cfg.deterministic = 1;
  if ((r = mc_topo_init(p.topology, &ctx->topo, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
  mc_log_set_rank(ctx->topo.rank);
  if ((r = mc_context_pick_device(ctx, p.device)) != MOECOMM_SUCCESS) goto fail;
  r = mc_boot_init(&ctx->topo, &ctx->cfg, ctx->device >= 0, p.host_allgather, p.host_user,
                   &ctx->boot, &ctx->err);
  if (r != MOECOMM_SUCCESS) goto fail;
  booted = 1;
  if (ctx->device >= 0) {
    if (p.device == MOECOMM_DEVICE_AUTO)
      ctx->device = ctx->boot.world.local_rank % mc_gpu_device_count();
    if ((r = mc_gpu_set_device(ctx->device, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
    if (ctx->topo.world > 1 && (r = mc_context_check_gpus(ctx)) != MOECOMM_SUCCESS) goto fail;
  }
  if ((r = mc_context_build_groups(ctx)) != MOECOMM_SUCCESS) goto fail;
  if ((r = mc_route_groups(ctx)) != MOECOMM_SUCCESS) goto fail;
  MC_INFO(
      "context %s ready: rank %d/%d on %s %d, tp=%d attn_tp=%d moe_tp=%d ep=%d, %d "
      "communicator objects (none created yet)",
      ctx->boot.xchg.ns, ctx->topo.rank, ctx->topo.world, ctx->device >= 0 ? "GPU" : "CPU",
      ctx->device, ctx->topo.tp, ctx->topo.attn_tp, ctx->topo.moe_tp, ctx->topo.ep, ctx->num_comms);
  *ctx_p = ctx;
  return MOECOMM_SUCCESS;

fail:
  if (err != NULL) *err = ctx->err;
  mc_context_free(ctx, booted);
  return r;
}

void mc_context_destroy(mc_context_t *ctx) {
  mc_context_free(ctx, 1);
}

void mc_context_world_set(mc_context_t *ctx, int32_t *ranks, mc_xchg_set_t *set_p) {
  mc_boot_world_set(&ctx->boot, ranks, set_p);
}
