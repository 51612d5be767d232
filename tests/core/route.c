/* SPDX-License-Identifier: Apache-2.0 */
/* route.c - the routing policy (plugin/route.c) on CPU, white-box.
 *
 * 1. The custom algorithm table: every row's boundaries for 2, 3, 4, 8 and 9 members, what the
 *    communicator can take (LL payload, staging, capture slots), MOECOMM_ALGO forcing each
 *    algorithm and nccl, MOECOMM_CUSTOM_MAX_BYTES; the push kernels (MOECOMM_ALGO twoshot_push,
 *    oneshot_push) at any size, eager or captured, while their plan fits the staging.
 * 2. The fused all_reduce_rmsnorm table (rule 12): LL, one-shot push, two-shot push by T and what
 *    fits (LL slot, staging), forced kernels, nccl, nothing fitting; what the fused kernels can
 *    take at all (hidden, eps, alignment of every buffer).
 * 3. Per-group choices and per-call routing on real multi-rank contexts made to look like GPU
 *    contexts to the policy, with fake nccl and custom backends in the registry (they record what
 *    reaches them; no device is touched): TP and ATTN_TP on custom, MoE groups on NCCL with the
 *    lean hint, a group spanning hosts (MOECOMM_HOST_ID) on NCCL, MOECOMM_BACKEND_<GROUP>,
 *    MOECOMM_NCCL_CONFIG, what custom cannot serve (int32, all_gather, too large) going to NCCL
 *    without creating the custom communicator, a custom communicator that declines, and what
 *    group_stats then reports.  all_reduce_rmsnorm: fused on custom where the kernels can take it,
 *    unfused (NONE) otherwise, without creating the custom communicator for it.
 * 4. Deterministic mode (rule D, 10): every one-host group of up to 8 ranks on custom; all-reduces
 *    the table does not take (above MOECOMM_CUSTOM_MAX_BYTES, above the staging) and every
 *    reduce_scatter in pieces; what custom does not serve (all_gather, int32) still on NCCL; float
 *    reductions refused with MOECOMM_ERR_NOT_SUPPORTED naming why on a group spanning hosts, of 9
 *    ranks, under MOECOMM_ALGO=nccl, and when the custom communicator declined. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/mc_kernels.h"
#include "../../plugin/context.h"
#include "../../plugin/registry.h"
#include "../../plugin/route.h"
#include "../common/harness.h"

#define KB(x) ((size_t)(x) << 10)

static mc_config_t cfg_with(const char *const *env) {
  mc_config_t cfg;
  mc_err_t err;
  unsetenv("MOECOMM_ALGO");
  unsetenv("MOECOMM_CUSTOM_MAX_BYTES");
  mc_test_env_apply(env);
  if (!MC_CHECK(mc_config_load(&cfg, &err) == MOECOMM_SUCCESS, "config: %s", err.msg))
    memset(&cfg, 0, sizeof(cfg));
  return cfg;
}

static void expect_algo(const mc_config_t *cfg, int members, size_t bytes, int capturing,
                        const mc_backend_limits_t *lim, int want, const char *what) {
  int got = mc_route_custom_algo(cfg, members, bytes, capturing, lim);
  MC_CHECK(got == want, "%s: %d members, %zu bytes%s: %s, want %s", what, members, bytes,
           capturing ? " (captured)" : "", mc_kern_algo_name(got), mc_kern_algo_name(want));
}

static void test_table(void) {
  const mc_backend_limits_t lim = {KB(256), KB(32768), 100, 0};
  const mc_backend_limits_t small = {KB(4), KB(64), 0, 0};
  mc_config_t cfg = cfg_with(NULL);
  /* 2 members: LL through 256 KiB, one-shot to 512 KiB, two-shot above */
  expect_algo(&cfg, 2, 1, 0, &lim, MC_KERN_LL, "2-row");
  expect_algo(&cfg, 2, KB(256), 0, &lim, MC_KERN_LL, "2-row");
  expect_algo(&cfg, 2, KB(256) + 16, 0, &lim, MC_KERN_ONESHOT, "2-row");
  expect_algo(&cfg, 2, KB(512), 0, &lim, MC_KERN_ONESHOT, "2-row");
  expect_algo(&cfg, 2, KB(512) + 2, 0, &lim, MC_KERN_TWOSHOT, "2-row");
  expect_algo(&cfg, 2, KB(32768), 0, &lim, MC_KERN_TWOSHOT, "2-row");
  /* 3 and 4 members use the 4-member row: LL through 16 KiB, one-shot to 64 KiB */
  for (int m = 3; m <= 4; m++) {
    expect_algo(&cfg, m, KB(16), 0, &lim, MC_KERN_LL, "4-row");
    expect_algo(&cfg, m, KB(16) + 4, 0, &lim, MC_KERN_ONESHOT, "4-row");
    expect_algo(&cfg, m, KB(64), 0, &lim, MC_KERN_ONESHOT, "4-row");
    expect_algo(&cfg, m, KB(64) + 4, 0, &lim, MC_KERN_TWOSHOT, "4-row");
  }
  /* 8 members (and anything larger falls back to the last row) */
  for (int m = 5; m <= 9; m += 4) {
    expect_algo(&cfg, m, KB(64), 0, &lim, MC_KERN_LL, "8-row");
    expect_algo(&cfg, m, KB(128), 0, &lim, MC_KERN_ONESHOT, "8-row");
    expect_algo(&cfg, m, KB(128) + 4, 0, &lim, MC_KERN_TWOSHOT, "8-row");
  }
  /* what the communicator can take */
  expect_algo(&cfg, 2, KB(8), 0, &small, MC_KERN_ONESHOT, "LL payload 4 KiB");
  expect_algo(&cfg, 2, KB(128), 0, &small, 0, "staging 64 KiB, eager");
  expect_algo(&cfg, 2, KB(128), 1, &small, 0, "captured, no registration slot left");
  expect_algo(&cfg, 2, KB(1024), 1, &lim, MC_KERN_TWOSHOT, "captured two-shot needs no staging");
  expect_algo(&cfg, 2, KB(65536), 1, &lim, MC_KERN_TWOSHOT, "64 MiB captured");
  expect_algo(&cfg, 2, KB(65536) + 1, 1, &lim, 0, "above MOECOMM_CUSTOM_MAX_BYTES (64M)");
  {
    static const char *const env[] = {"MOECOMM_CUSTOM_MAX_BYTES=1M", NULL};
    mc_config_t c2 = cfg_with(env);
    expect_algo(&c2, 2, KB(1024), 0, &lim, MC_KERN_TWOSHOT, "MAX_BYTES=1M");
    expect_algo(&c2, 2, KB(1024) + 2, 0, &lim, 0, "MAX_BYTES=1M");
  }
  {
    static const char *const e_ll[] = {"MOECOMM_ALGO=ll", NULL};
    static const char *const e_one[] = {"MOECOMM_ALGO=oneshot", NULL};
    static const char *const e_two[] = {"MOECOMM_ALGO=twoshot", NULL};
    static const char *const e_nccl[] = {"MOECOMM_ALGO=nccl", NULL};
    mc_config_t c_ll = cfg_with(e_ll), c_one = cfg_with(e_one), c_two = cfg_with(e_two),
                c_nccl = cfg_with(e_nccl);
    expect_algo(&c_ll, 4, KB(200), 0, &lim, MC_KERN_LL, "ALGO=ll");
    expect_algo(&c_ll, 4, KB(300), 0, &lim, MC_KERN_TWOSHOT, "ALGO=ll past the LL payload");
    expect_algo(&c_one, 2, 64, 0, &lim, MC_KERN_ONESHOT, "ALGO=oneshot");
    expect_algo(&c_two, 2, 64, 0, &lim, MC_KERN_TWOSHOT, "ALGO=twoshot");
    expect_algo(&c_nccl, 2, 64, 0, &lim, 0, "ALGO=nccl");
  }
  {
    static const char *const e_tp[] = {"MOECOMM_ALGO=twoshot_push", NULL};
    static const char *const e_op[] = {"MOECOMM_ALGO=oneshot_push", NULL};
    const mc_backend_limits_t tiny = {KB(256), 256, 0, 0};
    mc_config_t c_tp = cfg_with(e_tp), c_op = cfg_with(e_op);
    expect_algo(&c_tp, 2, 64, 0, &lim, MC_KERN_TWOSHOT_PUSH, "ALGO=twoshot_push");
    expect_algo(&c_tp, 8, KB(65536), 1, &small, MC_KERN_TWOSHOT_PUSH,
                "ALGO=twoshot_push, 64 MiB captured through 64 KiB of staging");
    expect_algo(&c_op, 4, KB(1024), 0, &small, MC_KERN_ONESHOT_PUSH, "ALGO=oneshot_push");
    expect_algo(&c_tp, 8, KB(1024), 0, &tiny, 0, "ALGO=twoshot_push, 256 B of staging");
    expect_algo(&c_op, 2, KB(64), 0, &tiny, MC_KERN_LL,
                "ALGO=oneshot_push, 256 B of staging: the table");
  }
  cfg_with((const char *const[]){"MOECOMM_ALGO", "MOECOMM_CUSTOM_MAX_BYTES", NULL});
}

