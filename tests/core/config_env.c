/* SPDX-License-Identifier: Apache-2.0 */
/* config_env.c - MOECOMM_* environment variables: bad values are refused at context_create with a
 * message naming the variable and what it accepts; good values are accepted; backend requests the
 * machine cannot serve are MOECOMM_ERR_UNAVAILABLE; auto on a machine without a GPU is a CPU
 * context served by shm.  Single-rank contexts: the host all-gather is a copy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/harness.h"

extern char **environ;

static const moecomm_api_t *api;

/* Context of one rank; host_allgather NULL when `store` is set (MOECOMM_STORE bootstrap). */
static moecomm_result_t create(int device, int use_store, moecomm_context_t **ctx_p) {
  moecomm_topology_t topo = mc_test_topo(1, 0, 1);
  moecomm_context_params_t p = mc_test_ctx_params(&topo, device);
  if (use_store) p.host_allgather = NULL;
  return api->context_create(&p, ctx_p);
}

/* Leaves only the loader's variables, so the caller's environment cannot change the results. */
static void clean_env(void) {
  for (;;) {
    char name[256];
    int found = 0;
    for (char **e = environ; *e != NULL; e++) {
      const char *eq = strchr(*e, '=');
      size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
      if (strncmp(*e, "MOECOMM_", 8) != 0 || len >= sizeof(name)) continue;
      memcpy(name, *e, len);
      name[len] = '\0';
      if (strcmp(name, "MOECOMM_PLUGIN") == 0 || strcmp(name, "MOECOMM_PLUGIN_DIR") == 0) continue;
      found = 1;
      break;
    }
    if (!found) break;
    unsetenv(name);
  }
}

typedef struct bad_var {
  const char *name, *value;
  const char *must[3]; /* the message names the variable and what it accepts */
} bad_var_t;

static const bad_var_t bad_vars[] = {
    {"MOECOMM_BACKEND", "foo", {"MOECOMM_BACKEND", "foo", "shm"}},
    {"MOECOMM_BACKEND_MOE_XX", "nccl", {"MOECOMM_BACKEND_MOE_XX", "MOE_EP", "TP"}},
    {"MOECOMM_BACKEND_TP", "bar", {"MOECOMM_BACKEND_TP", "bar", "shm"}},
    {"MOECOMM_BACKEND_MOE_EP", "ncl", {"MOECOMM_BACKEND_MOE_EP", "ncl", "nccl"}},
    {"MOECOMM_DEBUG", "LOUD", {"MOECOMM_DEBUG", "WARN", "TRACE"}},
    {"MOECOMM_TIMEOUT_MS", "-5", {"MOECOMM_TIMEOUT_MS", "-5"}},
    {"MOECOMM_TIMEOUT_MS", "12abc", {"MOECOMM_TIMEOUT_MS", "12abc"}},
    {"MOECOMM_TIMEOUT_MS", "99999999999999999999", {"MOECOMM_TIMEOUT_MS", "9999"}},
    {"MOECOMM_ALGO", "fast", {"MOECOMM_ALGO", "fast", "auto"}},
    {"MOECOMM_SHARE_COMMS", "maybe", {"MOECOMM_SHARE_COMMS", "maybe", "1"}},
    {"MOECOMM_STORE", "http://x", {"MOECOMM_STORE", "http://x", "tcp://"}},
    {"MOECOMM_STORE", "tcp://127.0.0.1", {"MOECOMM_STORE", "tcp://", "PORT"}},
    {"MOECOMM_STORE", "tcp://127.0.0.1:70000", {"MOECOMM_STORE", "70000", "tcp://"}},
};

static void test_bad_values(void) {
  for (size_t i = 0; i < sizeof(bad_vars) / sizeof(bad_vars[0]); i++) {
    const bad_var_t *b = &bad_vars[i];
    moecomm_context_t *ctx = (moecomm_context_t *)&ctx; /* poison: must stay */
    moecomm_context_t *const poison = ctx;
    moecomm_result_t r;
    const char *msg;
    clean_env();
    setenv(b->name, b->value, 1);
    r = create(MOECOMM_DEVICE_CPU, 0, &ctx);
    msg = api->last_error(NULL);
    MC_CHECK(r == MOECOMM_ERR_CONFIG, "%s='%s': got %d (%s), want MOECOMM_ERR_CONFIG: %s", b->name,
             b->value, (int)r, api->result_string(r), msg);
    MC_CHECK(ctx == poison, "%s='%s': ctx_p written on failure", b->name, b->value);
    for (int m = 0; m < 3 && b->must[m] != NULL; m++)
      MC_CHECK(strstr(msg, b->must[m]) != NULL, "%s='%s': message '%s' does not mention '%s'",
               b->name, b->value, msg, b->must[m]);
    if (r == MOECOMM_SUCCESS && ctx != poison) api->context_destroy(ctx);
  }
  clean_env();
}

typedef struct good_var {
  const char *name, *value;
} good_var_t;

