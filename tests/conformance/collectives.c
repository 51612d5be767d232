/* SPDX-License-Identifier: Apache-2.0 */
/* collectives.c - the backend-conformance suite: one collective matrix, run against every backend
 * present (shm on CPU ranks; nccl and custom on GPUs when the machine has them).
 *
 *   collectives [BACKEND...]   (or MC_TEST_BACKEND="shm,nccl"; default: every backend)
 *   BACKEND: shm | nccl | custom (its four MOECOMM_ALGO settings) | custom:auto|ll|oneshot|twoshot
 *
 * A backend that cannot run here is one visible SKIP line (a failure under MC_TEST_REQUIRE_GPU=1).
 * World sizes: shm 1, 2, 3, 4 and 8 ranks; GPU backends 2 and every device (at most 8), or 1 on a
 * machine with one GPU, where every collective runs through the backend's local path (a copy: no
 * communicator), as the output says.  For each world, on the TP group (all ranks):
 *  - every collective (all_reduce, all_gather, reduce_scatter, broadcast) x in place / out of place
 *    x every dtype x every op (sum, max, min) or root (0, n-1, n/2), at counts 1, 7, 8, 4095 and
 *    65537, buffers offset by 0-2 elements (custom: also 2 and 4 bytes);
 *  - every (collective, dtype, op) at one chunk and at three chunks and a bit (the size the backend
 *    moves data in: shm's per-rank buffer, 4 MiB for the GPU backends), in place and roots
 * rotating; on GPUs in a world of 2 also 16 M elements (custom: all-reduce at 16 M and 32 M);
 *  - non-integer sums at counts 4095 and 65537 (lib_real.c) and, on a GPU, one all-reduce on the
 *    legacy default stream;
 *  - group_stats afterwards: the backend asked for, ops equal to the calls issued, and the calls
 *    split between backends as they must be (custom: what it does not serve went to NCCL).
 * Then disjoint sub-groups (MOE_TP and MOE_EP of tp = world, ep = 2) at the same time, and once per
 * kind of machine the backend settings swapped between contexts of one process (lib_swap.c).
 * Every output is compared bit for bit with what each rank computes from its peers' regenerated
 * inputs; outputs are poisoned, guards around them must survive, send buffers must not change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf.h"

#define CUSTOM_ENV(algo)                                                                \
  {                                                                                     \
    "MOECOMM_BACKEND=custom", "MOECOMM_ALGO=" algo, "MOECOMM_CUSTOM_BUFFER_BYTES=256M", \
        "MOECOMM_CUSTOM_MAX_BYTES=128M", NULL                                           \
  }
static const char *const k_env_shm[] = {"MOECOMM_BACKEND=shm", NULL};
static const char *const k_env_nccl[] = {"MOECOMM_BACKEND=nccl", NULL};
/* staging raised so that every size here, 32 M elements of fp32 included, is the custom path's */
static const char *const k_env_auto[] = CUSTOM_ENV("auto"), *const k_env_ll[] = CUSTOM_ENV("ll"),
                         *const k_env_one[] = CUSTOM_ENV("oneshot"),
                         *const k_env_two[] = CUSTOM_ENV("twoshot");
static const size_t k_big_nccl[] = {(size_t)16 << 20, 0};
static const size_t k_big_custom[] = {(size_t)16 << 20, (size_t)32 << 20, 0};

static const conf_backend_t k_backends[] = {
    /* name, env, stats name, gpu, fp32_accum, custom, byte_offsets, chunk_bytes, big */
    {"shm", k_env_shm, "shm", 0, 1, 0, 0, 0, NULL},
    {"nccl", k_env_nccl, "nccl", 1, 0, 0, 0, (size_t)4 << 20, k_big_nccl},
    {"custom:auto", k_env_auto, "custom", 1, 1, 1, 1, (size_t)4 << 20, k_big_custom},
    {"custom:ll", k_env_ll, "custom", 1, 1, 1, 1, (size_t)4 << 20, NULL},
    {"custom:oneshot", k_env_one, "custom", 1, 1, 1, 1, (size_t)4 << 20, k_big_custom},
    {"custom:twoshot", k_env_two, "custom", 1, 1, 1, 1, (size_t)4 << 20, k_big_custom},
};
#define NBACKENDS ((int)(sizeof(k_backends) / sizeof(k_backends[0])))

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- counts ---- */

