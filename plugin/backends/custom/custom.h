/* SPDX-License-Identifier: Apache-2.0 */
/* custom.h - the custom all-reduce backend: CUDA kernels over peer-mapped memory for the ranks
 * of one host (custom.c; its files: custom_priv.h). */
#ifndef MC_CUSTOM_H_
#define MC_CUSTOM_H_

#include "../../backend.h"

extern const mc_backend_ops_t mc_custom_ops;

#endif
