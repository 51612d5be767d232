/* backend_swap.c - the same binary, run with different MOECOMM_BACKEND settings, reports the
 * backend each group uses in its stats and computes the same results.
 *
 * This binary runs itself as a worker (--worker) once per setting: 2 CPU ranks (tp 2, ep 2) run
 * five collectives on four groups, check every result exactly against the inputs the peers'
 * seeds give, and rank 0 prints a digest of all outputs and each group's backend.  Here only the
 * shm backend can run, so the settings are auto, shm, and per-group overrides; explicit GPU
 * backends on a CPU context must be refused with MOECOMM_ERR_UNAVAILABLE naming the variable.
 * tests/gpu/backend_swap.c is the GPU variant (nccl against custom). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"
#include "util.h"

#define WORLD 2
#define N 4099

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

/* Input of rank r for op k. */
static void input(void *buf, size_t n, moecomm_dtype_t dt, int op, int r) {
  mc_test_fill(buf, n, dt, 1000u * (unsigned)op + (unsigned)r + 7u);
}

typedef struct op {
  const char *name;
  moecomm_group_kind_t group;
  int kind; /* 0 all_reduce, 1 all_gather, 2 reduce_scatter, 3 broadcast */
  moecomm_dtype_t dtype;
} op_t;

static const op_t ops[] = {
    {"all_reduce fp32 on TP", MOECOMM_GROUP_TP, 0, MOECOMM_FLOAT32},
    {"all_reduce bf16 on MOE_EP", MOECOMM_GROUP_MOE_EP, 0, MOECOMM_BFLOAT16},
    {"all_gather int32 on WORLD", MOECOMM_GROUP_WORLD, 1, MOECOMM_INT32},
    {"reduce_scatter fp16 on ATTN_TP", MOECOMM_GROUP_ATTN_TP, 2, MOECOMM_FLOAT16},
    {"broadcast fp32 from 1 on TP", MOECOMM_GROUP_TP, 3, MOECOMM_FLOAT32},
};

static int worker_rank(int rank, int world, void *arg) {
  const moecomm_api_t *api = mc_test_plugin();
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_result_t r;
  uint64_t digest = 0xcbf29ce484222325ull;
  unsigned char *send = malloc(N * 4 * WORLD), *recv = malloc(N * 4 * WORLD),
                *peer = malloc(N * 4 * WORLD * WORLD); /* each member's input */
  (void)arg;
  topo.ep = 2;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  if (!MC_CHECK(send != NULL && recv != NULL && peer != NULL, "out of memory")) return 1;
  r = api->context_create(&p, &ctx);
  if (r != MOECOMM_SUCCESS) {
    if (rank == 0) printf("RESULT create %d %s\n", (int)r, api->last_error(NULL));
    free(send);
    free(recv);
    free(peer);
    return 0; /* the parent judges the refusal */
  }
  for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
    const op_t *o = &ops[k];
    moecomm_group_t *g = NULL;
    moecomm_group_stats_t st;
    size_t es = shim_dtype_size(o->dtype), n_in = N, n_out = N;
    int bad = -1;
    if (!MC_CHECK_RC(api, ctx, api->group_get(ctx, o->group, &g), MOECOMM_SUCCESS)) continue;
    memset(&st, 0, sizeof(st));
    st.struct_size = sizeof(st);
    MC_CHECK_RC(api, ctx, api->group_stats(g, &st), MOECOMM_SUCCESS);
    if (o->kind == 1) n_out = N * (size_t)st.size;
    if (o->kind == 2) n_in = N * (size_t)st.size;
    input(send, n_in, o->dtype, (int)k, rank);
    memset(recv, 0xEE, n_out * es); /* poison */
    switch (o->kind) {
      case 0: r = api->all_reduce(g, send, recv, N, o->dtype, MOECOMM_SUM, NULL); break;
      case 1: r = api->all_gather(g, send, recv, N, o->dtype, NULL); break;
      case 2: r = api->reduce_scatter(g, send, recv, N, o->dtype, MOECOMM_SUM, NULL); break;
      default: r = api->broadcast(g, send, recv, N, o->dtype, 1, NULL); break;
    }
    if (!MC_CHECK_RC(api, ctx, r, MOECOMM_SUCCESS)) continue;
    /* Expected values from the group members' inputs (world ranks st.ranks[]). */
    for (int m = 0; m < st.size && m < WORLD; m++)
      input(peer + (size_t)m * N * WORLD * 4, n_in, o->dtype, (int)k, st.ranks[m]);
    for (size_t i = 0; i < n_out && bad < 0; i++) {
      double want = 0;
      if (o->kind == 0 || o->kind == 2) {
        size_t at = o->kind == 2 ? (size_t)st.rank * N + i : i;
        for (int m = 0; m < st.size; m++)
          want += mc_test_get(peer + (size_t)m * N * WORLD * 4, at, o->dtype);
      } else if (o->kind == 1) {
        want = mc_test_get(peer + (i / N) * N * WORLD * 4, i % N, o->dtype);
      } else {
        want = mc_test_get(peer + (size_t)1 * N * WORLD * 4, i, o->dtype);
      }
      if (mc_test_get(recv, i, o->dtype) != want) bad = (int)i;
    }
    MC_CHECK(bad < 0, "%s: element %d is %g, want the exact result", o->name, bad,
             bad >= 0 ? mc_test_get(recv, (size_t)bad, o->dtype) : 0.0);
    digest = fnv(digest, recv, n_out * es);
    if (rank == 0) printf("RESULT backend %s %s\n", st.kind_name, st.backend_name);
  }
  if (rank == 0) printf("RESULT digest %016llx\n", (unsigned long long)digest);
  fflush(stdout);
  api->context_destroy(ctx);
  free(send);
  free(recv);
  free(peer);
  return 0;
}

