/* config.h - every MOECOMM_* environment variable, read in one place.
 *
 * mc_config_load takes a snapshot of the environment when a context is created; nothing else in the
 * plugin calls getenv.  An unknown value is a MOECOMM_ERR_CONFIG naming the allowed ones. */
#ifndef MC_CONFIG_H_
#define MC_CONFIG_H_

#include "error.h"
#include "topo.h"

/* What a group asks for; AUTO lets the core choose per group (and, for custom, per size). */
typedef enum mc_backend_choice {
  MC_CHOICE_UNSET = 0, /* per-group variable absent: the default applies */
  MC_CHOICE_AUTO,
  MC_CHOICE_SHM,
  MC_CHOICE_NCCL,
  MC_CHOICE_CUSTOM
} mc_backend_choice_t;

/* MOECOMM_ALGO: forces one custom all-reduce algorithm; AUTO follows the measured policy table. */
typedef enum mc_algo {
  MC_ALGO_AUTO = 0,
  MC_ALGO_LL,       /* low latency: flag carried in the data */
  MC_ALGO_ONESHOT,  /* each rank reads every peer's input */
  MC_ALGO_TWOSHOT,  /* reduce-scatter then all-gather */
  MC_ALGO_NCCL      /* custom groups hand every all-reduce to NCCL */
} mc_algo_t;

typedef struct mc_config {
  mc_backend_choice_t backend;                            /* MOECOMM_BACKEND (default AUTO) */
  mc_backend_choice_t group_backend[MC_GROUP_KIND_COUNT]; /* MOECOMM_BACKEND_<GROUP> */
  int log_level;                                          /* MOECOMM_DEBUG as mc_log_level_t */
  int timeout_ms;                                         /* MOECOMM_TIMEOUT_MS (default 60000) */
  char store[256];                                        /* MOECOMM_STORE, "" when unset */
  char host_id[128];                                      /* MOECOMM_HOST_ID, "" when unset */
  mc_algo_t algo;                                         /* MOECOMM_ALGO */
  int share_comms;                                        /* MOECOMM_SHARE_COMMS (default 1) */
  size_t custom_buffer_bytes; /* MOECOMM_CUSTOM_BUFFER_BYTES: eager staging per rank (default 64 MiB) */
  size_t custom_max_bytes;    /* MOECOMM_CUSTOM_MAX_BYTES: largest all-reduce the custom path takes */
  /* NCCL backend (bench/NOTES-nccl.md).  0 in each means the built-in default. */
  int nccl_config;          /* MOECOMM_NCCL_CONFIG: 0 auto (lean for MoE-only comms), 1 default,
                               2 lean */
  int nccl_lean_ctas;       /* MOECOMM_NCCL_LEAN_CTAS: maxCTAs of the lean config (default 4) */
  int custom_max_blocks;    /* MOECOMM_CUSTOM_MAX_BLOCKS: grid cap of one-/two-shot, 0 = 64 */
  int custom_pdl;           /* MOECOMM_CUSTOM_PDL: custom kernels use programmatic dependent
                               launch (default 1; 0 for comparison) */
} mc_config_t;

/* Reads every MOECOMM_* variable; sets the log level.  Unknown MOECOMM_* names are warned about. */
moecomm_result_t mc_config_load(mc_config_t *cfg_p, mc_err_t *err);

const char *mc_choice_name(mc_backend_choice_t choice);

#endif
