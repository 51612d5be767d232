/* SPDX-License-Identifier: Apache-2.0 */
/* launch.c - forks the rank processes and gives them a process-shared host all-gather (launch.h).
 *
 * The hub is one MAP_SHARED|MAP_ANONYMOUS mapping made before fork, so every child sees it at the
 * same address: a robust process-shared mutex and condition variable (monotonic clock), a
 * generation counter so the all-gather can be called any number of times, two data areas used
 * alternately by generation, and one phase slot per rank.  Double buffering is enough: a rank can
 * only start generation g+2 once every rank has arrived at g+1, and each rank copies g's result
 * out before that. */
#include "launch.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "report.h"

#define SHIM_HUB_MAX_BYTES ((size_t)1 << 20) /* per rank per all-gather (launch.h) */
#define SHIM_HUB_MAX_WORLD 1024
#define SHIM_POLL_MS 100 /* how often a waiter looks for dead siblings */
#define SHIM_DEFAULT_TIMEOUT_MS 60000
#define SHIM_PHASE_BYTES 96 /* a rank's phase text, NUL included */

/* A rank's phase: written only by that rank, read by the launcher.  seq is odd while the text is
   being written (a sequence lock: the reader copies, then retries if seq moved). */
typedef struct shim_phase_slot {
  uint32_t seq;
  char text[SHIM_PHASE_BYTES];
} shim_phase_slot_t;

typedef struct shim_hub shim_hub_t;

/* What shim_launch_hub() hands a rank: the hub plus who is calling. */
typedef struct shim_port {
  shim_hub_t *hub;
  int rank;
} shim_port_t;

struct shim_hub {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int world;
  uint64_t gen;              /* all-gathers completed */
  int arrived;               /* ranks inside the current one */
  size_t bytes;              /* its size, set by the first arrival */
  int broken;                /* a rank failed, died or timed out: every later call fails too */
  char why[320];             /* the first reason it broke */
  shim_port_t *ports;        /* world entries (inside this mapping) */
  pid_t *pids;               /* written by the parent after each fork; 0 until then */
  int *exited;               /* set by the parent when it reaps a rank */
  shim_phase_slot_t *phases; /* world entries */
  unsigned char *data[2];
  size_t map_bytes;
};

static shim_port_t *g_port; /* in a child: this rank's port */

static size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int timeout_ms_from_env(void) {
  static int warned;
  const char *v = getenv("MOECOMM_TIMEOUT_MS");
  char *end = NULL;
  long ms;
  if (v == NULL || v[0] == '\0') return SHIM_DEFAULT_TIMEOUT_MS;
  errno = 0;
  ms = strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || ms <= 0 || ms > INT_MAX) {
    if (!warned)
      fprintf(stderr, "shim: MOECOMM_TIMEOUT_MS='%s' is not a positive integer; using %d\n", v,
              SHIM_DEFAULT_TIMEOUT_MS);
    warned = 1;
    return SHIM_DEFAULT_TIMEOUT_MS;
  }
  return (int)ms;
}

/* With the lock held: every later all-gather fails with the first reason given. */
static void hub_break(shim_hub_t *hub, const char *why) {
  if (!hub->broken) {
    hub->broken = 1;
    snprintf(hub->why, sizeof(hub->why), "%s", why);
  }
  pthread_cond_broadcast(&hub->cv);
}

/* The lock came back EOWNERDEAD: a rank killed while holding it leaves the hub broken, not
   deadlocked. */
static void hub_owner_died(shim_hub_t *hub) {
  pthread_mutex_consistent(&hub->mu);
  hub_break(hub, "a rank died inside the host all-gather");
}

/* Robust lock (hub_owner_died). */
static int hub_lock(shim_hub_t *hub) {
  int rc = pthread_mutex_lock(&hub->mu);
  if (rc == EOWNERDEAD) {
    hub_owner_died(hub);
    return 0;
  }
  return rc;
}

/* hub_break for a caller that does not hold the lock. */
static void hub_lock_break(shim_hub_t *hub, const char *why) {
  if (hub_lock(hub) == 0) {
    hub_break(hub, why);
    pthread_mutex_unlock(&hub->mu);
  }
}

