/* SPDX-License-Identifier: Apache-2.0 */
/* lib_old_host_v1.c - an "old host": compiled against the frozen abi/moecomm_v1.h only, it talks
 * to the current plugin exactly as a host released with ABI 1.0 would (old_host_v1.h). */
#include "old_host_v1.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../abi/moecomm_v1.h"

size_t old_host_v1_sizeof(const char *type_name) {
  static const struct {
    const char *name;
    size_t size;
  } sizes[] = {
      {"moecomm_topology_t", sizeof(moecomm_topology_t)},
      {"moecomm_context_params_t", sizeof(moecomm_context_params_t)},
      {"moecomm_context_info_t", sizeof(moecomm_context_info_t)},
      {"moecomm_group_stats_t", sizeof(moecomm_group_stats_t)},
      {"moecomm_plan_params_t", sizeof(moecomm_plan_params_t)},
      {"moecomm_api_t", sizeof(moecomm_api_t)},
  };
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    if (strcmp(sizes[i].name, type_name) == 0) return sizes[i].size;
  return 0;
}

static int say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (why != NULL && n > 0) vsnprintf(why, n, fmt, ap);
  va_end(ap);
  return 1;
}

/* Fills a struct the way a host of this padding habit would before setting its fields. */
static void pre_fill(void *p, size_t n, old_host_padding_t padding) {
  memset(p, padding == OLD_HOST_PAD_GARBAGE ? 0xA5 : 0, n);
}

