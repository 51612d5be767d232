/* SPDX-License-Identifier: Apache-2.0 */
/* config.c - reads every MOECOMM_* variable, once per context, from the declared tables
 * (config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

extern char **environ;

static int mc_config_store_ok(const char *value);
static int mc_config_host_id_ok(const char *value);

#define MC_FIELD(f) offsetof(mc_config_t, f)
#define MC_TEXT(f) MC_FIELD(f), sizeof(((mc_config_t *)0)->f)

static const mc_config_var_t mc_core_vars[] = {
    {"MOECOMM_BACKEND", MC_VAR_CHOICE, MC_FIELD(backend), 0, "auto", "auto|shm|nccl|custom", 0, 0,
     NULL,
     "backend of every group; auto: custom all-reduce on TP and ATTN_TP groups of one host, NCCL "
     "elsewhere, shm on CPU contexts"},
    {"MOECOMM_BACKEND_<GROUP>", MC_VAR_CHOICE, MC_FIELD(group_backend), 0, "",
     "auto|shm|nccl|custom", 0, 0, NULL,
     "one group's backend, e.g. MOECOMM_BACKEND_MOE_EP=nccl; GROUP is WORLD, TP, PP, ATTN_TP, "
     "ATTN_CP, MOE_EP, MOE_TP, MOE_DP or MOE_CP"},
    {"MOECOMM_DEBUG", MC_VAR_CHOICE, MC_FIELD(log_level), 0, "WARN", "NONE|WARN|INFO|TRACE", 0, 0,
     NULL, "log level of the plugin's one logger (stderr)"},
    {"MOECOMM_TIMEOUT_MS", MC_VAR_INT, MC_FIELD(timeout_ms), 0, "60000", "1 to 86400000", 1,
     86400000, NULL,
     "how long any wait for peers may take before it fails naming the ranks that did not answer"},
    {"MOECOMM_STORE", MC_VAR_TEXT, MC_TEXT(store), "", "tcp://HOST:PORT (PORT 1..65535)", 0, 0,
     mc_config_store_ok,
     "rendezvous for hosts that pass no all-gather callback: rank 0 listens there"},
    {"MOECOMM_STORE_TOKEN", MC_VAR_TEXT, MC_TEXT(store_token), "",
     "a secret string of 1 to 255 characters", 0, 0, mc_config_host_id_ok,
     "the secret of a MOECOMM_STORE rendezvous, the same on every rank; required unless the store "
     "is on loopback"},
    {"MOECOMM_SOCKET_IFNAME", MC_VAR_TEXT, MC_TEXT(socket_ifname), "",
     "interface names or prefixes, comma-separated", 0, 0, mc_config_host_id_ok,
     "where rank 0's rendezvous store listens when ranks find it through the host's all-gather "
     "(default: loopback when every rank is on one host, else the hostname's address)"},
    {"MOECOMM_HOST_ID", MC_VAR_TEXT, MC_TEXT(host_id), "", "a string of 1 to 127 characters", 0, 0,
     mc_config_host_id_ok,
     "overrides the host identity (hostname + boot id), e.g. to simulate several hosts"},
    {"MOECOMM_SHARE_COMMS", MC_VAR_BOOL, MC_FIELD(share_comms), 0, "1", "0 or 1", 0, 1, NULL,
     "0: groups with equal rank lists get separate communicators"},
    {"MOECOMM_DETERMINISTIC", MC_VAR_BOOL, MC_FIELD(deterministic), 0, "0", "0 or 1", 0, 1, NULL,
     "1: all_reduce, reduce_scatter and all_reduce_rmsnorm give each element the same bits "
     "whatever the message size, batch or algorithm (as MOECOMM_CONTEXT_DETERMINISTIC)"},
    {"MOECOMM_EP_MAX_TOKENS", MC_VAR_INT, MC_FIELD(ep_max_tokens), 0, "256", "1 to 1048576", 1,
     1048576, NULL,
     "tokens a rank dispatches per moe_dispatch at most, when moe_configure leaves max_tokens 0; "
     "the expert-parallel buffers are sized from it"},
    {"MOECOMM_ALGO", MC_VAR_CHOICE, MC_FIELD(algo), 0, "auto",
     "auto|ll|oneshot|twoshot|nccl|twoshot_push|oneshot_push", 0, 0, NULL,
     "forces one custom all-reduce algorithm (nccl: custom groups use NCCL); ll and the push ones "
     "also force the fused all_reduce_rmsnorm kernel of that name"},
    {"MOECOMM_CUSTOM_MAX_BYTES", MC_VAR_BYTES, MC_FIELD(custom_max_bytes), 0, "64M",
     "4096 to 16G (K, M, G suffixes)", 4096, 1ll << 34, NULL,
     "largest all-reduce the custom path takes; larger ones go to NCCL"},
    {"MOECOMM_NCCL_CONFIG", MC_VAR_CHOICE, MC_FIELD(nccl_config), 0, "auto", "auto|default|lean", 0,
     0, NULL,
     "NCCL communicator config: auto caps channels (maxCTAs) on communicators only MoE groups "
     "use"},
};

/* Read by the host-side loader (host_shim, the Python package): known, never parsed here. */
static const mc_config_var_t mc_host_vars[] = {
    {"MOECOMM_PLUGIN", MC_VAR_HOST, 0, 0, "", "a path, a name, a comma list, or none", 0, 0, NULL,
     "loader: which plugin to load (a name N means libmoecomm-N.so)"},
    {"MOECOMM_PLUGIN_DIR", MC_VAR_HOST, 0, 0, "", "a directory", 0, 0, NULL,
     "loader: where to look for plugins first"},
    {"MOECOMM_RANK", MC_VAR_HOST, 0, 0, "", "0 to world size - 1", 0, 0, NULL,
     "launcher: this process's rank when started by an external launcher"},
    {"MOECOMM_WORLD_SIZE", MC_VAR_HOST, 0, 0, "", "1 or more", 0, 0, NULL,
     "launcher: the number of ranks when started by an external launcher"},
    {"MOECOMM_SKIP_DEPS", MC_VAR_HOST, 0, 0, "0", "0 or 1", 0, 0, NULL,
     "build: 1 skips the check for Debian packages"},
};

