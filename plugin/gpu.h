/* SPDX-License-Identifier: Apache-2.0 */
/* gpu.h - the few CUDA runtime calls the core needs, without CUDA types in core headers.
 * Backends that use CUDA directly include <cuda_runtime_api.h> and use MC_CUDA_TRY. */
#ifndef MC_GPU_H_
#define MC_GPU_H_

#include <stddef.h>

#include "error.h"

/* Devices visible to this process; 0 when there is no driver or no device. */
int mc_gpu_device_count(void);

moecomm_result_t mc_gpu_set_device(int device, mc_err_t *err);

/* Which physical GPU an ordinal is: the same bytes in every process that sees it. */
typedef struct mc_gpu_id {
  unsigned char uuid[16];
  char bus_id[24]; /* "0000:1b:00.0", for messages */
} mc_gpu_id_t;
moecomm_result_t mc_gpu_identity(int device, mc_gpu_id_t *id_p, mc_err_t *err);

/* *capturing_p = 1 when stream is being captured (any mode). */
moecomm_result_t mc_gpu_stream_capturing(void *stream, int *capturing_p, mc_err_t *err);

/* Device-to-device copy on stream (size-1 groups). */
moecomm_result_t mc_gpu_copy_async(void *dst, const void *src, size_t bytes, void *stream,
                                   mc_err_t *err);

/* Zeroes bytes at dst on stream (scatter-mode padding). */
moecomm_result_t mc_gpu_zero_async(void *dst, size_t bytes, void *stream, mc_err_t *err);

/* Where backend setup and teardown run (comm_init, comm_fini): the context's device current (the
   ABI's contract for the calling thread; it stays current) and the thread in relaxed capture mode,
   so that allocation and synchronisation are allowed while this or another thread captures a
   graph.  mc_gpu_scope_leave restores the capture mode. */
typedef struct mc_gpu_scope {
  int mode; /* the caller's capture mode, -1 when unchanged */
} mc_gpu_scope_t;

moecomm_result_t mc_gpu_scope_enter(int device, mc_gpu_scope_t *scope_p, mc_err_t *err);
void mc_gpu_scope_leave(const mc_gpu_scope_t *scope);

/* For files that include <cuda_runtime_api.h>: on failure set err and jump to `label` with
   `res` holding MOECOMM_ERR_BACKEND. */
#define MC_CUDA_GOTO(err, res, label, call)                                          \
  do {                                                                               \
    cudaError_t mc_e_ = (call);                                                      \
    if (mc_e_ != cudaSuccess) {                                                      \
      (res) = mc_err_set((err), MOECOMM_ERR_BACKEND, "%s failed: %s (%s:%d)", #call, \
                         cudaGetErrorString(mc_e_), __FILE__, __LINE__);             \
      goto label;                                                                    \
    }                                                                                \
  } while (0)

#define MC_CUDA_TRY(err, call)                                                      \
  do {                                                                              \
    cudaError_t mc_e_ = (call);                                                     \
    if (mc_e_ != cudaSuccess)                                                       \
      return mc_err_set((err), MOECOMM_ERR_BACKEND, "%s failed: %s (%s:%d)", #call, \
                        cudaGetErrorString(mc_e_), __FILE__, __LINE__);             \
  } while (0)

#endif