/* shm's buffer per rank (plugin/backends/shm/shm.c, mc_shm_slot_bytes), mirrored so that the chunk
   counts land on its boundaries; should it change, the cases stay valid but land elsewhere. */
static size_t shm_slot_bytes(int size) {
  size_t slot = (size_t)(8u << 20) / (2u * (size_t)size);
  if (slot > (1u << 20)) slot = 1u << 20;
  if (slot < (64u << 10)) slot = 64u << 10;
  if (slot < (size_t)size * 1024u) slot = (size_t)size * 1024u;
  return (slot + 4095) / 4096 * 4096;
}

/* Elements of one chunk of coll (reduce_scatter: of the receive count; shm splits a buffer into
   64-byte aligned blocks, one per rank). */
static size_t chunk_elems(const conf_backend_t *be, int coll, int size, size_t es) {
  size_t slot = be->chunk_bytes ? be->chunk_bytes : shm_slot_bytes(size);
  if (coll == CONF_RS && be->chunk_bytes == 0) return slot / (size_t)size / 64 * 64 / es;
  return slot / es;
}

/* ---- the matrix ---- */

typedef struct matrix {
  const conf_rank_t *r;
  conf_group_t *grp;
  uint64_t id; /* the next case id */
  int cases, failed;
} matrix_t;

static void run(matrix_t *m, conf_case_t *c) {
  c->id = m->id++;
  m->cases++;
  m->failed += !conf_run_case(m->r, m->grp, c, NULL);
}

/* Buffers offset by 0-2 elements, rotating with the case id. */
static void rotate_offsets(conf_case_t *c, uint64_t id) {
  size_t es = shim_dtype_size(c->dt);
  c->off_in = (size_t)(id % 3) * es;
  c->off_out = (size_t)((id + 1) % 3) * es;
}

/* The full cross product at the small counts. */
static void small_counts(matrix_t *m) {
  static const size_t counts[] = {1, 7, 8, 4095, 65537};
  const int W = m->grp->st.size, roots[3] = {0, W - 1, W / 2};
  for (int coll = 0; coll < CONF_NCOLL; coll++)
    for (int inplace = 0; inplace < 2; inplace++)
      for (int dt = 0; dt < 4; dt++)
        for (int v = 0; v < 3; v++) {
          if (coll == CONF_AG && v > 0) continue;
          if (coll == CONF_BC && ((v == 1 && roots[1] == roots[0]) ||
                                  (v == 2 && (roots[2] == roots[0] || roots[2] == roots[1]))))
            continue;
          for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
            conf_case_t c;
            memset(&c, 0, sizeof(c));
            c.coll = coll;
            c.inplace = inplace;
            c.dt = (moecomm_dtype_t)dt;
            c.op = coll == CONF_AR || coll == CONF_RS ? (moecomm_redop_t)v : MOECOMM_SUM;
            c.root = coll == CONF_BC ? roots[v] : 0;
            c.n = counts[k];
            rotate_offsets(&c, m->id);
            run(m, &c);
          }
        }
}

/* Every (collective, dtype, op) once at count n(coll, dtype), or n_fixed when non-zero; in
   place, root and offsets rotate.  floats_ar: only all-reduces of fp32 and bf16 (custom's big
   sizes). */
static void rotation(matrix_t *m, int chunks, size_t n_fixed, int floats_ar) {
  const conf_backend_t *be = m->r->be;
  const int W = m->grp->st.size;
  int turn = 0;
  for (int coll = 0; coll < CONF_NCOLL; coll++)
    for (int dt = 0; dt < 4; dt++)
      for (int op = 0; op < (coll == CONF_AR || coll == CONF_RS ? 3 : 1); op++) {
        conf_case_t c;
        size_t es = shim_dtype_size((moecomm_dtype_t)dt), chunk = chunk_elems(be, coll, W, es);
        if (floats_ar &&
            (coll != CONF_AR || op != 0 || (dt != MOECOMM_FLOAT32 && dt != MOECOMM_BFLOAT16)))
          continue;
        memset(&c, 0, sizeof(c));
        c.coll = coll;
        c.dt = (moecomm_dtype_t)dt;
        c.op = (moecomm_redop_t)op;
        c.inplace = turn % 2;
        c.root = (turn * 5 + 1) % W;
        c.n = n_fixed ? n_fixed : (size_t)chunks * chunk + (chunks > 1 ? 5 : 0);
        rotate_offsets(&c, m->id);
        turn++;
        run(m, &c);
      }
}

