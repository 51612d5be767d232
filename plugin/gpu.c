/* gpu.c - the CUDA runtime calls of the core (device choice, capture state, copies).
 * Built without CUDA, every query answers "no device". */
#include "gpu.h"

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

moecomm_result_t mc_gpu_stream_capturing(void *stream, int *capturing_p, mc_err_t *err) {
  enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  MC_CUDA_TRY(err, cudaStreamIsCapturing((cudaStream_t)stream, &st));
  if (st == cudaStreamCaptureStatusInvalidated)
    return mc_err_set(err, MOECOMM_ERR_CAPTURE,
                      "the stream's capture was invalidated by an earlier error");
  *capturing_p = st == cudaStreamCaptureStatusActive;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_mem_info(size_t *free_p, size_t *total_p, mc_err_t *err) {
  size_t f = 0, t = 0;
  MC_CUDA_TRY(err, cudaMemGetInfo(&f, &t));
  *free_p = f;
  *total_p = t;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_copy_async(void *dst, const void *src, size_t bytes, void *stream,
                                   mc_err_t *err) {
  MC_CUDA_TRY(err, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                   (cudaStream_t)stream));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_gpu_zero_async(void *dst, size_t bytes, void *stream, mc_err_t *err) {
  MC_CUDA_TRY(err, cudaMemsetAsync(dst, 0, bytes, (cudaStream_t)stream));
  return MOECOMM_SUCCESS;
}

int mc_gpu_capture_mode_relaxed(void) {
  enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  if (cudaThreadExchangeStreamCaptureMode(&mode) != cudaSuccess) return -1;
  return (int)mode;
}

void mc_gpu_capture_mode_restore(int previous) {
  enum cudaStreamCaptureMode mode = (enum cudaStreamCaptureMode)previous;
  if (previous >= 0) (void)cudaThreadExchangeStreamCaptureMode(&mode);
}

#else /* !MC_WITH_CUDA */

static moecomm_result_t mc_gpu_none(mc_err_t *err) {
  return mc_err_set(err, MOECOMM_ERR_UNAVAILABLE, "this moecomm build has no CUDA support");
}
int mc_gpu_device_count(void) { return 0; }
moecomm_result_t mc_gpu_set_device(int device, mc_err_t *err) { return mc_gpu_none(err); }
moecomm_result_t mc_gpu_stream_capturing(void *stream, int *capturing_p, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_mem_info(size_t *free_p, size_t *total_p, mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_copy_async(void *dst, const void *src, size_t bytes, void *stream,
                                   mc_err_t *err) {
  return mc_gpu_none(err);
}
moecomm_result_t mc_gpu_zero_async(void *dst, size_t bytes, void *stream, mc_err_t *err) {
  return mc_gpu_none(err);
}
int mc_gpu_capture_mode_relaxed(void) { return -1; }
void mc_gpu_capture_mode_restore(int previous) {}
#endif
