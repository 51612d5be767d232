/* config.c - reads every MOECOMM_* variable, once per context, in one table. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

extern char **environ;

typedef moecomm_result_t (*mc_parse_fn_t)(const char *name, const char *value, void *field,
                                          mc_err_t *err);

typedef struct mc_var {
  const char *name; /* full variable name */
  mc_parse_fn_t parse;
  size_t offset; /* of the field in mc_config_t */
} mc_var_t;

/* Names the host-side loader reads (host_shim/loader.c): known, but not the plugin's to parse. */
static const char *const mc_host_vars[] = {"MOECOMM_PLUGIN", "MOECOMM_PLUGIN_DIR", "MOECOMM_RANK",
                                           "MOECOMM_SKIP_DEPS", "MOECOMM_WORLD_SIZE"};

static moecomm_result_t mc_bad(mc_err_t *err, const char *name, const char *value,
                               const char *allowed) {
  return mc_err_set(err, MOECOMM_ERR_CONFIG, "%s='%s' is not valid; allowed: %s", name, value,
                    allowed);
}

static int mc_pick(const char *value, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcasecmp(value, names[i]) == 0) return i;
  return -1;
}

#define MC_BACKEND_VALUES "auto|nccl|custom|shm"
static moecomm_result_t mc_parse_backend(const char *name, const char *value, void *field,
                                         mc_err_t *err) {
  static const char *const names[] = {"auto", "shm", "nccl", "custom"};
  static const mc_backend_choice_t vals[] = {MC_CHOICE_AUTO, MC_CHOICE_SHM, MC_CHOICE_NCCL,
                                             MC_CHOICE_CUSTOM};
  int i = mc_pick(value, names, 4);
  if (i < 0) return mc_bad(err, name, value, MC_BACKEND_VALUES);
  *(mc_backend_choice_t *)field = vals[i];
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_debug(const char *name, const char *value, void *field,
                                       mc_err_t *err) {
  static const char *const names[] = {"NONE", "WARN", "INFO", "TRACE"};
  int i = mc_pick(value, names, 4);
  if (i < 0) return mc_bad(err, name, value, "WARN|INFO|TRACE (or NONE)");
  *(int *)field = i;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_algo(const char *name, const char *value, void *field,
                                      mc_err_t *err) {
  static const char *const names[] = {"auto", "ll", "oneshot", "twoshot", "nccl"};
  int i = mc_pick(value, names, 5);
  if (i < 0) return mc_bad(err, name, value, "auto|ll|oneshot|twoshot|nccl");
  *(mc_algo_t *)field = (mc_algo_t)i;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_bool(const char *name, const char *value, void *field,
                                      mc_err_t *err) {
  static const char *const names[] = {"0", "1", "false", "true", "no", "yes", "off", "on"};
  int i = mc_pick(value, names, 8);
  if (i < 0) return mc_bad(err, name, value, "0|1");
  *(int *)field = i % 2;
  return MOECOMM_SUCCESS;
}

/* Decimal integer with an optional K/M/G (powers of 1024) suffix; whole string, no sign. */
static int mc_parse_u64(const char *value, int allow_suffix, uint64_t *out_p) {
  char *end = NULL;
  unsigned long long v;
  if (!isdigit((unsigned char)value[0])) return -1;
  errno = 0;
  v = strtoull(value, &end, 10);
  if (errno != 0) return -1;
  if (allow_suffix && *end != '\0' && end[1] == '\0') {
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      default: return -1;
    }
    if (v > (UINT64_MAX >> shift)) return -1;
    v <<= shift;
    end++;
  }
  if (*end != '\0') return -1;
  *out_p = v;
  return 0;
}

static moecomm_result_t mc_parse_timeout(const char *name, const char *value, void *field,
                                         mc_err_t *err) {
  uint64_t v;
  if (mc_parse_u64(value, 0, &v) != 0 || v < 1 || v > 86400000u)
    return mc_bad(err, name, value, "an integer number of milliseconds from 1 to 86400000");
  *(int *)field = (int)v;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_bytes(const char *name, const char *value, void *field,
                                       mc_err_t *err) {
  uint64_t v;
  if (mc_parse_u64(value, 1, &v) != 0 || v < 4096 || v > (1ull << 34))
    return mc_bad(err, name, value, "a byte count from 4096 to 16G, with optional K, M or G");
  *(size_t *)field = (size_t)v;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_store(const char *name, const char *value, void *field,
                                       mc_err_t *err) {
  const char *hp = value + 6, *colon = strrchr(value, ':');
  uint64_t port;
  if (strncmp(value, "tcp://", 6) != 0 || colon == NULL || colon <= hp ||
      mc_parse_u64(colon + 1, 0, &port) != 0 || port < 1 || port > 65535 || strlen(value) >= 256)
    return mc_bad(err, name, value, "tcp://HOST:PORT (PORT 1..65535)");
  strcpy((char *)field, value);
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_host_id(const char *name, const char *value, void *field,
                                         mc_err_t *err) {
  if (value[0] == '\0' || strlen(value) >= 128)
    return mc_bad(err, name, value, "a non-empty string of at most 127 characters");
  strcpy((char *)field, value);
  return MOECOMM_SUCCESS;
}

/* NCCL backend variables (plugin/backends/nccl). */
static moecomm_result_t mc_parse_nccl_config(const char *name, const char *value, void *field,
                                             mc_err_t *err) {
  static const char *const names[] = {"auto", "default", "lean"};
  int i = mc_pick(value, names, 3);
  if (i < 0) return mc_bad(err, name, value, "auto|default|lean");
  *(int *)field = i;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_nccl_ctas(const char *name, const char *value, void *field,
                                           mc_err_t *err) {
  uint64_t v;
  if (mc_parse_u64(value, 0, &v) != 0 || v < 1 || v > 64)
    return mc_bad(err, name, value, "an integer from 1 to 64");
  *(int *)field = (int)v;
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_parse_blocks(const char *name, const char *value, void *field,
                                        mc_err_t *err) {
  uint64_t v;
  if (mc_parse_u64(value, 0, &v) != 0 || v < 1 || v > 128)
    return mc_bad(err, name, value, "an integer from 1 to 128");
  *(int *)field = (int)v;
  return MOECOMM_SUCCESS;
}

#define MC_FIELD(f) offsetof(mc_config_t, f)
static const mc_var_t mc_vars[] = {
    {"MOECOMM_BACKEND", mc_parse_backend, MC_FIELD(backend)},
    {"MOECOMM_DEBUG", mc_parse_debug, MC_FIELD(log_level)},
    {"MOECOMM_TIMEOUT_MS", mc_parse_timeout, MC_FIELD(timeout_ms)},
    {"MOECOMM_STORE", mc_parse_store, MC_FIELD(store)},
    {"MOECOMM_HOST_ID", mc_parse_host_id, MC_FIELD(host_id)},
    {"MOECOMM_ALGO", mc_parse_algo, MC_FIELD(algo)},
    {"MOECOMM_SHARE_COMMS", mc_parse_bool, MC_FIELD(share_comms)},
    {"MOECOMM_CUSTOM_BUFFER_BYTES", mc_parse_bytes, MC_FIELD(custom_buffer_bytes)},
    {"MOECOMM_CUSTOM_MAX_BYTES", mc_parse_bytes, MC_FIELD(custom_max_bytes)},
    /* backend-specific variables: append here */
    {"MOECOMM_NCCL_CONFIG", mc_parse_nccl_config, MC_FIELD(nccl_config)},
    {"MOECOMM_NCCL_LEAN_CTAS", mc_parse_nccl_ctas, MC_FIELD(nccl_lean_ctas)},
    {"MOECOMM_CUSTOM_PDL", mc_parse_bool, MC_FIELD(custom_pdl)},
    {"MOECOMM_CUSTOM_MAX_BLOCKS", mc_parse_blocks, MC_FIELD(custom_max_blocks)},
};

static void mc_config_defaults(mc_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->backend = MC_CHOICE_AUTO;
  cfg->log_level = MC_LOG_WARN;
  cfg->timeout_ms = 60000;
  cfg->algo = MC_ALGO_AUTO;
  cfg->share_comms = 1;
  cfg->custom_buffer_bytes = 64u << 20;
  cfg->custom_max_bytes = 64u << 20;
  cfg->custom_pdl = 1;
}

/* MOECOMM_BACKEND_<GROUP>=...: a group name from topo.c. */
static moecomm_result_t mc_parse_group_var(const char *name, const char *value, mc_config_t *cfg,
                                           mc_err_t *err) {
  const char *group = name + strlen("MOECOMM_BACKEND_");
  int kind = mc_topo_kind_from_name(group);
  if (kind < 0) {
    char list[256] = "";
    for (int k = 0; k < MC_GROUP_KIND_COUNT; k++) {
      strcat(list, k ? "|" : "");
      strcat(list, mc_topo_kind_name(k));
    }
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "%s: unknown group '%s'; MOECOMM_BACKEND_<GROUP> takes GROUP in %s", name,
                      group, list);
  }
  return mc_parse_backend(name, value, &cfg->group_backend[kind], err);
}

moecomm_result_t mc_config_load(mc_config_t *cfg_p, mc_err_t *err) {
  mc_config_t cfg;
  mc_config_defaults(&cfg);
  for (char **e = environ; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '=');
    char name[128];
    size_t len;
    int known = 0;
    moecomm_result_t r = MOECOMM_SUCCESS;
    if (strncmp(*e, "MOECOMM_", 8) != 0 || eq == NULL) continue;
    len = (size_t)(eq - *e);
    if (len >= sizeof(name)) {
      MC_WARN("ignoring environment variable with a %zu-character name starting with MOECOMM_",
              len);
      continue;
    }
    memcpy(name, *e, len);
    name[len] = '\0';
    for (size_t i = 0; i < MC_ARRAY_LEN(mc_vars) && !known; i++) {
      if (strcmp(name, mc_vars[i].name) != 0) continue;
      known = 1;
      r = mc_vars[i].parse(name, eq + 1, (char *)&cfg + mc_vars[i].offset, err);
    }
    if (!known && strncmp(name, "MOECOMM_BACKEND_", 16) == 0) {
      known = 1;
      r = mc_parse_group_var(name, eq + 1, &cfg, err);
    }
    for (size_t i = 0; i < MC_ARRAY_LEN(mc_host_vars) && !known; i++)
      known = strcmp(name, mc_host_vars[i]) == 0;
    if (r != MOECOMM_SUCCESS) return r;
    if (!known) MC_WARN("unknown environment variable %s is ignored", name);
  }
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
