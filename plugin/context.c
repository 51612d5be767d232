/* context.c - building a context: environment, topology, device, bootstrap, groups, and the
 * communicator objects shared by groups with the same rank list.  Nothing here creates backend
 * resources: that is the first collective's job (comm.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "gpu.h"
#include "log.h"
#include "util.h"

/* The key names a communicator the same way on every member: its rank list (and the group kind
   when sharing is off), or a hash of a long list. */
static void mc_comm_make_key(const int32_t *ranks, int n, const char *kind_suffix, char *key,
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

static moecomm_result_t mc_context_build_comms(mc_context_t *ctx) {
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)ctx->topo.world);
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (ranks == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    int n = mc_topo_group_ranks(&ctx->topo, (moecomm_group_kind_t)k, ctx->topo.rank, ranks);
    char key[96];
    mc_comm_t *comm = NULL;
    mc_comm_make_key(ranks, n, ctx->cfg.share_comms ? "" : mc_topo_kind_name(k), key, sizeof(key));
    for (int c = 0; c < ctx->num_comms && comm == NULL; c++)
      if (strcmp(ctx->comms[c]->key, key) == 0) comm = ctx->comms[c];
    if (comm == NULL) {
      char list[64];
      comm = calloc(1, sizeof(*comm));
      if (comm == NULL || (comm->ranks = malloc(sizeof(int32_t) * (size_t)n)) == NULL) {
        free(comm);
        r = mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
        break;
      }
      comm->ctx = ctx;
      comm->id = ctx->num_comms;
      comm->size = n;
      memcpy(comm->ranks, ranks, sizeof(int32_t) * (size_t)n);
      for (int i = 0; i < n; i++)
        if (ranks[i] == ctx->topo.rank) comm->rank = i;
      comm->same_host = 1;
      for (int i = 0; i < n; i++)
        comm->same_host &= ctx->host_hash[ranks[i]] == ctx->host_hash[ctx->topo.rank];
      snprintf(comm->key, sizeof(comm->key), "%s", key);
      mc_format_ranks(ranks, n, list, sizeof(list));
      snprintf(comm->label, sizeof(comm->label), "%s (ranks %s)", mc_topo_kind_name(k), list);
      ctx->comms[ctx->num_comms++] = comm;
    } else {
      /* Name every group kind that shares it: "TP/MOE_EP (ranks 0,1)". */
      char *paren = strstr(comm->label, " (");
      char rest[128];
      if (paren != NULL) {
        snprintf(rest, sizeof(rest), "%s", paren);
        snprintf(paren, sizeof(comm->label) - (size_t)(paren - comm->label), "/%s%s",
                 mc_topo_kind_name(k), rest);
      }
    }
    ctx->groups[k].magic = MC_GROUP_MAGIC;
    ctx->groups[k].ctx = ctx;
    ctx->groups[k].kind = k;
    ctx->groups[k].comm = comm;
  }
  free(ranks);
  return r;
}

/* Whether backend `be` is built and can run in this context (asked once per backend). */
static int mc_context_probe(mc_context_t *ctx, moecomm_backend_t be, mc_err_t *why) {
  static const char *const names[4] = {"none", "shm", "nccl", "custom"};
  const mc_backend_ops_t *ops = mc_backends[be];
  mc_err_clear(why);
  if (ops == NULL) {
    mc_err_set(why, MOECOMM_ERR_UNAVAILABLE, "the %s backend is not compiled into this build",
               names[be]);
    return -1;
  }
  return ops->probe == NULL || ops->probe(ctx, why) == MOECOMM_SUCCESS ? 1 : -1;
}

/* Which backend each group asks for (DESIGN.md "Backends"), checked against what this context
   can run.  An explicit request that cannot run here is an error; auto never is.  The custom
   all-reduce is an optimisation: where it cannot run (not built, no device support, a group
   spanning hosts), NCCL serves. */
static moecomm_result_t mc_context_choose_backends(mc_context_t *ctx) {
  int probed[4] = {0, 0, 0, 0}; /* 0 not yet, 1 ok, -1 failed */
  mc_err_t why[4];
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    mc_group_t *g = &ctx->groups[k];
    int own = ctx->cfg.group_backend[k] != MC_CHOICE_UNSET;
    mc_backend_choice_t choice = own ? ctx->cfg.group_backend[k] : ctx->cfg.backend;
    const char *var = own ? "MOECOMM_BACKEND_" : "MOECOMM_BACKEND";
    const char *var_kind = own ? mc_topo_kind_name(k) : "";
    moecomm_backend_t be;
    if (ctx->device < 0) {
      if (choice == MC_CHOICE_NCCL || choice == MC_CHOICE_CUSTOM)
        return mc_err_set(&ctx->err, MOECOMM_ERR_UNAVAILABLE,
                          "%s%s=%s needs a CUDA device, but this context runs on the CPU (%s); "
                          "use shm or auto",
                          var, var_kind, mc_choice_name(choice),
                          mc_gpu_device_count() == 0 ? "no CUDA device found"
                                                     : "device MOECOMM_DEVICE_CPU was requested");
      be = MOECOMM_BACKEND_SHM;
    } else if (choice == MC_CHOICE_SHM) {
      return mc_err_set(&ctx->err, MOECOMM_ERR_CONFIG,
                        "%s%s=shm serves CPU contexts (host buffers), but this context uses "
                        "CUDA device %d; use nccl, custom or auto, or create the context with "
                        "device MOECOMM_DEVICE_CPU",
                        var, var_kind, ctx->device);
    } else if (choice == MC_CHOICE_CUSTOM ||
               (choice == MC_CHOICE_AUTO &&
                (k == MOECOMM_GROUP_TP || k == MOECOMM_GROUP_ATTN_TP))) {
      be = MOECOMM_BACKEND_CUSTOM;
    } else {
      be = MOECOMM_BACKEND_NCCL;
    }
    if (be == MOECOMM_BACKEND_CUSTOM && g->comm->size > 1 && !g->comm->same_host) {
      MC_INFO(
          "group %s spans several hosts: the custom all-reduce needs peer-mapped memory "
          "on one host, so this group uses nccl",
          mc_topo_kind_name(k));
      be = MOECOMM_BACKEND_NCCL;
    }
    if (probed[be] == 0) {
      probed[be] = mc_context_probe(ctx, be, &why[be]);
      if (probed[be] < 0 && (be != MOECOMM_BACKEND_CUSTOM || choice == MC_CHOICE_CUSTOM))
        MC_INFO("backend %s unavailable: %s", mc_backends[be] ? mc_backends[be]->name : "?",
                why[be].msg);
    }
    if (probed[be] < 0 && be == MOECOMM_BACKEND_CUSTOM) {
      be = MOECOMM_BACKEND_NCCL;
      if (probed[be] == 0) probed[be] = mc_context_probe(ctx, be, &why[be]);
    }
    if (probed[be] < 0)
      return mc_err_set(&ctx->err, MOECOMM_ERR_UNAVAILABLE, "group %s needs the %s backend: %s",
                        mc_topo_kind_name(k), mc_backends[be] ? mc_backends[be]->name : "requested",
                        why[be].msg);
    g->backend = be;
  }
  return MOECOMM_SUCCESS;
}

