/* SPDX-License-Identifier: Apache-2.0 */
/* compat.c - old and new hosts against the current plugin, and plugins the loader must refuse.
 *
 *  - a host compiled against the frozen abi/moecomm_v1.h (lib_old_host_v1.c), passing 1.0-sized
 *    structs and asking for 1.0..1.0, works on 2 ranks: with zeroed padding, with garbage
 *    padding, and with padding that happens to look like a 1.1 flag;
 *  - a current host passing a context_params struct_size that ends at the 1.0 fields gets the
 *    defaults of the fields after it;
 *  - a 1.1 host (asking for 1.0..1.1, passing 1.1-sized group stats) gets 1.1 through the loader
 *    and a table whose 1.1 slots work on 2 ranks; hosts asking for up to 1.3 get 1.2, 1.2-only
 *    hosts are served;
 *  - version ranges the plugin does not speak get MOECOMM_ERR_VERSION and a reason naming both
 *    ranges, from the entry point and through the reference loader, and outputs stay untouched;
 *  - the loader refuses, with its documented messages, a plugin exporting only an older or a
 *    newer entry symbol, a library whose entry comes from a dependency, a table smaller than 1.0
 *    and a negotiated version outside the host's range. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/launch.h"
#include "../common/harness.h"
#include "old_host_v1.h"
#include "util.h"

static char g_build[PATH_MAX];
static char g_plugin[PATH_MAX + 32];

typedef struct old_job {
  old_host_padding_t padding;
} old_job_t;

static int old_rank(int rank, int world, void *arg) {
  const old_job_t *job = arg;
  char why[1024] = "";
  int bad = old_host_v1_run(g_plugin, rank, world, shim_host_allgather, shim_launch_hub(),
                            job->padding, why, sizeof(why));
  static const char *const names[] = {"zeroed", "garbage (0xA5)", "one byte = 1"};
  MC_CHECK(bad == 0, "1.0 host, padding %s: %s", names[job->padding], why);
  return 0;
}

static void check_old_hosts(void) {
  for (int p = OLD_HOST_PAD_ZERO; p <= OLD_HOST_PAD_ONE; p++) {
    old_job_t job = {(old_host_padding_t)p};
    mc_test_ranks(2, old_rank, &job, 60);
  }
}

/* A current host that sets struct_size to the end of the 1.0 fields: flags reads as 0, so
   groups with one rank list share a communicator. */
static int short_params_rank(int rank, int world, void *arg) {
  const moecomm_api_t *api = mc_test_plugin();
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *tp = NULL, *wg = NULL;
  moecomm_group_stats_t a, b;
  float x[3] = {1, 2, 3}, y[3];
  (void)arg;
  p.struct_size = MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device);
  p.flags = MOECOMM_CONTEXT_SEPARATE_COMMS; /* past struct_size: must be ignored */
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return 1;
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_TP, &tp), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_WORLD, &wg), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->all_reduce(tp, x, y, 3, MOECOMM_FLOAT32, MOECOMM_SUM, NULL),
              MOECOMM_SUCCESS);
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  b = a;
  MC_CHECK_RC(api, ctx, api->group_stats(tp, &a), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->group_stats(wg, &b), MOECOMM_SUCCESS);
  MC_CHECK(a.comm_id == b.comm_id,
           "with struct_size %zu (flags absent) WORLD and TP should share "
           "a communicator (comm %d vs %d)",
           p.struct_size, b.comm_id, a.comm_id);
  MC_CHECK(y[0] == 2.0f && y[1] == 4.0f && y[2] == 6.0f, "all_reduce result %g %g %g", (double)y[0],
           (double)y[1], (double)y[2]);
  api->context_destroy(ctx);
  return 0;
}

/* A 1.1 host: negotiates 1.0..1.1 through the loader, then uses what 1.1 added (context flags,
   layer modes, scatter) and reads group stats in their 1.1 size, on 2 ranks (tp 2). */
