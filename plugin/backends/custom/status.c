/* SPDX-License-Identifier: Apache-2.0 */
/* status.c - the sticky failure of a custom communicator (status.h).
 *
 * A kernel that gave up (a peer did not answer within MOECOMM_TIMEOUT_MS) or ran unregistered
 * records its error in host-mapped memory; a failed launch leaves the members' call counters out
 * of step.  Either way nothing can work on the communicator again: the first such failure sticks
 * and every later call reports it. */
#include "status.h"

#include <stdio.h>

#include "../../../kernels/mc_rmsnorm.h"

moecomm_result_t mc_custom_check_dead(mc_custom_comm_t *p) {
  const volatile mc_kern_err_t *e = p->err_host;
  mc_comm_t *comm = p->comm;
  if (p->dead == MOECOMM_SUCCESS && e->code != 0) {
    const int peer = e->peer;
    const unsigned long long call = (unsigned long long)e->epoch;
    const int fused = (e->algo & MC_KERN_FUSED) != 0;
    char algo[64];
    snprintf(algo, sizeof(algo), "%s%s", fused ? "fused all-reduce + RMSNorm, " : "",
             mc_kern_algo_name((int)e->algo));
    if (e->code == MC_KERN_ERR_TIMEOUT) {
      p->dead = MOECOMM_ERR_TIMEOUT;
      snprintf(p->dead_msg, sizeof(p->dead_msg),
               "the custom all-reduce kernel on %s gave up after MOECOMM_TIMEOUT_MS=%d ms: rank "
               "%d did not answer (call %llu on this communicator, %s); the communicator is "
               "unusable",
               comm->label, comm->cfg->timeout_ms,
               peer >= 0 && peer < comm->size ? (int)comm->ranks[peer] : -1, call, algo);
    } else {
      p->dead = MOECOMM_ERR_CAPTURE;
      snprintf(p->dead_msg, sizeof(p->dead_msg),
               "a captured custom all-reduce on %s was replayed before capture_end registered "
               "its buffers (capture_end failed or was not called; call %llu, %s); it did "
               "nothing and the communicator is unusable",
               comm->label, call, algo);
    }
  }
  if (p->dead == MOECOMM_SUCCESS) return MOECOMM_SUCCESS;
  return mc_err_set(comm->err, p->dead, "%s", p->dead_msg);
}

moecomm_result_t mc_custom_launch_failed(mc_custom_comm_t *p, const char *what, int algo,
                                         size_t bytes, int cuda_err) {
  p->dead = MOECOMM_ERR_BACKEND;
  snprintf(p->dead_msg, sizeof(p->dead_msg),
           "launching the %s kernel (%s, %zu bytes) on %s failed: %s; the communicator is "
           "unusable",
           what, mc_kern_algo_name(algo), bytes, p->comm->label,
           cudaGetErrorString((cudaError_t)cuda_err));
  return mc_err_set(p->comm->err, p->dead, "%s", p->dead_msg);
}
