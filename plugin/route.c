/* SPDX-License-Identifier: Apache-2.0 */
/* route.c - the routing policy (route.h), in the order it is applied.
 *
 * At context creation, per group:
 *   1. MOECOMM_BACKEND_<GROUP>, else MOECOMM_BACKEND, else auto.
 *   2. A CPU context runs every group on shm; nccl or custom asked for there is an error.
 *   3. A GPU context: shm asked for is an error; custom when asked for, or under auto for TP and
 *      ATTN_TP (the groups whose small all-reduces sit on the critical path); NCCL otherwise (MoE
 *      groups move large messages, where custom buffers would cost memory for nothing).
 *   4. custom needs every member on one host (peer-mapped memory): a group spanning hosts uses
 *      NCCL.  custom that cannot run on this device (not built, older GPU) uses NCCL too.
 *   5. A backend that cannot run here at all is an error naming the group.
 *   6. Hint: a communicator used only by MoE groups gets NCCL's lean config (fewer channels, less
 *      memory) under MOECOMM_NCCL_CONFIG=auto; =lean gives it to every one, =default to none.
 *   D. deterministic mode (MOECOMM_DETERMINISTIC, MOECOMM_CONTEXT_DETERMINISTIC) on a GPU: a
 *      group that would use NCCL uses custom instead when it can (one host, at most 8 ranks,
 *      custom runs here, MOECOMM_ALGO is not nccl), since only custom reduces in a fixed order.
 * Per call on a group whose backend is custom (every other group's calls go to its backend):
 *   7. custom serves only what its caps list (float all-reduce, all_reduce_rmsnorm, and in
 *      deterministic mode reduce_scatter, up to 8 members), nothing above
 *      MOECOMM_CUSTOM_MAX_BYTES, nothing under MOECOMM_ALGO=nccl, and all_reduce_rmsnorm only
 *      where the fused kernels' requirements hold (hidden a multiple of 8 up to 16384, 16-byte
 *      aligned buffers, finite eps): NCCL serves the rest (all_reduce_rmsnorm: unfused);
 *   8. its communicator is created by the first such call; if its members cannot set it up
 *      (decided alike on every member: no P2P path, settings that differ...), NCCL serves;
 *   9. the algorithm comes from the measured table below (or MOECOMM_ALGO), within what the
 *      communicator can take; none fits: NCCL.  all_reduce_rmsnorm has its own table (12).
 *  10. deterministic mode: custom takes every size of its reductions (what the table does not
 *      take runs in pieces through the staged kernels; reduce_scatter as one all-reduce per
 *      member's block), and a float reduction that would still reach NCCL is refused (NCCL's
 *      bits depend on the size and the algorithm).  int32 is exact in any order: not refused.
 *  11. expert-parallel dispatch/combine: shm on CPU, the NVLink kernels within a host, NCCL
 *      across hosts.
 *  12. all_reduce_rmsnorm on custom: the fused kernel its table (or MOECOMM_ALGO ll,
 *      twoshot_push, oneshot_push) picks within what the communicator can take; none: unfused
 *      (the all-reduce routed as any all-reduce, then the norm kernel; the same bits). */
#include "route.h"

#include <stdint.h>
#include <string.h>

#include "../kernels/mc_kernels.h"
#include "../kernels/mc_shape.h"
#include "gpu.h"
#include "lazy.h"
#include "log.h"
#include "registry.h"
#include "util.h"

/* ---- context creation ------------------------------------------------------------------- */

typedef struct mc_route_probe {
  int state[MC_BACKEND_COUNT]; /* 0 not asked yet, 1 usable, -1 not */
  mc_err_t why[MC_BACKEND_COUNT];
} mc_route_probe_t;

static int mc_route_usable(mc_route_probe_t *pr, const mc_config_t *cfg, moecomm_backend_t be,
                           int device) {
  if (pr->state[be] == 0) pr->state[be] = mc_backend_usable(be, cfg, device, &pr->why[be]) ? 1 : -1;
  return pr->state[be] > 0;
}

