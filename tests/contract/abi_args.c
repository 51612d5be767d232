/* SPDX-License-Identifier: Apache-2.0 */
/* abi_args.c - every slot of the ABI table with NULL and invalid arguments, through the loaded
 * plugin (the way an engine calls it).  Each case checks the exact result code and that the
 * output arguments were not written (they are poisoned first and compared after). */
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/harness.h"

#define POISON_PTR ((void *)(uintptr_t)0xdeadbeefcafe0000ull)

static const moecomm_api_t *api;

static int failing_allgather(void *user, const void *send, void *recv, size_t bytes) {
  (void)user;
  (void)send;
  (void)recv;
  (void)bytes;
  return -1;
}

static moecomm_topology_t solo_topo;

/* World of one: the all-gather is a copy (mc_test_ctx_params). */
static moecomm_context_params_t solo_params(void) {
  solo_topo = mc_test_topo(1, 0, 1);
  return mc_test_ctx_params(&solo_topo, MOECOMM_DEVICE_CPU);
}

static moecomm_context_t *solo_context(void) {
  moecomm_context_params_t p = solo_params();
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r = api->context_create(&p, &ctx);
  MC_CHECK_RC(api, NULL, r, MOECOMM_SUCCESS);
  return r == MOECOMM_SUCCESS ? ctx : NULL;
}

/* ---- table, entry, result strings ---- */

static void test_table(void) {
  MC_CHECK(api->struct_size >= MOECOMM_STRUCT_SIZE(moecomm_api_t, plan_capture_sizes),
           "table struct_size %zu is smaller than the 1.0 table", api->struct_size);
  MC_CHECK(MOECOMM_ABI_VERSION_GET_MAJOR(api->abi_version) == 1, "abi_version 0x%x",
           (unsigned)api->abi_version);
  MC_CHECK(api->plugin_name != NULL && strcmp(api->plugin_name, "moecomm") == 0, "plugin_name %s",
           api->plugin_name ? api->plugin_name : "NULL");
  MC_CHECK(api->plugin_version != NULL && api->plugin_version[0] != '\0', "plugin_version");
#define HAS(slot) MC_CHECK(MOECOMM_API_HAS(api, slot), "slot " #slot " is missing")
  HAS(result_string);
  HAS(last_error);
  HAS(context_create);
  HAS(context_destroy);
  HAS(context_info);
  HAS(group_get);
  HAS(group_stats);
  HAS(all_reduce);
  HAS(all_gather);
  HAS(reduce_scatter);
  HAS(broadcast);
  HAS(capture_begin);
  HAS(capture_end);
  HAS(plan_capture_sizes);
  if (MOECOMM_ABI_VERSION_GET_MINOR(api->abi_version) >= 1) {
    MC_CHECK(api->struct_size >= MOECOMM_STRUCT_SIZE(moecomm_api_t, scatter),
             "a 1.1 table of %zu bytes lacks the 1.1 slots", api->struct_size);
    HAS(layer_mode);
    HAS(mode_rows);
    HAS(scatter);
  }
  if (MOECOMM_ABI_VERSION_GET_MINOR(api->abi_version) >= 2) {
    MC_CHECK(api->struct_size >= MOECOMM_STRUCT_SIZE(moecomm_api_t, all_reduce_rmsnorm),
             "a 1.2 table of %zu bytes lacks the 1.2 slots", api->struct_size);
    HAS(topology_group_ranks);
    HAS(config_var);
    HAS(send);
    HAS(recv);
    HAS(all_to_all);
    HAS(all_to_all_v);
    HAS(moe_configure);
    HAS(moe_dispatch);
    HAS(moe_combine);
    HAS(all_reduce_rmsnorm);
  }
#undef HAS
}

static void test_entry(void) {
  const char *path = getenv("MOECOMM_PLUGIN");
  void *h = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
  moecomm_get_api_v1_fn_t entry;
  uint32_t ver;
  const moecomm_api_t *tab;
  char why[256];
  moecomm_result_t r;
  if (!MC_CHECK(h != NULL, "dlopen %s: %s", path ? path : "(unset)", dlerror())) return;
  *(void **)&entry = dlsym(h, MOECOMM_ENTRY_SYMBOL_V1);
  if (!MC_CHECK(entry != NULL, "dlsym %s", MOECOMM_ENTRY_SYMBOL_V1)) {
    dlclose(h);
    return;
  }

  /* A range entirely in the future (major 2). */
  ver = 0x5a5a5a5a;
  tab = POISON_PTR;
  memset(why, 0, sizeof(why));
  r = entry(MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 3), &ver, &tab, why,
            sizeof(why));
  MC_CHECK(r == MOECOMM_ERR_VERSION, "range 2.0..2.3: got %d", (int)r);
  MC_CHECK(ver == 0x5a5a5a5a && tab == POISON_PTR, "outputs written on a refusal");
  MC_CHECK(why[0] != '\0' && strstr(why, "2.0") != NULL, "refusal reason '%s' names the range",
           why);
  MC_CHECK(api->last_error(NULL)[0] != '\0', "last_error(NULL) after a refused entry");

  /* A range below anything released (major 0). */
  memset(why, 0, sizeof(why));
  r = entry(MOECOMM_ABI_VERSION_MAKE(0, 1), MOECOMM_ABI_VERSION_MAKE(0, 9), &ver, &tab, why,
            sizeof(why));
  MC_CHECK(r == MOECOMM_ERR_VERSION && why[0] != '\0', "range 0.1..0.9: got %d '%s'", (int)r, why);
  MC_CHECK(ver == 0x5a5a5a5a && tab == POISON_PTR, "outputs written on a refusal");

  /* An empty range. */
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 5), MOECOMM_ABI_VERSION_MAKE(1, 0), &ver, &tab, why,
            sizeof(why));
  MC_CHECK(r == MOECOMM_ERR_VERSION || r == MOECOMM_ERR_INVALID_ARGUMENT,
           "empty range 1.5..1.0: got %d", (int)r);
  MC_CHECK(ver == 0x5a5a5a5a && tab == POISON_PTR, "outputs written on a refusal");

  /* No why buffer, and a tiny one: still refused, never overrun. */
  r = entry(MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 0), &ver, &tab, NULL, 0);
  MC_CHECK(r == MOECOMM_ERR_VERSION, "why NULL: got %d", (int)r);
  memset(why, 'Z', sizeof(why));
  r = entry(MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 0), &ver, &tab, why, 8);
  MC_CHECK(r == MOECOMM_ERR_VERSION && memchr(why, '\0', 8) != NULL && why[8] == 'Z',
           "why_size 8: got %d, terminated in 8 bytes and nothing past", (int)r);

  /* NULL outputs. */
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, NULL, &tab, NULL, 0);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && tab == POISON_PTR, "version_p NULL: got %d",
           (int)r);
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION, &ver, NULL, NULL, 0);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && ver == 0x5a5a5a5a, "api_p NULL: got %d", (int)r);

  /* A host newer than the plugin (1.0..1.99) gets the newest common version: the header's. */
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 99), &ver, &tab, why,
            sizeof(why));
  MC_CHECK(r == MOECOMM_SUCCESS && ver == MOECOMM_ABI_VERSION && tab == api,
           "range 1.0..1.99: got %d version 0x%x", (int)r, (unsigned)ver);
  /* A 1.0-only host gets 1.0. */
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 0), &ver, &tab, why,
            sizeof(why));
  MC_CHECK(r == MOECOMM_SUCCESS && ver == MOECOMM_ABI_VERSION_MAKE(1, 0) && tab != NULL,
           "range 1.0..1.0: got %d version 0x%x", (int)r, (unsigned)ver);
  /* And the exact current version, as mc_test_plugin negotiated it. */
  r = entry(MOECOMM_ABI_VERSION, MOECOMM_ABI_VERSION, &ver, &tab, why, sizeof(why));
  MC_CHECK(r == MOECOMM_SUCCESS && ver == MOECOMM_ABI_VERSION, "range 1.0..1.0: got %d", (int)r);
  dlclose(h);
}

