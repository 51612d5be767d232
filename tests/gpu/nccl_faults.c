/* SPDX-License-Identifier: Apache-2.0 */
/* nccl_faults.c - a rank killed with SIGKILL while the NCCL communicator is being created, and
 * while a collective runs: the surviving rank gets an error naming the dead rank within
 * MOECOMM_TIMEOUT_MS, never a hang, and can still destroy its context (2 ranks on 2 GPUs).
 *
 * The victim's death is expected, so these runs use shim_launch directly (mc_test_ranks would
 * count the death as a failure); the survivor reports through a shared page that the parent
 * checks. */
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../host_shim/lib/launch.h"
#include "../common/harness.h"

#define NRANKS 2
#define TIMEOUT_MS 8000
#define SLACK_MS 4000 /* abort, process exit and scheduling on top of the timeout */
#define COUNT ((size_t)16 << 20)

typedef struct report {
  int reached;          /* the survivor got as far as the failing call */
  int setup_ok;         /* everything before the kill worked */
  int code;             /* moecomm_result_t of the failing call */
  long long elapsed_ms; /* from the call that could not finish to the error */
  long long destroy_ms; /* context_destroy afterwards */
  int hung;             /* the stream never drained (the abort did not free the GPU) */
  int calls;            /* collectives the survivor issued from the kill on */
  char msg[1024];
} report_t;

typedef struct scenario {
  int during_init; /* 1: kill while creating the communicator; 0: during a collective */
  report_t *rep;   /* MAP_SHARED */
} scenario_t;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int thread_count(void) {
  char line[256];
  int n = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "Threads: %d", &n) == 1) break;
  fclose(f);
  return n;
}

/* Victim, scenario "during init": dies as soon as a new thread appears (the backend starts a
   helper thread for NCCL init, and NCCL its own threads inside it), or after 3 s whatever
   happens. */
static void *killer_main(void *arg) {
  int base = *(int *)arg;
  long long until = now_ms() + 3000;
  struct timespec ts = {0, 200000};
  while (now_ms() < until && thread_count() <= base) nanosleep(&ts, NULL);
  kill(getpid(), SIGKILL);
  return NULL;
}

static int wait_stream(cudaStream_t s, long long limit_ms) {
  struct timespec ts = {0, 1000000};
  long long until = now_ms() + limit_ms;
  for (;;) {
    cudaError_t e = cudaStreamQuery(s);
    if (e != cudaErrorNotReady) return 1; /* done, or failed: either way not hanging */
    if (now_ms() > until) return 0;
    nanosleep(&ts, NULL);
  }
}

