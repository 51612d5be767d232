/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_lib.h - NCCL, loaded at run time (nccl_lib.c).
 *
 * The plugin does not link NCCL: engines already carry one (PyTorch's nvidia-nccl wheel), two
 * NCCLs in one process are a known source of trouble, and a CPU-only host must be able to load the
 * plugin without it.  The first use of the NCCL backend loads, in order: MOECOMM_NCCL_PATH (a
 * file), the libnccl.so.2 already loaded in the process (the engine's), or the system loader's
 * search for libnccl.so.2; an NCCL older than MC_NCCL_MIN_VERSION is refused.
 *
 * nccl.h is needed at build time only (types and constants).  The names below make every nccl*
 * call of this backend go through the loaded library's function table; include this header, not
 * <nccl.h>, in the backend's files. */
#ifndef MC_NCCL_LIB_H_
#define MC_NCCL_LIB_H_

#include <nccl.h>

#include "../../config.h"
#include "../../error.h"

/* Oldest NCCL this backend runs with (init with a config). */
#define MC_NCCL_MIN_VERSION NCCL_VERSION(2, 19, 0)

typedef struct mc_nccl_lib {
  ncclResult_t (*GetVersion)(int *version);
  ncclResult_t (*GetUniqueId)(ncclUniqueId *id);
  ncclResult_t (*CommInitRankConfig)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank,
                                     ncclConfig_t *config);
  ncclResult_t (*CommDestroy)(ncclComm_t comm);
  ncclResult_t (*CommAbort)(ncclComm_t comm);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t *async_error);
  const char *(*GetErrorString)(ncclResult_t result);
  const char *(*GetLastError)(ncclComm_t comm);
  ncclResult_t (*AllReduce)(const void *send, void *recv, size_t count, ncclDataType_t dtype,
                            ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*AllGather)(const void *send, void *recv, size_t count, ncclDataType_t dtype,
                            ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*ReduceScatter)(const void *send, void *recv, size_t count, ncclDataType_t dtype,
                                ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*Broadcast)(const void *send, void *recv, size_t count, ncclDataType_t dtype,
                            int root, ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*Send)(const void *send, size_t count, ncclDataType_t dtype, int peer,
                       ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*Recv)(void *recv, size_t count, ncclDataType_t dtype, int peer, ncclComm_t comm,
                       cudaStream_t stream);
  ncclResult_t (*GroupStart)(void);
  ncclResult_t (*GroupEnd)(void);
  int version;    /* ncclGetVersion of the loaded library */
  char path[512]; /* where it was found */
} mc_nccl_lib_t;

/* The loaded library; valid after mc_nccl_lib_load succeeded. */
extern mc_nccl_lib_t mc_nccl_lib;

/* Loads NCCL once per process (later calls return the first outcome).  On failure `why` says
   everything that was tried. */
moecomm_result_t mc_nccl_lib_load(const mc_config_t *cfg, mc_err_t *why);

/* Every NCCL call of the backend goes through the table. */
#define ncclGetVersion mc_nccl_lib.GetVersion
#define ncclGetUniqueId mc_nccl_lib.GetUniqueId
#define ncclCommInitRankConfig mc_nccl_lib.CommInitRankConfig
#define ncclCommDestroy mc_nccl_lib.CommDestroy
#define ncclCommAbort mc_nccl_lib.CommAbort
#define ncclCommGetAsyncError mc_nccl_lib.CommGetAsyncError
#define ncclGetErrorString mc_nccl_lib.GetErrorString
#define ncclGetLastError mc_nccl_lib.GetLastError
#define ncclAllReduce mc_nccl_lib.AllReduce
#define ncclAllGather mc_nccl_lib.AllGather
#define ncclReduceScatter mc_nccl_lib.ReduceScatter
#define ncclBroadcast mc_nccl_lib.Broadcast
#define ncclSend mc_nccl_lib.Send
#define ncclRecv mc_nccl_lib.Recv
#define ncclGroupStart mc_nccl_lib.GroupStart
#define ncclGroupEnd mc_nccl_lib.GroupEnd

#endif