/* Custom: pointers 2 and 4 bytes past an aligned address (an fp32 at +2 is not even
   element-aligned), fp32 and bf16 sum all-reduces. */
static void byte_offsets(matrix_t *m) {
  static const size_t offs[3][2] = {{2, 4}, {4, 2}, {2, 2}};
  static const size_t counts[3] = {7, 4095, 65537};
  for (int o = 0; o < 3; o++)
    for (int d = 0; d < 2; d++)
      for (int k = 0; k < 3; k++) {
        conf_case_t c;
        memset(&c, 0, sizeof(c));
        c.coll = CONF_AR;
        c.dt = d ? MOECOMM_BFLOAT16 : MOECOMM_FLOAT32;
        c.op = MOECOMM_SUM;
        c.n = counts[k];
        c.off_in = offs[o][0];
        c.off_out = offs[o][1];
        run(m, &c);
      }
}

/* Non-integer sums: exact where every backend of this kind must be exact, rounding always. */
static void real_sums(matrix_t *m) {
  static const moecomm_dtype_t dts[3] = {MOECOMM_FLOAT16, MOECOMM_BFLOAT16, MOECOMM_FLOAT32};
  const int W = m->grp->st.size;
  for (int d = 0; d < 3; d++) {
    int exact_ok = dts[d] == MOECOMM_FLOAT32 ? W <= 2 : W <= 8 && (m->r->be->fp32_accum || W <= 2);
    for (int exact = 0; exact < 2; exact++)
      for (size_t n = 4095; n <= 65537 && (exact_ok || !exact); n = n * 16 + 17) {
        m->cases++;
        m->failed += !conf_run_real(m->r, m->grp, dts[d], exact, n, m->id++);
      }
  }
}

/* The group's stats against what was issued on it. */
static int check_stats(const conf_rank_t *r, conf_group_t *grp) {
  moecomm_group_stats_t st;
  const conf_backend_t *be = r->be;
  int ok;
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (!MC_CHECK_RC(r->api, r->ctx, r->api->group_stats(grp->g, &st), MOECOMM_SUCCESS)) return 0;
  ok = MC_CHECK(st.ops == grp->calls, "%s %s: stats count %llu ops, %llu were issued", be->name,
                st.kind_name, (unsigned long long)st.ops, (unsigned long long)grp->calls);
  if (st.size == 1)
    return ok & MC_CHECK(st.ops_local == st.ops,
                         "%s %s of one rank: %llu of %llu ops served as "
                         "local copies",
                         be->name, st.kind_name, (unsigned long long)st.ops_local,
                         (unsigned long long)st.ops);
  ok &= MC_CHECK(strcmp(st.backend_name, be->stats_name) == 0 && st.created == 1,
                 "%s %s: backend %s (want %s), created %d", be->name, st.kind_name, st.backend_name,
                 be->stats_name, (int)st.created);
  ok &= MC_CHECK(be->gpu ? st.device_bytes > 0 : st.host_bytes > 0,
                 "%s %s: the communicator holds %llu device and %llu host bytes", be->name,
                 st.kind_name, (unsigned long long)st.device_bytes,
                 (unsigned long long)st.host_bytes);
  if (!be->custom)
    return ok & MC_CHECK((be->gpu ? st.ops_nccl : st.ops_shm) == st.ops,
                         "%s %s: %llu of %llu ops served by %s", be->name, st.kind_name,
                         (unsigned long long)(be->gpu ? st.ops_nccl : st.ops_shm),
                         (unsigned long long)st.ops, be->stats_name);
  /* what the custom path does not serve (not a float all-reduce) is handed to NCCL */
  return ok & MC_CHECK(st.ops_custom + st.ops_nccl == st.ops && st.ops_nccl >= grp->not_custom &&
                           st.ops_custom > 0,
                       "%s %s: %llu ops, %llu custom, %llu nccl; %llu calls need NCCL", be->name,
                       st.kind_name, (unsigned long long)st.ops, (unsigned long long)st.ops_custom,
                       (unsigned long long)st.ops_nccl, (unsigned long long)grp->not_custom);
}