typedef struct mc_config_table {
  const mc_config_var_t *vars;
  const size_t *n;
} mc_config_table_t;

static const size_t mc_core_nvars = MC_ARRAY_LEN(mc_core_vars);
static const size_t mc_host_nvars = MC_ARRAY_LEN(mc_host_vars);
static const mc_config_table_t mc_tables[] = {{mc_core_vars, &mc_core_nvars},
                                              {mc_custom_config_vars, &mc_custom_config_nvars},
                                              {mc_nccl_config_vars, &mc_nccl_config_nvars},
                                              {mc_host_vars, &mc_host_nvars}};

const mc_config_var_t *mc_config_var_at(size_t index) {
  for (size_t t = 0; t < MC_ARRAY_LEN(mc_tables); t++) {
    if (index < *mc_tables[t].n) return &mc_tables[t].vars[index];
    index -= *mc_tables[t].n;
  }
  return NULL;
}

/* ---- values ------------------------------------------------------------------------------ */

static int mc_config_store_ok(const char *value) {
  const char *hp = value + 6, *colon = strrchr(value, ':');
  char *end = NULL;
  long port;
  if (strncmp(value, "tcp://", 6) != 0 || colon == NULL || colon <= hp) return 0;
  if (!isdigit((unsigned char)colon[1])) return 0;
  errno = 0;
  port = strtol(colon + 1, &end, 10);
  return errno == 0 && *end == '\0' && port >= 1 && port <= 65535;
}

/* Non-empty text (host id, token, interface list). */
static int mc_config_host_id_ok(const char *value) {
  return value[0] != '\0';
}

/* Index of value in a "a|b|c" list (case-insensitive), or -1. */
static int mc_config_pick(const char *value, const char *list) {
  int i = 0;
  for (const char *p = list;; i++) {
    const char *bar = strchr(p, '|');
    size_t n = bar ? (size_t)(bar - p) : strlen(p);
    if (strlen(value) == n && strncasecmp(value, p, n) == 0) return i;
    if (bar == NULL) return -1;
    p = bar + 1;
  }
}

/* Decimal integer with an optional K/M/G (powers of 1024) suffix; whole string, no sign. */
static int mc_config_u64(const char *value, int allow_suffix, unsigned long long *out_p) {
  char *end = NULL;
  unsigned long long v;
  int shift = 0;
  if (!isdigit((unsigned char)value[0])) return -1;
  errno = 0;
  v = strtoull(value, &end, 10);
  if (errno != 0) return -1;
  if (allow_suffix && *end != '\0' && end[1] == '\0') {
    switch (toupper((unsigned char)*end)) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      default: return -1;
    }
    if (v > (ULLONG_MAX >> shift)) return -1;
    v <<= shift;
    end++;
  }
  if (*end != '\0') return -1;
  *out_p = v;
  return 0;
}

/* Parses value for var into the field at `field`; an error names the variable and what it
   accepts. */
