/* SPDX-License-Identifier: Apache-2.0 */
/* ep_dev.h - the device side of expert parallelism that both GPU paths share (ep_dev.c): the NCCL
 * path (backends/nccl/nccl_moe.c) and the NVLink kernels (backends/custom/moe.c).
 *
 * Per member: one segment of layout.seg_bytes, zeroed at creation (the kernels' initial state,
 * kernels/mc_ep.h), the host-mapped error record the kernels write, a private stream for set-up
 * copies, and the launch arguments that never change.  At the start of each call the host reads
 * the record, without synchronising (it is host-mapped; what completed kernels wrote is there):
 * a fatal error (a peer that did not arrive within MOECOMM_TIMEOUT_MS, calls out of order, a
 * stale NCCL block) or a failed launch makes the member's expert parallelism unusable, and every
 * later call reports it without launching anything; a data error (an expert over capacity, an
 * invalid expert id) is reported by the combine that finds it, after it did its work (backend.h).
 * Graph replays run no host code: their errors are found by the next eager call. */
#ifndef MC_EP_DEV_H_
#define MC_EP_DEV_H_

#include <cuda_runtime_api.h>

#include "../../kernels/mc_ep.h"
#include "../backend.h"

typedef struct mc_ep_dev {
  mc_comm_t *comm;
  mc_ep_args_t proto;    /* layout, rank, seg, err (device address), timeout; peer[] (NVLink) */
  mc_ep_err_t *err_host; /* the record, host address */
  cudaStream_t stream;   /* private, non-blocking: set-up copies only */
  moecomm_result_t dead; /* sticky: a fatal record or a failed launch */
  char dead_msg[640];
} mc_ep_dev_t;

/* Local: allocates and zeroes the segment and the record for layout (path included), checks the
   kernels run on this device.  On failure the reason is in why and d holds what was made (close
   it). */
moecomm_result_t mc_ep_dev_open(mc_comm_t *comm, const mc_ep_layout_t *layout, mc_ep_dev_t *d,
                                mc_err_t *why);
/* Frees whatever d holds (any subset; d zeroed once). */
void mc_ep_dev_close(mc_ep_dev_t *d);

/* The device and host bytes d holds. */
void mc_ep_dev_bytes(const mc_ep_dev_t *d, uint64_t *device_p, uint64_t *host_p);

/* Start of a call: the record (a fatal error: its code and message, nothing to launch; a combine
   takes a data error into *report_p with its message in report), the buffers' alignment, and the
   call's launch arguments in *a_p. */
moecomm_result_t mc_ep_dev_begin(mc_ep_dev_t *d, const mc_moe_call_t *call, int combine,
                                 mc_ep_args_t *a_p, moecomm_result_t *report_p, mc_err_t *report);

/* After a launch that returned e (a cudaError_t): a failure leaves the members out of step, so it
   makes d unusable. */
moecomm_result_t mc_ep_dev_launched(mc_ep_dev_t *d, int e, const char *kernel);

/* Marks d unusable with comm->err's message (an exchange failed between the kernels). */
moecomm_result_t mc_ep_dev_fail(mc_ep_dev_t *d, moecomm_result_t code);

/* End of a call whose work is enqueued: a data error taken by mc_ep_dev_begin is returned now,
   with *call->ran_p set. */
moecomm_result_t mc_ep_dev_end(mc_ep_dev_t *d, const mc_moe_call_t *call, moecomm_result_t report,
                               const mc_err_t *msg);

#endif
