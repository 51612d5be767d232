/* SPDX-License-Identifier: Apache-2.0 */
/* device.c - the host's CUDA runtime calls (device.h).  Everything CUDA sits behind
 * MC_WITH_CUDA so the host library builds and runs without a toolkit. */
#include "device.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../abi/moecomm.h"

#if MC_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

static int dev_fail(shim_dev_t *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dev_fail(shim_dev_t *dev, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dev->err, sizeof(dev->err), fmt, ap);
  va_end(ap);
  return -1;
}

#if MC_WITH_CUDA
/* The call's text and CUDA's explanation go to dev->err. */
static int cuda_fail(shim_dev_t *dev, const char *call, cudaError_t e) {
  return dev_fail(dev, "%s failed on device %d: %s (%s)", call, dev->device, cudaGetErrorName(e),
                  cudaGetErrorString(e));
}

#define SHIM_CUDA(dev, call)                                             \
  do {                                                                   \
    cudaError_t shim_e_ = (call);                                        \
    if (shim_e_ != cudaSuccess) return cuda_fail((dev), #call, shim_e_); \
  } while (0)
#endif

static int64_t host_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CUDA devices counted in a forked child (see device.h); usable: each must accept a context. */
static int count_in_child(int usable_only) {
#if MC_WITH_CUDA
  int fds[2], n = 0, st = 0;
  pid_t pid;
  ssize_t got;
  if (pipe(fds) != 0) return 0;
  fflush(NULL);
  pid = fork();
  if (pid == 0) {
    int count = 0, usable = 0;
    close(fds[0]);
    if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
    usable = count;
    if (usable_only) {
      usable = 0;
      for (int d = 0; d < count; d++)
        if (cudaSetDevice(d) == cudaSuccess && cudaFree(NULL) == cudaSuccess) usable++;
      if (usable != count) usable = 0; /* a partly broken machine: run on the CPU */
    }
    if (write(fds[1], &usable, sizeof(usable)) != (ssize_t)sizeof(usable)) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return 0;
  }
  do got = read(fds[0], &n, sizeof(n));
  while (got < 0 && errno == EINTR);
  close(fds[0]);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return got == (ssize_t)sizeof(n) && n > 0 ? n : 0;
#else
  (void)usable_only;
  return 0;
#endif
}

int shim_gpu_count(void) {
  return count_in_child(1);
}

int shim_gpu_devices(void) {
  return count_in_child(0);
}

int shim_dev_open(shim_dev_t *dev, int device) {
  memset(dev, 0, sizeof(*dev));
  dev->device = device;
  if (device == MOECOMM_DEVICE_CPU) return 0;
#if MC_WITH_CUDA
  {
    cudaStream_t s = NULL;
    SHIM_CUDA(dev, cudaSetDevice(device));
    /* Non-blocking: the legacy default stream must not serialise with the collectives. */
    SHIM_CUDA(dev, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    dev->stream = s;
    return 0;
  }
#else
  return dev_fail(dev, "device %d requested, but the shim was built without CUDA", device);
#endif
}

void shim_dev_close(shim_dev_t *dev) {
#if MC_WITH_CUDA
  if (dev->stream != NULL) {
    cudaStreamSynchronize((cudaStream_t)dev->stream);
    cudaStreamDestroy((cudaStream_t)dev->stream);
  }
#endif
  dev->stream = NULL;
}

/* Device memory, or with `pinned` page-locked host memory, on a GPU; on the CPU host memory,
   64-byte aligned (what an engine's tensors would have). */
static int mem_alloc(shim_dev_t *dev, size_t bytes, int pinned, void **p_p) {
  size_t n = bytes ? bytes : 1;
  void *p = NULL;
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    cudaError_t e = pinned ? cudaMallocHost(&p, n) : cudaMalloc(&p, n);
    if (e != cudaSuccess) return cuda_fail(dev, pinned ? "cudaMallocHost" : "cudaMalloc", e);
    *p_p = p;
    return 0;
  }
#endif
  if (posix_memalign(&p, 64, n) != 0)
    return dev_fail(dev, "cannot allocate %zu bytes of host memory", n);
  *p_p = p;
  return 0;
}

static void mem_free(shim_dev_t *dev, void *p, int pinned) {
  if (p == NULL) return;
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    if (pinned)
      cudaFreeHost(p);
    else
      cudaFree(p);
    return;
  }
#endif
  free(p);
}

int shim_dev_alloc(shim_dev_t *dev, size_t bytes, void **p_p) {
  return mem_alloc(dev, bytes, 0, p_p);
}

void shim_dev_free(shim_dev_t *dev, void *p) {
  mem_free(dev, p, 0);
}

int shim_host_alloc(shim_dev_t *dev, size_t bytes, void **p_p) {
  return mem_alloc(dev, bytes, 1, p_p);
}

void shim_host_free(shim_dev_t *dev, void *p) {
  mem_free(dev, p, 1);
}

/* A stream-ordered copy between host staging and a buffer (to_dev: into the buffer). */
static int dev_copy(shim_dev_t *dev, void *dst, const void *src, size_t bytes, int to_dev) {
  if (bytes == 0) return 0;
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    cudaError_t e =
        cudaMemcpyAsync(dst, src, bytes, to_dev ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                        (cudaStream_t)dev->stream);
    if (e != cudaSuccess)
      return cuda_fail(
          dev, to_dev ? "cudaMemcpyAsync (host to device)" : "cudaMemcpyAsync (device to host)", e);
    return 0;
  }