/* First sibling that is known dead, or -1.  Called with the lock held. */
static int hub_dead_sibling(shim_hub_t *hub, int self) {
  for (int r = 0; r < hub->world; r++) {
    pid_t pid;
    if (r == self) continue;
    if (__atomic_load_n(&hub->exited[r], __ATOMIC_ACQUIRE)) return r;
    pid = __atomic_load_n(&hub->pids[r], __ATOMIC_ACQUIRE);
    if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) return r;
  }
  return -1;
}

int shim_host_allgather(void *user, const void *send, void *recv, size_t bytes) {
  shim_port_t *port = user;
  shim_hub_t *hub;
  int rank, rc = 1;
  uint64_t my_gen;
  int64_t deadline;
  char why[320];

  if (port == NULL || port->hub == NULL || (bytes > 0 && (send == NULL || recv == NULL))) {
    fprintf(stderr,
            "shim: host all-gather called outside a rank of shim_launch or with NULL "
            "buffers\n");
    return 1;
  }
  hub = port->hub;
  rank = port->rank;
  if (bytes > SHIM_HUB_MAX_BYTES) {
    fprintf(stderr, "shim: rank %d: host all-gather of %zu bytes exceeds the %zu-byte limit\n",
            rank, bytes, SHIM_HUB_MAX_BYTES);
    /* Peers would wait for this rank forever: break the hub for them too. */
    snprintf(why, sizeof(why), "rank %d asked for %zu bytes (limit %zu)", rank, bytes,
             SHIM_HUB_MAX_BYTES);
    hub_lock_break(hub, why);
    return 1;
  }
  deadline = now_ms() + timeout_ms_from_env();

  if (hub_lock(hub) != 0) {
    fprintf(stderr, "shim: rank %d: cannot lock the host all-gather hub\n", rank);
    return 1;
  }
  if (hub->broken) goto out;
  if (hub->arrived == 0) {
    hub->bytes = bytes;
  } else if (hub->bytes != bytes) {
    snprintf(why, sizeof(why), "rank %d called the host all-gather with %zu bytes, others with %zu",
             rank, bytes, hub->bytes);
    hub_break(hub, why);
    goto out;
  }
  my_gen = hub->gen;
  if (bytes > 0) memcpy(hub->data[my_gen & 1] + (size_t)rank * bytes, send, bytes);
  if (++hub->arrived == hub->world) {
    hub->arrived = 0;
    hub->gen++;
    pthread_cond_broadcast(&hub->cv);
  }
  while (hub->gen == my_gen && !hub->broken) {
    int64_t now = now_ms();
    int64_t until = now + SHIM_POLL_MS < deadline ? now + SHIM_POLL_MS : deadline;
    struct timespec ts;
    int dead;
    if (now >= deadline) {
      snprintf(why, sizeof(why),
               "rank %d waited %d ms (MOECOMM_TIMEOUT_MS) for the other ranks of the host "
               "all-gather; %d of %d had arrived",
               rank, timeout_ms_from_env(), hub->arrived, hub->world);
      hub_break(hub, why);
      break;
    }
    dead = hub_dead_sibling(hub, rank);
    if (dead >= 0) {
      snprintf(why, sizeof(why), "rank %d exited before joining the host all-gather", dead);
      hub_break(hub, why);
      break;
    }
    ts.tv_sec = until / 1000;
    ts.tv_nsec = (long)(until % 1000) * 1000000L;
    if (pthread_cond_timedwait(&hub->cv, &hub->mu, &ts) == EOWNERDEAD) hub_owner_died(hub);
  }
  if (hub->gen != my_gen) rc = 0; /* completed, even if the hub broke just after */

out:
  if (rc != 0) snprintf(why, sizeof(why), "%s", hub->why);
  pthread_mutex_unlock(&hub->mu);
  if (rc != 0) {
    fprintf(stderr, "shim: rank %d: host all-gather failed: %s\n", rank, why);
    return rc;
  }
  /* Nobody writes this generation's area again until this rank has arrived at the next one. */
  if (bytes > 0) memcpy(recv, hub->data[my_gen & 1], (size_t)hub->world * bytes);
  return 0;
}

