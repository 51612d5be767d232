/* SPDX-License-Identifier: Apache-2.0 */
/* lib_swap.c - backend settings swapped between contexts of one process (conf.h).
 *
 * The configuration is read once per context, so one rank can hold contexts with different
 * MOECOMM_BACKEND settings side by side.  Each running context issues the same operations on
 * several groups (each checked exactly); they must report the backends asked for and produce the
 * same bits.  A setting the device cannot honour must be refused at creation, with a message that
 * names the variable, and nothing written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define SWAP_MAX 8

typedef struct swap_op {
  moecomm_group_kind_t group;
  int coll;
  moecomm_dtype_t dt;
  size_t n;
} swap_op_t;

/* Sizes from the custom kernels' range (1 Ki .. 256 Ki elements) up; every collective. */
static const swap_op_t k_ops[] = {
    {MOECOMM_GROUP_TP, CONF_AR, MOECOMM_FLOAT32, 1024},
    {MOECOMM_GROUP_TP, CONF_AR, MOECOMM_BFLOAT16, 8192},
    {MOECOMM_GROUP_TP, CONF_AR, MOECOMM_FLOAT16, 100003},
    {MOECOMM_GROUP_TP, CONF_AR, MOECOMM_FLOAT32, 262144},
    {MOECOMM_GROUP_MOE_EP, CONF_AR, MOECOMM_BFLOAT16, 4096},
    {MOECOMM_GROUP_WORLD, CONF_AG, MOECOMM_INT32, 3001},
    {MOECOMM_GROUP_ATTN_TP, CONF_RS, MOECOMM_FLOAT16, 4099},
    {MOECOMM_GROUP_TP, CONF_RS, MOECOMM_FLOAT32, 5003},
    {MOECOMM_GROUP_TP, CONF_BC, MOECOMM_FLOAT32, 4099},
};

void conf_env_set(const char *const *env) {
  mc_test_env_apply(env);
}

void conf_env_unset(const char *const *env) {
  for (int i = 0; env != NULL && env[i] != NULL; i++) {
    char name[128];
    const char *eq = strchr(env[i], '=');
    snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - env[i]) : (int)strlen(env[i]), env[i]);
    unsetenv(name);
  }
}

static void setting_name(const conf_setting_t *s, char *out, size_t n) {
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; s->env[i] != NULL && used < n; i++)
    used += (size_t)snprintf(out + used, n - used, "%s%s", i ? " " : "", s->env[i]);
  if (out[0] == '\0') snprintf(out, n, "(defaults)");
}

/* Creates the setting's context; a refusal is checked here and leaves *ctx_p NULL. */
static int swap_create(const conf_rank_t *r, const conf_setting_t *s, const char *name,
                       moecomm_context_t **ctx_p) {
  moecomm_topology_t topo = mc_test_topo(r->world, r->rank, r->world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = (moecomm_context_t *)&ctx, *const untouched = ctx;
  moecomm_result_t res;
  const char *msg;
  topo.ep = 2;
  p = mc_test_ctx_params(&topo, r->be->gpu ? r->rank : MOECOMM_DEVICE_CPU);
  conf_env_set(s->env);
  res = r->api->context_create(&p, &ctx);
  conf_env_unset(s->env);
  msg = r->api->last_error(NULL);
  *ctx_p = NULL;
  if (s->refusal != 0)
    return MC_CHECK(
        res == (moecomm_result_t)s->refusal && ctx == untouched && strstr(msg, s->why) != NULL,
        "[%s]: want result %d naming '%s' and nothing written; got %d (%s): %s", name, s->refusal,
        s->why, (int)res, r->api->result_string(res), msg);
  if (!MC_CHECK(res == MOECOMM_SUCCESS, "[%s]: context_create: %d (%s): %s", name, (int)res,
                r->api->result_string(res), msg))
    return 0;
  *ctx_p = ctx;
  return 1;
}

/* The operations on one context; the digest of every output. */
static int swap_run(const conf_rank_t *r, const conf_setting_t *s, const char *name,
                    uint64_t *digest_p) {
  int ok = 1;
  *digest_p = 0xcbf29ce484222325ull;
  for (size_t k = 0; k < sizeof(k_ops) / sizeof(k_ops[0]); k++) {
    conf_group_t grp;
    conf_case_t c;
    if (!conf_group_get(r, k_ops[k].group, &grp)) return 0;
    memset(&c, 0, sizeof(c));
    c.coll = k_ops[k].coll;
    c.dt = k_ops[k].dt;
    c.op = MOECOMM_SUM;
    c.n = k_ops[k].n;
    c.root = grp.st.size - 1;
    c.id = 0x5a00 + k;
    ok &= conf_run_case(r, &grp, &c, digest_p);
    if (k_ops[k].group == MOECOMM_GROUP_TP && s->tp != NULL)
      ok &= MC_CHECK(r->api->group_stats(grp.g, &grp.st) == MOECOMM_SUCCESS &&
                         strcmp(grp.st.backend_name, s->tp) == 0,
                     "[%s]: TP reports backend %s, want %s", name, grp.st.backend_name, s->tp);
    if (k_ops[k].group == MOECOMM_GROUP_WORLD && s->world != NULL)
      ok &=
          MC_CHECK(strcmp(grp.st.backend_name, s->world) == 0,
                   "[%s]: WORLD reports backend %s, want %s", name, grp.st.backend_name, s->world);
  }
  return ok;
}

int conf_swap(const conf_rank_t *r, const conf_setting_t *settings, int n) {
  moecomm_context_t *ctx[SWAP_MAX] = {NULL};
  uint64_t digest[SWAP_MAX];
  char name[SWAP_MAX][160];
  int first = -1, failed = 0;
  if (!MC_CHECK(n <= SWAP_MAX, "%d settings, at most %d", n, SWAP_MAX)) return 1;
  for (int i = 0; i < n; i++) { /* all alive at once */
    setting_name(&settings[i], name[i], sizeof(name[i]));
    failed += !swap_create(r, &settings[i], name[i], &ctx[i]);
  }
  for (int i = 0; i < n; i++) {
    conf_rank_t on = *r;
    if (ctx[i] == NULL) continue;
    on.ctx = ctx[i];
    failed += !swap_run(&on, &settings[i], name[i], &digest[i]);
    if (first < 0)
      first = i;
    else
      failed += !MC_CHECK(digest[i] == digest[first], "[%s]: outputs differ from [%s]'s", name[i],
                          name[first]);
    if (r->rank == 0) printf("[%s]: digest %016llx\n", name[i], (unsigned long long)digest[i]);
  }
  for (int i = 0; i < n; i++)
    if (ctx[i] != NULL)
      failed += !MC_CHECK_RC(r->api, ctx[i], r->api->context_destroy(ctx[i]), MOECOMM_SUCCESS);
  return failed;
}
