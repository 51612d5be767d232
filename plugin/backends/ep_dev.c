/* SPDX-License-Identifier: Apache-2.0 */
/* ep_dev.c - the device side of expert parallelism shared by the GPU paths (ep_dev.h). */
#include "ep_dev.h"

#include <stdio.h>
#include <string.h>

#include "../gpu.h"
#include "../log.h"
#include "../util.h"

moecomm_result_t mc_ep_dev_open(mc_comm_t *comm, const mc_ep_layout_t *layout, mc_ep_dev_t *d,
                                mc_err_t *why) {
  cudaError_t e;
  memset(d, 0, sizeof(*d));
  d->comm = comm;
  e = (cudaError_t)mc_ep_check_device();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return mc_err_set(why, MOECOMM_ERR_UNAVAILABLE,
                      "the expert-parallel kernels cannot run on device %d (%s); they are built "
                      "for sm_90 and newer",
                      comm->device, cudaGetErrorString(e));
  }
  MC_CUDA_TRY(why, cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
  /* cudaMalloc, not a stream-ordered pool: the NVLink path shares it with legacy CUDA IPC */
  MC_CUDA_TRY(why, cudaMalloc((void **)&d->proto.seg, (size_t)layout->seg_bytes));
  MC_CUDA_TRY(why, cudaMemsetAsync(d->proto.seg, 0, (size_t)layout->seg_bytes, d->stream));
  MC_CUDA_TRY(why, cudaStreamSynchronize(d->stream));
  MC_CUDA_TRY(why, cudaHostAlloc((void **)&d->err_host, sizeof(mc_ep_err_t), cudaHostAllocMapped));
  memset(d->err_host, 0, sizeof(mc_ep_err_t));
  MC_CUDA_TRY(why, cudaHostGetDevicePointer((void **)&d->proto.err, d->err_host, 0));
  d->proto.layout = *layout;
  d->proto.rank = comm->rank; /* peer[] stays NULL: the NVLink path maps it (custom/moe.c) */
  d->proto.timeout_ns = (uint64_t)comm->cfg->timeout_ms * 1000000ull;
  return MOECOMM_SUCCESS;
}

void mc_ep_dev_close(mc_ep_dev_t *d) {
  cudaError_t e;
  const char *label = d->comm != NULL ? d->comm->label : "?";
  if (d->stream != NULL && (e = cudaStreamSynchronize(d->stream)) != cudaSuccess)
    MC_WARN("expert parallelism on %s: cudaStreamSynchronize: %s", label, cudaGetErrorString(e));
  if (d->proto.seg != NULL && (e = cudaFree(d->proto.seg)) != cudaSuccess)
    MC_WARN("expert parallelism on %s: cudaFree(segment): %s", label, cudaGetErrorString(e));
  if (d->err_host != NULL && (e = cudaFreeHost(d->err_host)) != cudaSuccess)
    MC_WARN("expert parallelism on %s: cudaFreeHost: %s", label, cudaGetErrorString(e));
  if (d->stream != NULL && (e = cudaStreamDestroy(d->stream)) != cudaSuccess)
    MC_WARN("expert parallelism on %s: cudaStreamDestroy: %s", label, cudaGetErrorString(e));
  (void)cudaGetLastError();
  memset(d, 0, sizeof(*d));
}

void mc_ep_dev_bytes(const mc_ep_dev_t *d, uint64_t *device_p, uint64_t *host_p) {
  *device_p = (uint64_t)d->proto.layout.seg_bytes;
  *host_p = sizeof(mc_ep_err_t);
}

/* A fatal record: the sticky error of d. */
static void mc_ep_dev_fatal(mc_ep_dev_t *d, const volatile mc_ep_err_t *e) {
  const mc_comm_t *comm = d->comm;
  const int peer = e->peer >= 0 && e->peer < comm->size ? (int)comm->ranks[e->peer] : -1;
  const unsigned long long pair = (unsigned long long)e->epoch;
  const char *op = e->op == MC_EP_OP_COMBINE ? "combine" : "dispatch";
  if (e->code == MC_EP_ERR_TIMEOUT) {
    d->dead = MOECOMM_ERR_TIMEOUT;
    snprintf(d->dead_msg, sizeof(d->dead_msg),
             "the expert-parallel %s kernel on %s gave up after MOECOMM_TIMEOUT_MS=%d ms: rank %d "
             "did not arrive (call pair %llu); dispatch and combine are unusable on this group",
             op, comm->label, comm->cfg->timeout_ms, peer, pair);
  } else if (e->code == MC_EP_ERR_TAG) {
    d->dead = MOECOMM_ERR_PEER;
    snprintf(d->dead_msg, sizeof(d->dead_msg),
             "the expert-parallel %s on %s received a block from rank %d that was not call pair "
             "%llu's: the members are out of step; dispatch and combine are unusable on this group",
             op, comm->label, peer, pair);
  } else {
    d->dead = MOECOMM_ERR_INTERNAL;
    snprintf(d->dead_msg, sizeof(d->dead_msg),
             "the expert-parallel %s kernel on %s found the calls out of order (error %u, call "
             "pair %llu); dispatch and combine are unusable on this group",
             op, comm->label, (unsigned)e->code, pair);
  }
}