static void v11_scatter(const moecomm_api_t *api, moecomm_context_t *ctx, int rank) {
  enum { H = 3, T = 4 };
  const int32_t tokens[1] = {T};
  int32_t send[T / 2 * H], recv[T * H + 1], want[T * H];
  moecomm_scatter_mode_t mode = (moecomm_scatter_mode_t)-1;
  moecomm_scatter_args_t a;
  size_t rows = 0;
  MC_CHECK_RC(api, ctx, api->layer_mode(ctx, MOECOMM_LAYER_ATTENTION, &mode), MOECOMM_SUCCESS);
  MC_CHECK(mode == MOECOMM_TP_ATTN_FULL, "1.1 host: attention mode %d", (int)mode);
  MC_CHECK_RC(api, ctx, api->mode_rows(ctx, MOECOMM_SCATTERED, tokens, &rows), MOECOMM_SUCCESS);
  MC_CHECK(rows == T / 2, "1.1 host: SCATTERED holds %zu rows of T %d on 2 ranks", rows, T);
  /* SCATTERED -> TP_ATTN_FULL: rank r's rows land at r * T/2 on both ranks */
  for (int r = 0; r < 2; r++) {
    mc_test_fill(want + r * (T / 2) * H, (T / 2) * H, MOECOMM_INT32, 0x1100u + (unsigned)r);
    if (r == rank) memcpy(send, want + r * (T / 2) * H, sizeof(send));
  }
  for (int i = 0; i < T * H + 1; i++) recv[i] = 0x7e7e7e7e;
  a = mc_test_scatter_args(MOECOMM_SCATTERED, MOECOMM_TP_ATTN_FULL, 0, MOECOMM_INT32, H, tokens,
                           send, recv);
  MC_CHECK_RC(api, ctx, api->scatter(ctx, &a, NULL), MOECOMM_SUCCESS);
  MC_CHECK(memcmp(recv, want, sizeof(want)) == 0 && recv[T * H] == 0x7e7e7e7e,
           "1.1 host: scatter SCATTERED -> TP_ATTN_FULL is not the two ranks' rows in order");
}

static int v11_rank(int rank, int world, void *arg) {
  shim_plugin_t pl;
  char err[2048] = "";
  const moecomm_api_t *api;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  moecomm_context_info_t info;
  moecomm_group_t *at = NULL, *wg = NULL;
  moecomm_group_stats_t st, sw;
  (void)arg;
  if (!MC_CHECK(shim_plugin_load_path(g_plugin, MOECOMM_ABI_VERSION_MAKE(1, 0),
                                      MOECOMM_ABI_VERSION_MAKE(1, 1), &pl, err,
                                      sizeof(err)) == SHIM_LOAD_OK,
                "1.1 host: loading %s for 1.0..1.1: %s", g_plugin, err))
    return 1;
  api = pl.api;
  MC_CHECK(pl.version == MOECOMM_ABI_VERSION_MAKE(1, 1), "1.1 host got version %#x", pl.version);
  MC_CHECK(MOECOMM_API_HAS(api, layer_mode) && MOECOMM_API_HAS(api, mode_rows) &&
               MOECOMM_API_HAS(api, scatter),
           "1.1 host: the table (%zu bytes) lacks a 1.1 slot", api->struct_size);
  p.flags = MOECOMM_CONTEXT_SEPARATE_COMMS;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) goto out;
  memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  MC_CHECK_RC(api, ctx, api->context_info(ctx, &info), MOECOMM_SUCCESS);
  MC_CHECK(info.abi_version == MOECOMM_ABI_VERSION_MAKE(1, 1), "1.1 host: context ABI %#x",
           info.abi_version);
  v11_scatter(api, ctx, rank);
  /* the scatter ran on ATTN_TP (tp ranks here: the same list as WORLD) */
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_ATTN_TP, &at), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->group_get(ctx, MOECOMM_GROUP_WORLD, &wg), MOECOMM_SUCCESS);
  /* The 1.1 layout of the stats ends at ops: the 1.2 fields after it stay as the host left them. */
  memset(&st, 0x5c, sizeof(st));
  st.struct_size = MOECOMM_STRUCT_SIZE(moecomm_group_stats_t, ops);
  sw = st;
  MC_CHECK_RC(api, ctx, api->group_stats(at, &st), MOECOMM_SUCCESS);
  MC_CHECK_RC(api, ctx, api->group_stats(wg, &sw), MOECOMM_SUCCESS);
  MC_CHECK(st.struct_size == MOECOMM_STRUCT_SIZE(moecomm_group_stats_t, ops) && st.size == 2 &&
               st.ops >= 1 && st.ops_local == 0x5c5c5c5c5c5c5c5cull &&
               st.moe_expert_capacity == 0x5c5c5c5c,
           "1.1 host: ATTN_TP stats size %d ops %llu; bytes past the 1.1 layout written: %d",
           st.size, (unsigned long long)st.ops, st.ops_local != 0x5c5c5c5c5c5c5c5cull);
  MC_CHECK(st.comm_id != sw.comm_id, "1.1 flag SEPARATE_COMMS: ATTN_TP and WORLD share comm %d",
           st.comm_id);
  api->context_destroy(ctx);
