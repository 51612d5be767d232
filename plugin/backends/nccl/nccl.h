/* SPDX-License-Identifier: Apache-2.0 */
/* nccl.h - the NCCL backend (nccl.c; its files: nccl_priv.h). */
#ifndef MC_NCCL_H_
#define MC_NCCL_H_

#include "../../backend.h"

extern const mc_backend_ops_t mc_nccl_ops;

#endif
