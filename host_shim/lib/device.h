/* SPDX-License-Identifier: Apache-2.0 */
/* device.h - every CUDA runtime call of the host library, behind CUDA-free types.
 *
 * A shim_dev_t is either a GPU (device ordinal, a non-blocking stream; buffers are device memory,
 * staging is pinned host memory) or the CPU (MOECOMM_DEVICE_CPU: buffers are host memory, stream
 * NULL, copies are memcpy, timers read the host clock).  Built without CUDA (MC_WITH_CUDA 0) only
 * the CPU kind exists.  Functions return 0 on success; on failure -1 with dev->err naming the call
 * and the CUDA error. */
#ifndef SHIM_DEVICE_H_
#define SHIM_DEVICE_H_

#include <stddef.h>
#include <stdint.h>

typedef struct shim_dev {
  int device;    /* CUDA ordinal, or MOECOMM_DEVICE_CPU */
  void *stream;  /* cudaStream_t; NULL on the CPU */
  char err[512]; /* the last failure */
} shim_dev_t;

/* CUDA devices that a process can use, counted in a forked child so that this process never
   initialises CUDA (ranks forked later could not use it).  Usable: every device accepts a
   context (0 when one does not: a partly broken machine runs on the CPU).  0 without CUDA. */
int shim_gpu_count(void);
/* The same count without creating contexts: cudaGetDeviceCount in a forked child. */
int shim_gpu_devices(void);

/* Opens device (an ordinal or MOECOMM_DEVICE_CPU): sets it current and creates the stream. */
int shim_dev_open(shim_dev_t *dev, int device);
void shim_dev_close(shim_dev_t *dev);
static inline int shim_dev_is_gpu(const shim_dev_t *dev) {
  return dev->stream != NULL;
}

/* Buffers the collectives use (device memory on a GPU) and host staging (pinned on a GPU). */
int shim_dev_alloc(shim_dev_t *dev, size_t bytes, void **p_p);
void shim_dev_free(shim_dev_t *dev, void *p);
int shim_host_alloc(shim_dev_t *dev, size_t bytes, void **p_p);
void shim_host_free(shim_dev_t *dev, void *p);

/* Stream-ordered copies and the poison fill (0xff bytes: NaN in fp32, fp16 and bf16). */
int shim_dev_put(shim_dev_t *dev, void *dst, const void *host_src, size_t bytes);
int shim_dev_get(shim_dev_t *dev, void *host_dst, const void *src, size_t bytes);
int shim_dev_poison(shim_dev_t *dev, void *p, size_t bytes);
int shim_dev_sync(shim_dev_t *dev);

/* A start/stop pair: CUDA events on the stream, or the host clock on the CPU. */
typedef struct shim_timer {
  void *ev[2];
  int64_t ns[2];
} shim_timer_t;
int shim_timer_init(shim_dev_t *dev, shim_timer_t *t);
void shim_timer_fini(shim_dev_t *dev, shim_timer_t *t);
int shim_timer_mark(shim_dev_t *dev, shim_timer_t *t, int which); /* 0 start, 1 stop */
/* Microseconds between the marks; on a GPU only after the stop mark has completed. */
int shim_timer_us(shim_dev_t *dev, shim_timer_t *t, double *us_p);

/* Stream capture into a CUDA graph (GPU only). */
typedef struct shim_graph {
  void *graph; /* cudaGraph_t */
  void *exec;  /* cudaGraphExec_t */
} shim_graph_t;
int shim_graph_begin(shim_dev_t *dev);
/* Ends the capture and instantiates the graph.  On failure the capture is over and nothing is
   left allocated. */
int shim_graph_end(shim_dev_t *dev, shim_graph_t *g);
/* Ends a capture after a failure inside it, discarding what was captured.  Never fails. */
void shim_graph_abort(shim_dev_t *dev);
int shim_graph_launch(shim_dev_t *dev, shim_graph_t *g);
void shim_graph_destroy(shim_graph_t *g);

#endif