static void expect_fused(const mc_config_t *cfg, int members, size_t tokens, size_t hidden,
                         const mc_backend_limits_t *lim, int want, const char *what) {
  const int got = mc_route_fused_algo(cfg, members, tokens, hidden, MOECOMM_BFLOAT16, lim);
  MC_CHECK(got == want, "%s: fused, %d members, %zu x %zu: %s, want %s", what, members, tokens,
           hidden, got ? mc_kern_algo_name(got) : "unfused",
           want ? mc_kern_algo_name(want) : "unfused");
}

/* Rule 12 with the custom backend's real sizes: LL payload 256 KiB (a 512 KiB slot, T * H * 4
   bytes of packets), staging halves of 32 MiB. */
static void test_fused_table(void) {
  const mc_backend_limits_t lim = {KB(256), KB(32768), 100, 0};
  const mc_backend_limits_t no_ll = {KB(4), KB(32768), 100, 0};
  const mc_backend_limits_t tiny = {KB(256), 1024, 100, 0};
  mc_config_t cfg = cfg_with(NULL);
  for (int m = 2; m <= 8; m *= 2) {
    expect_fused(&cfg, m, 1, 7168, &lim, MC_KERN_LL, "table");
    expect_fused(&cfg, m, 16, 7168, &lim, MC_KERN_LL, "table");
    expect_fused(&cfg, m, 1, 16384, &lim, MC_KERN_LL, "table");
    expect_fused(&cfg, m, 17, 4096, &lim, MC_KERN_ONESHOT_PUSH, "table");
    expect_fused(&cfg, m, 64, 7168, &lim, MC_KERN_ONESHOT_PUSH, "table");
    expect_fused(&cfg, m, 256, 4096, &lim, MC_KERN_ONESHOT_PUSH, "table");
    expect_fused(&cfg, m, 257, 4096, &lim, MC_KERN_TWOSHOT_PUSH, "table");
    expect_fused(&cfg, m, 4096, 7168, &lim, MC_KERN_TWOSHOT_PUSH, "table");
  }
  expect_fused(&cfg, 2, 1, 7168, &no_ll, MC_KERN_ONESHOT_PUSH, "LL payload 4 KiB");
  expect_fused(&cfg, 2, 8, 7168, &tiny, MC_KERN_LL, "staging 1 KiB: LL still fits");
  expect_fused(&cfg, 2, 64, 7168, &tiny, 0, "staging 1 KiB: no push plan fits");
  {
    static const char *const e_ll[] = {"MOECOMM_ALGO=ll", NULL};
    static const char *const e_tp[] = {"MOECOMM_ALGO=twoshot_push", NULL};
    static const char *const e_op[] = {"MOECOMM_ALGO=oneshot_push", NULL};
    static const char *const e_two[] = {"MOECOMM_ALGO=twoshot", NULL};
    static const char *const e_nccl[] = {"MOECOMM_ALGO=nccl", NULL};
    mc_config_t c_ll = cfg_with(e_ll), c_tp = cfg_with(e_tp), c_op = cfg_with(e_op),
                c_two = cfg_with(e_two), c_nccl = cfg_with(e_nccl);
    expect_fused(&c_ll, 4, 64, 128, &lim, MC_KERN_LL, "ALGO=ll");
    expect_fused(&c_ll, 4, 2000, 128, &lim, MC_KERN_TWOSHOT_PUSH, "ALGO=ll past the LL slot");
    expect_fused(&c_tp, 2, 1, 4096, &lim, MC_KERN_TWOSHOT_PUSH, "ALGO=twoshot_push");
    expect_fused(&c_op, 2, 4096, 7168, &lim, MC_KERN_ONESHOT_PUSH, "ALGO=oneshot_push");
    expect_fused(&c_two, 2, 1, 4096, &lim, MC_KERN_LL, "ALGO=twoshot (no fused form): the table");
    expect_fused(&c_nccl, 2, 1, 4096, &lim, 0, "ALGO=nccl");
  }
  cfg_with((const char *const[]){"MOECOMM_ALGO", NULL});
}