/* Rules 1-3: what the environment and the group kind ask for. */
static moecomm_result_t mc_route_wanted(mc_context_t *ctx, int kind, moecomm_backend_t *be_p,
                                        int *explicit_p) {
  const int own = ctx->cfg.group_backend[kind] != MC_CHOICE_UNSET;
  const mc_backend_choice_t choice = own ? ctx->cfg.group_backend[kind] : ctx->cfg.backend;
  const char *var = own ? "MOECOMM_BACKEND_" : "MOECOMM_BACKEND";
  const char *var_kind = own ? mc_topo_kind_name(kind) : "";

  *explicit_p = choice != MC_CHOICE_AUTO;
  if (ctx->device < 0) {
    if (choice == MC_CHOICE_NCCL || choice == MC_CHOICE_CUSTOM)
      return mc_err_set(&ctx->err, MOECOMM_ERR_UNAVAILABLE,
                        "%s%s=%s needs a CUDA device, but this context runs on the CPU (%s); "
                        "use shm or auto",
                        var, var_kind, mc_choice_name(choice),
                        mc_gpu_device_count() == 0 ? "no CUDA device found"
                                                   : "device MOECOMM_DEVICE_CPU was requested");
    *be_p = MOECOMM_BACKEND_SHM;
  } else if (choice == MC_CHOICE_SHM) {
    return mc_err_set(&ctx->err, MOECOMM_ERR_CONFIG,
                      "%s%s=shm serves CPU contexts (host buffers), but this context uses CUDA "
                      "device %d; use nccl, custom or auto, or create the context with device "
                      "MOECOMM_DEVICE_CPU",
                      var, var_kind, ctx->device);
  } else if (choice == MC_CHOICE_CUSTOM ||
             (choice == MC_CHOICE_AUTO &&
              (kind == MOECOMM_GROUP_TP || kind == MOECOMM_GROUP_ATTN_TP))) {
    *be_p = MOECOMM_BACKEND_CUSTOM;
  } else {
    *be_p = MOECOMM_BACKEND_NCCL;
  }
  return MOECOMM_SUCCESS;
}

/* Rules 4-5: what this machine and the group's placement allow. */
static moecomm_result_t mc_route_possible(mc_context_t *ctx, int kind, int explicit_,
                                          mc_route_probe_t *pr, moecomm_backend_t *be_p) {
  moecomm_backend_t be = *be_p;
  const mc_comm_t *comm = ctx->groups[kind].comm;
  if (be == MOECOMM_BACKEND_CUSTOM && comm->size > 1 && !comm->same_host) {
    MC_INFO(
        "group %s spans several hosts: the custom all-reduce needs peer-mapped memory on one "
        "host, so this group uses nccl",
        mc_topo_kind_name(kind));
    be = MOECOMM_BACKEND_NCCL;
  }
  if (be == MOECOMM_BACKEND_CUSTOM && !mc_route_usable(pr, &ctx->cfg, be, ctx->device)) {
    if (explicit_)
      MC_INFO("backend custom unavailable for group %s: %s; using nccl", mc_topo_kind_name(kind),
              pr->why[be].msg);
    be = MOECOMM_BACKEND_NCCL;
  }
  if (!mc_route_usable(pr, &ctx->cfg, be, ctx->device))
    return mc_err_set(&ctx->err, MOECOMM_ERR_UNAVAILABLE, "group %s needs the %s backend: %s",
                      mc_topo_kind_name(kind), mc_backend_name(be), pr->why[be].msg);
  *be_p = be;
  return MOECOMM_SUCCESS;
}

/* Rule D: in deterministic mode a GPU group custom can serve does not stay on NCCL. */
static void mc_route_deterministic_group(mc_context_t *ctx, int kind, mc_route_probe_t *pr,
                                         moecomm_backend_t *be_p) {
  const mc_comm_t *comm = ctx->groups[kind].comm;
  if (!ctx->cfg.deterministic || ctx->device < 0 || *be_p != MOECOMM_BACKEND_NCCL ||
      comm->size < 2 || comm->size > MC_KERN_MAX_RANKS || !comm->same_host ||
      ctx->cfg.algo == MC_ALGO_NCCL ||
      !mc_route_usable(pr, &ctx->cfg, MOECOMM_BACKEND_CUSTOM, ctx->device))
    return;
  MC_INFO("group %s uses custom for its reductions: deterministic mode", mc_topo_kind_name(kind));
  *be_p = MOECOMM_BACKEND_CUSTOM;
}