int old_host_v1_run(const char *plugin_path, int rank, int world, old_host_allgather_fn_t ag,
                    void *ag_user, old_host_padding_t padding, char *why, size_t why_size) {
  enum { N = 37 };
  void *h;
  void *sym;
  moecomm_get_api_v1_fn_t entry;
  const moecomm_api_t *api = NULL;
  uint32_t version = 0;
  char refusal[256] = "";
  moecomm_topology_t topo;
  moecomm_context_params_t params;
  moecomm_context_info_t info;
  moecomm_group_stats_t st_tp, st_world;
  moecomm_plan_params_t plan;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *tp = NULL, *wg = NULL;
  moecomm_result_t r;
  int32_t isend[N], irecv[N];
  float fsend[N], *frecv = NULL;
  int32_t sizes[64];
  size_t num = 0;
  int32_t multiple = 0;
  int bad = 1;

  h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return say(why, why_size, "dlopen %s: %s", plugin_path, dlerror());
  sym = dlsym(h, MOECOMM_ENTRY_SYMBOL_V1);
  if (sym == NULL) {
    say(why, why_size, "%s has no %s", plugin_path, MOECOMM_ENTRY_SYMBOL_V1);
    goto out;
  }
  memcpy(&entry, &sym, sizeof(entry));
  r = entry(MOECOMM_ABI_VERSION_MAKE(1, 0), MOECOMM_ABI_VERSION_MAKE(1, 0), &version, &api, refusal,
            sizeof(refusal));
  if (r != MOECOMM_SUCCESS || api == NULL) {
    say(why, why_size, "negotiating 1.0..1.0 failed with %d: %s", (int)r, refusal);
    goto out;
  }
  if (version != MOECOMM_ABI_VERSION_MAKE(1, 0)) {
    say(why, why_size, "asked for 1.0..1.0, the plugin picked %u.%u", version >> 16,
        version & 0xffffu);
    goto out;
  }
  /* The plugin's table may be newer (bigger); an old host reads only its own slots. */
  if (api->struct_size < sizeof(moecomm_api_t) ||
      MOECOMM_ABI_VERSION_GET_MAJOR(api->abi_version) != 1) {
    say(why, why_size, "table struct_size %zu < the 1.0 table's %zu, or abi_version %#x not 1.x",
        api->struct_size, sizeof(moecomm_api_t), api->abi_version);
    goto out;
  }

  pre_fill(&topo, sizeof(topo), padding);
  topo.struct_size = sizeof(topo);
  topo.world_size = world;
  topo.rank = rank;
  topo.tp = world;
  topo.pp = 0;
  topo.ep = 0;
  topo.moe_dp = 0;
  topo.attn_cp = 0;
  topo.attn_dp = 0;
  topo.moe_dense_tp = 0;
  pre_fill(&params, sizeof(params), padding);
  if (padding == OLD_HOST_PAD_ONE &&
      sizeof(params) > MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device))
    ((unsigned char *)&params)[MOECOMM_STRUCT_SIZE(moecomm_context_params_t, device)] = 1;
  params.struct_size = sizeof(params);
  params.topology = &topo;
  params.host_allgather = ag;
  params.host_user = ag_user;
  params.device = MOECOMM_DEVICE_CPU;
  r = api->context_create(&params, &ctx);
  if (r != MOECOMM_SUCCESS) {
    say(why, why_size, "context_create with the 1.0 params (struct_size %zu) failed: %s: %s",
        sizeof(params), api->result_string(r), api->last_error(NULL));
    goto out;
  }

  memset(&info, 0x5c, sizeof(info));
  info.struct_size = sizeof(info);
  if ((r = api->context_info(ctx, &info)) != MOECOMM_SUCCESS ||
      info.abi_version != MOECOMM_ABI_VERSION_MAKE(1, 0) || info.device != MOECOMM_DEVICE_CPU) {
    say(why, why_size, "context_info: %s, abi_version %#x (want 0x10000), device %d (want %d): %s",
        api->result_string(r), info.abi_version, info.device, MOECOMM_DEVICE_CPU,
        api->last_error(ctx));
    goto out;
  }
  if (api->group_get(ctx, MOECOMM_GROUP_TP, &tp) != MOECOMM_SUCCESS ||
      api->group_get(ctx, MOECOMM_GROUP_WORLD, &wg) != MOECOMM_SUCCESS) {
    say(why, why_size, "group_get: %s", api->last_error(ctx));
    goto out;
  }

  for (int i = 0; i < N; i++) {
    isend[i] = (rank + 1) * 1000 + i * 7 - 50;
    irecv[i] = INT32_MIN;
    fsend[i] = (float)(rank * 64 + i) - 0.5f;
  }
  if ((r = api->all_reduce(tp, isend, irecv, N, MOECOMM_INT32, MOECOMM_SUM, NULL)) !=
      MOECOMM_SUCCESS) {
    say(why, why_size, "all_reduce: %s: %s", api->result_string(r), api->last_error(ctx));
    goto out;
  }
  for (int i = 0; i < N; i++) {
    int64_t want = 0;
    for (int q = 0; q < world; q++) want += (q + 1) * 1000 + i * 7 - 50;
    if (irecv[i] != (int32_t)want) {
      say(why, why_size, "all_reduce element %d: got %d, want %lld", i, irecv[i], (long long)want);
      goto out;
    }
  }
  frecv = malloc(sizeof(float) * N * (size_t)world);
  if (frecv == NULL) {
    say(why, why_size, "out of memory");
    goto out;
  }
  for (int i = 0; i < N * world; i++) frecv[i] = -12345.0f;
  if ((r = api->all_gather(wg, fsend, frecv, N, MOECOMM_FLOAT32, NULL)) != MOECOMM_SUCCESS) {
    say(why, why_size, "all_gather: %s: %s", api->result_string(r), api->last_error(ctx));
    goto out;
  }
  for (int q = 0; q < world; q++)
    for (int i = 0; i < N; i++)
      if (frecv[q * N + i] != (float)(q * 64 + i) - 0.5f) {
        say(why, why_size, "all_gather element %d of rank %d: got %g", i, q,
            (double)frecv[q * N + i]);
        goto out;
      }

  /* Default sharing (1.0 has no flags): WORLD and TP have one rank list, so one communicator. */
  memset(&st_tp, 0, sizeof(st_tp));
  st_tp.struct_size = sizeof(st_tp);
  st_world = st_tp;
  if (api->group_stats(tp, &st_tp) != MOECOMM_SUCCESS ||
      api->group_stats(wg, &st_world) != MOECOMM_SUCCESS) {
    say(why, why_size, "group_stats: %s", api->last_error(ctx));
    goto out;
  }
  if (st_tp.size != world || st_tp.rank != rank || st_tp.ops != 1 || st_world.ops != 1 ||
      st_tp.backend_name == NULL || strcmp(st_tp.backend_name, "shm") != 0) {
    say(why, why_size,
        "TP stats: size %d rank %d ops %llu backend %s (want %d, %d, 1, shm); "
        "WORLD ops %llu",
        st_tp.size, st_tp.rank, (unsigned long long)st_tp.ops,
        st_tp.backend_name ? st_tp.backend_name : "(null)", world, rank,
        (unsigned long long)st_world.ops);
    goto out;
  }
  if (world > 1 && st_tp.comm_id != st_world.comm_id) {
    say(why, why_size,
        "WORLD (comm %d) and TP (comm %d) have the same ranks but do not share a "
        "communicator: the plugin read a 1.0 host's struct padding as ABI 1.1 flags",
        st_world.comm_id, st_tp.comm_id);
    goto out;
  }

  pre_fill(&plan, sizeof(plan), padding);
  plan.struct_size = sizeof(plan);
  plan.flags = 0;
  plan.candidates = NULL;
  plan.num_candidates = 0;
  if ((r = api->plan_capture_sizes(ctx, &plan, sizes, 64, &num, &multiple)) != MOECOMM_SUCCESS ||
      num == 0 || num > 64 || multiple < 1) {
    say(why, why_size, "plan_capture_sizes: %s, %zu sizes, multiple %d: %s", api->result_string(r),
        num, (int)multiple, api->last_error(ctx));
    goto out;
  }
  for (size_t i = 0; i < num; i++)
    if (sizes[i] <= 0 || sizes[i] % multiple != 0) {
      say(why, why_size, "plan_capture_sizes: size %d is not a multiple of %d", (int)sizes[i],
          (int)multiple);
      goto out;
    }
  bad = 0;
out:
  free(frecv);
  if (ctx != NULL && api != NULL) api->context_destroy(ctx);
  dlclose(h);
  return bad;
}