/* Which operands the fused kernels can take at all. */
static void test_fused_possible(void) {
  mc_rmsnorm_t n = {.eps = 1e-6f,
                    .tokens = 4,
                    .hidden = 4096,
                    .x = (void *)0x10000,
                    .residual = (void *)0x20000,
                    .weight = (void *)0x30000,
                    .out = (void *)0x40000,
                    .out_fp8 = NULL,
                    .out_scale = NULL};
  mc_rmsnorm_t m;
  MC_CHECK(mc_route_fused_possible(&n), "aligned 4 x 4096 refused");
  m = n, m.hidden = 16384;
  MC_CHECK(mc_route_fused_possible(&m), "hidden 16384 refused");
  m = n, m.hidden = 4100;
  MC_CHECK(!mc_route_fused_possible(&m), "hidden 4100 taken");
  m = n, m.hidden = 16392;
  MC_CHECK(!mc_route_fused_possible(&m), "hidden 16392 taken");
  m = n, m.eps = INFINITY;
  MC_CHECK(!mc_route_fused_possible(&m), "eps inf taken");
  m = n, m.out_fp8 = (void *)0x50000, m.out_scale = (float *)0x60000;
  MC_CHECK(mc_route_fused_possible(&m), "aligned fp8 copy refused");
  m.out_fp8 = (void *)0x50008;
  MC_CHECK(!mc_route_fused_possible(&m), "misaligned fp8 copy taken");
  m = n, m.x = (void *)0x10008;
  MC_CHECK(!mc_route_fused_possible(&m), "misaligned x taken");
  m = n, m.residual = (void *)0x20002;
  MC_CHECK(!mc_route_fused_possible(&m), "misaligned residual taken");
  m = n, m.weight = (void *)0x30004;
  MC_CHECK(!mc_route_fused_possible(&m), "misaligned weight taken");
  m = n, m.out = (void *)0x40002;
  MC_CHECK(!mc_route_fused_possible(&m), "misaligned out taken");
}