out:
  shim_plugin_unload(&pl);
  return 0;
}

static void check_versions(void) {
  void *h = dlopen(g_plugin, RTLD_NOW | RTLD_LOCAL);
  moecomm_get_api_v1_fn_t entry;
  void *sym;
  static const struct {
    uint32_t lo, hi, want; /* want 0: refused */
  } cases[] = {
      {MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 3), 0},
      {MOECOMM_ABI_VERSION_MAKE(1, 3), MOECOMM_ABI_VERSION_MAKE(1, 9), 0},
      {MOECOMM_ABI_VERSION_MAKE(0, 1), MOECOMM_ABI_VERSION_MAKE(0, 9), 0},
      {MOECOMM_ABI_VERSION_MAKE(1, 1), MOECOMM_ABI_VERSION_MAKE(1, 0), 0},
      {MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 0),
       MOECOMM_ABI_VERSION_MAKE(1, 0)},
      {MOECOMM_ABI_VERSION_MAKE(0, 1), MOECOMM_ABI_VERSION_MAKE(1, 0),
       MOECOMM_ABI_VERSION_MAKE(1, 0)},
      {MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 9), MOECOMM_ABI_VERSION},
      {MOECOMM_ABI_VERSION, MOECOMM_ABI_VERSION_MAKE(7, 0), MOECOMM_ABI_VERSION},
      /* ABI 1.2: a newer host gets 1.2, a 1.2-only host is served, a 1.1 host keeps 1.1 */
      {MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 3),
       MOECOMM_ABI_VERSION_MAKE(1, 2)},
      {MOECOMM_ABI_VERSION_MAKE(1, 2), MOECOMM_ABI_VERSION_MAKE(1, 3),
       MOECOMM_ABI_VERSION_MAKE(1, 2)},
      {MOECOMM_ABI_VERSION_MAKE(1, 2), MOECOMM_ABI_VERSION_MAKE(1, 2),
       MOECOMM_ABI_VERSION_MAKE(1, 2)},
      {MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 1),
       MOECOMM_ABI_VERSION_MAKE(1, 1)},
      {MOECOMM_ABI_VERSION_MAKE(1, 1), MOECOMM_ABI_VERSION_MAKE(1, 1),
       MOECOMM_ABI_VERSION_MAKE(1, 1)},
  };
  if (!MC_CHECK(h != NULL, "dlopen %s: %s", g_plugin, dlerror())) return;
  sym = dlsym(h, MOECOMM_ENTRY_SYMBOL_V1);
  if (!MC_CHECK(sym != NULL, "no %s in %s", MOECOMM_ENTRY_SYMBOL_V1, g_plugin)) goto out;
  memcpy(&entry, &sym, sizeof(entry));
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint32_t lo = cases[i].lo, hi = cases[i].hi, v = 0xdeadbeefu;
    const moecomm_api_t *api = (const moecomm_api_t *)0x1234;
    char why[512], lor[16], hir[16];
    moecomm_result_t r;
    memset(why, 0, sizeof(why));
    r = entry(lo, hi, &v, &api, why, sizeof(why));
    snprintf(lor, sizeof(lor), "%u.%u", lo >> 16, lo & 0xffff);
    snprintf(hir, sizeof(hir), "%u.%u", hi >> 16, hi & 0xffff);
    if (cases[i].want == 0) {
      MC_CHECK(r == MOECOMM_ERR_VERSION, "host %s..%s: got %d, want MOECOMM_ERR_VERSION", lor, hir,
               (int)r);
      MC_CHECK(v == 0xdeadbeefu && api == (const moecomm_api_t *)0x1234,
               "host %s..%s: a refusal wrote version_p or api_p", lor, hir);
      MC_CHECK(strstr(why, lor) != NULL && strstr(why, hir) != NULL && strstr(why, "1.0") != NULL,
               "host %s..%s: the reason should name the host's range and the plugin's: '%s'", lor,
               hir, why);
    } else {
      MC_CHECK(r == MOECOMM_SUCCESS && v == cases[i].want && api != NULL,
               "host %s..%s: got %d and version %#x, want success with %#x", lor, hir, (int)r, v,
               cases[i].want);
    }
  }
  /* A why buffer of one byte still gets its NUL; no buffer at all is fine too. */
  {
    uint32_t v;
    const moecomm_api_t *api;
    char one[1] = {'x'};
    MC_CHECK(entry(MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 0), &v, &api, one,
                   1) == MOECOMM_ERR_VERSION &&
                 one[0] == '\0',
             "why of size 1 is not an empty string");
    MC_CHECK(entry(MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 0), &v, &api, NULL,
                   0) == MOECOMM_ERR_VERSION,
             "refusal with why NULL");
  }
