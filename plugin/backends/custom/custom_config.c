/* SPDX-License-Identifier: Apache-2.0 */
/* custom_config.c - the custom backend's variables (custom_config.h).  Compiled into every build,
 * so that a CPU-only build still knows (and documents) them. */
#include "custom_config.h"

#include "../../config.h"

#define MC_FIELD(f) offsetof(mc_config_t, custom.f)

const mc_config_var_t mc_custom_config_vars[] = {
    {"MOECOMM_CUSTOM_BUFFER_BYTES", MC_VAR_BYTES, MC_FIELD(buffer_bytes), 0, "64M",
     "4096 to 16G (K, M, G suffixes)", 4096, 1ll << 34, NULL,
     "custom all-reduce staging per rank for eager one-shot and two-shot calls"},
    {"MOECOMM_CUSTOM_PDL", MC_VAR_BOOL, MC_FIELD(pdl), 0, "1", "0 or 1", 0, 1, NULL,
     "custom kernels use programmatic dependent launch (back-to-back all-reduces overlap launch)"},
    {"MOECOMM_CUSTOM_MAX_BLOCKS", MC_VAR_INT, MC_FIELD(max_blocks), 0, "64", "1 to 128", 1, 128,
     NULL, "grid cap of the one-shot and two-shot kernels; the same on every rank"},
};
const size_t mc_custom_config_nvars =
    sizeof(mc_custom_config_vars) / sizeof(mc_custom_config_vars[0]);