/* ---- fake backends ------------------------------------------------------------------------ */

static mc_backend_ops_t fake_nccl, fake_custom;
static int inits[MC_BACKEND_COUNT], decline_custom, fake_slots = 10;

static moecomm_result_t fake_probe(const mc_config_t *cfg, int device, mc_err_t *why) {
  (void)cfg;
  (void)why;
  return device >= 0 ? MOECOMM_SUCCESS : MOECOMM_ERR_UNAVAILABLE;
}
static moecomm_result_t fake_init(mc_comm_t *comm, moecomm_backend_t id) {
  inits[id]++;
  if (id == MOECOMM_BACKEND_CUSTOM && decline_custom) return MC_DEFER;
  comm->be[id].priv = comm;
  return MOECOMM_SUCCESS;
}
static moecomm_result_t fake_init_nccl(mc_comm_t *c) {
  return fake_init(c, MOECOMM_BACKEND_NCCL);
}
static moecomm_result_t fake_init_custom(mc_comm_t *c) {
  return fake_init(c, MOECOMM_BACKEND_CUSTOM);
}
static void fake_fini(mc_comm_t *comm) {
  (void)comm;
}
static void fake_limits(const mc_comm_t *comm, mc_backend_limits_t *lim) {
  lim->ll_max_bytes = KB(256);
  lim->staged_max_bytes = KB(32768);
  lim->capture_slots = fake_slots;
  lim->scratch_bytes = comm->cfg->deterministic ? KB(4096) : 0; /* as the real one */
}
static moecomm_result_t fake_coll(mc_comm_t *comm, const mc_coll_t *c) {
  (void)comm;
  (void)c;
  return MOECOMM_SUCCESS;
}

static void install_fakes(void) {
  fake_nccl = *mc_backend_get(MOECOMM_BACKEND_SHM);
  fake_nccl.name = "nccl";
  fake_nccl.id = MOECOMM_BACKEND_NCCL;
  fake_nccl.caps.gpu = 1;
  fake_nccl.probe = fake_probe;
  fake_nccl.comm_init = fake_init_nccl;
  fake_nccl.comm_fini = fake_fini;
  for (int k = 0; k < MC_COLL_KIND_COUNT; k++) fake_nccl.coll[k] = fake_coll;
  fake_custom = fake_nccl;
  fake_custom.name = "custom";
  fake_custom.id = MOECOMM_BACKEND_CUSTOM;
  fake_custom.caps.colls = /* as the real one (plugin/backends/custom/custom.c) */
      (1u << MC_COLL_ALL_REDUCE) | (1u << MC_COLL_RMSNORM) | (1u << MC_COLL_REDUCE_SCATTER);
  fake_custom.caps.dtypes =
      (1u << MOECOMM_FLOAT32) | (1u << MOECOMM_FLOAT16) | (1u << MOECOMM_BFLOAT16);
  fake_custom.caps.max_ranks = MC_KERN_MAX_RANKS;
  fake_custom.comm_init = fake_init_custom;
  fake_custom.limits = fake_limits;
  mc_backend_override_for_test(MOECOMM_BACKEND_NCCL, &fake_nccl);
  mc_backend_override_for_test(MOECOMM_BACKEND_CUSTOM, &fake_custom);
}

/* A real CPU context (shm under it), then routed again as if it had device 0, with the settings
   `env` (which a CPU context would refuse at creation) read afterwards. */
static mc_context_t *gpu_like_ctx(int rank, int world, int ep, const char *const *env) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  mc_context_t *ctx = NULL;
  mc_err_t err;
  moecomm_result_t r;
  topo.ep = ep;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  r = mc_context_create(&p, &ctx, &err);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "context_create: %s", err.msg)) return NULL;
  mc_test_env_apply(env);
  r = mc_config_load(&ctx->cfg, &err);
  MC_CHECK(r == MOECOMM_SUCCESS, "config: %s", err.msg);
  ctx->device = 0; /* the policy sees a GPU context; the comms keep device -1 (no CUDA calls) */
  r = mc_route_groups(ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "route_groups: %s", ctx->err.msg)) {
    ctx->device = -1;
    mc_context_destroy(ctx);
    return NULL;
  }
  return ctx;
}

static void done_ctx(mc_context_t *ctx) {
  ctx->device = -1;
  mc_context_destroy(ctx);
}

static moecomm_backend_t route(mc_context_t *ctx, int kind, mc_coll_kind_t ck, size_t count,
                               moecomm_dtype_t dt, int *algo_p) {
  static char buf[16];
  mc_coll_t c = {
      .kind = ck, .send = buf, .recv = buf, .count = count, .dtype = dt, .op = MOECOMM_SUM};
  moecomm_backend_t be = (moecomm_backend_t)-1;
  moecomm_result_t r = mc_route_call(&ctx->groups[kind], &c, &be);
  MC_CHECK(r == MOECOMM_SUCCESS, "route_call: %s", ctx->err.msg);
  if (r == MOECOMM_SUCCESS) ctx->groups[kind].served[be]++;
  if (algo_p != NULL) *algo_p = c.algo;
  return be;
}