static moecomm_result_t mc_config_parse(const mc_config_var_t *var, const char *name,
                                        const char *value, void *field, mc_err_t *err) {
  unsigned long long v = 0;
  int i;
  switch (var->type) {
    case MC_VAR_CHOICE:
      if ((i = mc_config_pick(value, var->range)) < 0) break;
      *(int *)field = i;
      return MOECOMM_SUCCESS;
    case MC_VAR_BOOL:
      if ((i = mc_config_pick(value, "0|1|false|true|no|yes|off|on")) < 0) break;
      *(int *)field = i % 2;
      return MOECOMM_SUCCESS;
    case MC_VAR_INT:
    case MC_VAR_BYTES:
      if (mc_config_u64(value, var->type == MC_VAR_BYTES, &v) != 0 ||
          v < (unsigned long long)var->min || v > (unsigned long long)var->max)
        break;
      if (var->type == MC_VAR_INT)
        *(int *)field = (int)v;
      else
        *(size_t *)field = (size_t)v;
      return MOECOMM_SUCCESS;
    case MC_VAR_TEXT:
      if (strlen(value) >= var->size || (var->check != NULL && !var->check(value))) break;
      memcpy(field, value, strlen(value) + 1);
      return MOECOMM_SUCCESS;
    case MC_VAR_HOST: return MOECOMM_SUCCESS;
  }
  return mc_err_set(err, MOECOMM_ERR_CONFIG, "%s='%s' is not valid; allowed: %s", name, value,
                    var->type == MC_VAR_BOOL ? "0|1" : var->range);
}

/* A name that one row declares: the row and, for MOECOMM_BACKEND_<GROUP>, the group's field. */
static const mc_config_var_t *mc_config_find(const char *name, mc_config_t *cfg, void **field_p,
                                             mc_err_t *err, moecomm_result_t *r_p) {
  const mc_config_var_t *var;
  for (size_t i = 0; (var = mc_config_var_at(i)) != NULL; i++) {
    const char *family = strstr(var->name, "<GROUP>");
    size_t stem = family ? (size_t)(family - var->name) : 0;
    if (family == NULL && strcmp(name, var->name) == 0) {
      *field_p = (char *)cfg + var->offset;
      return var;
    }
    if (family != NULL && strncmp(name, var->name, stem) == 0 && name[stem] != '\0') {
      int kind = mc_topo_kind_from_name(name + stem);
      if (kind < 0) {
        *r_p = mc_err_set(err, MOECOMM_ERR_CONFIG,
                          "%s: unknown group '%s'; %s takes GROUP in WORLD|TP|PP|ATTN_TP|ATTN_CP|"
                          "MOE_EP|MOE_TP|MOE_DP|MOE_CP",
                          name, name + stem, var->name);
        return var;
      }
      *field_p = (int *)((char *)cfg + var->offset) + kind;
      return var;
    }
  }
  return NULL;
}

static moecomm_result_t mc_config_defaults(mc_config_t *cfg, mc_err_t *err) {
  const mc_config_var_t *var;
  memset(cfg, 0, sizeof(*cfg));
  for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) cfg->group_backend[k] = MC_CHOICE_UNSET;
  for (size_t i = 0; (var = mc_config_var_at(i)) != NULL; i++) {
    moecomm_result_t r;
    if (var->def[0] == '\0' || var->type == MC_VAR_HOST) continue;
    r = mc_config_parse(var, var->name, var->def, (char *)cfg + var->offset, err);
    if (r != MOECOMM_SUCCESS) return r; /* a bad row: caught by the tests of the table */
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_config_load(mc_config_t *cfg_p, mc_err_t *err) {
  mc_config_t cfg;
  moecomm_result_t r = mc_config_defaults(&cfg, err);
  for (char **e = environ; r == MOECOMM_SUCCESS && e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    const mc_config_var_t *var;
    void *field = NULL;
    char name[128];
    size_t len;
    if (strncmp(*e, "MOECOMM_", 8) != 0 || eq == NULL) continue;
    len = (size_t)(eq - *e);
    if (len >= sizeof(name)) {
      MC_WARN("ignoring environment variable with a %zu-character name starting with MOECOMM_",
              len);
      continue;
    }
    memcpy(name, *e, len);
    name[len] = '\0';
    var = mc_config_find(name, &cfg, &field, err, &r);
    if (var == NULL)
      MC_WARN("unknown environment variable %s is ignored", name);
    else if (r == MOECOMM_SUCCESS)
      r = mc_config_parse(var, name, eq + 1, field, err);
  }
  if (r != MOECOMM_SUCCESS) return r;
  mc_log_set_level((mc_log_level_t)cfg.log_level);
  *cfg_p = cfg;
  return MOECOMM_SUCCESS;
}

const char *mc_choice_name(mc_backend_choice_t choice) {
  switch (choice) {
    case MC_CHOICE_UNSET: return "unset";
    case MC_CHOICE_AUTO: return "auto";
    case MC_CHOICE_SHM: return "shm";
    case MC_CHOICE_NCCL: return "nccl";
    case MC_CHOICE_CUSTOM: return "custom";
  }
  return "?";
}
