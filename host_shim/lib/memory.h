/* SPDX-License-Identifier: Apache-2.0 */
/* memory.h - what the plugin holds per group and per rank, from group_stats, and the memory
 * report (memory.c). */
#ifndef SHIM_MEMORY_H_
#define SHIM_MEMORY_H_

#include <stdint.h>
#include <stdio.h>

#include "../../abi/moecomm.h"

/* Group kinds: MOECOMM_GROUP_WORLD .. MOECOMM_GROUP_MOE_CP. */
#define SHIM_GROUP_KINDS (MOECOMM_GROUP_MOE_CP + 1)

/* group_get, then group_stats (struct_size set) of this rank's group of `kind`. */
moecomm_result_t shim_group_stats(const moecomm_api_t *api, moecomm_context_t *ctx, int kind,
                                  moecomm_group_stats_t *st);

/* One rank's totals (fixed layout: it crosses processes). */
typedef struct shim_mem {
  uint64_t device_bytes; /* over distinct created communicators */
  uint64_t host_bytes;
  int32_t comms_created; /* distinct communicators with resources */
  int32_t comms;         /* distinct communicator objects */
} shim_mem_t;

/* Sums the stats of every group of ctx, counting a shared communicator once. */
int shim_mem_collect(const moecomm_api_t *api, moecomm_context_t *ctx, shim_mem_t *mem_p);

/* Rank 0: each group's backend, creation and bytes (this rank's view), then the largest per-rank
   totals of `all` (world entries). */
void shim_mem_print(FILE *f, const moecomm_api_t *api, moecomm_context_t *ctx,
                    const shim_mem_t *all, int world);

#endif
