/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_config.c - the NCCL backend's variables (nccl_config.h).  Compiled into every build, so
 * that a CPU-only build still knows (and documents) them. */
#include "nccl_config.h"

#include "../../config.h"

/* The lean config's default of 4 channels, measured on 2x H200 (bench-mem, a MoE-only communicator
   after 1 MB all-reduces): 2: 40 MiB, 1 MB in 76.6 us; 4: 76 MiB, 40.5 us; 8: 148 MiB, 22.5 us;
   NCCL's default: 484 MiB, 12.9 us.  4 is the largest that keeps such a communicator within
   128 MiB; engines that prefer speed set 8 or MOECOMM_NCCL_CONFIG=default. */
const mc_config_var_t mc_nccl_config_vars[] = {
    {"MOECOMM_NCCL_LEAN_CTAS", MC_VAR_INT, offsetof(mc_config_t, nccl.lean_ctas), 0, "4", "1 to 64",
     1, 64, NULL,
     "maxCTAs of NCCL's lean config (4: a MoE-only communicator stays within 128 MiB, at ~3x the "
     "time of a 1 MB all-reduce; 8: 148 MiB, ~1.7x)"},
    {"MOECOMM_NCCL_PATH", MC_VAR_TEXT, offsetof(mc_config_t, nccl.path),
     sizeof(((mc_config_t *)0)->nccl.path), "", "a path to libnccl.so.2", 0, 0, NULL,
     "the NCCL library to load; unset: the libnccl.so.2 already loaded in the process (the "
     "engine's), else the system's library search"},
};
const size_t mc_nccl_config_nvars = sizeof(mc_nccl_config_vars) / sizeof(mc_nccl_config_vars[0]);