/* One all-reduce on the legacy default stream (GPU backends). */
static void default_stream(matrix_t *m) {
  conf_rank_t on_null = *m->r;
  const conf_rank_t *saved = m->r;
  conf_case_t c;
  memset(&c, 0, sizeof(c));
  c.coll = CONF_AR;
  c.dt = MOECOMM_FLOAT32;
  c.op = MOECOMM_SUM;
  c.n = 4095;
  on_null.stream = NULL;
  m->r = &on_null;
  run(m, &c);
  m->r = saved;
}

/* Disjoint sub-groups at the same time: MOE_TP and MOE_EP (tp = world, ep = 2) alternate. */
static void subgroups(matrix_t *m, conf_group_t *gt, conf_group_t *ge) {
  for (int i = 0; i < 24; i++) {
    conf_case_t c;
    memset(&c, 0, sizeof(c));
    c.coll = i % 4;
    c.dt = (moecomm_dtype_t)((i / 4) % 4);
    c.op = (moecomm_redop_t)(i % 3);
    c.n = i % 2 ? 4095 : 7;
    c.inplace = (i / 2) % 2;
    m->grp = gt;
    run(m, &c);
    c.root = ge->st.size - 1;
    m->grp = ge;
    run(m, &c);
  }
}

/* The matrix on TP (every rank), then the sub-groups. */
static void rank_matrix(const conf_rank_t *r, matrix_t *m) {
  conf_group_t tp, mtp, mep;
  const conf_backend_t *be = r->be;
  if (conf_group_get(r, MOECOMM_GROUP_TP, &tp)) {
    m->grp = &tp;
    m->failed += !MC_CHECK(tp.st.size == r->world && tp.st.rank == r->rank, "TP: size %d rank %d",
                           tp.st.size, tp.st.rank);
    small_counts(m);
    rotation(m, 1, 0, 0);
    rotation(m, 3, 0, 0);
    for (int k = 0; r->world == 2 && be->big != NULL && be->big[k] != 0; k++)
      rotation(m, 0, be->big[k], be->custom);
    if (be->byte_offsets) byte_offsets(m);
    real_sums(m);
    if (be->gpu) default_stream(m);
    m->failed += !check_stats(r, &tp);
  } else {
    m->failed++;
  }
  if (r->world % 2 != 0) return;
  if (!conf_group_get(r, MOECOMM_GROUP_MOE_TP, &mtp) ||
      !conf_group_get(r, MOECOMM_GROUP_MOE_EP, &mep)) {
    m->failed++;
    return;
  }
  subgroups(m, &mtp, &mep);
  m->failed += !check_stats(r, &mtp);
  m->failed += !check_stats(r, &mep);
}

static int rank_main(int rank, int world, void *arg) {
  const conf_backend_t *be = arg;
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t params;
  moecomm_result_t res;
  conf_rank_t r;
  matrix_t m;
  double t0 = now_s();
  memset(&m, 0, sizeof(m));
  if (!conf_mem_open(&r, be, rank, world)) return 1;
  topo.ep = world % 2 == 0 ? 2 : 1;
  params = mc_test_ctx_params(&topo, be->gpu ? rank : MOECOMM_DEVICE_CPU);
  conf_env_set(be->env); /* read once, by context_create; kept until the context is gone */
  res = r.api->context_create(&params, &r.ctx);
  if (MC_CHECK(res == MOECOMM_SUCCESS, "%s: context_create: %d (%s): %s", be->name, (int)res,
               r.api->result_string(res), r.api->last_error(NULL))) {
    m.r = &r;
    m.id = (uint64_t)world << 32;
    rank_matrix(&r, &m);
    MC_CHECK_RC(r.api, r.ctx, r.api->context_destroy(r.ctx), MOECOMM_SUCCESS);
    if (rank == 0)
      printf("%s, world %d: %d cases, %d failed, %.1f s\n", be->name, world, m.cases, m.failed,
             now_s() - t0);
  }
  conf_env_unset(be->env);
  conf_mem_close(&r);
  return res != MOECOMM_SUCCESS || m.failed != 0;
}