/* Rule 6: used only by MOE_EP / MOE_TP groups (and by at least one). */
static int mc_route_moe_only(const mc_context_t *ctx, const mc_comm_t *comm) {
  int used = 0;
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    if (ctx->groups[k].comm != comm) continue;
    if (k != MOECOMM_GROUP_MOE_EP && k != MOECOMM_GROUP_MOE_TP) return 0;
    used = 1;
  }
  return used;
}

moecomm_result_t mc_route_groups(mc_context_t *ctx) {
  mc_route_probe_t pr;
  memset(&pr, 0, sizeof(pr));
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
    moecomm_backend_t be = MOECOMM_BACKEND_NONE;
    int explicit_ = 0;
    moecomm_result_t r = mc_route_wanted(ctx, k, &be, &explicit_);
    if (r == MOECOMM_SUCCESS) r = mc_route_possible(ctx, k, explicit_, &pr, &be);
    if (r != MOECOMM_SUCCESS) return r;
    mc_route_deterministic_group(ctx, k, &pr, &be);
    ctx->groups[k].backend = be;
  }
  for (int c = 0; c < ctx->num_comms; c++) {
    mc_comm_t *comm = ctx->comms[c];
    comm->hints.nccl_lean =
        ctx->cfg.nccl_config == MC_NCCL_CONFIG_LEAN ||
        (ctx->cfg.nccl_config == MC_NCCL_CONFIG_AUTO && mc_route_moe_only(ctx, comm));
  }
  return MOECOMM_SUCCESS;
}

/* ---- one call --------------------------------------------------------------------------- */

typedef struct mc_route_row {
  int max_members;    /* members up to this count */
  size_t ll_max;      /* LL up to here */
  size_t oneshot_max; /* then one-shot up to here */
  size_t twoshot_max; /* then two-shot up to here, NCCL above */
} mc_route_row_t;

/* Measured on H200 NVLink (bench/results/allreduce-*.json, bf16): 2 members: LL is fastest
   through 256 KiB, one-shot and two-shot tie at 1 MiB, two-shot wins from 4 MiB; 4 members: LL
   through 16 KiB, one-shot at 64 KiB, two-shot from 256 KiB.  8 members: predicted from bytes
   moved and barriers (bench/NOTES-custom.md), not yet measured. */
static const mc_route_row_t mc_route_table[] = {
    {2, 256u << 10, 512u << 10, SIZE_MAX},
    {4, 16u << 10, 64u << 10, SIZE_MAX},
    {8, 64u << 10, 128u << 10, SIZE_MAX},
};

const char *mc_route_algo_name(int algo) {
  return mc_kern_algo_name(algo);
}

/* Whether a push all-reduce (MOECOMM_ALGO twoshot_push / oneshot_push) of bytes fits the
   staging (its plan counts 16-byte vectors only, so bf16 elements stand for any dtype). */
static int mc_route_push_fits(const mc_config_t *cfg, int algo, int members, size_t bytes,
                              const mc_backend_limits_t *lim) {
  mc_kern_plan_t plan;
  return mc_kern_plan_all_reduce(algo, members, (bytes + 1) / 2, MOECOMM_BFLOAT16,
                                 cfg->custom.max_blocks, lim->staged_max_bytes,
                                 &plan) == MC_KERN_PLAN_OK;
}