/* Any call but all_reduce_rmsnorm: the result code, backend and the routed call (algo, chunk). */
static moecomm_result_t route_full(mc_context_t *ctx, int kind, mc_coll_kind_t ck, size_t count,
                                   moecomm_dtype_t dt, int capturing, moecomm_backend_t *be_p,
                                   mc_coll_t *c_p) {
  static char buf[16];
  mc_coll_t c = {.kind = ck,
                 .send = buf,
                 .recv = buf,
                 .count = count,
                 .dtype = dt,
                 .op = MOECOMM_SUM,
                 .capturing = capturing};
  moecomm_result_t r;
  *be_p = (moecomm_backend_t)-1;
  r = mc_route_call(&ctx->groups[kind], &c, be_p);
  *c_p = c;
  return r;
}

/* all_reduce_rmsnorm of tokens x hidden bf16 (buffers at made-up addresses; x moved by misalign
   bytes): the backend, and the fused kernel in *algo_p. */
static moecomm_backend_t route_norm(mc_context_t *ctx, int kind, size_t tokens, size_t hidden,
                                    uintptr_t misalign, int *algo_p) {
  const mc_rmsnorm_t n = {.eps = 1e-6f,
                          .tokens = tokens,
                          .hidden = hidden,
                          .x = (void *)(0x100000 + misalign),
                          .residual = (void *)0x200000,
                          .weight = (void *)0x300000,
                          .out = (void *)0x400000};
  mc_coll_t c = {.kind = MC_COLL_RMSNORM,
                 .send = n.x,
                 .recv = n.out,
                 .count = tokens * hidden,
                 .dtype = MOECOMM_BFLOAT16,
                 .op = MOECOMM_SUM,
                 .norm = &n};
  moecomm_backend_t be = (moecomm_backend_t)-1;
  moecomm_result_t r = mc_route_call(&ctx->groups[kind], &c, &be);
  MC_CHECK(r == MOECOMM_SUCCESS, "route_call (rmsnorm %zu x %zu): %s", tokens, hidden,
           ctx->err.msg);
  *algo_p = c.algo;
  return be;
}

static void expect_be(mc_context_t *ctx, int kind, moecomm_backend_t want) {
  MC_CHECK(ctx->groups[kind].backend == want, "group %s: backend %s, want %s",
           mc_topo_kind_name(kind), mc_backend_name(ctx->groups[kind].backend),
           mc_backend_name(want));
}