static void test_result_strings(void) {
  const char *seen[MOECOMM_ERR_INTERNAL + 1];
  for (int c = MOECOMM_SUCCESS; c <= MOECOMM_ERR_INTERNAL; c++) {
    const char *s = api->result_string((moecomm_result_t)c);
    seen[c] = s;
    MC_CHECK(s != NULL && s[0] != '\0', "result_string(%d) empty", c);
    for (int d = 0; s != NULL && d < c; d++)
      MC_CHECK(seen[d] == NULL || strcmp(seen[d], s) != 0, "result_string(%d) == (%d): %s", c, d,
               s);
  }
  MC_CHECK(api->result_string((moecomm_result_t)99) != NULL &&
               api->result_string((moecomm_result_t)99)[0] != '\0',
           "result_string(99)");
  MC_CHECK(api->result_string((moecomm_result_t)-1) != NULL, "result_string(-1)");
  MC_CHECK(api->result_string((moecomm_result_t)1000) != NULL, "result_string(1000)");
}

/* ---- context_create ---- */

static void expect_create_fails(const char *what, const moecomm_context_params_t *p,
                                moecomm_result_t want) {
  moecomm_context_t *ctx = POISON_PTR;
  moecomm_result_t r = api->context_create(p, &ctx);
  const char *msg = api->last_error(NULL);
  MC_CHECK(r == want, "%s: got %d (%s), want %d: %s", what, (int)r, api->result_string(r),
           (int)want, msg);
  MC_CHECK(ctx == POISON_PTR, "%s: ctx_p written on failure", what);
  MC_CHECK(msg != NULL && msg[0] != '\0', "%s: last_error(NULL) is empty", what);
  if (r == MOECOMM_SUCCESS && ctx != POISON_PTR) api->context_destroy(ctx);
}

static void test_context_create(void) {
  moecomm_context_params_t p = solo_params();
  moecomm_topology_t topo;
  moecomm_result_t r;

  expect_create_fails("params NULL", NULL, MOECOMM_ERR_INVALID_ARGUMENT);

  p = solo_params();
  p.topology = NULL;
  expect_create_fails("topology NULL", &p, MOECOMM_ERR_INVALID_ARGUMENT);

  p = solo_params();
  p.struct_size = offsetof(moecomm_context_params_t, device); /* one field short of 1.0 */
  expect_create_fails("params struct_size short", &p, MOECOMM_ERR_STRUCT_SIZE);
  p.struct_size = 0;
  expect_create_fails("params struct_size 0", &p, MOECOMM_ERR_STRUCT_SIZE);

  p = solo_params();
  topo = solo_topo;
  topo.struct_size = offsetof(moecomm_topology_t, moe_dense_tp);
  p.topology = &topo;
  expect_create_fails("topology struct_size short", &p, MOECOMM_ERR_STRUCT_SIZE);

  p = solo_params();
  topo = mc_test_topo(1, 0, 2);
  p.topology = &topo;
  expect_create_fails("tp 2 in a world of 1", &p, MOECOMM_ERR_CONFIG);
  MC_CHECK(strstr(api->last_error(NULL), "tp=2") != NULL, "message names tp=2: %s",
           api->last_error(NULL));

  p = solo_params();
  p.device = -7;
  expect_create_fails("device -7", &p, MOECOMM_ERR_INVALID_ARGUMENT);

  if (mc_test_gpu_count() == 0) {
    p = solo_params();
    p.device = 0;
    expect_create_fails("device 0 without a GPU", &p, MOECOMM_ERR_UNAVAILABLE);
  }
  p = solo_params();
  p.device = 4096;
  expect_create_fails("device 4096", &p, MOECOMM_ERR_UNAVAILABLE);

  p = solo_params();
  p.host_allgather = failing_allgather;
  expect_create_fails("host_allgather fails", &p, MOECOMM_ERR_PEER);

  /* A newer host's larger struct: the extra bytes are not read as anything. */
  {
    struct {
      moecomm_context_params_t p;
      char future[64];
    } big;
    moecomm_context_t *ctx = NULL;
    memset(&big, 0x6b, sizeof(big));
    big.p = solo_params();
    big.p.struct_size = sizeof(big);
    r = api->context_create(&big.p, &ctx);
    MC_CHECK_RC(api, NULL, r, MOECOMM_SUCCESS);
    if (r == MOECOMM_SUCCESS) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  }
  /* A 1.0 host's params (no flags field) are accepted. */
  {
    moecomm_context_t *ctx = NULL;
    p = solo_params();
    p.struct_size = MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device);
    r = api->context_create(&p, &ctx);
    MC_CHECK_RC(api, NULL, r, MOECOMM_SUCCESS);
    if (r == MOECOMM_SUCCESS) MC_CHECK_RC(api, ctx, api->context_destroy(ctx), MOECOMM_SUCCESS);
  }
  MC_CHECK_RC(api, NULL, api->context_destroy(NULL), MOECOMM_SUCCESS);
}

static void test_context_create_null_out(void) {
  moecomm_context_params_t p = solo_params();
  moecomm_result_t r = api->context_create(&p, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "ctx_p NULL: got %d", (int)r);
  MC_CHECK(api->last_error(NULL)[0] != '\0', "ctx_p NULL: last_error(NULL) is empty");
}

/* ---- context_info, group_get, group_stats ---- */

static void test_info(moecomm_context_t *ctx) {
  moecomm_context_info_t info;
  struct {
    moecomm_context_info_t info;
    unsigned char tail[32];
  } big;
  moecomm_result_t r;
  unsigned char pattern[32];

  memset(&info, 0x3c, sizeof(info));
  info.struct_size = sizeof(info);
  r = api->context_info(NULL, &info);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "context_info(NULL): got %d", (int)r);
  MC_CHECK(info.device == 0x3c3c3c3c, "info written on failure");
  r = api->context_info(ctx, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "context_info(ctx, NULL): got %d", (int)r);
  MC_CHECK(api->last_error(ctx)[0] != '\0', "last_error(ctx) after a failed call is empty");

  info.struct_size = offsetof(moecomm_context_info_t, abi_version);
  r = api->context_info(ctx, &info);
  MC_CHECK(r == MOECOMM_ERR_STRUCT_SIZE, "info struct_size short: got %d", (int)r);
  MC_CHECK(info.device == 0x3c3c3c3c && info.local_rank == 0x3c3c3c3c, "info written on failure");

  info.struct_size = sizeof(info);
  r = api->context_info(ctx, &info);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  MC_CHECK(info.struct_size == sizeof(info), "struct_size changed to %zu", info.struct_size);
  MC_CHECK(info.device == MOECOMM_DEVICE_CPU && info.local_rank == 0 && info.local_size == 1 &&
               info.num_hosts == 1 && info.abi_version == MOECOMM_ABI_VERSION,
           "info: device %d local %d/%d hosts %d abi 0x%x", info.device, info.local_rank,
           info.local_size, info.num_hosts, (unsigned)info.abi_version);

  /* A larger struct: the plugin writes only what it knows. */
  memset(&big, 0x91, sizeof(big));
  memset(pattern, 0x91, sizeof(pattern));
  big.info.struct_size = sizeof(big);
  r = api->context_info(ctx, &big.info);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  MC_CHECK(memcmp(big.tail, pattern, sizeof(pattern)) == 0 && big.info.device == -1,
           "bytes past the plugin's info struct were written");
}

