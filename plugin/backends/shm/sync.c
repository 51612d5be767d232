/* SPDX-License-Identifier: Apache-2.0 */
/* sync.c - barriers of the shm backend: monotonic steps, a short poll, then a futex sleep.
 *
 * Waiting: with a CPU per rank, poll for up to 50 us (yielding between polls after the first
 * 5 us, so a rank that shares its CPU with something else lets it run); with more ranks than
 * CPUs, no polling but a few sched_yield calls, which hand the CPU to a peer that is runnable.
 * Then sleep on the peer's step word.  bench/NOTES-cpu.md has the measurements behind this.
 *
 * No lost wake-up: the arriving rank stores its step and then reads its waiter count; a sleeper
 * increments that count and then re-reads the step (both sequentially consistent), so at least
 * one of them sees the other's write: either the sleeper sees the new step and does not sleep,
 * or the arriver sees the sleeper and wakes it.  FUTEX_WAIT itself returns at once when the step
 * already differs from the value the sleeper saw.  The futex is shared (not FUTEX_PRIVATE): the
 * word lives in a MAP_SHARED mapping used by several processes.
 *
 * Sleeps last at most 100 ms, so a waiter regularly checks the deadline, whether a peer gave up
 * (hdr->abort_any) and whether the processes it waits for still exist. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../log.h"
#include "../../util.h"
#include "sync.h"

#ifndef MC_SHM_SPIN_NS
#define MC_SHM_SPIN_NS 50000 /* polling before sleeping, when every rank has its own CPU... */
#endif
#ifndef MC_SHM_PURE_SPIN_NS
#define MC_SHM_PURE_SPIN_NS 5000 /* ...of which the first part without yielding the CPU */
#endif
#ifndef MC_SHM_YIELDS
#define MC_SHM_YIELDS 16 /* sched_yield calls before sleeping, when ranks outnumber CPUs */
#endif
#define MC_SHM_CHECK_MS 100 /* liveness and abort checks while sleeping */

static inline void mc_shm_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Steps wrap after 2^32 barriers; peers are never more than one barrier apart, so the sign of
   the difference orders them. */
static inline int mc_shm_reached(uint32_t step, uint32_t target) {
  return (int32_t)(step - target) >= 0;
}

static long mc_shm_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

void mc_shm_wait_policy(const mc_comm_t *comm, int64_t *spin_ns_p, int *yields_p) {
  cpu_set_t set;
  int cpus = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
  /* More ranks than CPUs: a polling rank would take the CPU from the rank it waits for;
     yielding hands it over, and sleeping stops wasting it. */
  if (cpus > 0 && comm->world->local_size > cpus) {
    *spin_ns_p = 0;
    *yields_p = MC_SHM_YIELDS;
  } else {
    *spin_ns_p = MC_SHM_SPIN_NS;
    *yields_p = 0;
  }
}

static int64_t mc_shm_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *mc_shm_note_of(const mc_shm_t *shm, int r) {
  return shm->notes + (size_t)r * MC_SHM_NOTE_BYTES;
}

void mc_shm_break(mc_shm_t *shm, moecomm_result_t code) {
  mc_comm_t *comm = shm->comm;
  if (shm->broken == MOECOMM_SUCCESS) {
    shm->broken = code;
    snprintf(shm->cause, sizeof shm->cause, "%s", comm->err->msg);
  }
  /* Tell the peers why (the note first, then the flag that makes them read it), then wake
     every sleeper so they see it now rather than at their next check. */
  char *note = shm->notes + (size_t)comm->rank * MC_SHM_NOTE_BYTES;
  if (!atomic_load_explicit(&shm->ctl[comm->rank].aborted, memory_order_relaxed)) {
    snprintf(note, MC_SHM_NOTE_BYTES, "%s", shm->cause);
    atomic_store_explicit(&shm->ctl[comm->rank].aborted, (uint32_t)shm->broken,
                          memory_order_release);
  }
  uint32_t none = 0;
  atomic_compare_exchange_strong_explicit(&shm->hdr->abort_any, &none, (uint32_t)comm->rank + 1u,
                                          memory_order_acq_rel, memory_order_acquire);
  for (int r = 0; r < comm->size; r++) mc_shm_futex(&shm->ctl[r].step, FUTEX_WAKE, INT_MAX, NULL);
}