/* ---- backend settings swapped between contexts ---- */

static const char *const k_set_none[] = {NULL};
static const char *const k_set_shm[] = {"MOECOMM_BACKEND=shm", NULL};
static const char *const k_set_groups[] = {"MOECOMM_BACKEND=auto", "MOECOMM_BACKEND_TP=shm",
                                           "MOECOMM_BACKEND_MOE_EP=shm", NULL};
static const char *const k_set_nccl[] = {"MOECOMM_BACKEND=nccl", NULL};
static const char *const k_set_ep_custom[] = {"MOECOMM_BACKEND_MOE_EP=custom", NULL};
static const char *const k_set_custom[] = {"MOECOMM_BACKEND=custom", NULL};
static const char *const k_set_tp_custom[] = {"MOECOMM_BACKEND=nccl", "MOECOMM_BACKEND_TP=custom",
                                              NULL};

/* CPU contexts: shm whatever the setting; GPU backends refused, naming the variable. */
static const conf_setting_t k_cpu_settings[] = {
    {k_set_none, "shm", "shm", 0, NULL},
    {k_set_shm, "shm", "shm", 0, NULL},
    {k_set_groups, "shm", "shm", 0, NULL},
    {k_set_nccl, NULL, NULL, MOECOMM_ERR_UNAVAILABLE,
     "MOECOMM_BACKEND=nccl needs a CUDA device, but this context runs on the CPU"},
    {k_set_ep_custom, NULL, NULL, MOECOMM_ERR_UNAVAILABLE,
     "MOECOMM_BACKEND_MOE_EP=custom needs a CUDA device, but this context runs on the CPU"},
};
/* GPU contexts: nccl, custom, and custom for TP only; shm refused. */
static const conf_setting_t k_gpu_settings[] = {
    {k_set_nccl, "nccl", "nccl", 0, NULL},
    {k_set_custom, "custom", "custom", 0, NULL},
    {k_set_tp_custom, "custom", "nccl", 0, NULL},
    {k_set_shm, NULL, NULL, MOECOMM_ERR_CONFIG, "MOECOMM_BACKEND=shm serves CPU contexts"},
};
static const conf_backend_t k_cpu_swap = {"settings on CPU", NULL, NULL, 0, 1, 0, 0, 0, NULL};
static const conf_backend_t k_gpu_swap = {"settings on GPUs", NULL, NULL, 1, 0, 0, 0, 0, NULL};

static int swap_rank(int rank, int world, void *arg) {
  const conf_backend_t *be = arg;
  conf_rank_t r;
  int failed;
  if (!conf_mem_open(&r, be, rank, world)) return 1;
  failed = be->gpu ? conf_swap(&r, k_gpu_settings,
                               (int)(sizeof(k_gpu_settings) / sizeof(k_gpu_settings[0])))
                   : conf_swap(&r, k_cpu_settings,
                               (int)(sizeof(k_cpu_settings) / sizeof(k_cpu_settings[0])));
  conf_mem_close(&r);
  return failed != 0;
}

/* ---- which backends, which worlds ---- */

/* Whether the command line (or MC_TEST_BACKEND) asks for be: its name, or its family ("custom"
   for "custom:ll"); nothing asked: every backend. */
