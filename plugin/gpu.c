/* SPDX-License-Identifier: Apache-2.0 */
/* gpu.c - the CUDA runtime calls of the core (device choice, capture state, copies).
 * Built without CUDA, every query answers "no device". */
#include "gpu.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>

int mc_gpu_device_count(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    MC_TRACE("cudaGetDeviceCount: %s: treating as no CUDA device", cudaGetErrorString(e));
    (void)cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
    return 0;
  }
  return n;
}

moecomm_result_t mc_gpu_set_device(int device, mc_err_t *err) {
  MC_CUDA_TRY(err, cudaSetDevice(device));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_identity(int device, mc_gpu_id_t *id_p, mc_err_t *err) {
  struct cudaDeviceProp prop;
  mc_gpu_id_t id;
  MC_CUDA_TRY(err, cudaGetDeviceProperties(&prop, device));
  memset(&id, 0, sizeof(id));
  memcpy(id.uuid, prop.uuid.bytes, sizeof(id.uuid));
  if (cudaDeviceGetPCIBusId(id.bus_id, (int)sizeof(id.bus_id), device) != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(id.bus_id, sizeof(id.bus_id), "device %d", device);
  }
  *id_p = id;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_stream_capturing(void *stream, int *capturing_p, mc_err_t *err) {
  enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  MC_CUDA_TRY(err, cudaStreamIsCapturing((cudaStream_t)stream, &st));
  if (st == cudaStreamCaptureStatusInvalidated)
    return mc_err_set(err, MOECOMM_ERR_CAPTURE,
                      "the stream's capture was invalidated by an earlier error");
  *capturing_p = st == cudaStreamCaptureStatusActive;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_copy_async(void *dst, const void *src, size_t bytes, void *stream,
                                   mc_err_t *err) {
  MC_CUDA_TRY(err,
              cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_zero_async(void *dst, size_t bytes, void *stream, mc_err_t *err) {
  MC_CUDA_TRY(err, cudaMemsetAsync(dst, 0, bytes, (cudaStream_t)stream));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_scope_enter(int device, mc_gpu_scope_t *scope_p, mc_err_t *err) {
  mc_gpu_scope_t s = {-1};
  enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  int cur = -1;
  /* Only when it differs: cudaSetDevice creates a context on a device that has none yet. */
  if (cudaGetDevice(&cur) != cudaSuccess || cur != device) MC_CUDA_TRY(err, cudaSetDevice(device));
  if (cudaThreadExchangeStreamCaptureMode(&mode) == cudaSuccess) s.mode = (int)mode;
  (void)cudaGetLastError();
  *scope_p = s;
  return MOECOMM_SUCCESS;
}

void mc_gpu_scope_leave(const mc_gpu_scope_t *scope) {
  enum cudaStreamCaptureMode mode = (enum cudaStreamCaptureMode)scope->mode;
  if (scope->mode >= 0) (void)cudaThreadExchangeStreamCaptureMode(&mode);
}

#else /* !MC_WITH_CUDA */

static moecomm_result_t mc_gpu_none(mc_err_t *err) {
  return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "this moecomm build has no CUDA support");
}
int mc_gpu_device_count(void) {
  return 0;
}
moecomm_result_t mc_gpu_set_device(int device, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_identity(int device, mc_gpu_id_t *id_p, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_stream_capturing(void *stream, int *capturing_p, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_copy_async(void *dst, const void *src, size_t bytes, void *stream,
                                   mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_zero_async(void *dst, size_t bytes, void *stream, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_scope_enter(int device, mc_gpu_scope_t *scope_p, mc_err_t *err) {
  return mc_gpu_none(err);
}
void mc_gpu_scope_leave(const mc_gpu_scope_t *scope) {}
#endif
