/* SPDX-License-Identifier: Apache-2.0 */
/* lazy.h - a communicator's backend state is created by the first call that needs it. */
#ifndef MC_LAZY_H_
#define MC_LAZY_H_

#include "backend.h"

/* Makes sure backend `id` has its state on comm: the first time, runs its comm_init (collective
   over the comm's members) with the device current and the thread in relaxed capture mode.
   `capturing`: the caller's stream is being captured.  MC_DEFER: the backend declined the comm
   (now and for good).  A backend that failed to create stays failed: later calls fail fast. */
moecomm_result_t mc_lazy_ensure(mc_comm_t *comm, moecomm_backend_t id, int capturing);

/* The same for a backend's expert-parallel state (moe_init), sized from layout.  shm and NCCL run
   their EP over their communicator, which is created first; custom's NVLink EP has its own
   segment (a comm that only dispatches does not pay for the all-reduce buffers).  MC_DEFER: the
   backend cannot serve EP on this comm (decided alike on every member). */
moecomm_result_t mc_lazy_ensure_moe(mc_comm_t *comm, moecomm_backend_t id,
                                    const mc_ep_layout_t *layout, int capturing);

#endif