static int wanted(const conf_backend_t *be, const char *list) {
  char buf[512], *save = NULL;
  if (list == NULL || list[0] == '\0') return 1;
  snprintf(buf, sizeof(buf), "%s", list);
  for (char *t = strtok_r(buf, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
    size_t n = strlen(t);
    if (strncmp(be->name, t, n) == 0 && (be->name[n] == '\0' || be->name[n] == ':')) return 1;
  }
  return 0;
}

static int known_names(const char *list) {
  char buf[512], *save = NULL;
  int ok = 1;
  if (list == NULL) return 1;
  snprintf(buf, sizeof(buf), "%s", list);
  for (char *t = strtok_r(buf, ", ", &save); t != NULL; t = strtok_r(NULL, ", ", &save)) {
    int hit = 0;
    for (int b = 0; b < NBACKENDS; b++) hit |= wanted(&k_backends[b], t);
    ok &= MC_CHECK(hit, "unknown backend '%s' (shm, nccl, custom, custom:auto|ll|oneshot|twoshot)",
                   t);
  }
  return ok;
}

/* CUDA devices a GPU backend can use here; 0 after one SKIP line naming why. */
static int gpus_for(const conf_backend_t *be) {
  int n;
  if (!MC_WITH_CUDA) {
    mc_test_skip(be->name, "this build has no CUDA (WITH_CUDA=0)");
    return 0;
  }
  n = mc_test_gpu_count();
  if (n == 0) mc_test_skip(be->name, "needs a CUDA device; this machine has none");
  return n;
}

static void run_backend(const conf_backend_t *be) {
  static const int cpu_worlds[] = {1, 2, 3, 4, 8};
  int worlds[8], nw = 0, gpus = be->gpu ? gpus_for(be) : 0;
  if (!be->gpu) {
    memcpy(worlds, cpu_worlds, sizeof(cpu_worlds));
    nw = 5;
  } else if (gpus == 1) {
    printf(
        "%s: this machine has 1 CUDA device: a world of 1 runs every collective through the "
        "backend's local path (a copy, no communicator); the %s kernels do not run\n",
        be->name, be->custom ? "custom" : "NCCL");
    worlds[nw++] = 1;
  } else if (gpus > 1) {
    worlds[nw++] = 2;
    if (gpus > 2) worlds[nw++] = gpus < 8 ? gpus : 8;
  }
  for (int i = 0; i < nw; i++) {
    double t0 = now_s();
    int bad = mc_test_ranks(worlds[i], rank_main, (void *)be, be->gpu ? 600 : 300);
    MC_CHECK(bad == 0, "%s, world %d: %d ranks failed", be->name, worlds[i], bad);
    printf("%s, world %d: done in %.1f s\n", be->name, worlds[i], now_s() - t0);
  }
}

/* MOECOMM_BACKEND* and MOECOMM_ALGO of the caller's environment would change what is tested. */
static void clear_backend_env(void) {
  extern char **environ;
  char names[64][64];
  int n = 0;
  for (char **e = environ; *e != NULL && n < 64; e++)
    if (strncmp(*e, "MOECOMM_BACKEND", 15) == 0 || strncmp(*e, "MOECOMM_ALGO=", 13) == 0)
      snprintf(names[n++], sizeof(names[0]), "%.*s", (int)strcspn(*e, "="), *e);
  for (int i = 0; i < n; i++) unsetenv(names[i]);
}

int main(int argc, char **argv) {
  char list[512] = "";
  int any_gpu = 0;
  mc_test_init("collectives", argc, argv);
  for (int i = 1; i < argc; i++)
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i > 1 ? "," : "", argv[i]);
  if (argc == 1 && getenv("MC_TEST_BACKEND") != NULL)
    snprintf(list, sizeof(list), "%s", getenv("MC_TEST_BACKEND"));
  if (!known_names(list)) return mc_test_finish();
  clear_backend_env();
  /* A hang becomes MOECOMM_ERR_TIMEOUT with a message, well before the launcher's limit. */
  setenv("MOECOMM_TIMEOUT_MS", "30000", 0);
  setenv("NCCL_NVLS_ENABLE", "0", 1); /* never NVLink multicast (DESIGN.md) */
  for (int b = 0; b < NBACKENDS; b++) {
    if (!wanted(&k_backends[b], list)) continue;
    run_backend(&k_backends[b]);
    any_gpu |= k_backends[b].gpu;
  }
  if (wanted(&k_backends[0], list))
    MC_CHECK(mc_test_ranks(2, swap_rank, (void *)&k_cpu_swap, 120) == 0, "%s", k_cpu_swap.name);
  if (any_gpu && MC_WITH_CUDA && mc_test_gpu_count() >= 2)
    MC_CHECK(mc_test_ranks(2, swap_rank, (void *)&k_gpu_swap, 300) == 0, "%s", k_gpu_swap.name);
  return mc_test_finish();
}