void *shim_launch_hub(void) {
  return g_port;
}

static shim_hub_t *hub_create(int world) {
  size_t off_ports = align_up(sizeof(shim_hub_t), 64);
  size_t off_pids = align_up(off_ports + (size_t)world * sizeof(shim_port_t), 64);
  size_t off_exited = align_up(off_pids + (size_t)world * sizeof(pid_t), 64);
  size_t off_phases = align_up(off_exited + (size_t)world * sizeof(int), 64);
  size_t off_data = align_up(off_phases + (size_t)world * sizeof(shim_phase_slot_t), 4096);
  size_t area = (size_t)world * SHIM_HUB_MAX_BYTES;
  size_t total = off_data + 2 * area;
  pthread_mutexattr_t ma;
  pthread_condattr_t ca;
  unsigned char *base;
  shim_hub_t *hub;
  int rc;

  /* NORESERVE: only the pages an all-gather touches are ever backed. */
  base =
      mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    fprintf(stderr, "shim_launch: mmap of %zu bytes for %d ranks failed: %s\n", total, world,
            strerror(errno));
    return NULL;
  }
  hub = (shim_hub_t *)base;
  memset(hub, 0, sizeof(*hub));
  hub->world = world;
  hub->map_bytes = total;
  hub->ports = (shim_port_t *)(base + off_ports);
  hub->pids = (pid_t *)(base + off_pids);
  hub->exited = (int *)(base + off_exited);
  hub->phases = (shim_phase_slot_t *)(base + off_phases);
  hub->data[0] = base + off_data;
  hub->data[1] = base + off_data + area;
  for (int r = 0; r < world; r++) {
    hub->ports[r].hub = hub;
    hub->ports[r].rank = r;
  }

  if ((rc = pthread_mutexattr_init(&ma)) != 0) goto fail;
  if ((rc = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED)) != 0 ||
      (rc = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) != 0 ||
      (rc = pthread_mutex_init(&hub->mu, &ma)) != 0) {
    pthread_mutexattr_destroy(&ma);
    goto fail;
  }
  pthread_mutexattr_destroy(&ma);
  if ((rc = pthread_condattr_init(&ca)) != 0) goto fail_mu;
  if ((rc = pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED)) != 0 ||
      (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
      (rc = pthread_cond_init(&hub->cv, &ca)) != 0) {
    pthread_condattr_destroy(&ca);
    goto fail_mu;
  }
  pthread_condattr_destroy(&ca);
  return hub;

fail_mu:
  pthread_mutex_destroy(&hub->mu);
fail:
  fprintf(stderr, "shim_launch: cannot set up the process-shared mutex/condition: %s\n",
          strerror(rc));
  munmap(base, total);
  return NULL;
}

static void hub_destroy(shim_hub_t *hub) {
  pthread_cond_destroy(&hub->cv);
  pthread_mutex_destroy(&hub->mu);
  munmap(hub, hub->map_bytes);
}

/* Parent: record that rank r is gone and wake its siblings' waits at once. */
static void hub_mark_exited(shim_hub_t *hub, int r) {
  __atomic_store_n(&hub->exited[r], 1, __ATOMIC_RELEASE);
  if (hub_lock(hub) == 0) {
    pthread_cond_broadcast(&hub->cv);
    pthread_mutex_unlock(&hub->mu);
  }
}