/* tp4 ep2 on one host: the default choices and what each call does. */
static int rank_default(int rank, int world, void *arg) {
  mc_context_t *ctx;
  const char *name = NULL;
  int algo = -1;
  (void)arg;
  install_fakes();
  if ((ctx = gpu_like_ctx(rank, world, 2, NULL)) == NULL) return 1;
  expect_be(ctx, MOECOMM_GROUP_TP, MOECOMM_BACKEND_CUSTOM);
  expect_be(ctx, MOECOMM_GROUP_ATTN_TP, MOECOMM_BACKEND_CUSTOM);
  expect_be(ctx, MOECOMM_GROUP_MOE_EP, MOECOMM_BACKEND_NCCL);
  expect_be(ctx, MOECOMM_GROUP_MOE_TP, MOECOMM_BACKEND_NCCL);
  expect_be(ctx, MOECOMM_GROUP_WORLD, MOECOMM_BACKEND_NCCL);
  MC_CHECK(!ctx->groups[MOECOMM_GROUP_TP].comm->hints.nccl_lean, "TP's comm got the lean hint");
  MC_CHECK(ctx->groups[MOECOMM_GROUP_MOE_EP].comm->hints.nccl_lean &&
               ctx->groups[MOECOMM_GROUP_MOE_TP].comm->hints.nccl_lean,
           "MoE-only comms lack the lean hint");

  /* what custom cannot serve goes to NCCL without creating the custom communicator */
  MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, 64, MOECOMM_INT32, &algo) ==
                   MOECOMM_BACKEND_NCCL &&
               algo == 0,
           "TP int32 all-reduce not on nccl");
  MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_GATHER, 64, MOECOMM_BFLOAT16, NULL) ==
               MOECOMM_BACKEND_NCCL,
           "TP all_gather not on nccl");
  MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, (size_t)32 << 20, MOECOMM_FLOAT32,
                 NULL) == MOECOMM_BACKEND_NCCL,
           "TP 128 MiB all-reduce not on nccl");
  MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_REDUCE_SCATTER, 64, MOECOMM_BFLOAT16, NULL) ==
               MOECOMM_BACKEND_NCCL,
           "TP reduce_scatter not on nccl outside deterministic mode");
  MC_CHECK(
      route_norm(ctx, MOECOMM_GROUP_TP, 8, 4096, 8, &algo) == MOECOMM_BACKEND_NONE && algo == 0,
      "TP rmsnorm with x 8-byte aligned: not unfused");
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_TP, 8, 4100, 0, &algo) == MOECOMM_BACKEND_NONE,
           "TP rmsnorm with hidden 4100: not unfused");
  MC_CHECK(inits[MOECOMM_BACKEND_CUSTOM] == 0, "custom created %d times for calls it cannot serve",
           inits[MOECOMM_BACKEND_CUSTOM]);
  mc_route_group_backend(&ctx->groups[MOECOMM_GROUP_TP], &name);
  MC_CHECK(strcmp(name, "nccl") == 0,
           "group_stats names '%s' for a TP group whose calls all went "
           "to nccl",
           name);
  /* a small bf16 all-reduce: custom, LL, the communicator created once */
  MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, &algo) ==
                   MOECOMM_BACKEND_CUSTOM &&
               algo == MC_KERN_LL,
           "TP 1 KiB bf16: not custom LL");
  route(ctx, MOECOMM_GROUP_ATTN_TP, MC_COLL_ALL_REDUCE, 512, MOECOMM_FLOAT16, &algo);
  MC_CHECK(inits[MOECOMM_BACKEND_CUSTOM] == 1,
           "custom created %d times (TP and ATTN_TP share one "
           "communicator)",
           inits[MOECOMM_BACKEND_CUSTOM]);
  mc_route_group_backend(&ctx->groups[MOECOMM_GROUP_TP], &name);
  MC_CHECK(strcmp(name, "custom+nccl") == 0, "group_stats names '%s', want custom+nccl", name);
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_TP, 8, 4096, 0, &algo) == MOECOMM_BACKEND_CUSTOM &&
               algo == MC_KERN_LL,
           "TP rmsnorm 8 x 4096: not fused LL");
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_TP, 512, 4096, 0, &algo) == MOECOMM_BACKEND_CUSTOM &&
               algo == MC_KERN_TWOSHOT_PUSH,
           "TP rmsnorm 512 x 4096: not fused two-shot push");
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_MOE_EP, 8, 4096, 0, &algo) == MOECOMM_BACKEND_NONE,
           "MOE_EP (nccl) rmsnorm not unfused");
  MC_CHECK(route(ctx, MOECOMM_GROUP_MOE_EP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, NULL) ==
               MOECOMM_BACKEND_NCCL,
           "MOE_EP not on nccl");
  MC_CHECK(route(ctx, MOECOMM_GROUP_MOE_DP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, NULL) ==
               MOECOMM_BACKEND_NONE,
           "a group of one rank is not a local copy");
  done_ctx(ctx);
  return 0;
}

/* Deterministic mode on one host: every group of 2..8 ranks on custom, every size of a float
   reduction on custom (in pieces where the table does not take it), the rest on NCCL. */
static int rank_det(int rank, int world, void *arg) {
  static const char *const env[] = {"MOECOMM_DETERMINISTIC=1", NULL};
  const size_t piece_bf16 = KB(32768) / 2, scratch_bf16 = KB(4096) / 2;
  mc_context_t *ctx;
  moecomm_backend_t be;
  mc_coll_t c;
  moecomm_result_t r;
  int algo = -1;
  (void)arg;
  install_fakes();
  if ((ctx = gpu_like_ctx(rank, world, 2, env)) == NULL) return 1;
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++)
    expect_be(ctx, k,
              ctx->groups[k].comm->size > 1 ? MOECOMM_BACKEND_CUSTOM : MOECOMM_BACKEND_NCCL);
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, (size_t)32 << 20, MOECOMM_FLOAT32, 0,
                 &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_CUSTOM && c.algo == MC_KERN_TWOSHOT &&
               c.chunk == KB(32768) / 4,
           "128 MiB fp32 (above MOECOMM_CUSTOM_MAX_BYTES): %s, algo %s, pieces of %zu: %s",
           mc_backend_name(be), mc_kern_algo_name(c.algo), c.chunk, ctx->err.msg);
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, (size_t)24 << 20, MOECOMM_BFLOAT16, 0,
                 &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_CUSTOM && c.algo == MC_KERN_TWOSHOT &&
               c.chunk == piece_bf16,
           "48 MiB bf16 eager (above the staging): %s, algo %s, pieces of %zu", mc_backend_name(be),
           mc_kern_algo_name(c.algo), c.chunk);
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, (size_t)24 << 20, MOECOMM_BFLOAT16, 1,
                 &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && c.algo == MC_KERN_TWOSHOT && c.chunk == 0,
           "48 MiB bf16 captured: algo %s, pieces of %zu (want registered two-shot, one launch)",
           mc_kern_algo_name(c.algo), c.chunk);
  fake_slots = 0;
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, (size_t)24 << 20, MOECOMM_BFLOAT16, 1,
                 &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && c.algo == MC_KERN_TWOSHOT && c.chunk == piece_bf16,
           "48 MiB bf16 captured, no registration slot: algo %s, pieces of %zu",
           mc_kern_algo_name(c.algo), c.chunk);
  fake_slots = 10;
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && c.algo == MC_KERN_LL && c.chunk == 0, "1 KiB: %s, pieces %zu",
           mc_kern_algo_name(c.algo), c.chunk);
  for (size_t n = KB(1024); n <= KB(3072); n += KB(2048)) {
    r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_REDUCE_SCATTER, n, MOECOMM_BFLOAT16, 0, &be, &c);
    MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_CUSTOM && c.algo == MC_KERN_TWOSHOT &&
                 c.chunk == (n < scratch_bf16 ? n : scratch_bf16),
             "reduce_scatter of %zu bf16 per rank: %s, algo %s, pieces of %zu", n,
             mc_backend_name(be), mc_kern_algo_name(c.algo), c.chunk);
  }
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_REDUCE_SCATTER, 64, MOECOMM_INT32, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_NCCL, "int32 reduce_scatter: %s: %s",
           mc_backend_name(be), ctx->err.msg);
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_GATHER, 64, MOECOMM_BFLOAT16, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_NCCL, "all_gather: %s: %s",
           mc_backend_name(be), ctx->err.msg);
  r = route_full(ctx, MOECOMM_GROUP_MOE_EP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_CUSTOM, "MOE_EP all-reduce: %s: %s",
           mc_backend_name(be), ctx->err.msg);
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_MOE_EP, 64, 7168, 0, &algo) == MOECOMM_BACKEND_CUSTOM &&
               algo == MC_KERN_ONESHOT_PUSH,
           "MOE_EP rmsnorm 64 x 7168: not fused one-shot push");
  MC_CHECK(route_norm(ctx, MOECOMM_GROUP_MOE_EP, 64, 7168, 2, &algo) == MOECOMM_BACKEND_NONE,
           "MOE_EP rmsnorm, x misaligned: not unfused");
  done_ctx(ctx);
  return 0;
}

