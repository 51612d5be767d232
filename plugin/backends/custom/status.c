/* status.c - the sticky failure of a custom communicator (status.h).
 *
 * A kernel that gave up (a peer did not answer within MOECOMM_TIMEOUT_MS) or ran unregistered
 * records its error in host-mapped memory; a failed launch leaves the members' call counters out
 * of step.  Either way nothing can work on the communicator again: the first such failure sticks
 * and every later call reports it. */
#include "status.h"

#include <stdio.h>

moecomm_result_t mc_custom_check_dead(mc_custom_comm_t *p) {
  const volatile mc_kern_err_t *e = p->err_host;
  mc_comm_t *comm = p->comm;
  if (p->dead == MOECOMM_SUCCESS && e->code != 0) {
    const int peer = e->peer;
    const unsigned long long call = (unsigned long long)e->epoch;
    const char *algo = mc_kern_algo_name((int)e->algo);
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