int mc_route_custom_algo(const mc_config_t *cfg, int members, size_t bytes, int capturing,
                         const mc_backend_limits_t *lim) {
  const size_t padded = (bytes + 15) & ~(size_t)15;
  const int fits_ll = padded <= lim->ll_max_bytes;
  const int fits_stage = padded <= lim->staged_max_bytes;
  /* captured two-shot works on the callers' buffers, registered at capture end: no staging
     limit, but a registration slot */
  const int twoshot_ok = capturing ? lim->capture_slots != 0 : fits_stage;
  const mc_route_row_t *row = &mc_route_table[0];

  if (bytes > cfg->custom_max_bytes || cfg->algo == MC_ALGO_NCCL) return 0;
  /* A forced algorithm serves every size it can; the others follow the table. */
  if (cfg->algo == MC_ALGO_LL && fits_ll) return MC_KERN_LL;
  if (cfg->algo == MC_ALGO_ONESHOT && fits_stage) return MC_KERN_ONESHOT;
  if (cfg->algo == MC_ALGO_TWOSHOT && twoshot_ok) return MC_KERN_TWOSHOT;
  /* the push kernels take any size, eager or captured, with nothing to register */
  if (cfg->algo == MC_ALGO_TWOSHOT_PUSH &&
      mc_route_push_fits(cfg, MC_KERN_TWOSHOT_PUSH, members, bytes, lim))
    return MC_KERN_TWOSHOT_PUSH;
  if (cfg->algo == MC_ALGO_ONESHOT_PUSH &&
      mc_route_push_fits(cfg, MC_KERN_ONESHOT_PUSH, members, bytes, lim))
    return MC_KERN_ONESHOT_PUSH;
  for (size_t i = 0; i < MC_ARRAY_LEN(mc_route_table); i++) {
    row = &mc_route_table[i];
    if (members <= row->max_members) break;
  }
  if (bytes <= row->ll_max && fits_ll) return MC_KERN_LL;
  if (bytes <= row->oneshot_max && fits_stage) return MC_KERN_ONESHOT;
  if (bytes <= row->twoshot_max && twoshot_ok) return MC_KERN_TWOSHOT;
  return 0;
}

/* Rule 12's table, rows per call: LL while T is at most ll_rows (and fits the LL slot), the
   one-shot push kernel up to oneshot_rows, the two-shot push kernel above.  From simulated
   members only (2 members on one GPU, bench/kern_sim.c: 1 x 7168 LL 7.4 us, 8 x 7168 LL 8.9 us,
   64 x 7168 one-shot push 12.3 us, 512 x 7168 two-shot push 53.1 us): choices to be replaced by
   2-GPU measurements (bench/fused.c), the same for every member count until then. */
static const struct { size_t ll_rows, oneshot_rows; } mc_route_fused_table = {16, 256};

/* Whether the fused kernel algo can take tokens x hidden on this communicator (its plan). */
static int mc_route_fused_fits(const mc_config_t *cfg, int algo, int members, size_t tokens,
                               size_t hidden, int dtype, const mc_backend_limits_t *lim) {
  mc_kern_plan_t plan;
  /* an LL slot holds twice its payload (MC_KERN_LL_PAYLOAD) */
  return mc_kern_plan_rmsnorm(algo, members, tokens, hidden, dtype, cfg->custom.max_blocks,
                              lim->staged_max_bytes, 2 * lim->ll_max_bytes,
                              &plan) == MC_KERN_PLAN_OK;
}

int mc_route_fused_algo(const mc_config_t *cfg, int members, size_t tokens, size_t hidden,
                        int dtype, const mc_backend_limits_t *lim) {
  const int forced = cfg->algo == MC_ALGO_LL             ? MC_KERN_LL
                     : cfg->algo == MC_ALGO_TWOSHOT_PUSH ? MC_KERN_TWOSHOT_PUSH
                     : cfg->algo == MC_ALGO_ONESHOT_PUSH ? MC_KERN_ONESHOT_PUSH
                                                         : 0;
  if (cfg->algo == MC_ALGO_NCCL) return 0;
  /* A forced kernel serves every call it can; the others follow the table. */
  if (forced && mc_route_fused_fits(cfg, forced, members, tokens, hidden, dtype, lim))
    return forced;
  if (tokens <= mc_route_fused_table.ll_rows &&
      mc_route_fused_fits(cfg, MC_KERN_LL, members, tokens, hidden, dtype, lim))
    return MC_KERN_LL;
  if (tokens <= mc_route_fused_table.oneshot_rows &&
      mc_route_fused_fits(cfg, MC_KERN_ONESHOT_PUSH, members, tokens, hidden, dtype, lim))
    return MC_KERN_ONESHOT_PUSH;
  if (mc_route_fused_fits(cfg, MC_KERN_TWOSHOT_PUSH, members, tokens, hidden, dtype, lim))
    return MC_KERN_TWOSHOT_PUSH;
  return 0;
}