/* Deterministic mode where custom cannot serve a group: its float reductions are refused, naming
   why; int32 and the other collectives still go to NCCL. */
static int rank_det_refused(int rank, int world, void *arg) {
  const char *how = arg, *want = NULL;
  const char *env[] = {"MOECOMM_DETERMINISTIC=1", NULL, NULL};
  mc_context_t *ctx;
  moecomm_backend_t be;
  mc_coll_t c;
  moecomm_result_t r;
  install_fakes();
  if (strcmp(how, "hosts") == 0) {
    setenv("MOECOMM_HOST_ID", rank < world / 2 ? "host-a" : "host-b", 1);
    want = "spans hosts";
  } else if (strcmp(how, "algo") == 0) {
    env[1] = "MOECOMM_ALGO=nccl";
    want = "MOECOMM_ALGO=nccl";
  } else if (strcmp(how, "decline") == 0) {
    decline_custom = 1;
    want = "could not be set up";
  } else {
    want = "more than the custom kernels' 8 ranks";
  }
  if ((ctx = gpu_like_ctx(rank, world, 1, env)) == NULL) return 1;
  for (int ck = MC_COLL_ALL_REDUCE; ck <= MC_COLL_REDUCE_SCATTER; ck++) {
    if (ck == MC_COLL_ALL_GATHER) continue;
    r = route_full(ctx, MOECOMM_GROUP_TP, (mc_coll_kind_t)ck, 4096, MOECOMM_BFLOAT16, 0, &be, &c);
    MC_CHECK(r == MOECOMM_ERR_NOT_SUPPORTED && strstr(ctx->err.msg, want) != NULL &&
                 strstr(ctx->err.msg, "deterministic") != NULL,
             "%s: bf16 %s: %s (%s), want NOT_SUPPORTED naming '%s'", how,
             mc_coll_name((mc_coll_kind_t)ck), mc_result_string(r), ctx->err.msg, want);
  }
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, 4096, MOECOMM_INT32, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_NCCL, "%s: int32 all-reduce: %s (%s)", how,
           mc_result_string(r), ctx->err.msg);
  r = route_full(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_GATHER, 4096, MOECOMM_BFLOAT16, 0, &be, &c);
  MC_CHECK(r == MOECOMM_SUCCESS && be == MOECOMM_BACKEND_NCCL, "%s: all_gather: %s (%s)", how,
           mc_result_string(r), ctx->err.msg);
  done_ctx(ctx);
  return 0;
}

/* A custom communicator that its members cannot set up: NCCL serves, and it is asked once. */
static int rank_decline(int rank, int world, void *arg) {
  mc_context_t *ctx;
  const char *name = NULL;
  (void)arg;
  install_fakes();
  decline_custom = 1;
  if ((ctx = gpu_like_ctx(rank, world, 1, NULL)) == NULL) return 1;
  for (int i = 0; i < 3; i++)
    MC_CHECK(route(ctx, MOECOMM_GROUP_TP, MC_COLL_ALL_REDUCE, 512, MOECOMM_BFLOAT16, NULL) ==
                 MOECOMM_BACKEND_NCCL,
             "declined custom: call %d not on nccl", i);
  MC_CHECK(inits[MOECOMM_BACKEND_CUSTOM] == 1, "a declined custom comm was asked %d times",
           inits[MOECOMM_BACKEND_CUSTOM]);
  MC_CHECK(mc_route_group_backend(&ctx->groups[MOECOMM_GROUP_TP], &name) == MOECOMM_BACKEND_NCCL &&
               strcmp(name, "nccl") == 0,
           "declined custom: group_stats says %s", name);
  done_ctx(ctx);
  return 0;
}

