/* SPDX-License-Identifier: Apache-2.0 */
/* custom_priv.h - the state the custom all-reduce backend keeps per communicator, shared by its
 * files:
 *
 * custom.c   ops table, probe, limits, all_reduce (the hot path; in pieces in deterministic mode)
 * launch.c   one all-reduce kernel launch
 * rmsnorm.c  all_reduce_rmsnorm: the fused kernels
 * reduce_scatter.c  reduce_scatter (deterministic mode only): one all-reduce per member's block
 * status.c   the sticky failure of a communicator (a kernel's timeout, a failed launch)
 * setup.c    comm_init / comm_fini: segment, checks, exchange, access check
 * peer.c     peer memory: exporting allocations, opening peers' (cached), the access check
 * capture.c  capture scope: recording captured two-shot ops, registering their buffers
 *
 * Which algorithm serves a call is the routing policy's choice (plugin/route.c), from the limits
 * this backend reports.
 *
 * Everything a kernel needs lives in one device segment per member (kernels/mc_kernels.h), mapped
 * by the others at comm_init.  Captured two-shot ops also read and write the callers' buffers,
 * which capture_end maps and writes into a device table the captured kernels read at replay. */
#ifndef MC_CUSTOM_PRIV_H_
#define MC_CUSTOM_PRIV_H_

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "../../../kernels/mc_kernels.h"
#include "../../backend.h"
#include "../../util.h"

/* LL payload per call: 2 parities x members x 2 * this of packets per member. */
#define MC_CUSTOM_LL_BYTES (256u << 10)
/* Captured two-shot ops a communicator can register over its life (128 B of table each). */
#define MC_CUSTOM_TABLE_CAP 4096
/* Deterministic mode: where reduce_scatter's all-reduces of the other members' blocks put the
   results it drops (reduce_scatter.c). */
#define MC_CUSTOM_SCRATCH_BYTES (4u << 20)

/* One allocation of a peer, opened in this process. */
typedef struct mc_custom_map {
  int member;                /* index in the comm */
  int ipc;                   /* opened with cudaIpcOpenMemHandle (else same process) */
  cudaIpcMemHandle_t handle; /* as the owner exported it */
  char *base;                /* mapped address here */
} mc_custom_map_t;

/* What a member publishes about one of its allocations. */
typedef struct mc_custom_export {
  cudaIpcMemHandle_t handle; /* of the allocation's base */
  uint64_t base;             /* the base address in the owner's process */
} mc_custom_export_t;

/* A captured two-shot op whose buffers capture_end has to register. */
typedef struct mc_custom_op {
  const void *in;
  void *out;
  int slot; /* entry of the device table the kernel reads */
} mc_custom_op_t;

typedef struct mc_custom_comm {
  mc_comm_t *comm;
  int pid;             /* getpid(): same-process members need no IPC */
  cudaStream_t stream; /* private, non-blocking: setup copies, never the caller's */

  char *seg_local; /* my segment (cudaMalloc) */
  size_t seg_bytes;
  mc_kern_err_t *err_host; /* host-mapped first error of the kernels */
  mc_kern_err_t *err_dev;  /* the same, device address */
  mc_kern_ar_t proto;      /* launch arguments that never change: seg[], offsets, ... */

  mc_kern_ptrs_t *table;   /* device, MC_CUSTOM_TABLE_CAP entries, zeroed */
  int table_used;          /* entries handed out (the same count on every member) */
  mc_custom_op_t *pending; /* captured since capture_begin, not registered yet */
  int npending, pending_cap;

  char *scratch; /* deterministic mode: MC_CUSTOM_SCRATCH_BYTES of device memory; else NULL */

  mc_custom_map_t *maps; /* peers' allocations opened here (segments and buffers) */
  int nmaps, maps_cap;

  moecomm_result_t dead; /* sticky failure of a launch, or a kernel's error */
  char dead_msg[512];
} mc_custom_comm_t;

#endif