/* Where the context runs: a CUDA ordinal, or the CPU.  The ordinal for MOECOMM_DEVICE_AUTO
   needs the local rank, so it is finished after bootstrap (mc_context_pick_ordinal). */
static moecomm_result_t mc_context_pick_device(mc_context_t *ctx, int32_t requested) {
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

moecomm_result_t mc_context_create(const moecomm_context_params_t *params, mc_context_t **ctx_p,
                                   mc_err_t *err) {
  moecomm_context_params_t p;
  size_t min_size = MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device);
  mc_context_t *ctx;
  moecomm_result_t r;
  int booted = 0;

  if (params == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params is NULL");
  if (ctx_p == NULL) return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "ctx_p is NULL");
  if (params->struct_size < min_size)
    return mc_err_set(err, MOECOMM_ERR_STRUCT_SIZE,
                      "context params struct_size %zu is smaller than the ABI 1.0 layout (%zu)",
                      params->struct_size, min_size);
  memset(&p, 0, sizeof(p));
  memcpy(&p, params, MC_MIN(params->struct_size, sizeof(p)));
  if (p.topology == NULL)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params->topology is NULL");
  if (p.flags & ~MOECOMM_CONTEXT_SEPARATE_COMMS)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT, "params->flags has unknown bits 0x%llx",
                      (unsigned long long)(p.flags & ~MOECOMM_CONTEXT_SEPARATE_COMMS));

  ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  if ((r = mc_config_load(&ctx->cfg, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
  if (p.flags & MOECOMM_CONTEXT_SEPARATE_COMMS) ctx->cfg.share_comms = 0;
  if ((r = mc_topo_init(p.topology, &ctx->topo, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
  mc_log_set_rank(ctx->topo.rank);
  if ((r = mc_context_pick_device(ctx, p.device)) != MOECOMM_SUCCESS) goto fail;
  if ((r = mc_boot_init(ctx, &p, params->struct_size)) != MOECOMM_SUCCESS) goto fail;
  booted = 1;
  if (ctx->device >= 0) {
    if (p.device == MOECOMM_DEVICE_AUTO) ctx->device = ctx->local_rank % mc_gpu_device_count();
    if ((r = mc_gpu_set_device(ctx->device, &ctx->err)) != MOECOMM_SUCCESS) goto fail;
  }
  if ((r = mc_context_build_comms(ctx)) != MOECOMM_SUCCESS) goto fail;
  if ((r = mc_context_choose_backends(ctx)) != MOECOMM_SUCCESS) goto fail;
  MC_INFO(
      "context %s ready: rank %d/%d on %s %d, tp=%d attn_tp=%d moe_tp=%d ep=%d, %d "
      "communicator objects (none created yet)",
      ctx->id, ctx->topo.rank, ctx->topo.world, ctx->device >= 0 ? "GPU" : "CPU", ctx->device,
      ctx->topo.tp, ctx->topo.attn_tp, ctx->topo.moe_tp, ctx->topo.ep, ctx->num_comms);
  ctx->magic = MC_CONTEXT_MAGIC;
  *ctx_p = ctx;
  return MOECOMM_SUCCESS;

fail:
  if (err != NULL) *err = ctx->err;
  if (booted) {
    for (int c = 0; c < ctx->num_comms; c++) {
      free(ctx->comms[c]->ranks);
      free(ctx->comms[c]);
    }
    mc_boot_fini(ctx);
  }
  free(ctx);
  return r;
}

void mc_context_destroy(mc_context_t *ctx) {
  mc_gpu_scope_t scope;
  int scoped = ctx->device >= 0 && mc_gpu_scope_enter(ctx->device, &scope, NULL) == MOECOMM_SUCCESS;
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = ctx->comms[c];
    /* Reverse order of creation: custom (may sit on NCCL) before nccl before shm. */
    for (int b = 3; b >= 1; b--)
      if (comm->be[b].created && mc_backends[b] != NULL && mc_backends[b]->comm_fini != NULL)
        mc_backends[b]->comm_fini(comm);
    free(comm->ranks);
    free(comm);
  }
  if (scoped) mc_gpu_scope_leave(&scope);
  mc_boot_fini(ctx);
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) ctx->groups[k].magic = 0;
  ctx->magic = 0;
  free(ctx);
}