static int rank_main(int rank, int world, void *arg) {
  scenario_t *sc = arg;
  report_t *rep = sc->rep;
  const moecomm_api_t *api;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params = mc_test_ctx_params(&topo, rank);
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *tp = NULL;
  cudaStream_t s = NULL;
  float *d = NULL;
  moecomm_result_t rc;
  long long t0;
  char env[32];

  setenv("MOECOMM_BACKEND", "nccl", 1);
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  snprintf(env, sizeof(env), "%d", TIMEOUT_MS);
  setenv("MOECOMM_TIMEOUT_MS", env, 1);
  api = mc_test_plugin();
  if (cudaSetDevice(rank) != cudaSuccess ||
      cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMalloc((void **)&d, COUNT * sizeof(float)) != cudaSuccess ||
      cudaMemset(d, 0, COUNT * sizeof(float)) != cudaSuccess)
    return 2;
  if (api->context_create(&params, &ctx) != MOECOMM_SUCCESS ||
      api->group_get(ctx, MOECOMM_GROUP_TP, &tp) != MOECOMM_SUCCESS)
    return 3;

  if (sc->during_init) {
    if (rank == 1) {
      static int base;
      pthread_t th;
      base = thread_count() + 1; /* + the killer itself */
      if (pthread_create(&th, NULL, killer_main, &base) != 0) kill(getpid(), SIGKILL);
      /* The first collective creates the communicator; the killer strikes inside it. */
      (void)api->all_reduce(tp, d, d, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s);
      (void)wait_stream(s, 10000);
      for (;;) pause(); /* never leave alive */
    }
  } else {
    /* A few good rounds first: the communicator exists and works. */
    for (int i = 0; i < 3; i++) {
      if (api->all_reduce(tp, d, d, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s) != MOECOMM_SUCCESS ||
          cudaStreamSynchronize(s) != cudaSuccess)
        return 4;
    }
    if (rank == 1) {
      /* Launch our part of the next one, then die while it runs. */
      (void)api->all_reduce(tp, d, d, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s);
      kill(getpid(), SIGKILL);
      for (;;) pause();
    }
  }
  /* Survivor.  A call may still be enqueued before the death is noticed; its kernel then waits
     for the dead peer until the watchdog aborts the communicator: the stream must drain and a
     later call must fail.  Keep calling until one does (bounded). */
  rep->setup_ok = 1;
  rep->reached = 1;
  t0 = now_ms();
  for (;;) {
    rc = api->all_reduce(tp, d, d, COUNT, MOECOMM_FLOAT32, MOECOMM_SUM, s);
    rep->calls++;
    if (rc != MOECOMM_SUCCESS) break;
    if (!wait_stream(s, TIMEOUT_MS + SLACK_MS)) {
      rep->hung = 1;
      break;
    }
    if (now_ms() - t0 > TIMEOUT_MS + SLACK_MS) break;
  }
  rep->elapsed_ms = now_ms() - t0;
  rep->code = (int)rc;
  snprintf(rep->msg, sizeof(rep->msg), "%s", api->last_error(ctx));
  if (!rep->hung) (void)wait_stream(s, 5000);
  t0 = now_ms();
  (void)api->context_destroy(ctx);
  rep->destroy_ms = now_ms() - t0;
  fflush(stdout);
  return 0;
}

static void run_scenario(int during_init) {
  const char *name = during_init ? "kill during init" : "kill during a collective";
  scenario_t sc;
  report_t *rep;
  int failed;
  rep = mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (!MC_CHECK(rep != MAP_FAILED, "mmap for the report")) return;
  memset(rep, 0, sizeof(*rep));
  sc.during_init = during_init;
  sc.rep = rep;
  printf("%s: rank 1 is killed on purpose; the launcher reports it below\n", name);
  fflush(stdout);
  failed = shim_launch(NRANKS, rank_main, &sc, (TIMEOUT_MS + SLACK_MS) / 1000 + 60);
  MC_CHECK(failed == 1, "%s: %d ranks failed, want exactly the victim", name, failed);
  MC_CHECK(rep->setup_ok && rep->reached, "%s: the survivor did not reach the failing call", name);
  MC_CHECK(!rep->hung, "%s: the survivor's stream never drained after the peer died", name);
  MC_CHECK(rep->code == MOECOMM_ERR_PEER || rep->code == MOECOMM_ERR_TIMEOUT,
           "%s: the survivor's call returned %d, want PEER (%d) or TIMEOUT (%d): %s", name,
           rep->code, MOECOMM_ERR_PEER, MOECOMM_ERR_TIMEOUT, rep->msg);
  MC_CHECK(rep->elapsed_ms <= TIMEOUT_MS + SLACK_MS,
           "%s: the error came after %lld ms (MOECOMM_TIMEOUT_MS=%d)", name, rep->elapsed_ms,
           TIMEOUT_MS);
  MC_CHECK(strstr(rep->msg, "rank 1") != NULL || strstr(rep->msg, "ranks 1") != NULL,
           "%s: the message does not name rank 1: %s", name, rep->msg);
  MC_CHECK(rep->destroy_ms < 10000, "%s: context_destroy took %lld ms", name, rep->destroy_ms);
  printf("%s: error after %lld ms and %d calls (code %d), destroy %lld ms: %s\n", name,
         rep->elapsed_ms, rep->calls, rep->code, rep->destroy_ms, rep->msg);
  munmap(rep, sizeof(*rep));
}

int main(int argc, char **argv) {
  mc_test_init("nccl_faults", argc, argv);
  if (!mc_test_need_gpus(NRANKS)) return mc_test_finish();
  run_scenario(1);
  run_scenario(0);
  return mc_test_finish();
}
