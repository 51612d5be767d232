/* SPDX-License-Identifier: Apache-2.0 */
/* lib_mem.c - the matrix's buffers: host memory for shm, device memory with a host image for the
 * GPU backends (conf.h).  A case prepares the host image (poison, guards, inputs), puts it, runs
 * the collective on the device pointers, gets the image back and checks it on the host. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#define CONF_SYNC_TIMEOUT_MS 120000 /* a collective that has not finished by then is hung */

int conf_mem_open(conf_rank_t *r, const conf_backend_t *be, int rank, int world) {
  memset(r, 0, sizeof(*r));
  r->api = mc_test_plugin();
  r->be = be;
  r->rank = rank;
  r->world = world;
  if (!be->gpu) return 1;
#if MC_WITH_CUDA
  {
    cudaStream_t s = NULL;
    if (!MC_CUDA_OK(cudaSetDevice(r->rank)) ||
        !MC_CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)))
      return 0;
    r->stream = s;
    return 1;
  }
#else
  return MC_CHECK(0, "%s: a GPU backend in a build without CUDA", r->be->name);
#endif
}

void conf_mem_close(conf_rank_t *r) {
#if MC_WITH_CUDA
  if (r->stream != NULL) MC_CUDA_OK(cudaStreamDestroy((cudaStream_t)r->stream));
#endif
  r->stream = NULL;
}

int conf_mem_alloc(const conf_rank_t *r, size_t bytes, unsigned char **dev_p,
                   unsigned char **host_p) {
  /* 64-byte aligned, like cudaMalloc's (256): offsets from it are the case's offsets */
  unsigned char *host = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!MC_CHECK(host != NULL, "%s: %zu bytes of host memory", r->be->name, bytes)) return 0;
  *host_p = host;
  *dev_p = host;
#if MC_WITH_CUDA
  if (r->be->gpu) {
    void *dev = NULL;
    if (!MC_CUDA_OK(cudaMalloc(&dev, bytes))) {
      free(host);
      return 0;
    }
    *dev_p = dev;
  }
#endif
  return 1;
}

void conf_mem_free(const conf_rank_t *r, unsigned char *dev, unsigned char *host) {
#if MC_WITH_CUDA
  if (r->be->gpu && dev != NULL) MC_CUDA_OK(cudaFree(dev));
#else
  (void)r;
  (void)dev;
#endif
  free(host);
}

int conf_mem_put(const conf_rank_t *r, unsigned char *dev, const unsigned char *host, size_t n) {
  if (dev == host || n == 0) return 1;
#if MC_WITH_CUDA
  return MC_CUDA_OK(cudaMemcpyAsync(dev, host, n, cudaMemcpyHostToDevice, (cudaStream_t)r->stream));
#else
  (void)r;
  return MC_CHECK(0, "a device buffer in a build without CUDA");
#endif
}

int conf_mem_get(const conf_rank_t *r, unsigned char *host, const unsigned char *dev, size_t n) {
  if (dev == host || n == 0) return 1;
#if MC_WITH_CUDA
  return MC_CUDA_OK(
             cudaMemcpyAsync(host, dev, n, cudaMemcpyDeviceToHost, (cudaStream_t)r->stream)) &&
         conf_mem_sync(r, "copying the output back");
#else
  (void)r;
  return MC_CHECK(0, "a device buffer in a build without CUDA");
#endif
}

int conf_mem_sync(const conf_rank_t *r, const char *what) {
#if MC_WITH_CUDA
  struct timespec nap = {0, 200000};
  struct timespec t0, now;
  if (!r->be->gpu) return 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) { /* polled, so that a hung collective becomes one failed check, not a hang */
    cudaError_t e = cudaStreamQuery((cudaStream_t)r->stream);
    long ms;
    if (e == cudaSuccess) return 1;
    if (e != cudaErrorNotReady) return mc_test_cuda_check((int)e, __FILE__, __LINE__, what);
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long)(now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
    if (ms > CONF_SYNC_TIMEOUT_MS)
      return MC_CHECK(0, "%s: %s: the stream did not finish within %d ms (a hung collective)",
                      r->be->name, what, CONF_SYNC_TIMEOUT_MS);
    nanosleep(&nap, NULL);
  }
#else
  (void)r;
  (void)what;
  return 1;
#endif
}