static void test_groups(moecomm_context_t *ctx) {
  moecomm_group_t *g = POISON_PTR;
  moecomm_group_stats_t st;
  moecomm_result_t r;

  r = api->group_get(NULL, MOECOMM_GROUP_TP, &g);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && g == POISON_PTR, "group_get(NULL ctx): got %d",
           (int)r);
  r = api->group_get(ctx, (moecomm_group_kind_t)9, &g);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && g == POISON_PTR, "group_get(kind 9): got %d",
           (int)r);
  r = api->group_get(ctx, (moecomm_group_kind_t)-1, &g);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && g == POISON_PTR, "group_get(kind -1): got %d",
           (int)r);
  MC_CHECK(strstr(api->last_error(ctx), "kind") != NULL, "message names the kind: %s",
           api->last_error(ctx));
  r = api->group_get(ctx, MOECOMM_GROUP_TP, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "group_get(group_p NULL): got %d", (int)r);

  for (int k = MOECOMM_GROUP_WORLD; k <= MOECOMM_GROUP_MOE_CP; k++) {
    g = POISON_PTR;
    r = api->group_get(ctx, (moecomm_group_kind_t)k, &g);
    if (!MC_CHECK(r == MOECOMM_SUCCESS && g != POISON_PTR && g != NULL, "group_get(%d): %d", k,
                  (int)r))
      continue;
    memset(&st, 0x44, sizeof(st));
    st.struct_size = sizeof(st);
    r = api->group_stats(g, &st);
    MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
    MC_CHECK(st.kind == k && st.size == 1 && st.rank == 0 && st.ranks != NULL && st.ranks[0] == 0 &&
                 st.kind_name != NULL && st.backend_name != NULL && st.created == 0 && st.ops == 0,
             "stats of kind %d: kind %d size %d rank %d created %d ops %llu", k, st.kind, st.size,
             st.rank, st.created, (unsigned long long)st.ops);
  }

  r = api->group_get(ctx, MOECOMM_GROUP_TP, &g);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  memset(&st, 0x44, sizeof(st));
  st.struct_size = sizeof(st);
  r = api->group_stats(NULL, &st);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT && st.kind == 0x44444444, "group_stats(NULL): got %d",
           (int)r);
  r = api->group_stats(g, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "group_stats(stats NULL): got %d", (int)r);
  st.struct_size = offsetof(moecomm_group_stats_t, ops);
  r = api->group_stats(g, &st);
  MC_CHECK(r == MOECOMM_ERR_STRUCT_SIZE && st.kind == 0x44444444 && st.size == 0x44444444,
           "stats struct_size short: got %d, written: %d", (int)r, st.kind != 0x44444444);
  st.struct_size = sizeof(size_t);
  r = api->group_stats(g, &st);
  MC_CHECK(r == MOECOMM_ERR_STRUCT_SIZE, "stats struct_size 8: got %d", (int)r);
}

/* ---- collectives ---- */

enum { N = 37 };

typedef struct bufs {
  int32_t send[N * 2], recv[N * 2], poison[N * 2];
} bufs_t;

static void poison(bufs_t *b) {
  for (int i = 0; i < N * 2; i++) b->recv[i] = b->poison[i] = (int32_t)(0x7bad0000 + i);
}

static int untouched(const bufs_t *b) {
  return memcmp(b->recv, b->poison, sizeof(b->recv)) == 0;
}

/* Calls collective `which` (0 AR, 1 AG, 2 RS, 3 BC) with the given arguments. */
static moecomm_result_t call(int which, moecomm_group_t *g, const void *s, void *r, size_t n,
                             moecomm_dtype_t dt, moecomm_redop_t op, int32_t root, void *stream) {
  switch (which) {
    case 0: return api->all_reduce(g, s, r, n, dt, op, stream);
    case 1: return api->all_gather(g, s, r, n, dt, stream);
    case 2: return api->reduce_scatter(g, s, r, n, dt, op, stream);
    default: return api->broadcast(g, s, r, n, dt, root, stream);
  }
}