typedef struct setting {
  const char *env;     /* assignments for env(1) */
  const char *refusal; /* NULL: must run; else text the UNAVAILABLE message must contain */
} setting_t;

static const setting_t settings[] = {
    {"", NULL},
    {"MOECOMM_BACKEND=shm", NULL},
    {"MOECOMM_BACKEND=auto MOECOMM_BACKEND_TP=shm MOECOMM_BACKEND_MOE_EP=shm", NULL},
    {"MOECOMM_BACKEND=nccl", "MOECOMM_BACKEND=nccl"},
    {"MOECOMM_BACKEND_MOE_EP=custom", "MOECOMM_BACKEND_MOE_EP=custom"},
};

int main(int argc, char **argv) {
  char self[PATH_MAX], cmd[PATH_MAX * 2], out[65536], digest0[64] = "", backends0[1024] = "";
  ssize_t n;
  mc_test_init("abi-backend_swap", argc, argv);
  if (argc > 1 && strcmp(argv[1], "--worker") == 0) {
    mc_test_ranks(WORLD, worker_rank, NULL, 60);
    return mc_test_finish();
  }
  n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (!MC_CHECK(n > 0, "cannot read /proc/self/exe")) return mc_test_finish();
  self[n] = '\0';
  for (size_t s = 0; s < sizeof(settings) / sizeof(settings[0]); s++) {
    const setting_t *st = &settings[s];
    char digest[64] = "", backends[1024] = "", *save = NULL, *line;
    int rc;
    snprintf(cmd, sizeof(cmd),
             "env -u MOECOMM_BACKEND -u MOECOMM_BACKEND_TP -u MOECOMM_BACKEND_MOE_EP %s '%s' "
             "--worker",
             st->env, self);
    rc = mc_test_shell(cmd, out, sizeof(out));
    if (!MC_CHECK(rc == 0 && strstr(out, "TESTSUM") != NULL && strstr(out, "FAIL") == NULL,
                  "[%s] worker exited %d (its output follows)", st->env, rc)) {
      /* Indented, so that the worker's TESTSUM line is not taken for this binary's. */
      for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        printf("  | %s\n", line);
      continue;
    }
    if (st->refusal != NULL) {
      char want[128];
      snprintf(want, sizeof(want), "RESULT create %d ", (int)MOECOMM_ERR_UNAVAILABLE);
      if (!MC_CHECK(strstr(out, want) != NULL && strstr(out, st->refusal) != NULL &&
                        strstr(out, "CPU") != NULL,
                    "[%s] want MOECOMM_ERR_UNAVAILABLE naming %s and the CPU", st->env,
                    st->refusal))
        for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
          printf("  | %s\n", line);
      continue;
    }
    for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
      if (strncmp(line, "RESULT digest ", 14) == 0)
        snprintf(digest, sizeof(digest), "%s", line + 14);
      if (strncmp(line, "RESULT backend ", 15) == 0) {
        size_t l = strlen(backends);
        snprintf(backends + l, sizeof(backends) - l, "%s; ", line + 15);
        MC_CHECK(strstr(line, " shm") != NULL, "[%s] %s: want shm on a CPU context", st->env,
                 line + 15);
      }
    }
    if (!MC_CHECK(digest[0] != '\0', "[%s] the worker printed no digest", st->env)) continue;
    if (digest0[0] == '\0') {
      snprintf(digest0, sizeof(digest0), "%s", digest);
      snprintf(backends0, sizeof(backends0), "%s", backends);
    } else {
      MC_CHECK(strcmp(digest, digest0) == 0, "[%s] results differ: digest %s, first run %s",
               st->env, digest, digest0);
    }
    printf("[%s] %s digest %s\n", st->env[0] ? st->env : "defaults", backends, digest);
  }
  return mc_test_finish();
}