/* Two simulated hosts (ranks 0,1 and 2,3): TP spans them; MOE_TP asked to be custom is on one. */
static int rank_hosts(int rank, int world, void *arg) {
  mc_context_t *ctx;
  (void)arg;
  static const char *const env[] = {"MOECOMM_BACKEND_MOE_TP=custom", NULL};
  setenv("MOECOMM_HOST_ID", rank < 2 ? "host-a" : "host-b", 1);
  install_fakes();
  if ((ctx = gpu_like_ctx(rank, world, 2, env)) == NULL) return 1;
  expect_be(ctx, MOECOMM_GROUP_TP, MOECOMM_BACKEND_NCCL);
  expect_be(ctx, MOECOMM_GROUP_MOE_TP, MOECOMM_BACKEND_CUSTOM);
  expect_be(ctx, MOECOMM_GROUP_MOE_EP, MOECOMM_BACKEND_NCCL);
  done_ctx(ctx);
  return 0;
}

/* MOECOMM_NCCL_CONFIG and MOECOMM_BACKEND_<GROUP>. */
static int rank_env(int rank, int world, void *arg) {
  const char *nccl_config = arg;
  char var[64];
  const char *const env[] = {var, "MOECOMM_BACKEND_TP=nccl", NULL};
  mc_context_t *ctx;
  snprintf(var, sizeof(var), "MOECOMM_NCCL_CONFIG=%s", nccl_config);
  install_fakes();
  if ((ctx = gpu_like_ctx(rank, world, 2, env)) == NULL) return 1;
  expect_be(ctx, MOECOMM_GROUP_TP, MOECOMM_BACKEND_NCCL);
  expect_be(ctx, MOECOMM_GROUP_ATTN_TP, MOECOMM_BACKEND_CUSTOM);
  for (int c = 0; c < ctx->num_comms; c++)
    MC_CHECK(ctx->comms[c]->hints.nccl_lean == (strcmp(nccl_config, "lean") == 0),
             "MOECOMM_NCCL_CONFIG=%s: comm %s lean=%d", nccl_config, ctx->comms[c]->label,
             ctx->comms[c]->hints.nccl_lean);
  done_ctx(ctx);
  return 0;
}

/* shm asked for on a GPU context is a configuration error naming the variable. */
static int rank_shm_on_gpu(int rank, int world, void *arg) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  mc_context_t *ctx = NULL;
  mc_err_t err;
  moecomm_result_t r;
  (void)arg;
  setenv("MOECOMM_BACKEND_MOE_EP", "shm", 1);
  install_fakes();
  if (!MC_CHECK(mc_context_create(&p, &ctx, &err) == MOECOMM_SUCCESS, "create: %s", err.msg))
    return 1;
  ctx->device = 0;
  r = mc_route_groups(ctx);
  MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(ctx->err.msg, "MOECOMM_BACKEND_MOE_EP=shm"),
           "shm on a GPU context: %s: %s", mc_result_string(r), ctx->err.msg);
  done_ctx(ctx);
  return 0;
}

int main(int argc, char **argv) {
  mc_test_init("route", argc, argv);
  test_table();
  test_fused_table();
  test_fused_possible();
  MC_CHECK(mc_test_ranks(4, rank_default, NULL, 60) == 0, "default routing");
  MC_CHECK(mc_test_ranks(2, rank_decline, NULL, 60) == 0, "declined custom");
  MC_CHECK(mc_test_ranks(4, rank_hosts, NULL, 60) == 0, "two hosts");
  MC_CHECK(mc_test_ranks(4, rank_env, "lean", 60) == 0, "NCCL_CONFIG=lean");
  MC_CHECK(mc_test_ranks(4, rank_env, "default", 60) == 0, "NCCL_CONFIG=default");
  MC_CHECK(mc_test_ranks(2, rank_shm_on_gpu, NULL, 60) == 0, "shm on a GPU context");
  MC_CHECK(mc_test_ranks(4, rank_det, NULL, 60) == 0, "deterministic mode");
  MC_CHECK(mc_test_ranks(4, rank_det_refused, "hosts", 60) == 0, "deterministic, two hosts");
  MC_CHECK(mc_test_ranks(2, rank_det_refused, "algo", 60) == 0, "deterministic, ALGO=nccl");
  MC_CHECK(mc_test_ranks(2, rank_det_refused, "decline", 60) == 0, "deterministic, declined");
  MC_CHECK(mc_test_ranks(9, rank_det_refused, "nine", 60) == 0, "deterministic, 9 ranks");
  return mc_test_finish();
}