/* A data error recorded by completed kernels: taken (and cleared) for this combine to report. */
static moecomm_result_t mc_ep_dev_data(mc_ep_dev_t *d, mc_err_t *report) {
  volatile mc_ep_err_t *e = d->err_host;
  const uint32_t code = e->data_code;
  const mc_ep_layout_t *L = &d->proto.layout;
  moecomm_result_t r;
  if (code == 0) return MOECOMM_SUCCESS;
  __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the device wrote the fields before the code */
  if (code == MC_EP_ERR_OVERFLOW)
    r = mc_ep_report_overflow(report, L, e->data_epoch, e->data_expert, e->data_rows);
  else
    r = mc_ep_report_bad_id(report, L, e->data_epoch, e->data_expert, e->data_token, e->data_rows);
  e->data_code = 0;
  return r;
}

static int mc_ep_dev_aligned(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

moecomm_result_t mc_ep_dev_begin(mc_ep_dev_t *d, const mc_moe_call_t *call, int combine,
                                 mc_ep_args_t *a_p, moecomm_result_t *report_p, mc_err_t *report) {
  mc_comm_t *comm = d->comm;
  const volatile mc_ep_err_t *e = d->err_host;
  mc_ep_args_t a = d->proto;
  if (d->dead == MOECOMM_SUCCESS && e->code != 0) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    mc_ep_dev_fatal(d, e);
  }
  if (d->dead != MOECOMM_SUCCESS) return mc_err_set(comm->err, d->dead, "%s", d->dead_msg);
  if (combine ? !mc_ep_dev_aligned(call->expert_out) || !mc_ep_dev_aligned(call->out)
              : !mc_ep_dev_aligned(call->x) || !mc_ep_dev_aligned(call->recv_x))
    return mc_err_set(comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "%s on %s: %s must be 16-byte aligned device buffers (got %p and %p); "
                      "nothing was launched here, the other ranks will time out",
                      combine ? "moe_combine" : "moe_dispatch", comm->label,
                      combine ? "expert_out and out" : "x and recv_x",
                      combine ? call->expert_out : call->x,
                      combine ? (const void *)call->out : (const void *)call->recv_x);
  *report_p = combine ? mc_ep_dev_data(d, report) : MOECOMM_SUCCESS;
  a.tokens = call->tokens;
  a.topk_ids = call->topk_ids;
  a.x = call->x;
  a.x_scales = call->x_scales;
  a.recv_x = call->recv_x;
  a.recv_scales = call->recv_scales;
  a.recv_counts = call->recv_counts;
  a.recv_src = call->recv_src;
  a.y = call->expert_out;
  a.topk_weights = call->topk_weights;
  a.out = call->out;
  *a_p = a;
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_ep_dev_launched(mc_ep_dev_t *d, int e, const char *kernel) {
  if (e == 0) return MOECOMM_SUCCESS;
  (void)cudaGetLastError();
  mc_err_set(d->comm->err, MOECOMM_ERR_BACKEND,
             "launching the expert-parallel %s kernel on %s failed: %s; the members are out of "
             "step and dispatch and combine are unusable on this group",
             kernel, d->comm->label, cudaGetErrorString((cudaError_t)e));
  return mc_ep_dev_fail(d, MOECOMM_ERR_BACKEND);
}

moecomm_result_t mc_ep_dev_fail(mc_ep_dev_t *d, moecomm_result_t code) {
  d->dead = code;
  snprintf(d->dead_msg, sizeof(d->dead_msg), "%s", d->comm->err->msg);
  return code;
}

moecomm_result_t mc_ep_dev_end(mc_ep_dev_t *d, const mc_moe_call_t *call, moecomm_result_t report,
                               const mc_err_t *msg) {
  if (report == MOECOMM_SUCCESS) return MOECOMM_SUCCESS;
  *call->ran_p = 1;
  return mc_err_set(d->comm->err, report, "%s", msg->msg);
}