out:
  dlclose(h);
}

/* Through the reference loader: explicit requests that fail say why, loudly. */
static void expect_refused(const char *path, uint32_t lo, uint32_t hi, const char *what,
                           const char *const *needles) {
  shim_plugin_t pl;
  char err[2048] = "";
  shim_load_result_t r;
  memset(&pl, 0x6b, sizeof(pl));
  r = shim_plugin_load_path(path, lo, hi, &pl, err, sizeof(err));
  MC_CHECK(r == SHIM_LOAD_FAILED, "%s: loader result %d, want SHIM_LOAD_FAILED (%s)", what, (int)r,
           err);
  MC_CHECK(((unsigned char *)&pl)[0] == 0x6b, "%s: a refused load wrote the plugin struct", what);
  for (int i = 0; needles[i] != NULL; i++)
    MC_CHECK(strstr(err, needles[i]) != NULL, "%s: the loader's message lacks '%s': %s", what,
             needles[i], err);
}

static void check_loader(void) {
  char p[PATH_MAX + 64];
  const uint32_t v10 = MOECOMM_ABI_VERSION_MAKE(1, 0);
  expect_refused(g_plugin, MOECOMM_ABI_VERSION_MAKE(2, 0), MOECOMM_ABI_VERSION_MAKE(2, 3),
                 "host 2.0..2.3", (const char *const[]){"major 1", "2.0", "2.3", NULL});
  expect_refused(
      g_plugin, MOECOMM_ABI_VERSION_MAKE(1, 3), MOECOMM_ABI_VERSION_MAKE(1, 5), "host 1.3..1.5",
      (const char *const[]){g_plugin, "refused", "MOECOMM_ERR_VERSION", "1.3", "1.5", NULL});
  snprintf(p, sizeof(p), "%s/abi/libfake_v0only.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "plugin with only moecomm_get_api_v0",
                 (const char *const[]){p, "is not a moecomm plugin",
                                       "does not define moecomm_get_api_v1", NULL});
  snprintf(p, sizeof(p), "%s/abi/libfake_v2only.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "plugin with only moecomm_get_api_v2",
                 (const char *const[]){p, "is not a moecomm plugin",
                                       "does not define moecomm_get_api_v1", NULL});
  snprintf(p, sizeof(p), "%s/abi/libfake_reexport.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "library linking the plugin",
                 (const char *const[]){p, "is not a moecomm plugin", "comes from another object",
                                       "libmoecomm", NULL});
  snprintf(p, sizeof(p), "%s/abi/libfake_small_table.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "table smaller than 1.0",
                 (const char *const[]){p, "not an ABI 1.x table", "struct_size 16", NULL});
  snprintf(p, sizeof(p), "%s/abi/libfake_bad_version.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "version outside the range",
                 (const char *const[]){p, "1.7", "outside the requested range", NULL});
  snprintf(p, sizeof(p), "%s/abi/no-such-plugin.so", g_build);
  expect_refused(p, v10, MOECOMM_ABI_VERSION, "missing file",
                 (const char *const[]){p, "cannot load", NULL});

  /* And the real plugin through the same loader, for each range it speaks. */
  {
    shim_plugin_t pl;
    char err[2048] = "";
    MC_CHECK(shim_plugin_load_path(g_plugin, v10, v10, &pl, err, sizeof(err)) == SHIM_LOAD_OK &&
                 pl.version == v10,
             "loading %s for 1.0..1.0: %s", g_plugin, err);
    if (pl.api != NULL) shim_plugin_unload(&pl);
  }
}

int main(int argc, char **argv) {
  mc_test_init("abi_compat", argc, argv);
  if (!MC_CHECK(mc_test_build_dir(g_build, sizeof(g_build)) == 0, "no build directory")) {
    return mc_test_finish();
  }
  snprintf(g_plugin, sizeof(g_plugin), "%s/libmoecomm.so", g_build);
  /* The old hosts run first, in fresh ranks, before this process loads the plugin itself. */
  check_old_hosts();
  check_versions();
  check_loader();
  mc_test_ranks(2, short_params_rank, NULL, 60);
  mc_test_ranks(2, v11_rank, NULL, 60);
  return mc_test_finish();
}
