/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_comm.h - creating and destroying the NCCL communicator of a comm (nccl_comm.c). */
#ifndef MC_NCCL_COMM_H_
#define MC_NCCL_COMM_H_

#include "nccl_priv.h"

moecomm_result_t mc_nccl_comm_init(mc_comm_t *comm);
void mc_nccl_comm_fini(mc_comm_t *comm);

/* With p->mu held: waits until the work on `stream` (a setup step's exchange, named by `what`)
   is done, at most until deadline_ms, watching NCCL's asynchronous error and the members on this
   host.  On failure p is failed and *victim_p is the communicator to abort once unlocked. */
moecomm_result_t mc_nccl_stream_wait(mc_nccl_comm_t *p, cudaStream_t stream, const char *what,
                                     int64_t deadline_ms, ncclComm_t *victim_p);

#endif