static int mc_route_aligned(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

int mc_route_fused_possible(const mc_rmsnorm_t *n) {
  return n->hidden % 8 == 0 && n->hidden <= MC_KERN_ROW_MAX_H && n->eps <= 3.4e38f &&
         mc_route_aligned(n->x) && mc_route_aligned(n->residual) && mc_route_aligned(n->weight) &&
         mc_route_aligned(n->out) && (n->out_fp8 == NULL || mc_route_aligned(n->out_fp8));
}

/* Rule 10 for a reduction: whether a deterministic call is bound to the order it is reduced in
   (floats; int32 sums and every max/min of int32 are exact in any order). */
static int mc_route_order_matters(const mc_coll_t *c) {
  return c->deterministic && c->dtype != MOECOMM_INT32 &&
         (c->kind == MC_COLL_ALL_REDUCE || c->kind == MC_COLL_REDUCE_SCATTER ||
          c->kind == MC_COLL_RMSNORM);
}

/* Rule 7: whether custom could serve this call at all, before creating anything for it. */
static int mc_route_custom_may(const mc_group_t *g, const mc_coll_t *c) {
  const mc_backend_ops_t *ops = mc_backend_get(MOECOMM_BACKEND_CUSTOM);
  const mc_config_t *cfg = &g->ctx->cfg;
  const int det = mc_route_order_matters(c);
  if (ops == NULL || !(ops->caps.colls & (1u << c->kind)) || !(ops->caps.dtypes & (1u << c->dtype)))
    return 0;
  if (ops->caps.max_ranks > 0 && g->comm->size > ops->caps.max_ranks) return 0;
  if (cfg->algo == MC_ALGO_NCCL) return 0;
  if (c->kind == MC_COLL_REDUCE_SCATTER) return det; /* NCCL's is faster; only det needs ours */
  if (c->kind == MC_COLL_RMSNORM && !mc_route_fused_possible(c->norm)) return 0;
  return det || c->count * mc_dtype_size(c->dtype) <= cfg->custom_max_bytes;
}

/* Rule 10's pieces: count elements cut into pieces of at most the staging half (and cap_bytes),
   16-byte multiples, each through the algorithm the table gives a piece in its staged (eager)
   form.  Returns the algorithm (0: none) and the piece in *chunk_p. */
static int mc_route_pieces(const mc_config_t *cfg, int members, size_t count, size_t es,
                           size_t cap_bytes, const mc_backend_limits_t *lim, size_t *chunk_p) {
  const size_t cap = MC_MIN(MC_MIN(lim->staged_max_bytes, cfg->custom_max_bytes), cap_bytes);
  const size_t piece = MC_MIN(count, cap / 16 * 16 / es);
  *chunk_p = piece;
  return piece == 0 ? 0 : mc_route_custom_algo(cfg, members, piece * es, 0, lim);
}

/* Rules 8-10 and 12: the custom communicator and the algorithm.  *be_p: CUSTOM with c->algo (and
   c->chunk) set, NCCL, or NONE for an all_reduce_rmsnorm to run unfused. */
static moecomm_result_t mc_route_custom(mc_group_t *g, mc_coll_t *c, moecomm_backend_t *be_p) {
  const mc_backend_ops_t *ops = mc_backend_get(MOECOMM_BACKEND_CUSTOM);
  const mc_config_t *cfg = &g->ctx->cfg;
  const size_t es = mc_dtype_size(c->dtype);
  mc_backend_limits_t lim = {0, 0, -1, 0};
  moecomm_result_t r;
  *be_p = c->kind == MC_COLL_RMSNORM ? MOECOMM_BACKEND_NONE : MOECOMM_BACKEND_NCCL;
  if (!mc_route_custom_may(g, c)) return MOECOMM_SUCCESS;
  r = mc_lazy_ensure(g->comm, MOECOMM_BACKEND_CUSTOM, c->capturing);
  if (r == MC_DEFER) return MOECOMM_SUCCESS;
  if (r != MOECOMM_SUCCESS) return r;
  if (ops->limits != NULL) ops->limits(g->comm, &lim);
  if (c->kind == MC_COLL_RMSNORM)
    c->algo = mc_route_fused_algo(cfg, g->comm->size, c->norm->tokens, c->norm->hidden,
                                  (int)c->dtype, &lim);
  else if (c->kind == MC_COLL_REDUCE_SCATTER) /* one all-reduce per block, its sink the scratch */
    c->algo = mc_route_pieces(cfg, g->comm->size, c->count, es, lim.scratch_bytes, &lim, &c->chunk);
  else if ((c->algo =
                mc_route_custom_algo(cfg, g->comm->size, c->count * es, c->capturing, &lim)) == 0 &&
           mc_route_order_matters(c))
    c->algo = mc_route_pieces(cfg, g->comm->size, c->count, es, SIZE_MAX, &lim, &c->chunk);
  if (c->algo != 0) *be_p = MOECOMM_BACKEND_CUSTOM;
  return MOECOMM_SUCCESS;
}

/* Rule 10: what keeps a deterministic reduction off the custom kernels, for the refusal. */
static const char *mc_route_why_not_custom(const mc_group_t *g) {
  const mc_comm_t *comm = g->comm;
  if (comm->size > MC_KERN_MAX_RANKS) return "the group has more than the custom kernels' 8 ranks";
  if (!comm->same_host) return "the group spans hosts (the custom kernels need one host)";
  if (g->ctx->cfg.algo == MC_ALGO_NCCL) return "MOECOMM_ALGO=nccl keeps it off the custom kernels";
  if (comm->be[MOECOMM_BACKEND_CUSTOM].declined)
    return "its custom communicator could not be set up (the INFO log says why)";
  return "the custom kernels cannot run on this device (the INFO log says why)";
}

/* Rule 10: shm reduces every element once, in rank order, whatever the size; the custom kernels
   do too (rank order in fp32, one rounding, the same for every algorithm); NCCL's result depends
   on the size and the algorithm.  So a reduction that would reach NCCL is refused. */
static moecomm_result_t mc_route_deterministic(const mc_group_t *g, const mc_coll_t *c,
                                               moecomm_backend_t be) {
  if (!mc_route_order_matters(c) || be != MOECOMM_BACKEND_NCCL) return MOECOMM_SUCCESS;
  return mc_err_set(&g->ctx->err, MOECOMM_ERR_NOT_SUPPORTED,
                    "%s of %zu %s on %s: deterministic mode (MOECOMM_DETERMINISTIC / "
                    "MOECOMM_CONTEXT_DETERMINISTIC) needs a backend whose result does not depend "
                    "on the size, and only the custom kernels promise that on a GPU; %s",
                    mc_coll_name(c->kind), c->count, mc_dtype_name(c->dtype), g->comm->label,
                    mc_route_why_not_custom(g));
}

moecomm_result_t mc_route_call(mc_group_t *g, mc_coll_t *c, moecomm_backend_t *backend_p) {
  moecomm_backend_t be = g->backend;
  moecomm_result_t r;

  c->algo = 0;
  c->chunk = 0;
  c->deterministic = g->ctx->cfg.deterministic;
  if (g->comm->size == 1) {
    *backend_p = MOECOMM_BACKEND_NONE;
    return MOECOMM_SUCCESS;
  }
  if (be == MOECOMM_BACKEND_CUSTOM) {
    if ((r = mc_route_custom(g, c, &be)) != MOECOMM_SUCCESS) return r;
    MC_TRACE("%s of %zu %s on %s: %s%s%s", mc_coll_name(c->kind), c->count, mc_dtype_name(c->dtype),
             g->comm->label, c->algo ? mc_route_algo_name(c->algo) : mc_backend_name(be),
             c->kind == MC_COLL_RMSNORM && c->algo ? " (fused)" : "", c->chunk ? " in pieces" : "");
  }
  /* all_reduce_rmsnorm on NCCL: collective.c runs it unfused (NCCL has no fused kernel) */
  if (c->kind == MC_COLL_RMSNORM && be == MOECOMM_BACKEND_NCCL) be = MOECOMM_BACKEND_NONE;
  if ((r = mc_route_deterministic(g, c, be)) != MOECOMM_SUCCESS) return r;
  if (be == MOECOMM_BACKEND_NONE) {
    *backend_p = be;
    return MOECOMM_SUCCESS;
  }
  r = mc_lazy_ensure(g->comm, be, c->capturing);
  if (r == MC_DEFER)
    return mc_err_set(&g->ctx->err, MOECOMM_ERR_UNAVAILABLE,
                      "%s on %s: the %s backend declined this communicator", mc_coll_name(c->kind),
                      g->comm->label, mc_backend_name(be));
  if (r != MOECOMM_SUCCESS) return r;
  *backend_p = be;
  return MOECOMM_SUCCESS;
}

/* Rule 11: expert parallelism on the MOE_EP group.  shm on a CPU context.  On a GPU the NVLink
   kernels (the custom backend) when every member is on one host, there are at most 8 of them and
   the custom backend runs on this device; NCCL otherwise (and when MOECOMM_BACKEND_MOE_EP, or
   MOECOMM_BACKEND, says nccl). */
moecomm_result_t mc_route_moe_backend(const mc_group_t *g, moecomm_backend_t *be_p) {
  const mc_context_t *ctx = g->ctx;
  const int own = ctx->cfg.group_backend[g->kind] != MC_CHOICE_UNSET;
  const mc_backend_choice_t choice = own ? ctx->cfg.group_backend[g->kind] : ctx->cfg.backend;
  const mc_backend_ops_t *custom = mc_backend_get(MOECOMM_BACKEND_CUSTOM);
  mc_err_t why;
  if (g->moe_backend != MOECOMM_BACKEND_NONE) {
    *be_p = g->moe_backend;
    return MOECOMM_SUCCESS;
  }
  if (ctx->device < 0) {
    *be_p = MOECOMM_BACKEND_SHM;
    return MOECOMM_SUCCESS;
  }
  *be_p = MOECOMM_BACKEND_NCCL;
  if (choice == MC_CHOICE_NCCL || custom == NULL || custom->moe_dispatch == NULL)
    return MOECOMM_SUCCESS;
  if (g->comm->same_host && g->comm->size <= MC_EP_MAX_NVL_RANKS &&
      mc_backend_usable(MOECOMM_BACKEND_CUSTOM, &ctx->cfg, ctx->device, &why))
    *be_p = MOECOMM_BACKEND_CUSTOM;
  return MOECOMM_SUCCESS;
}

moecomm_backend_t mc_route_group_backend(const mc_group_t *g, const char **name_p) {
  /* Indexed by a bit per backend that served calls: shm 1, nccl 2, custom 4. */
  static const char *const names[8] = {NULL,     "shm",        "nccl",        "shm+nccl",
                                       "custom", "shm+custom", "custom+nccl", "shm+custom+nccl"};
  moecomm_backend_t be = g->backend;
  unsigned mask = 0;
  if (be == MOECOMM_BACKEND_CUSTOM && g->comm->be[be].declined) be = MOECOMM_BACKEND_NCCL;
  for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++)
    if (g->served[b] > 0) mask |= 1u << (b - 1);
  /* One backend served everything so far: that is the group's backend, whatever was chosen. */
  for (int b = MOECOMM_BACKEND_NONE + 1; b < MC_BACKEND_COUNT; b++)
    if (mask == 1u << (b - 1)) be = (moecomm_backend_t)b;
  *name_p = mask != 0 ? names[mask] : mc_backend_name(be);
  return be;
}
