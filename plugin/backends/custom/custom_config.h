/* SPDX-License-Identifier: Apache-2.0 */
/* custom_config.h - the custom backend's settings (custom_config.c declares their variables). */
#ifndef MC_CUSTOM_CONFIG_H_
#define MC_CUSTOM_CONFIG_H_

#include <stddef.h>

#include "../../config_var.h"

typedef struct mc_custom_config {
  size_t buffer_bytes; /* MOECOMM_CUSTOM_BUFFER_BYTES: eager staging per rank */
  int pdl;             /* MOECOMM_CUSTOM_PDL: programmatic dependent launch */
  int max_blocks;      /* MOECOMM_CUSTOM_MAX_BLOCKS: grid cap of one-shot and two-shot */
} mc_custom_config_t;

extern const mc_config_var_t mc_custom_config_vars[];
extern const size_t mc_custom_config_nvars;

#endif