#endif
  if (dst != src) memcpy(dst, src, bytes);
  return 0;
}

int shim_dev_put(shim_dev_t *dev, void *dst, const void *host_src, size_t bytes) {
  return dev_copy(dev, dst, host_src, bytes, 1);
}

int shim_dev_get(shim_dev_t *dev, void *host_dst, const void *src, size_t bytes) {
  return dev_copy(dev, host_dst, src, bytes, 0);
}

int shim_dev_poison(shim_dev_t *dev, void *p, size_t bytes) {
  if (bytes == 0) return 0;
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    SHIM_CUDA(dev, cudaMemsetAsync(p, 0xff, bytes, (cudaStream_t)dev->stream));
    return 0;
  }
#endif
  memset(p, 0xff, bytes);
  return 0;
}

int shim_dev_sync(shim_dev_t *dev) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) SHIM_CUDA(dev, cudaStreamSynchronize((cudaStream_t)dev->stream));
#endif
  return 0;
}

int shim_timer_init(shim_dev_t *dev, shim_timer_t *t) {
  memset(t, 0, sizeof(*t));
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    cudaEvent_t a = NULL, b = NULL;
    cudaError_t e;
    SHIM_CUDA(dev, cudaEventCreate(&a));
    e = cudaEventCreate(&b);
    if (e != cudaSuccess) {
      cudaEventDestroy(a);
      return cuda_fail(dev, "cudaEventCreate(&b)", e);
    }
    t->ev[0] = a;
    t->ev[1] = b;
  }
#endif
  return 0;
}

void shim_timer_fini(shim_dev_t *dev, shim_timer_t *t) {
#if MC_WITH_CUDA
  for (int i = 0; i < 2; i++)
    if (t->ev[i] != NULL) cudaEventDestroy((cudaEvent_t)t->ev[i]);
#endif
  (void)dev;
  memset(t, 0, sizeof(*t));
}

int shim_timer_mark(shim_dev_t *dev, shim_timer_t *t, int which) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    SHIM_CUDA(dev, cudaEventRecord((cudaEvent_t)t->ev[which], (cudaStream_t)dev->stream));
    return 0;
  }
#endif
  t->ns[which] = host_ns();
  return 0;
}

int shim_timer_us(shim_dev_t *dev, shim_timer_t *t, double *us_p) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    float ms = 0.0f;
    SHIM_CUDA(dev, cudaEventElapsedTime(&ms, (cudaEvent_t)t->ev[0], (cudaEvent_t)t->ev[1]));
    *us_p = (double)ms * 1000.0;
    return 0;
  }
#endif
  *us_p = (double)(t->ns[1] - t->ns[0]) / 1000.0;
  return 0;
}

int shim_graph_begin(shim_dev_t *dev) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    /* Global mode: an unsafe CUDA call anywhere in the process during capture is an error, so a
       plugin that allocates inside capture is caught here rather than at replay. */
    SHIM_CUDA(dev, cudaStreamBeginCapture((cudaStream_t)dev->stream, cudaStreamCaptureModeGlobal));
    return 0;
  }
#endif
  return dev_fail(dev, "graph capture needs a GPU context");
}

int shim_graph_end(shim_dev_t *dev, shim_graph_t *g) {
  memset(g, 0, sizeof(*g));
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)dev->stream, &graph);
    if (e != cudaSuccess) {
      if (graph != NULL) cudaGraphDestroy(graph);
      return cuda_fail(dev, "cudaStreamEndCapture", e);
    }
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) {
      cudaGraphDestroy(graph);
      return cuda_fail(dev, "cudaGraphInstantiate", e);
    }
    g->graph = graph;
    g->exec = exec;
    return 0;
  }
#endif
  return dev_fail(dev, "graph capture needs a GPU context");
}

void shim_graph_abort(shim_dev_t *dev) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev)) {
    cudaGraph_t graph = NULL;
    enum cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing((cudaStream_t)dev->stream, &st) == cudaSuccess &&
        st != cudaStreamCaptureStatusNone) {
      cudaStreamEndCapture((cudaStream_t)dev->stream, &graph);
      if (graph != NULL) cudaGraphDestroy(graph);
    }
    cudaGetLastError(); /* clear the (non-sticky) error a failed capture leaves behind */
  }
#endif
  (void)dev;
}

int shim_graph_launch(shim_dev_t *dev, shim_graph_t *g) {
#if MC_WITH_CUDA
  if (shim_dev_is_gpu(dev) && g->exec != NULL) {
    SHIM_CUDA(dev, cudaGraphLaunch((cudaGraphExec_t)g->exec, (cudaStream_t)dev->stream));
    return 0;
  }
#endif
  return dev_fail(dev, "no instantiated graph to launch");
}

void shim_graph_destroy(shim_graph_t *g) {
#if MC_WITH_CUDA
  if (g->exec != NULL) cudaGraphExecDestroy((cudaGraphExec_t)g->exec);
  if (g->graph != NULL) cudaGraphDestroy((cudaGraph_t)g->graph);
#endif
  memset(g, 0, sizeof(*g));
}