static void test_good_values(void) {
  static const good_var_t good[] = {
      {"MOECOMM_BACKEND", "shm"},         {"MOECOMM_BACKEND", "auto"},
      {"MOECOMM_BACKEND_TP", "shm"},      {"MOECOMM_BACKEND_MOE_EP", "auto"},
      {"MOECOMM_BACKEND_WORLD", "shm"},   {"MOECOMM_DEBUG", "WARN"},
      {"MOECOMM_DEBUG", "NONE"},          {"MOECOMM_TIMEOUT_MS", "1500"},
      {"MOECOMM_TIMEOUT_MS", "86400000"}, {"MOECOMM_ALGO", "auto"},
      {"MOECOMM_ALGO", "oneshot"},        {"MOECOMM_SHARE_COMMS", "0"},
      {"MOECOMM_SHARE_COMMS", "1"},       {"MOECOMM_HOST_ID", "hostA"},
      {"MOECOMM_SOMETHING_NEW", "1"}, /* unknown names are warned about, not refused */
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    moecomm_context_t *ctx = NULL;
    moecomm_result_t r;
    clean_env();
    setenv(good[i].name, good[i].value, 1);
    r = create(MOECOMM_DEVICE_CPU, 0, &ctx);
    MC_CHECK(r == MOECOMM_SUCCESS && ctx != NULL, "%s='%s' refused: %d %s", good[i].name,
             good[i].value, (int)r, api->last_error(NULL));
    if (r == MOECOMM_SUCCESS) {
      /* and the context works */
      moecomm_group_t *g = NULL;
      int32_t x[3] = {4, -2, 7}, y[3] = {0, 0, 0};
      r = api->group_get(ctx, MOECOMM_GROUP_TP, &g);
      if (r == MOECOMM_SUCCESS) r = api->all_reduce(g, x, y, 3, MOECOMM_INT32, MOECOMM_SUM, NULL);
      MC_CHECK(r == MOECOMM_SUCCESS && y[0] == 4 && y[1] == -2 && y[2] == 7,
               "%s='%s': all_reduce on a world of one: %d %s", good[i].name, good[i].value, (int)r,
               api->last_error(ctx));
      api->context_destroy(ctx);
    }
  }

  /* MOECOMM_STORE with host_allgather NULL: rank 0 serves the store on that port. */
  {
    int port = mc_test_free_port();
    char url[64];
    moecomm_context_t *ctx = NULL;
    moecomm_result_t r;
    clean_env();
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    setenv("MOECOMM_STORE", url, 1);
    setenv("MOECOMM_TIMEOUT_MS", "5000", 1);
    r = create(MOECOMM_DEVICE_CPU, 1, &ctx);
    MC_CHECK(r == MOECOMM_SUCCESS, "MOECOMM_STORE=%s, host_allgather NULL: %d %s", url, (int)r,
             api->last_error(NULL));
    if (r == MOECOMM_SUCCESS) api->context_destroy(ctx);
  }
  clean_env();
}

static void expect_unavailable(const char *name, const char *value, int device, const char *why) {
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r;
  const char *msg;
  char var[128];
  clean_env();
  setenv(name, value, 1);
  r = create(device, 0, &ctx);
  msg = api->last_error(NULL);
  snprintf(var, sizeof(var), "%s=%s", name, value);
  MC_CHECK(r == MOECOMM_ERR_UNAVAILABLE, "%s with %s: got %d (%s), want UNAVAILABLE: %s", var, why,
           (int)r, api->result_string(r), msg);
  MC_CHECK(strstr(msg, var) != NULL && (strstr(msg, "CUDA") || strstr(msg, "CPU")),
           "%s with %s: message '%s' names the variable and the missing device", var, why, msg);
  if (r == MOECOMM_SUCCESS) api->context_destroy(ctx);
  clean_env();
}

static void test_devices(void) {
  int gpus = mc_test_gpu_count();
  expect_unavailable("MOECOMM_BACKEND", "nccl", MOECOMM_DEVICE_CPU, "a CPU context");
  expect_unavailable("MOECOMM_BACKEND", "custom", MOECOMM_DEVICE_CPU, "a CPU context");
  expect_unavailable("MOECOMM_BACKEND_TP", "nccl", MOECOMM_DEVICE_CPU, "a CPU context");
  if (gpus > 0) {
    mc_test_skip("device auto without a GPU", "this machine has %d CUDA device(s)", gpus);
    return;
  }
  expect_unavailable("MOECOMM_BACKEND", "nccl", MOECOMM_DEVICE_AUTO, "device auto and no GPU");

  /* auto + MOECOMM_DEVICE_AUTO on a machine without a GPU: a CPU context served by shm. */
  {
    moecomm_context_t *ctx = NULL;
    moecomm_context_info_t info;
    moecomm_result_t r;
    clean_env();
    setenv("MOECOMM_BACKEND", "auto", 1);
    r = create(MOECOMM_DEVICE_AUTO, 0, &ctx);
    if (!MC_CHECK(r == MOECOMM_SUCCESS, "auto / device auto: %d %s", (int)r, api->last_error(NULL)))
      return;
    memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    r = api->context_info(ctx, &info);
    MC_CHECK(r == MOECOMM_SUCCESS && info.device == MOECOMM_DEVICE_CPU,
             "device auto without a GPU: context_info %d, device %d", (int)r, info.device);
    for (int k = MOECOMM_GROUP_WORLD; k <= MOECOMM_GROUP_MOE_CP; k++) {
      moecomm_group_t *g = NULL;
      moecomm_group_stats_t st;
      memset(&st, 0, sizeof(st));
      st.struct_size = sizeof(st);
      r = api->group_get(ctx, (moecomm_group_kind_t)k, &g);
      if (r == MOECOMM_SUCCESS) r = api->group_stats(g, &st);
      MC_CHECK(r == MOECOMM_SUCCESS && st.backend == MOECOMM_BACKEND_SHM &&
                   st.backend_name != NULL && strcmp(st.backend_name, "shm") == 0,
               "group %d: backend %d %s", k, st.backend, st.backend_name ? st.backend_name : "?");
    }
    api->context_destroy(ctx);
  }
  clean_env();
}

int main(int argc, char **argv) {
  mc_test_init("config_env", argc, argv);
  api = mc_test_plugin();
  test_bad_values();
  test_good_values();
  test_devices();
  return mc_test_finish();
}
