/* SPDX-License-Identifier: Apache-2.0 */
/* config.h - every MOECOMM_* variable, read in one place.
 *
 * Each variable is declared once, in a table row (config_var.h) of the module that owns it: the
 * core's here (config.c), a backend's in backends/<name>/<name>_config.c.  mc_config_load takes a
 * snapshot of the environment when a context is created; nothing else in the plugin calls getenv.
 * An unknown value is a MOECOMM_ERR_CONFIG naming the variable and what it accepts. */
#ifndef MC_CONFIG_H_
#define MC_CONFIG_H_

#include <stddef.h>

#include "backends/custom/custom_config.h"
#include "backends/nccl/nccl_config.h"
#include "config_var.h"
#include "error.h"
#include "topo.h"

/* What a group asks for (MOECOMM_BACKEND and MOECOMM_BACKEND_<GROUP>, in this order). */
typedef enum mc_backend_choice {
  MC_CHOICE_UNSET = -1, /* per-group variable absent: MOECOMM_BACKEND applies */
  MC_CHOICE_AUTO = 0,
  MC_CHOICE_SHM,
  MC_CHOICE_NCCL,
  MC_CHOICE_CUSTOM
} mc_backend_choice_t;

/* MOECOMM_ALGO: forces one custom all-reduce algorithm; AUTO follows the measured table. */
typedef enum mc_algo {
  MC_ALGO_AUTO = 0,
  MC_ALGO_LL,           /* low latency: flag carried in the data */
  MC_ALGO_ONESHOT,      /* each rank reads every peer's input */
  MC_ALGO_TWOSHOT,      /* reduce-scatter then all-gather */
  MC_ALGO_NCCL,         /* custom groups hand every all-reduce to NCCL */
  MC_ALGO_TWOSHOT_PUSH, /* the barrier-free push kernels (kernels/mc_push.h), not in the table */
  MC_ALGO_ONESHOT_PUSH
} mc_algo_t;

/* MOECOMM_NCCL_CONFIG. */
typedef enum mc_nccl_config_choice {
  MC_NCCL_CONFIG_AUTO = 0, /* lean for communicators only MoE groups use */
  MC_NCCL_CONFIG_DEFAULT,  /* NCCL's defaults everywhere */
  MC_NCCL_CONFIG_LEAN      /* lean everywhere */
} mc_nccl_config_choice_t;

typedef struct mc_config {
  int backend;                            /* MOECOMM_BACKEND: mc_backend_choice_t */
  int group_backend[MC_GROUP_KIND_COUNT]; /* MOECOMM_BACKEND_<GROUP>: mc_backend_choice_t */
  int log_level;                          /* MOECOMM_DEBUG: mc_log_level_t */
  int timeout_ms;                         /* MOECOMM_TIMEOUT_MS */
  char store[256];                        /* MOECOMM_STORE, "" when unset */
  char host_id[128];                      /* MOECOMM_HOST_ID, "" when unset */
  char store_token[256];                  /* MOECOMM_STORE_TOKEN, "" when unset (never logged) */
  char socket_ifname[256];                /* MOECOMM_SOCKET_IFNAME, "" when unset */
  int share_comms;                        /* MOECOMM_SHARE_COMMS */
  int deterministic;                      /* MOECOMM_DETERMINISTIC (or the context flag) */
  int ep_max_tokens;                      /* MOECOMM_EP_MAX_TOKENS: moe_configure's default T_max */
  /* routing (route.c) */
  int algo;                /* MOECOMM_ALGO: mc_algo_t */
  size_t custom_max_bytes; /* MOECOMM_CUSTOM_MAX_BYTES: largest all-reduce the custom path takes */
  int nccl_config;         /* MOECOMM_NCCL_CONFIG: mc_nccl_config_choice_t */
  /* backends */
  mc_custom_config_t custom;
  mc_nccl_config_t nccl;
} mc_config_t;

/* Reads every MOECOMM_* variable (defaults for the absent ones) and sets the log level.  Unknown
   MOECOMM_* names are warned about.  *cfg_p written on success. */
moecomm_result_t mc_config_load(mc_config_t *cfg_p, mc_err_t *err);

/* The declared variables, in table order (core, then each backend, then the host's): NULL past
   the last. */
const mc_config_var_t *mc_config_var_at(size_t index);

const char *mc_choice_name(mc_backend_choice_t choice);

#endif