static void report_status(int rank, int world, int status) {
  if (WIFEXITED(status))
    fprintf(stderr, "shim_launch: rank %d of %d exited with status %d\n", rank, world,
            WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    fprintf(stderr, "shim_launch: rank %d of %d was killed by signal %d (%s)\n", rank, world,
            WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    fprintf(stderr, "shim_launch: rank %d of %d ended with wait status 0x%x\n", rank, world,
            status);
}

/* Child side: never returns. */
static void run_child(shim_hub_t *hub, int rank, int world, shim_rank_fn_t fn, void *arg,
                      pid_t parent, const sigset_t *old_mask, const struct sigaction *old_chld) {
  int st;
  sigaction(SIGCHLD, old_chld, NULL);
  sigprocmask(SIG_SETMASK, old_mask, NULL);
  /* A rank must not outlive a launcher that was killed. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(125);
  g_port = &hub->ports[rank];
  st = fn(rank, world, arg);
  fflush(NULL); /* _exit does not flush stdio */
  _exit(st == 0 ? 0 : ((st & 0xff) != 0 ? (st & 0xff) : 1));
}

void shim_launch_phase(const char *fmt, ...) {
  shim_phase_slot_t *slot;
  char text[SHIM_PHASE_BYTES];
  uint32_t seq;
  va_list ap;
  if (g_port == NULL) return;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  slot = &g_port->hub->phases[g_port->rank];
  seq = __atomic_load_n(&slot->seq, __ATOMIC_RELAXED);
  __atomic_store_n(&slot->seq, seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  for (size_t i = 0; i < sizeof(text); i++)
    __atomic_store_n(&slot->text[i], text[i], __ATOMIC_RELAXED);
  __atomic_store_n(&slot->seq, seq + 2, __ATOMIC_RELEASE);
}

/* Parent: rank r's last phase into out (SHIM_PHASE_BYTES); "" when it never set one. */
static void phase_read(shim_hub_t *hub, int r, char *out) {
  shim_phase_slot_t *slot = &hub->phases[r];
  for (int tries = 0; tries < 1000; tries++) {
    uint32_t before = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < SHIM_PHASE_BYTES; i++)
      out[i] = __atomic_load_n(&slot->text[i], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if ((before & 1u) == 0 && __atomic_load_n(&slot->seq, __ATOMIC_RELAXED) == before) break;
  }
  out[SHIM_PHASE_BYTES - 1] = '\0';
}

/* Parent, at the timeout: one line per distinct phase of the ranks still running (ranks in
   order, e.g. "  ranks 1-3: capturing size 64 (5/24)"), then the configured hint. */
static void report_timeout(shim_hub_t *hub, const int *done, int started, int world,
                           const shim_launch_cfg_t *cfg) {
  char(*text)[SHIM_PHASE_BYTES] = calloc((size_t)started, sizeof(*text));
  int32_t *same = calloc((size_t)started, sizeof(*same));
  int running = 0;
  for (int r = 0; r < started; r++) running += !done[r];
  fprintf(stderr, "shim_launch: %d of %d rank%s still running after %d s; killed every rank%s\n",
          running, world, world == 1 ? "" : "s", cfg->timeout_s,
          text != NULL && same != NULL ? ". They were:" : "");
  for (int r = 0; text != NULL && same != NULL && r < started; r++)
    if (!done[r]) phase_read(hub, r, text[r]);
  for (int r = 0; text != NULL && same != NULL && r < started; r++) {
    char list[256];
    int n = 0, seen = 0;
    if (done[r]) continue;
    for (int q = 0; q < r && !seen; q++) seen = !done[q] && strcmp(text[q], text[r]) == 0;
    if (seen) continue; /* printed with the first rank of its phase */
    for (int q = r; q < started; q++)
      if (!done[q] && strcmp(text[q], text[r]) == 0) same[n++] = q;
    shim_format_ranks(same, n, list, sizeof(list));
    if (list[strlen(list) - 1] == ']') list[strlen(list) - 1] = '\0'; /* "ranks 1-3" */
    fprintf(stderr, "  rank%s %s: %s\n", n == 1 ? "" : "s", list + 1,
            text[r][0] ? text[r] : "(no phase reported)");
  }
  if (cfg->on_timeout != NULL) fprintf(stderr, "%s\n", cfg->on_timeout);
  free(text);
  free(same);
}

/* Forks the ranks (SIGCHLD already blocked); returns how many started.  A failed fork kills the
   ranks started so far; those never started are added to *failed_p. */
static int fork_ranks(shim_hub_t *hub, pid_t *pids, int world, shim_rank_fn_t fn, void *arg,
                      const sigset_t *old_mask, const struct sigaction *old_chld, int *failed_p) {
  pid_t parent = getpid();
  int started = 0;
  fflush(NULL); /* or each child prints the parent's buffered output again */
  for (int r = 0; r < world; r++) {
    pid_t pid = fork();
    if (pid == 0) run_child(hub, r, world, fn, arg, parent, old_mask, old_chld);
    if (pid < 0) {
      fprintf(stderr, "shim_launch: fork of rank %d of %d failed: %s; stopping the others\n", r,
              world, strerror(errno));
      hub_lock_break(hub, "the launcher could not start every rank");
      for (int k = 0; k < started; k++) kill(pids[k], SIGKILL);
      *failed_p = world - started;
      break;
    }
    pids[r] = pid;
    __atomic_store_n(&hub->pids[r], pid, __ATOMIC_RELEASE);
    started++;
  }
  return started;
}

/* Reaps every started rank into status[] (done[r] = 1); once cfg->timeout_s has passed, kills
   those still running (killed[r] = 1).  Returns 1 when the timeout struck. */
static int wait_ranks(shim_hub_t *hub, const pid_t *pids, int *status, int *done, int *killed,
                      int started, int world, const shim_launch_cfg_t *cfg, const sigset_t *chld) {
  int remaining = started, timed_out = 0;
  int64_t deadline = cfg->timeout_s > 0 ? now_ms() + (int64_t)cfg->timeout_s * 1000 : INT64_MAX;
  while (remaining > 0) {
    int reaped = 0;
    for (int r = 0; r < started; r++) {
      pid_t got;
      if (done[r]) continue;
      got = waitpid(pids[r], &status[r], WNOHANG);
      if (got == pids[r] || (got < 0 && errno == ECHILD)) {
        if (got < 0) status[r] = 0x7f00; /* reaped by someone else: unknown, report as failed */
        done[r] = 1;
        remaining--;
        reaped++;
        hub_mark_exited(hub, r);
      }
    }
    if (remaining == 0) break;
    if (reaped) continue;
    if (!timed_out && now_ms() >= deadline) {
      timed_out = 1;
      report_timeout(hub, done, started, world, cfg); /* before the kill: phases still fresh */
      for (int r = 0; r < started; r++)
        if (!done[r]) {
          kill(pids[r], SIGKILL);
          killed[r] = 1; /* the timeout message named it already */
        }
      continue;
    }
    {
      int64_t left = deadline - now_ms();
      int64_t wait_ms = timed_out ? SHIM_POLL_MS : (left < SHIM_POLL_MS ? left : SHIM_POLL_MS);
      struct timespec ts;
      if (wait_ms < 1) wait_ms = 1;
      /* The cap keeps us responsive even if a SIGCHLD went to another thread. */
      ts.tv_sec = wait_ms / 1000;
      ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
      sigtimedwait(chld, NULL, &ts);
    }
  }
  return timed_out;
}

int shim_launch_ex(int world, shim_rank_fn_t fn, void *arg, const shim_launch_cfg_t *cfg,
                   int *timed_out_p) {
  shim_hub_t *hub;
  pid_t *pids;
  int *status, *done, *killed;
  int started, failed = 0, timed_out = 0;
  sigset_t chld, old_mask;
  struct sigaction dfl, old_chld;

  if (timed_out_p != NULL) *timed_out_p = 0;
  if (world < 1 || world > SHIM_HUB_MAX_WORLD || fn == NULL || cfg == NULL) {
    fprintf(stderr, "shim_launch: world %d must be in [1, %d], fn and cfg non-NULL\n", world,
            SHIM_HUB_MAX_WORLD);
    return world < 1 ? 1 : world;
  }
  for (int r = 0; r < world && cfg->wait_status != NULL; r++) cfg->wait_status[r] = -1;
  pids = calloc((size_t)world, sizeof(*pids));
  status = calloc((size_t)world, sizeof(*status));
  done = calloc((size_t)world, sizeof(*done));
  killed = calloc((size_t)world, sizeof(*killed));
  if (pids == NULL || status == NULL || done == NULL || killed == NULL) {
    fprintf(stderr, "shim_launch: out of memory for %d ranks\n", world);
    failed = world;
    goto out;
  }
  hub = hub_create(world);
  if (hub == NULL) {
    failed = world;
    goto out;
  }

  /* SIGCHLD blocked and at its default action: the parent sleeps in sigtimedwait until a rank
     ends instead of polling. */
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old_mask);
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGCHLD, &dfl, &old_chld);

  started = fork_ranks(hub, pids, world, fn, arg, &old_mask, &old_chld, &failed);
  timed_out = wait_ranks(hub, pids, status, done, killed, started, world, cfg, &chld);
  for (int r = 0; r < started && cfg->wait_status != NULL; r++) cfg->wait_status[r] = status[r];
  for (int r = 0; r < started; r++) {
    if (WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0) continue;
    failed++;
    if (!killed[r]) report_status(r, world, status[r]);
  }

  sigaction(SIGCHLD, &old_chld, NULL);
  sigprocmask(SIG_SETMASK, &old_mask, NULL);
  hub_destroy(hub);
  if (timed_out_p != NULL) *timed_out_p = timed_out;
out:
  free(pids);
  free(status);
  free(done);
  free(killed);
  return failed;
}

int shim_launch(int world, shim_rank_fn_t fn, void *arg, int timeout_s) {
  shim_launch_cfg_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_s = timeout_s;
  return shim_launch_ex(world, fn, arg, &cfg, NULL);
}

/* The all-gather of a world of one: the rank's own contribution. */
static int allgather_one(void *user, const void *send, void *recv, size_t bytes) {
  (void)user;
  memcpy(recv, send, bytes);
  return 0;
}

moecomm_context_params_t shim_launch_params(const moecomm_topology_t *topo, int device) {
  moecomm_context_params_t p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.topology = topo;
  if (topo != NULL && topo->world_size == 1) {
    p.host_allgather = allgather_one;
  } else {
    p.host_allgather = shim_host_allgather;
    p.host_user = shim_launch_hub();
  }
  p.device = device;
  return p;
}

moecomm_topology_t shim_launch_topology(int world, int rank, int tp) {
  moecomm_topology_t t;
  memset(&t, 0, sizeof(t));
  t.struct_size = sizeof(t);
  t.world_size = world;
  t.rank = rank;
  t.tp = tp;
  return t;
}

/* Strict non-negative decimal integer. */
static int parse_int(const char *s, int *out) {
  char *end = NULL;
  long v;
  if (s == NULL || s[0] < '0' || s[0] > '9') return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < 0 || v > INT_MAX) return -1;
  *out = (int)v;
  return 0;
}