static void mc_shm_arrive(mc_shm_t *shm, uint32_t target) {
  mc_shm_ctl_t *me = &shm->ctl[shm->comm->rank];
  atomic_store_explicit(&me->step, target, memory_order_seq_cst);
  if (atomic_load_explicit(&me->waiters, memory_order_seq_cst) != 0)
    mc_shm_futex(&me->step, FUTEX_WAKE, INT_MAX, NULL);
}

/* World ranks of the peers that have not reached target, as "2,3". */
static int mc_shm_missing(const mc_shm_t *shm, uint32_t target, char *buf, size_t cap) {
  const mc_comm_t *comm = shm->comm;
  int32_t miss[64];
  int n = 0, total = 0;
  for (int r = 0; r < comm->size; r++) {
    if (r == comm->rank) continue;
    if (mc_shm_reached(atomic_load_explicit(&shm->ctl[r].step, memory_order_acquire), target))
      continue;
    if (n < (int)MC_ARRAY_LEN(miss)) miss[n++] = comm->ranks[r];
    total++;
  }
  mc_format_ranks(miss, n, buf, cap);
  return total;
}

/* A peer that gave up wakes every sleeper (mc_shm_break): checked before each sleep.  One cause,
   one code: every rank reports the code of the first rank that gave up, with its reason. */
static moecomm_result_t mc_shm_check_abort(mc_shm_t *shm, const char *what) {
  mc_comm_t *comm = shm->comm;
  uint32_t ab = atomic_load_explicit(&shm->hdr->abort_any, memory_order_acquire);
  if (ab == 0 || (int)ab - 1 == comm->rank || (int)ab - 1 >= comm->size) return MOECOMM_SUCCESS;
  int r = (int)ab - 1;
  uint32_t code = atomic_load_explicit(&shm->ctl[r].aborted, memory_order_acquire);
  if (code == 0 || code > MOECOMM_ERR_INTERNAL) code = MOECOMM_ERR_PEER;
  return mc_err_set(comm->err, (moecomm_result_t)code, "shm %s on %s: rank %d gave up: %.*s", what,
                    comm->label, (int)comm->ranks[r], (int)MC_SHM_NOTE_BYTES,
                    mc_shm_note_of(shm, r));
}

/* Every MC_SHM_CHECK_MS while waiting: are the late peers' processes alive; is it too late. */
static moecomm_result_t mc_shm_check_peers(mc_shm_t *shm, uint32_t target, const char *what,
                                           int64_t now, int64_t deadline) {
  mc_comm_t *comm = shm->comm;
  for (int r = 0; r < comm->size; r++) {
    if (r == comm->rank) continue;
    if (mc_shm_reached(atomic_load_explicit(&shm->ctl[r].step, memory_order_acquire), target))
      continue;
    int w = comm->ranks[r];
    if (!mc_world_alive(comm->world, w))
      return mc_err_set(comm->err, MOECOMM_ERR_PEER, "shm %s on %s: rank %d (pid %d) exited", what,
                        comm->label, w, comm->world->pids != NULL ? (int)comm->world->pids[w] : -1);
  }
  if (deadline > 0 && now >= deadline) {
    char who[256];
    int missing = mc_shm_missing(shm, target, who, sizeof who);
    if (missing > 0)
      return mc_err_set(comm->err, MOECOMM_ERR_TIMEOUT,
                        "shm %s on %s: rank%s %s did not arrive within %d ms "
                        "(MOECOMM_TIMEOUT_MS); a rank is stuck or the ranks called collectives "
                        "in different orders",
                        what, comm->label, missing > 1 ? "s" : "", who, comm->cfg->timeout_ms);
  }
  return MOECOMM_SUCCESS;
}

