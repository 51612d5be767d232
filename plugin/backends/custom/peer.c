/* SPDX-License-Identifier: Apache-2.0 */
/* peer.c - peer memory: sharing allocations between the processes of one host with CUDA IPC.
 *
 * A buffer is shared as (IPC handle of its allocation, base address in the owner).  The importer
 * opens each allocation once and keeps it (cudaIpcOpenMemHandle fails on a second open of the same
 * allocation); a pointer inside it is base + (owner's pointer - owner's base).  The allocation's
 * base comes from the driver (cuPointerGetAttribute, reached through cudart so that nothing links
 * libcuda directly). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "../../gpu.h"
#include "../../log.h"
#include "peer.h"

typedef CUresult (*mc_cu_ptr_attr_fn_t)(void *data, CUpointer_attribute attr, CUdeviceptr ptr);

static pthread_once_t mc_custom_attr_once = PTHREAD_ONCE_INIT;
static mc_cu_ptr_attr_fn_t mc_custom_attr_fn;

static void mc_custom_attr_load(void) {
  void *fn = NULL;
  enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
  if (cudaGetDriverEntryPointByVersion("cuPointerGetAttribute", &fn, 12000, cudaEnableDefault,
                                       &q) == cudaSuccess &&
      q == cudaDriverEntryPointSuccess)
    mc_custom_attr_fn = (mc_cu_ptr_attr_fn_t)fn;
  else
    (void)cudaGetLastError();
}

moecomm_result_t mc_custom_export(const void *ptr, mc_custom_export_t *exp_p, mc_err_t *err) {
  mc_custom_export_t exp;
  CUdeviceptr base = 0;
  int capable = 0;
  CUresult cr;
  cudaError_t e;

  pthread_once(&mc_custom_attr_once, mc_custom_attr_load);
  if (mc_custom_attr_fn == NULL)
    return mc_err_set(err, MOECOMM_ERR_BACKEND,
                      "the CUDA driver does not provide cuPointerGetAttribute; cannot find the "
                      "allocation of buffer %p",
                      ptr);
  cr = mc_custom_attr_fn(&base, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, (CUdeviceptr)ptr);
  if (cr != CUDA_SUCCESS)
    return mc_err_set(err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "buffer %p is not device memory of this process (cuPointerGetAttribute "
                      "error %d)",
                      ptr, (int)cr);
  cr = mc_custom_attr_fn(&capable, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE,
                         (CUdeviceptr)ptr);
  if (cr == CUDA_SUCCESS && !capable)
    return mc_err_set(err, MOECOMM_ERR_NOT_SUPPORTED,
                      "buffer %p (allocation at %p) cannot be shared with the other ranks: "
                      "captured custom all-reduces need buffers from cudaMalloc (not "
                      "cudaMallocAsync pools, managed or cuMemCreate memory); allocate it so, "
                      "or set MOECOMM_ALGO=nccl for this process",
                      ptr, (void *)(uintptr_t)base);
  memset(&exp, 0, sizeof(exp));
  e = cudaIpcGetMemHandle(&exp.handle, (void *)(uintptr_t)base);
  if (e != cudaSuccess)
    return mc_err_set(err, MOECOMM_ERR_BACKEND,
                      "cudaIpcGetMemHandle for buffer %p (allocation at %p) failed: %s", ptr,
                      (void *)(uintptr_t)base, cudaGetErrorString(e));
  exp.base = (uint64_t)base;
  *exp_p = exp;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_custom_open(mc_custom_comm_t *p, int member, const mc_custom_export_t *exp,
                                char **base_p, mc_err_t *err) {
  const mc_world_t *world = p->comm->world;
  mc_custom_map_t m;
  cudaError_t e;
  void *ptr = NULL;

  if (member == p->comm->rank) {
    *base_p = (char *)(uintptr_t)exp->base;
    return MOECOMM_SUCCESS;
  }
  for (int i = 0; i < p->nmaps; i++) {
    if (p->maps[i].member == member &&
        memcmp(&p->maps[i].handle, &exp->handle, sizeof(exp->handle)) == 0) {
      *base_p = p->maps[i].base;
      return MOECOMM_SUCCESS;
    }
  }
  if (p->nmaps == p->maps_cap) {
    int cap = p->maps_cap ? 2 * p->maps_cap : 16;
    mc_custom_map_t *maps = realloc(p->maps, sizeof(*maps) * (size_t)cap);
    if (maps == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
    p->maps = maps;
    p->maps_cap = cap;
  }
  memset(&m, 0, sizeof(m));
  m.member = member;
  m.handle = exp->handle;
  if (world->pids != NULL && world->pids[p->comm->ranks[member]] == p->pid) {
    m.base = (char *)(uintptr_t)exp->base; /* a member in this very process */
  } else {
    e = cudaIpcOpenMemHandle(&ptr, exp->handle, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return mc_err_set(err, MOECOMM_ERR_BACKEND,
                        "opening rank %d's device memory (allocation at %p in its process) with "
                        "cudaIpcOpenMemHandle failed: %s",
                        (int)p->comm->ranks[member], (void *)(uintptr_t)exp->base,
                        cudaGetErrorString(e));
    }
    m.base = ptr;
    m.ipc = 1;
  }
  p->maps[p->nmaps++] = m;
  *base_p = m.base;
  return MOECOMM_SUCCESS;
}

void mc_custom_close_all(mc_custom_comm_t *p) {
  for (int i = p->nmaps - 1; i >= 0; i--) {
    if (!p->maps[i].ipc) continue;
    cudaError_t e = cudaIpcCloseMemHandle(p->maps[i].base);
    if (e != cudaSuccess)
      MC_WARN("cudaIpcCloseMemHandle of rank %d's memory on %s failed: %s",
              (int)p->comm->ranks[p->maps[i].member], p->comm->label, cudaGetErrorString(e));
  }
  free(p->maps);
  p->maps = NULL;
  p->nmaps = p->maps_cap = 0;
}

moecomm_result_t mc_custom_peek(mc_custom_comm_t *p, const void *src, uint64_t *value_p,
                                mc_err_t *err) {
  uint64_t v = 0;
  MC_CUDA_TRY(err, cudaMemcpyAsync(&v, src, sizeof(v), cudaMemcpyDeviceToHost, p->stream));
  MC_CUDA_TRY(err, cudaStreamSynchronize(p->stream));
  *value_p = v;
  return MOECOMM_SUCCESS;
}
