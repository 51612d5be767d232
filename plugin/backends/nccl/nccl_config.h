/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_config.h - the NCCL backend's settings (nccl_config.c declares their variables). */
#ifndef MC_NCCL_CONFIG_H_
#define MC_NCCL_CONFIG_H_

#include <stddef.h>

#include "../../config_var.h"

typedef struct mc_nccl_config {
  int lean_ctas;  /* MOECOMM_NCCL_LEAN_CTAS: maxCTAs of the lean config */
  char path[512]; /* MOECOMM_NCCL_PATH: the libnccl.so.2 to load, "" to search */
} mc_nccl_config_t;

extern const mc_config_var_t mc_nccl_config_vars[];
extern const size_t mc_nccl_config_nvars;

#endif