static void test_collectives(moecomm_context_t *ctx) {
  static const char *const names[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast"};
  moecomm_group_t *g = NULL;
  bufs_t b;
  moecomm_result_t r;
  if (api->group_get(ctx, MOECOMM_GROUP_TP, &g) != MOECOMM_SUCCESS) return;
  mc_test_fill(b.send, N, MOECOMM_INT32, 11);

  for (int w = 0; w < 4; w++) {
    const char *nm = names[w];
    int has_op = w == 0 || w == 2;
#define EXPECT(what, expr, want)                                                       \
  do {                                                                                 \
    poison(&b);                                                                        \
    r = (expr);                                                                        \
    MC_CHECK(r == (want), "%s %s: got %d (%s), want %d: %s", nm, what, (int)r,         \
             api->result_string(r), (int)(want), api->last_error(ctx));                \
    MC_CHECK(untouched(&b), "%s %s: recv written although the call failed", nm, what); \
  } while (0)
    EXPECT("group NULL", call(w, NULL, b.send, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("dtype 4", call(w, g, b.send, b.recv, N, (moecomm_dtype_t)4, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("dtype -1", call(w, g, b.send, b.recv, N, (moecomm_dtype_t)-1, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    if (has_op) {
      EXPECT("op 3", call(w, g, b.send, b.recv, N, MOECOMM_INT32, (moecomm_redop_t)3, 0, NULL),
             MOECOMM_ERR_INVALID_ARGUMENT);
      EXPECT("op -1", call(w, g, b.send, b.recv, N, MOECOMM_INT32, (moecomm_redop_t)-1, 0, NULL),
             MOECOMM_ERR_INVALID_ARGUMENT);
    }
    if (w == 3) {
      EXPECT("root 1 of 1", call(w, g, b.send, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, 1, NULL),
             MOECOMM_ERR_INVALID_ARGUMENT);
      EXPECT("root -1", call(w, g, b.send, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, -1, NULL),
             MOECOMM_ERR_INVALID_ARGUMENT);
    }
    EXPECT("send NULL", call(w, g, NULL, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("recv NULL", call(w, g, b.send, NULL, N, MOECOMM_INT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("stream on a CPU context",
           call(w, g, b.send, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, 0, POISON_PTR),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("count overflowing size_t",
           call(w, g, b.send, b.recv, SIZE_MAX / 2, MOECOMM_INT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    /* bytes that fit size_t but not ptrdiff_t (used to crash all_gather on a group of one) */
    EXPECT("count * 4 above PTRDIFF_MAX",
           call(w, g, b.send, b.recv, SIZE_MAX / 4, MOECOMM_FLOAT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    EXPECT("count * 4 just above PTRDIFF_MAX",
           call(w, g, b.send, b.recv, (size_t)PTRDIFF_MAX / 4 + 1, MOECOMM_FLOAT32, MOECOMM_SUM, 0,
                NULL),
           MOECOMM_ERR_INVALID_ARGUMENT);
    /* count 0 is a no-op, even with NULL buffers */
    EXPECT("count 0", call(w, g, b.send, b.recv, 0, MOECOMM_INT32, MOECOMM_SUM, 0, NULL),
           MOECOMM_SUCCESS);
    EXPECT("count 0 with NULL buffers",
           call(w, g, NULL, NULL, 0, MOECOMM_INT32, MOECOMM_SUM, 0, NULL), MOECOMM_SUCCESS);
#undef EXPECT

    /* The valid call on a group of one is a copy, out of place and in place. */
    poison(&b);
    r = call(w, g, b.send, b.recv, N, MOECOMM_INT32, MOECOMM_MAX, 0, NULL);
    MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
    MC_CHECK(memcmp(b.recv, b.send, N * 4) == 0 && memcmp(b.recv + N, b.poison + N, N * 4) == 0,
             "%s on a group of one is not a copy of exactly %d elements", nm, N);
    memcpy(b.recv, b.send, sizeof(b.send));
    r = call(w, g, b.recv, b.recv, N, MOECOMM_INT32, MOECOMM_SUM, 0, NULL);
    MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
    MC_CHECK(memcmp(b.recv, b.send, N * 4) == 0, "%s in place on a group of one", nm);
  }
  {
    moecomm_group_stats_t st;
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    r = api->group_stats(g, &st);
    MC_CHECK(r == MOECOMM_SUCCESS && st.created == 0 && st.host_bytes == 0 && st.device_bytes == 0,
             "a group of one created resources: created %d host %llu device %llu", st.created,
             (unsigned long long)st.host_bytes, (unsigned long long)st.device_bytes);
  }
}

/* ---- capture and planning ---- */

static void test_capture_and_plan(moecomm_context_t *ctx) {
  moecomm_result_t r;
  int32_t sizes[8];
  size_t num = 77;
  int32_t mult = 77;
  int32_t cand[3] = {1, 2, 3};
  moecomm_plan_params_t pp;

  r = api->capture_begin(NULL, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "capture_begin(NULL): got %d", (int)r);
  r = api->capture_end(NULL, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "capture_end(NULL): got %d", (int)r);
  r = api->capture_begin(ctx, POISON_PTR);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "capture_begin with a stream on CPU: got %d", (int)r);
  r = api->capture_begin(ctx, NULL);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  r = api->capture_end(ctx, POISON_PTR);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "capture_end with a stream on CPU: got %d", (int)r);
  r = api->capture_end(ctx, NULL);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);

  memset(&pp, 0, sizeof(pp));
  pp.struct_size = sizeof(pp);
  pp.candidates = cand;
  pp.num_candidates = 3;
  for (int i = 0; i < 8; i++) sizes[i] = -5;
#define PLAN_FAILS(what, c, p, s, cap, n, m, want)                                              \
  do {                                                                                          \
    r = api->plan_capture_sizes((c), (p), (s), (cap), (n), (m));                                \
    MC_CHECK(r == (want), "plan %s: got %d (%s), want %d", what, (int)r, api->result_string(r), \
             (int)(want));                                                                      \
    MC_CHECK(num == 77 && mult == 77 && sizes[0] == -5, "plan %s: outputs written", what);      \
  } while (0)
  PLAN_FAILS("ctx NULL", NULL, &pp, sizes, 8, &num, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  PLAN_FAILS("params NULL", ctx, NULL, sizes, 8, &num, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  PLAN_FAILS("num_p NULL", ctx, &pp, sizes, 8, NULL, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  PLAN_FAILS("sizes NULL with capacity 8", ctx, &pp, NULL, 8, &num, &mult,
             MOECOMM_ERR_INVALID_ARGUMENT);
  pp.struct_size = sizeof(size_t);
  PLAN_FAILS("params struct_size 8", ctx, &pp, sizes, 8, &num, &mult, MOECOMM_ERR_STRUCT_SIZE);
  pp.struct_size = sizeof(pp);
  pp.candidates = NULL;
  PLAN_FAILS("candidates NULL", ctx, &pp, sizes, 8, &num, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  pp.candidates = cand;
  cand[1] = 0;
  PLAN_FAILS("candidate 0", ctx, &pp, sizes, 8, &num, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  cand[1] = -4;
  PLAN_FAILS("candidate -4", ctx, &pp, sizes, 8, &num, &mult, MOECOMM_ERR_INVALID_ARGUMENT);
  cand[1] = 2;
#undef PLAN_FAILS
  /* world 1, tp 1: every candidate splits. */
  r = api->plan_capture_sizes(ctx, &pp, sizes, 8, &num, &mult);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  MC_CHECK(
      num == 3 && mult == 1 && sizes[0] == 1 && sizes[1] == 2 && sizes[2] == 3 && sizes[3] == -5,
      "plan on tp1: num %zu multiple %d sizes %d %d %d", num, mult, sizes[0], sizes[1], sizes[2]);
}

/* ---- scatter modes (ABI 1.1) ---- */

static void test_scatter_modes(moecomm_context_t *ctx) {
  moecomm_scatter_mode_t mode = (moecomm_scatter_mode_t)77;
  moecomm_scatter_args_t a;
  size_t rows = 777;
  int32_t tokens[1] = {5}, bad_tokens[1] = {-4};
  float send[16], recv[16 + 4], poison_buf[16 + 4];
  moecomm_result_t r;
  if (!MOECOMM_API_HAS(api, layer_mode) || !MOECOMM_API_HAS(api, mode_rows) ||
      !MOECOMM_API_HAS(api, scatter)) {
    mc_test_skip("scatter modes", "the plugin's table has no ABI 1.1 slots");
    return;
  }
#define MODE_FAILS(what, expr)                                                               \
  do {                                                                                       \
    r = (expr);                                                                              \
    MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "%s: got %d (%s)", what, (int)r,             \
             api->result_string(r));                                                         \
    MC_CHECK(mode == (moecomm_scatter_mode_t)77 && rows == 777, "%s: output written", what); \
  } while (0)
  MODE_FAILS("layer_mode(NULL ctx)", api->layer_mode(NULL, MOECOMM_LAYER_ATTENTION, &mode));
  MODE_FAILS("layer_mode(layer 3)", api->layer_mode(ctx, (moecomm_layer_kind_t)3, &mode));
  MODE_FAILS("layer_mode(layer -1)", api->layer_mode(ctx, (moecomm_layer_kind_t)-1, &mode));
  MODE_FAILS("layer_mode(mode_p NULL)", api->layer_mode(ctx, MOECOMM_LAYER_ATTENTION, NULL));
  MODE_FAILS("mode_rows(NULL ctx)", api->mode_rows(NULL, MOECOMM_SCATTERED, tokens, &rows));
  MODE_FAILS("mode_rows(mode 4)", api->mode_rows(ctx, (moecomm_scatter_mode_t)4, tokens, &rows));
  MODE_FAILS("mode_rows(mode -1)", api->mode_rows(ctx, (moecomm_scatter_mode_t)-1, tokens, &rows));
  MODE_FAILS("mode_rows(tokens NULL)", api->mode_rows(ctx, MOECOMM_SCATTERED, NULL, &rows));
  MODE_FAILS("mode_rows(tokens -4)", api->mode_rows(ctx, MOECOMM_SCATTERED, bad_tokens, &rows));
  MODE_FAILS("mode_rows(rows_p NULL)", api->mode_rows(ctx, MOECOMM_SCATTERED, tokens, NULL));
#undef MODE_FAILS
  for (int l = MOECOMM_LAYER_ATTENTION; l <= MOECOMM_LAYER_SPARSE_MOE; l++) {
    mode = (moecomm_scatter_mode_t)77;
    r = api->layer_mode(ctx, (moecomm_layer_kind_t)l, &mode);
    MC_CHECK(
        r == MOECOMM_SUCCESS && (int)mode >= MOECOMM_SCATTERED && (int)mode <= MOECOMM_MOE_FULL,
        "layer_mode(%d): %d mode %d", l, (int)r, (int)mode);
  }
  for (int m = MOECOMM_SCATTERED; m <= MOECOMM_MOE_FULL; m++) {
    rows = 777;
    r = api->mode_rows(ctx, (moecomm_scatter_mode_t)m, tokens, &rows);
    MC_CHECK(r == MOECOMM_SUCCESS && rows == 5, "mode_rows(%d) on a world of one: %d rows %zu", m,
             (int)r, rows);
  }

  for (int i = 0; i < 16; i++) send[i] = (float)(i % 7 + 1);
  for (int i = 0; i < 20; i++) poison_buf[i] = -1234.5f;
#define ARGS_OK()                           \
  do {                                      \
    memset(&a, 0, sizeof(a));               \
    a.struct_size = sizeof(a);              \
    a.from = MOECOMM_SCATTERED;             \
    a.to = MOECOMM_TP_ATTN_FULL;            \
    a.dtype = MOECOMM_FLOAT32;              \
    a.hidden = 3;                           \
    a.tokens = tokens;                      \
    a.send = send;                          \
    a.recv = recv;                          \
    memcpy(recv, poison_buf, sizeof(recv)); \
  } while (0)
#define SCATTER_FAILS(what, change, stream, want)                                            \
  do {                                                                                       \
    ARGS_OK();                                                                               \
    change;                                                                                  \
    r = api->scatter(ctx, &a, (stream));                                                     \
    MC_CHECK(r == (want), "scatter %s: got %d (%s), want %d: %s", what, (int)r,              \
             api->result_string(r), (int)(want), api->last_error(ctx));                      \
    MC_CHECK(memcmp(recv, poison_buf, sizeof(recv)) == 0, "scatter %s: recv written", what); \
  } while (0)
  ARGS_OK();
  r = api->scatter(NULL, &a, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "scatter(NULL ctx): got %d", (int)r);
  r = api->scatter(ctx, NULL, NULL);
  MC_CHECK(r == MOECOMM_ERR_INVALID_ARGUMENT, "scatter(NULL args): got %d", (int)r);
  SCATTER_FAILS("struct_size 8", a.struct_size = sizeof(size_t), NULL, MOECOMM_ERR_STRUCT_SIZE);
  SCATTER_FAILS("from 9", a.from = 9, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("to -1", a.to = -1, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("dtype 7", a.dtype = 7, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("hidden 0", a.hidden = 0, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  /* rows * hidden * 4 bytes wrapping size_t, and just above PTRDIFF_MAX (used to crash) */
  SCATTER_FAILS("hidden SIZE_MAX / 8", a.hidden = SIZE_MAX / 8, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("rows * hidden above PTRDIFF_MAX", a.hidden = (size_t)PTRDIFF_MAX / 4 / 4, NULL,
                MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("tokens NULL", a.tokens = NULL, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("tokens -4", a.tokens = bad_tokens, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("send NULL", a.send = NULL, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("recv NULL", a.recv = NULL, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("recv overlapping send", a.send = recv + 2, NULL, MOECOMM_ERR_INVALID_ARGUMENT);
  SCATTER_FAILS("stream on a CPU context", (void)0, POISON_PTR, MOECOMM_ERR_INVALID_ARGUMENT);
#undef SCATTER_FAILS
  /* valid: on a world of one every transition is a copy of 5 rows of 3 */
  ARGS_OK();
  r = api->scatter(ctx, &a, NULL);
  MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS);
  MC_CHECK(memcmp(recv, send, 15 * sizeof(float)) == 0 &&
               memcmp(recv + 15, poison_buf + 15, 5 * sizeof(float)) == 0,
           "scatter SCATTERED -> TP_ATTN_FULL on a world of one is not a copy of 15 elements");
#undef ARGS_OK
}

/* ---- ABI 1.2 ---- */

/* A refused call: the code, a message naming the call in last_error (ctx NULL: the thread's). */
#define REFUSED(what, expr, want, ctx, needle)                                                    \
  do {                                                                                            \
    moecomm_result_t r_ = (expr);                                                                 \
    const char *m_ = api->last_error(ctx);                                                        \
    MC_CHECK(r_ == (want), "%s: got %d (%s), want %d: %s", what, (int)r_, api->result_string(r_), \
             (int)(want), m_);                                                                    \
    MC_CHECK(strstr(m_, needle) != NULL, "%s: last_error '%s' does not name '%s'", what, m_,      \
             needle);                                                                             \
  } while (0)

static void test_group_ranks_args(void) {
  moecomm_topology_t t = mc_test_topo(8, 0, 8);
  int32_t ranks[8] = {-9, -9, -9, -9, -9, -9, -9, -9};
  size_t n = 999;
  const char *W = "topology_group_ranks";
  t.ep = 2;
  REFUSED("topology NULL", api->topology_group_ranks(NULL, MOECOMM_GROUP_TP, 0, ranks, 8, &n),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, W);
  REFUSED("size_p NULL", api->topology_group_ranks(&t, MOECOMM_GROUP_TP, 0, ranks, 8, NULL),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, W);
  REFUSED("kind 9", api->topology_group_ranks(&t, (moecomm_group_kind_t)9, 0, ranks, 8, &n),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, "kind 9");
  REFUSED("kind -1", api->topology_group_ranks(&t, (moecomm_group_kind_t)-1, 0, ranks, 8, &n),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, "kind -1");
  REFUSED("capacity 7 for TP of 8",
          api->topology_group_ranks(&t, MOECOMM_GROUP_TP, 0, ranks, 7, &n),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, "8 ranks");
  REFUSED("ranks NULL with capacity 8",
          api->topology_group_ranks(&t, MOECOMM_GROUP_TP, 0, NULL, 8, &n),
          MOECOMM_ERR_INVALID_ARGUMENT, NULL, W);
  REFUSED("rank -1", api->topology_group_ranks(&t, MOECOMM_GROUP_TP, -1, ranks, 8, &n),
          MOECOMM_ERR_CONFIG, NULL, "rank=-1");
  REFUSED("rank 8 of 8", api->topology_group_ranks(&t, MOECOMM_GROUP_TP, 8, ranks, 8, &n),
          MOECOMM_ERR_CONFIG, NULL, "rank=8");
  t.ep = 3;
  REFUSED("ep 3 of tp 8", api->topology_group_ranks(&t, MOECOMM_GROUP_MOE_EP, 0, ranks, 8, &n),
          MOECOMM_ERR_CONFIG, NULL, "ep=3");
  t.ep = 2;
  t.struct_size = offsetof(moecomm_topology_t, moe_dense_tp);
  REFUSED("topology struct_size short",
          api->topology_group_ranks(&t, MOECOMM_GROUP_TP, 0, ranks, 8, &n), MOECOMM_ERR_STRUCT_SIZE,
          NULL, "struct_size");
  for (int i = 0; i < 8; i++) MC_CHECK(ranks[i] == -9, "a refusal wrote ranks[%d]", i);
  MC_CHECK(n == 999, "a refusal wrote size_p (%zu)", n);
  /* a newer host's larger topology: the extra bytes are not read */
  {
    struct {
      moecomm_topology_t t;
      char future[16];
    } big;
    memset(&big, 0x6b, sizeof(big));
    big.t = mc_test_topo(8, 0, 8);
    big.t.ep = 2;
    big.t.struct_size = sizeof(big);
    MC_CHECK_RC(api, NULL, api->topology_group_ranks(&big.t, MOECOMM_GROUP_MOE_EP, 6, ranks, 8, &n),
                MOECOMM_SUCCESS);
    MC_CHECK(n == 2 && ranks[0] == 2 && ranks[1] == 6 && ranks[2] == -9,
             "MOE_EP of rank 6 in tp8 ep2: %zu ranks %d %d, want 2 6", n, ranks[0], ranks[1]);
  }
}

static void test_config_var_args(void) {
  moecomm_config_var_t v;
  size_t count = 0;
  memset(&v, 0x6b, sizeof(v));
  v.struct_size = sizeof(v);
  REFUSED("config_var(0, NULL)", api->config_var(0, NULL), MOECOMM_ERR_INVALID_ARGUMENT, NULL,
          "config_var");
  while (count < 1000 && api->config_var(count, &v) == MOECOMM_SUCCESS) count++;
  MC_CHECK(count > 0 && count < 1000, "%zu configuration variables", count);
  memset(&v, 0x6b, sizeof(v));
  v.struct_size = sizeof(v);
  REFUSED("config_var past the last", api->config_var(count, &v), MOECOMM_ERR_INVALID_ARGUMENT,
          NULL, "past the last");
  REFUSED("config_var(SIZE_MAX)", api->config_var(SIZE_MAX, &v), MOECOMM_ERR_INVALID_ARGUMENT, NULL,
          "past the last");
  v.struct_size = offsetof(moecomm_config_var_t, help);
  REFUSED("config_var struct_size short", api->config_var(0, &v), MOECOMM_ERR_STRUCT_SIZE, NULL,
          "config_var");
  MC_CHECK(v.name == (const char *)(uintptr_t)0x6b6b6b6b6b6b6b6bull &&
               v.help == (const char *)(uintptr_t)0x6b6b6b6b6b6b6b6bull,
           "a refused config_var wrote the struct");
}

/* Buffers and arguments of every 1.2 slot that takes a group, valid for a group of one (except
   send and recv, which a group of one cannot call).  A case changes one of them. */
enum { A12_N = 16 };
typedef struct args12 {
  uint16_t buf[A12_N * 2], out[A12_N * 2], res[A12_N * 2], w[A12_N];
  int32_t ids[4], counts[4], src[4 * 8 * 3];
  float tw[4];
  size_t sc[1], sd[1], rc[1], rd[1];
  uint64_t handle;
  /* the arguments the calls pass */
  const void *send;
  void *recv;
  size_t count;
  moecomm_dtype_t dtype;
  int32_t peer;
  void *stream;
  const size_t *send_counts, *send_displs, *recv_counts, *recv_displs;
  uint64_t *handle_p;
  moecomm_moe_config_t cfg;
  moecomm_moe_dispatch_args_t d;
  moecomm_moe_combine_args_t c;
  moecomm_rmsnorm_args_t n;
  const void *cfg_p, *d_p, *c_p, *n_p; /* &cfg ... or NULL */
} args12_t;

enum { A12_SEND, A12_RECV, A12_A2A, A12_A2AV, A12_MOE_CONF, A12_DISPATCH, A12_COMBINE, A12_RMS };
static const char *const slots12[] = {
    "send",          "recv",         "all_to_all",  "all_to_all_v",
    "moe_configure", "moe_dispatch", "moe_combine", "all_reduce_rmsnorm"};
#define A12_SLOTS ((int)(sizeof(slots12) / sizeof(slots12[0])))

static void args12_init(args12_t *a) {
  memset(a, 0, sizeof(*a));
  mc_test_fill(a->buf, A12_N, MOECOMM_BFLOAT16, 12);
  mc_test_fill(a->res, A12_N, MOECOMM_BFLOAT16, 13);
  mc_test_fill(a->w, A12_N / 2, MOECOMM_BFLOAT16, 14);
  memset(a->out, 0x6b, sizeof(a->out));
  memset(a->counts, 0x6b, sizeof(a->counts));
  a->handle = 0x6b6b;
  a->send = a->buf;
  a->recv = a->out;
  a->count = A12_N;
  a->dtype = MOECOMM_BFLOAT16;
  a->sc[0] = a->rc[0] = A12_N;
  a->send_counts = a->sc;
  a->send_displs = a->sd;
  a->recv_counts = a->rc;
  a->recv_displs = a->rd;
  a->handle_p = &a->handle;
  a->cfg = (moecomm_moe_config_t){sizeof(a->cfg), 2, 2, MOECOMM_BFLOAT16, 4, 8, 0, 0, 0};
  a->d = (moecomm_moe_dispatch_args_t){sizeof(a->d), 2,    a->buf,    NULL,  a->ids,
                                       a->out,       NULL, a->counts, a->src};
  a->c = (moecomm_moe_combine_args_t){sizeof(a->c), 2, 1, a->buf, a->tw, a->out};
  a->n = (moecomm_rmsnorm_args_t){sizeof(a->n), MOECOMM_BFLOAT16, 1e-5f, 2,   8, a->buf, a->res,
                                  a->w,         a->out,           NULL,  NULL};
  a->cfg_p = &a->cfg;
  a->d_p = &a->d;
  a->c_p = &a->c;
  a->n_p = &a->n;
}

static moecomm_result_t call12(int which, moecomm_group_t *g, const args12_t *a) {
  switch (which) {
    case A12_SEND: return api->send(g, a->send, a->count, a->dtype, a->peer, a->stream);
    case A12_RECV: return api->recv(g, a->recv, a->count, a->dtype, a->peer, a->stream);
    case A12_A2A: return api->all_to_all(g, a->send, a->recv, a->count, a->dtype, a->stream);
    case A12_A2AV:
      return api->all_to_all_v(g, a->send, a->send_counts, a->send_displs, a->recv, a->recv_counts,
                               a->recv_displs, a->dtype, a->stream);
    case A12_MOE_CONF: return api->moe_configure(g, a->cfg_p);
    case A12_DISPATCH: return api->moe_dispatch(g, a->d_p, a->handle_p, a->stream);
    case A12_COMBINE: return api->moe_combine(g, a->c_p, a->stream);
    default: return api->all_reduce_rmsnorm(g, a->n_p, a->stream);
  }
}

/* out (every recv buffer here), the handle, the counts and the residual as args12_init left them */
static int args12_untouched(const args12_t *a) {
  args12_t fresh;
  args12_init(&fresh);
  return memcmp(a->out, fresh.out, sizeof(a->out)) == 0 && a->handle == fresh.handle &&
         memcmp(a->counts, fresh.counts, sizeof(a->counts)) == 0 &&
         memcmp(a->res, fresh.res, sizeof(a->res)) == 0;
}

/* NULL group handles, and the handles of a destroyed context: refused, nothing written. */
static void test_abi12_stale(void) {
  moecomm_context_t *ctx = solo_context();
  moecomm_group_t *tp = NULL, *ep = NULL;
  args12_t a;
  if (ctx == NULL) return;
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &tp), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_MOE_EP, &ep), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, NULL, api->context_destroy(ctx), MOECOMM_SUCCESS);
  for (int s = 0; s < A12_SLOTS; s++) {
    const int moe = s == A12_MOE_CONF || s == A12_DISPATCH || s == A12_COMBINE;
    char what[96];
    args12_init(&a);
    snprintf(what, sizeof(what), "%s with a NULL group", slots12[s]);
    REFUSED(what, call12(s, NULL, &a), MOECOMM_ERR_INVALID_ARGUMENT, NULL, slots12[s]);
    snprintf(what, sizeof(what), "%s with a destroyed context's group", slots12[s]);
    REFUSED(what, call12(s, moe ? ep : tp, &a), MOECOMM_ERR_INVALID_ARGUMENT, NULL, "destroyed");
    MC_CHECK(args12_untouched(&a), "%s: an output was written", what);
  }
}

/* One call on a live group with some arguments changed: the code, the message naming the cause,
   nothing written. */
#define REFUSED12(what, which, g, change, want, needle)                \
  do {                                                                 \
    args12_init(&a);                                                   \
    change;                                                            \
    REFUSED(what, call12(which, g, &a), want, ctx, needle);            \
    MC_CHECK(args12_untouched(&a), "%s: an output was written", what); \
  } while (0)

static void test_p2p_a2a_args(moecomm_context_t *ctx, moecomm_group_t *g) {
  const moecomm_result_t INV = MOECOMM_ERR_INVALID_ARGUMENT;
  args12_t a;
  REFUSED12("send to itself", A12_SEND, g, (void)0, INV, "peer 0");
  REFUSED12("recv from itself", A12_RECV, g, (void)0, INV, "peer 0");
  REFUSED12("send to peer 1 of 1", A12_SEND, g, a.peer = 1, INV, "peer 1");
  REFUSED12("recv from peer -1", A12_RECV, g, a.peer = -1, INV, "peer -1");
  REFUSED12("all_to_all send NULL", A12_A2A, g, a.send = NULL, INV, "send");
  REFUSED12("all_to_all recv NULL", A12_A2A, g, a.recv = NULL, INV, "recv");
  REFUSED12("all_to_all dtype 4 (fp8 is not a dtype)", A12_A2A, g, a.dtype = 4, INV, "dtype 4");
  REFUSED12("all_to_all dtype -1", A12_A2A, g, a.dtype = -1, INV, "dtype -1");
  REFUSED12("all_to_all overlapping", A12_A2A, g, a.send = a.out + 1, INV, "overlap");
  REFUSED12("all_to_all stream on CPU", A12_A2A, g, a.stream = POISON_PTR, INV, "stream");
  REFUSED12("all_to_all count SIZE_MAX / 2", A12_A2A, g, a.count = SIZE_MAX / 2, INV, "exceeds");
  REFUSED12("all_to_all_v send_counts NULL", A12_A2AV, g, a.send_counts = NULL, INV, "NULL");
  REFUSED12("all_to_all_v send_displs NULL", A12_A2AV, g, a.send_displs = NULL, INV, "NULL");
  REFUSED12("all_to_all_v recv_counts NULL", A12_A2AV, g, a.recv_counts = NULL, INV, "NULL");
  REFUSED12("all_to_all_v recv_displs NULL", A12_A2AV, g, a.recv_displs = NULL, INV, "NULL");
  REFUSED12("all_to_all_v send NULL", A12_A2AV, g, a.send = NULL, INV, "send is NULL");
  REFUSED12("all_to_all_v recv NULL", A12_A2AV, g, a.recv = NULL, INV, "recv is NULL");
  REFUSED12("all_to_all_v dtype 7", A12_A2AV, g, a.dtype = 7, INV, "dtype 7");
  REFUSED12("all_to_all_v stream on CPU", A12_A2AV, g, a.stream = POISON_PTR, INV, "stream");
  REFUSED12("all_to_all_v counts disagree", A12_A2AV, g, a.rc[0] = A12_N - 1, INV, "agree");
  REFUSED12("all_to_all_v displacement overflowing", A12_A2AV, g, a.sd[0] = SIZE_MAX - 4, INV,
            "exceeds");
  /* nothing to move: NULL buffers are fine */
  args12_init(&a);
  a.send = NULL;
  a.recv = NULL;
  a.count = 0;
  a.sc[0] = a.rc[0] = 0;
  MC_CHECK_RC(api, ctx, call12(A12_A2A, g, &a), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, call12(A12_A2AV, g, &a), MOECOMM_SUCCESS);
}

static void test_moe_args(moecomm_context_t *ctx, moecomm_group_t *tp, moecomm_group_t *ep) {
  const moecomm_result_t INV = MOECOMM_ERR_INVALID_ARGUMENT;
  moecomm_group_stats_t st;
  args12_t a;
  /* before moe_configure */
  REFUSED12("moe_dispatch before moe_configure", A12_DISPATCH, ep, (void)0, MOECOMM_ERR_STATE,
            "call moe_configure");
  REFUSED12("moe_combine before moe_configure", A12_COMBINE, ep, (void)0, MOECOMM_ERR_STATE,
            "call moe_configure");
  REFUSED12("moe_configure on TP", A12_MOE_CONF, tp, (void)0, INV, "MOE_EP");
  REFUSED12("moe_configure config NULL", A12_MOE_CONF, ep, a.cfg_p = NULL, INV, "NULL");
  REFUSED12("moe_configure struct_size short", A12_MOE_CONF, ep,
            a.cfg.struct_size = offsetof(moecomm_moe_config_t, combine_dtype),
            MOECOMM_ERR_STRUCT_SIZE, "struct_size");
  REFUSED12("moe_configure num_experts -2", A12_MOE_CONF, ep, a.cfg.num_experts = -2, INV,
            "num_experts=-2");
  REFUSED12("moe_configure top_k 33", A12_MOE_CONF, ep, a.cfg.top_k = 33, INV, "top_k");
  REFUSED12("moe_configure dtype INT32", A12_MOE_CONF, ep, a.cfg.dtype = MOECOMM_INT32, INV,
            "dtype");
  REFUSED12("moe_configure fp8 without scales", A12_MOE_CONF, ep, a.cfg.dtype = MOECOMM_FLOAT8_E4M3,
            INV, "num_scales");
  REFUSED12("moe_configure fp8 combined as fp8", A12_MOE_CONF, ep,
            (a.cfg.dtype = MOECOMM_FLOAT8_E4M3, a.cfg.num_scales = 4,
             a.cfg.combine_dtype = MOECOMM_FLOAT8_E4M3),
            INV, "combine_dtype");
  REFUSED12("moe_configure max_tokens -1", A12_MOE_CONF, ep, a.cfg.max_tokens = -1, INV,
            "max_tokens");
  REFUSED12("moe_configure expert_capacity -3", A12_MOE_CONF, ep, a.cfg.expert_capacity = -3, INV,
            "expert_capacity");
  REFUSED12("moe_configure hidden 0", A12_MOE_CONF, ep, a.cfg.hidden = 0, INV, "hidden");
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  MC_CHECK_RC(api, ctx, api->group_stats(ep, &st), MOECOMM_SUCCESS);
  MC_CHECK(st.moe_max_tokens == 0 && st.moe_expert_capacity == 0,
           "refused moe_configure calls took effect: %d %d", st.moe_max_tokens,
           st.moe_expert_capacity);
  /* configured: the arguments refused before any data moves */
  args12_init(&a);
  MC_CHECK_RC(api, ctx, call12(A12_MOE_CONF, ep, &a), MOECOMM_SUCCESS);
  REFUSED12("moe_dispatch args NULL", A12_DISPATCH, ep, a.d_p = NULL, INV, "args");
  REFUSED12("moe_dispatch handle_p NULL", A12_DISPATCH, ep, a.handle_p = NULL, INV, "handle_p");
  REFUSED12("moe_dispatch struct_size short", A12_DISPATCH, ep,
            a.d.struct_size = offsetof(moecomm_moe_dispatch_args_t, recv_src),
            MOECOMM_ERR_STRUCT_SIZE, "struct_size");
  REFUSED12("moe_dispatch stream on CPU", A12_DISPATCH, ep, a.stream = POISON_PTR, INV, "stream");
  REFUSED12("moe_combine args NULL", A12_COMBINE, ep, a.c_p = NULL, INV, "args");
  REFUSED12("moe_combine struct_size short", A12_COMBINE, ep,
            a.c.struct_size = offsetof(moecomm_moe_combine_args_t, out), MOECOMM_ERR_STRUCT_SIZE,
            "struct_size");
  REFUSED12("moe_combine stream on CPU", A12_COMBINE, ep, a.stream = POISON_PTR, INV, "stream");
  MC_CHECK_RC(api, ctx, api->group_stats(ep, &st), MOECOMM_SUCCESS);
  MC_CHECK(st.moe_max_tokens == 4 && st.moe_expert_capacity == 4 && st.ops == 0,
           "after moe_configure (max_tokens 4): stats %d %d ops %llu", st.moe_max_tokens,
           st.moe_expert_capacity, (unsigned long long)st.ops);
}

static void test_rmsnorm_args(moecomm_context_t *ctx, moecomm_group_t *g) {
  const moecomm_result_t INV = MOECOMM_ERR_INVALID_ARGUMENT;
  args12_t a;
  REFUSED12("rmsnorm args NULL", A12_RMS, g, a.n_p = NULL, INV, "args");
  REFUSED12("rmsnorm struct_size short", A12_RMS, g,
            a.n.struct_size = offsetof(moecomm_rmsnorm_args_t, out_scale), MOECOMM_ERR_STRUCT_SIZE,
            "struct_size");
  REFUSED12("rmsnorm dtype FLOAT32", A12_RMS, g, a.n.dtype = MOECOMM_FLOAT32, INV, "dtype 0");
  REFUSED12("rmsnorm dtype FLOAT8_E4M3", A12_RMS, g, a.n.dtype = MOECOMM_FLOAT8_E4M3, INV,
            "dtype 4");
  REFUSED12("rmsnorm eps -0.5", A12_RMS, g, a.n.eps = -0.5f, INV, "eps");
  REFUSED12("rmsnorm eps NaN", A12_RMS, g, a.n.eps = __builtin_nanf(""), INV, "eps");
  REFUSED12("rmsnorm hidden 0", A12_RMS, g, a.n.hidden = 0, INV, "hidden 0");
  REFUSED12("rmsnorm tokens * hidden overflowing", A12_RMS, g, a.n.tokens = SIZE_MAX / 4, INV,
            "hidden");
  REFUSED12("rmsnorm x NULL", A12_RMS, g, a.n.x = NULL, INV, "NULL");
  REFUSED12("rmsnorm residual NULL", A12_RMS, g, a.n.residual = NULL, INV, "NULL");
  REFUSED12("rmsnorm weight NULL", A12_RMS, g, a.n.weight = NULL, INV, "NULL");
  REFUSED12("rmsnorm out NULL", A12_RMS, g, a.n.out = NULL, INV, "NULL");
  REFUSED12("rmsnorm out_fp8 without out_scale", A12_RMS, g, a.n.out_fp8 = a.w, INV, "out_scale");
  REFUSED12("rmsnorm out == x", A12_RMS, g, a.n.x = a.out, INV, "overlap");
  REFUSED12("rmsnorm out inside residual", A12_RMS, g, a.n.out = a.res + 4, INV, "overlap");
  REFUSED12("rmsnorm stream on CPU", A12_RMS, g, a.stream = POISON_PTR, INV, "stream");
  /* tokens 0: a no-op, buffers NULL allowed */
  args12_init(&a);
  a.n = (moecomm_rmsnorm_args_t){
      sizeof(a.n), MOECOMM_FLOAT16, 0.0f, 0, 8, NULL, NULL, NULL, NULL, NULL, NULL};
  MC_CHECK_RC(api, ctx, call12(A12_RMS, g, &a), MOECOMM_SUCCESS);
}

static void test_abi12_args(moecomm_context_t *ctx) {
  moecomm_group_t *tp = NULL, *ep = NULL;
  if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &tp), MOECOMM_SUCCESS) ||
      !MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_MOE_EP, &ep), MOECOMM_SUCCESS))
    return;
  test_p2p_a2a_args(ctx, tp);
  test_moe_args(ctx, tp, ep);
  test_rmsnorm_args(ctx, tp);
}

/* ---- handle confusion: run in a child so a crash is one failed check, not the end ---- */

static int confused_handles(moecomm_context_t *ctx) {
  moecomm_group_stats_t st;
  int32_t buf[4] = {1, 2, 3, 4};
  moecomm_result_t r1, r2;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  r1 = api->group_stats((const moecomm_group_t *)ctx, &st);
  r2 = api->all_reduce((moecomm_group_t *)ctx, buf, buf, 4, MOECOMM_INT32, MOECOMM_SUM, NULL);
  for (int s = 0; s < A12_SLOTS; s++) { /* ABI 1.2 */
    args12_t a;
    args12_init(&a);
    if (call12(s, (moecomm_group_t *)ctx, &a) != MOECOMM_ERR_INVALID_ARGUMENT ||
        !args12_untouched(&a))
      return 3 + s;
  }
  return r1 == MOECOMM_ERR_INVALID_ARGUMENT && r2 == MOECOMM_ERR_INVALID_ARGUMENT ? 0 : 2;
}

static void test_confused_handles(moecomm_context_t *ctx) {
  pid_t pid;
  int st = 0;
  fflush(stdout);
  pid = fork();
  if (pid == 0) _exit(confused_handles(ctx));
  if (!MC_CHECK(pid > 0, "fork")) return;
  waitpid(pid, &st, 0);
  MC_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "a context handle passed as a group: %s %d (want MOECOMM_ERR_INVALID_ARGUMENT, no "
           "crash; exit 3 + n: ABI 1.2 slot n)",
           WIFSIGNALED(st) ? "killed by signal" : "child exit",
           WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

/* Each section runs in a forked process (a world of one): a crash on bad input is one failed
   check naming the section, and the sections after it still run. */
typedef struct section {
  const char *name;
  void (*fn)(void);
  void (*fn_ctx)(moecomm_context_t *ctx);
} section_t;

static int run_section(int rank, int world, void *arg) {
  const section_t *s = arg;
  moecomm_context_t *ctx;
  (void)rank;
  (void)world;
  if (s->fn != NULL) {
    s->fn();
    return 0;
  }
  ctx = solo_context();
  if (ctx == NULL) return 1;
  s->fn_ctx(ctx);
  MC_CHECK_RC(api, NULL, api->context_destroy(ctx), MOECOMM_SUCCESS);
  return 0;
}

int main(int argc, char **argv) {
  static const section_t sections[] = {
      {"table", test_table, NULL},
      {"entry", test_entry, NULL},
      {"result_string", test_result_strings, NULL},
      {"context_create", test_context_create, NULL},
      {"context_create with ctx_p NULL", test_context_create_null_out, NULL},
      {"context_info", NULL, test_info},
      {"group_get and group_stats", NULL, test_groups},
      {"collectives", NULL, test_collectives},
      {"capture and planning", NULL, test_capture_and_plan},
      {"scatter modes (ABI 1.1)", NULL, test_scatter_modes},
      {"topology_group_ranks (ABI 1.2)", test_group_ranks_args, NULL},
      {"config_var (ABI 1.2)", test_config_var_args, NULL},
      {"ABI 1.2 slots: NULL and stale groups", test_abi12_stale, NULL},
      {"ABI 1.2 slots: arguments", NULL, test_abi12_args},
      {"handles of the wrong type", NULL, test_confused_handles},
  };
  mc_test_init("abi_args", argc, argv);
  api = mc_test_plugin();
  for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
    MC_CHECK(mc_test_ranks(1, run_section, (void *)&sections[i], 60) == 0,
             "section '%s' failed or crashed", sections[i].name);
  return mc_test_finish();
}