int shim_env_rank(int *rank_p, int *world_p) {
  const char *rs = getenv("MOECOMM_RANK");
  const char *ws = getenv("MOECOMM_WORLD_SIZE");
  int rank, world;
  if (rs == NULL && ws == NULL) return 1;
  if (rs == NULL || ws == NULL) {
    fprintf(stderr, "shim: MOECOMM_RANK and MOECOMM_WORLD_SIZE must be set together (only %s is)\n",
            rs != NULL ? "MOECOMM_RANK" : "MOECOMM_WORLD_SIZE");
    return -1;
  }
  if (parse_int(rs, &rank) != 0 || parse_int(ws, &world) != 0 || world < 1 || rank >= world) {
    fprintf(stderr,
            "shim: MOECOMM_RANK='%s' MOECOMM_WORLD_SIZE='%s': need integers with "
            "0 <= rank < world_size\n",
            rs, ws);
    return -1;
  }
  if (rank_p == NULL || world_p == NULL) return -1;
  *rank_p = rank;
  *world_p = world;
  return 0;
}

void shim_env_apply(const char *const *env) {
  for (int i = 0; env != NULL && env[i] != NULL; i++) {
    const char *eq = strchr(env[i], '=');
    if (eq == NULL) {
      unsetenv(env[i]);
    } else {
      char name[128];
      snprintf(name, sizeof(name), "%.*s", (int)(eq - env[i]), env[i]);
      setenv(name, eq + 1, 1);
    }
  }
}