/* Sleeps on peer r's step until it changes, a check is due, or the deadline. */
static moecomm_result_t mc_shm_sleep(mc_shm_t *shm, int r, uint32_t target, int64_t wake_at) {
  mc_shm_ctl_t *peer = &shm->ctl[r];
  moecomm_result_t res = MOECOMM_SUCCESS;
  atomic_fetch_add_explicit(&peer->waiters, 1u, memory_order_seq_cst);
  uint32_t seen = atomic_load_explicit(&peer->step, memory_order_seq_cst);
  if (!mc_shm_reached(seen, target)) {
    int64_t ms = wake_at - mc_now_ms();
    if (ms < 1) ms = 1;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    if (mc_shm_futex(&peer->step, FUTEX_WAIT, seen, &ts) != 0 && errno != EAGAIN &&
        errno != ETIMEDOUT && errno != EINTR)
      res = mc_err_set(shm->comm->err, MOECOMM_ERR_BACKEND, "shm: futex wait on %s failed: %s",
                       shm->comm->label, strerror(errno));
  }
  atomic_fetch_sub_explicit(&peer->waiters, 1u, memory_order_seq_cst);
  return res;
}

static moecomm_result_t mc_shm_wait(mc_shm_t *shm, uint32_t target, const char *what) {
  mc_comm_t *comm = shm->comm;
  const int n = comm->size, me = comm->rank;
  int64_t spin_until = -1, yield_after = 0; /* set at the first miss */
  int spinning = shm->spin_ns > 0, polls = 0, yields = shm->yields;
  int64_t deadline = -1, next_check = 0; /* set at the first sleep */
  for (int k = 1; k < n; k++) {
    int r = (me + k) % n;
    _Atomic uint32_t *step = &shm->ctl[r].step;
    while (!mc_shm_reached(atomic_load_explicit(step, memory_order_acquire), target)) {
      if (spinning) { /* poll; read the clock only every 64 polls */
        if ((polls++ & 63) != 0) {
          mc_shm_relax();
          continue;
        }
        int64_t t = mc_shm_now_ns();
        if (spin_until < 0) {
          spin_until = t + shm->spin_ns;
          yield_after = t + MC_SHM_PURE_SPIN_NS;
        }
        if (t >= spin_until) {
          spinning = 0;
        } else {
          if (t >= yield_after) sched_yield(); /* let whatever shares this CPU (a peer?) run */
          continue;
        }
      }
      if (yields > 0) {
        yields--;
        sched_yield();
        continue;
      }
      int64_t now = mc_now_ms();
      if (deadline < 0) {
        deadline = comm->cfg->timeout_ms > 0 ? now + comm->cfg->timeout_ms : 0;
        next_check = now + MC_SHM_CHECK_MS;
      }
      moecomm_result_t res = mc_shm_check_abort(shm, what);
      if (res == MOECOMM_SUCCESS && (now >= next_check || (deadline > 0 && now >= deadline))) {
        res = mc_shm_check_peers(shm, target, what, now, deadline);
        next_check = now + MC_SHM_CHECK_MS;
      }
      if (res != MOECOMM_SUCCESS) return res;
      int64_t wake_at = next_check;
      if (deadline > 0 && deadline < wake_at) wake_at = deadline;
      res = mc_shm_sleep(shm, r, target, wake_at);
      if (res != MOECOMM_SUCCESS) return res;
    }
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_barrier(mc_shm_t *shm, const char *what) {
  uint32_t target = ++shm->step;
  mc_shm_arrive(shm, target);
  moecomm_result_t res = mc_shm_wait(shm, target, what);
  if (res != MOECOMM_SUCCESS) mc_shm_break(shm, res);
  return res;
}
