/* shm_collectives.c - every collective of the shm backend on CPU contexts, multi-process.
 *
 * World sizes 2, 3, 4 and 8 (forked ranks, host all-gather bootstrap).  At counts 1, 7 and 4095
 * the full cross product runs: all_reduce, all_gather, reduce_scatter, broadcast (roots 0, n-1,
 * n/2) x in place / out of place x fp32, fp16, bf16, int32 x sum, max, min.  At 1 M elements each
 * (collective, dtype) pair runs once per world size, and at 16 M each collective once with the
 * dtype rotating with the world size (all_gather and reduce_scatter: the whole buffer holds about
 * that many elements).  Inputs are small non-zero integers derived from (case, world rank, index),
 * so every rank recomputes its peers' inputs and the exact result, and compares bits.  Outputs are
 * poisoned before each call; elements past the output and the send buffer must stay untouched.
 * Sub-groups (MOE_TP, MOE_EP) run at the same time on disjoint rank sets.  Finally fp16/bf16 sums
 * of non-integer inputs must give every rank the same bits (all-gathered and compared) and stay
 * within the fp32-accumulation bound of a float64 reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../host_shim/lib/data.h"
#include "../common/harness.h"

enum { COLL_AR = 0, COLL_AG, COLL_RS, COLL_BC };
static const char *const coll_names[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast"};
static const char *const dt_names[] = {"fp32", "fp16", "bf16", "int32"};
static const char *const op_names[] = {"sum", "max", "min"};

#define GUARD 16 /* poisoned elements past the output */
#define POISON_BYTE 0x7f /* 0x7f7f...: NaN in fp16, 3.4e38 in fp32/bf16, 2139062143 in int32 */

static const moecomm_api_t *api;
static moecomm_context_t *g_ctx; /* this rank's context, for last_error */

typedef struct ccase {
  int coll, inplace;
  moecomm_dtype_t dt;
  moecomm_redop_t op;
  int root;      /* broadcast: group index */
  size_t n;      /* all_reduce/broadcast: count; all_gather: send count; reduce_scatter: recv count */
  int misalign;  /* buffers start this many elements past an allocation */
  uint64_t id;   /* seeds the inputs */
} ccase_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t input_key(uint64_t case_id, int world_rank) {
  return mix(mix(case_id * 0x9e3779b97f4a7c15ull + 0x1234567ull) + (uint64_t)world_rank + 1);
}

/* Element j of the input with key: a non-zero integer in [-m, m]; bf16 keeps |sum| <= 256 for up
   to 64 ranks with m = 4, the others m = 8. */
static int in_val(uint64_t key, size_t j, moecomm_dtype_t dt) {
  int m = dt == MOECOMM_BFLOAT16 ? 4 : 8;
  int v = (int)(mix(key + (uint64_t)j * 0x9e3779b97f4a7c15ull) % (uint64_t)(2 * m)) - m;
  return v >= 0 ? v + 1 : v;
}

/* Writes v as dtype dt into element i of buf (round to nearest even). */
static void put(void *buf, size_t i, moecomm_dtype_t dt, double v) {
  switch (dt) {
    case MOECOMM_FLOAT32: ((float *)buf)[i] = (float)v; break;
    case MOECOMM_FLOAT16: ((uint16_t *)buf)[i] = mc_test_to_half((float)v); break;
    case MOECOMM_BFLOAT16: ((uint16_t *)buf)[i] = mc_test_to_bf16((float)v); break;
    default: ((int32_t *)buf)[i] = (int32_t)v; break;
  }
}

static void fill_input(void *buf, size_t len, moecomm_dtype_t dt, uint64_t key) {
  for (size_t j = 0; j < len; j++) put(buf, j, dt, in_val(key, j, dt));
}

static double reduce2(moecomm_redop_t op, double a, double b) {
  switch (op) {
    case MOECOMM_SUM: return a + b;
    case MOECOMM_MAX: return a > b ? a : b;
    default: return a < b ? a : b;
  }
}

/* Runs one case on group g (every member calls it with the same case); returns 1 when it passed. */
static int run_case(moecomm_group_t *g, const moecomm_group_stats_t *gs, const ccase_t *c) {
  const int W = gs->size, me = gs->rank;
  const size_t es = shim_dtype_size(c->dt), n = c->n;
  const size_t in_len = c->coll == COLL_RS ? (size_t)W * n : n;
  const size_t out_len = c->coll == COLL_AG ? (size_t)W * n : n;
  const size_t buf_len = (in_len > out_len ? in_len : out_len) + GUARD + 3; /* + misalign */
  unsigned char *a = malloc(buf_len * es), *b = c->inplace ? NULL : malloc(buf_len * es);
  unsigned char *send, *recv, want[4];
  uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)W);
  uint64_t my_key = input_key(c->id, gs->ranks[me]);
  size_t bad = 0, bad_guard = 0, bad_send = 0;
  moecomm_result_t r;
  int ok;
  char what[160];

  char opr[32] = "";
  if (c->coll == COLL_AR || c->coll == COLL_RS) snprintf(opr, sizeof(opr), " %s", op_names[c->op]);
  if (c->coll == COLL_BC) snprintf(opr, sizeof(opr), " root %d", c->root);
  snprintf(what, sizeof(what), "%s %s%s n=%zu%s on %s (%d ranks)", coll_names[c->coll],
           dt_names[c->dt], opr, n, c->inplace ? " in place" : "", gs->kind_name, W);
  if (!MC_CHECK(a != NULL && (c->inplace || b != NULL) && keys != NULL, "%s: out of memory",
                what)) {
    free(a);
    free(b);
    free(keys);
    return 0;
  }
  for (int p = 0; p < W; p++) keys[p] = input_key(c->id, gs->ranks[p]);

  memset(a, POISON_BYTE, buf_len * es);
  if (b != NULL) memset(b, POISON_BYTE, buf_len * es);
  if (c->inplace) {
    unsigned char *base = a + (size_t)c->misalign * es;
    switch (c->coll) {
      case COLL_AG:
        recv = base;
        send = base + (size_t)me * n * es;
        fill_input(send, n, c->dt, my_key);
        break;
      case COLL_RS:
        send = base;
        recv = base + (size_t)me * n * es;
        fill_input(send, in_len, c->dt, my_key);
        break;
      case COLL_BC:
        send = recv = base;
        if (me == c->root) fill_input(send, n, c->dt, my_key);
        break;
      default:
        send = recv = base;
        fill_input(send, n, c->dt, my_key);
        break;
    }
  } else {
    send = a + (size_t)c->misalign * es;
    recv = b + (size_t)((c->misalign + 1) % 3) * es;
    fill_input(send, in_len, c->dt, my_key);
  }

  switch (c->coll) {
    case COLL_AR: r = api->all_reduce(g, send, recv, n, c->dt, c->op, NULL); break;
    case COLL_AG: r = api->all_gather(g, send, recv, n, c->dt, NULL); break;
    case COLL_RS: r = api->reduce_scatter(g, send, recv, n, c->dt, c->op, NULL); break;
    default: r = api->broadcast(g, send, recv, n, c->dt, c->root, NULL); break;
  }
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "%s: got %d (%s): %s", what, (int)r,
                api->result_string(r), api->last_error(g_ctx))) {
    free(a);
    free(b);
    free(keys);
    return 0;
  }

  for (size_t i = 0; i < out_len; i++) {
    double v;
    switch (c->coll) {
      case COLL_AG: v = in_val(keys[i / n], i % n, c->dt); break;
      case COLL_BC: v = in_val(keys[c->root], i, c->dt); break;
      default: {
        size_t j = c->coll == COLL_RS ? (size_t)me * n + i : i;
        v = in_val(keys[0], j, c->dt);
        for (int p = 1; p < W; p++) v = reduce2(c->op, v, in_val(keys[p], j, c->dt));
        break;
      }
    }
    put(want, 0, c->dt, v);
    if (memcmp(recv + i * es, want, es) != 0 && bad++ < 4) {
      uint64_t got_bits = 0, want_bits = 0;
      memcpy(&got_bits, recv + i * es, es);
      memcpy(&want_bits, want, es);
      printf("[rank %d] %s: element %zu is %g (0x%llx), want %g (0x%llx)\n", me, what, i,
             mc_test_get(recv, i, c->dt), (unsigned long long)got_bits, v,
             (unsigned long long)want_bits);
    }
  }
  if (!c->inplace) {
    unsigned char poison[4];
    memset(poison, POISON_BYTE, sizeof(poison));
    for (size_t i = 0; i < GUARD; i++)
      bad_guard += memcmp(recv + (out_len + i) * es, poison, es) != 0;
    for (size_t j = 0; j < in_len; j++) {
      put(want, 0, c->dt, in_val(my_key, j, c->dt));
      bad_send += memcmp(send + j * es, want, es) != 0;
    }
  }
  ok = MC_CHECK(bad == 0, "%s: %zu of %zu output elements wrong", what, bad, out_len);
  ok &= MC_CHECK(bad_guard == 0, "%s: %zu elements past the output were written", what,
                 bad_guard);
  ok &= MC_CHECK(bad_send == 0, "%s: the send buffer changed in %zu elements", what, bad_send);
  free(a);
  free(b);
  free(keys);
  return ok;
}

static int get_group(moecomm_context_t *ctx, moecomm_group_kind_t kind, moecomm_group_t **g_p,
                     moecomm_group_stats_t *st) {
  moecomm_result_t r = api->group_get(ctx, kind, g_p);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "group_get(%d): %d %s", (int)kind, (int)r,
                api->last_error(ctx)))
    return 0;
  memset(st, 0, sizeof(*st));
  st->struct_size = sizeof(*st);
  r = api->group_stats(*g_p, st);
  return MC_CHECK(r == MOECOMM_SUCCESS && st->ranks != NULL, "group_stats(%d): %d %s", (int)kind,
                  (int)r, api->last_error(ctx));
}

/* ---- the cases ---- */

static int small_cases(moecomm_group_t *g, const moecomm_group_stats_t *gs, uint64_t *id) {
  static const size_t counts[] = {1, 7, 4095};
  int W = gs->size, failed = 0, roots[3] = {0, W - 1, W / 2};
  for (int coll = 0; coll < 4; coll++)
    for (int inplace = 0; inplace < 2; inplace++)
      for (int dt = 0; dt < 4; dt++)
        for (int v = 0; v < 3; v++) {
          ccase_t c;
          if (coll == COLL_AG && v > 0) continue;
          if (coll == COLL_BC && ((v == 1 && roots[1] == roots[0]) ||
                                  (v == 2 && (roots[2] == roots[0] || roots[2] == roots[1]))))
            continue;
          for (size_t k = 0; k < 3; k++) {
            memset(&c, 0, sizeof(c));
            c.coll = coll;
            c.inplace = inplace;
            c.dt = (moecomm_dtype_t)dt;
            c.op = coll == COLL_AR || coll == COLL_RS ? (moecomm_redop_t)v : MOECOMM_SUM;
            c.root = coll == COLL_BC ? roots[v] : 0;
            c.n = counts[k];
            c.misalign = (int)((*id) % 3);
            c.id = (*id)++;
            failed += !run_case(g, gs, &c);
          }
        }
  return failed;
}

static int large_cases(moecomm_group_t *g, const moecomm_group_stats_t *gs, uint64_t *id) {
  int W = gs->size, failed = 0;
  /* 1 M: every (collective, dtype) pair once; op, root and in-place rotate. */
  for (int coll = 0; coll < 4; coll++)
    for (int dt = 0; dt < 4; dt++) {
      ccase_t c;
      size_t total = (size_t)1 << 20;
      memset(&c, 0, sizeof(c));
      c.coll = coll;
      c.dt = (moecomm_dtype_t)dt;
      c.op = (moecomm_redop_t)((coll + dt) % 3);
      c.root = (dt * 5 + 1) % W;
      c.inplace = (coll + dt + W) % 2;
      c.n = coll == COLL_AG || coll == COLL_RS ? total / (size_t)W + 1 : total;
      c.misalign = dt % 2;
      c.id = (*id)++;
      failed += !run_case(g, gs, &c);
    }
  /* 16 M: each collective once; the dtype rotates with the world size. */
  for (int coll = 0; coll < 4; coll++) {
    ccase_t c;
    size_t total = (size_t)16 << 20;
    memset(&c, 0, sizeof(c));
    c.coll = coll;
    c.dt = (moecomm_dtype_t)((coll + W) % 4);
    c.op = coll == COLL_RS ? MOECOMM_MAX : MOECOMM_SUM;
    c.root = W - 1;
    c.inplace = coll % 2;
    c.n = coll == COLL_AG || coll == COLL_RS ? total / (size_t)W + 1 : total;
    c.id = (*id)++;
    failed += !run_case(g, gs, &c);
  }
  return failed;
}

/* Disjoint sub-groups at the same time: MOE_TP and MOE_EP of tp=W ep=2, alternating. */
static int subgroup_cases(moecomm_context_t *ctx, uint64_t *id) {
  moecomm_group_t *gt, *ge;
  moecomm_group_stats_t st, se;
  int failed = 0;
  if (!get_group(ctx, MOECOMM_GROUP_MOE_TP, &gt, &st) ||
      !get_group(ctx, MOECOMM_GROUP_MOE_EP, &ge, &se))
    return 1;
  for (int i = 0; i < 24; i++) {
    ccase_t c;
    memset(&c, 0, sizeof(c));
    c.coll = i % 4;
    c.dt = (moecomm_dtype_t)((i / 4) % 4);
    c.op = (moecomm_redop_t)(i % 3);
    c.n = i % 2 ? 4095 : 7;
    c.inplace = (i / 2) % 2;
    c.id = (*id)++;
    c.root = 0;
    if (st.size > 1) failed += !run_case(gt, &st, &c);
    c.root = se.size - 1;
    c.id = (*id)++;
    if (se.size > 1) failed += !run_case(ge, &se, &c);
  }
  return failed;
}

/* Element j of a non-integer input: +-(1 + k/2^mbits) * 2^e, e in [-emax, emax]. */
static double nonint_val(uint64_t key, size_t j, int mbits, int emax) {
  uint64_t h = mix(key + (uint64_t)j * 0x9e3779b97f4a7c15ull);
  double v = ldexp(1.0 + (double)(h % (1u << mbits)) / (double)(1u << mbits),
                   (int)((h >> 20) % (uint64_t)(2 * emax + 1)) - emax);
  return (h >> 40) & 1 ? -v : v;
}

/* fp16/bf16 sums of inputs with spread exponents (their fp32 sums round): every rank must get
   the same bits, within the fp32-accumulation bound of a float64 reference. */
static int determinism_case(moecomm_group_t *g, const moecomm_group_stats_t *gs,
                            moecomm_dtype_t dt, int exact, uint64_t case_id) {
  const int W = gs->size, me = gs->rank;
  const size_t n = 4095;
  /* exact: the inputs span 2*emax + mbits + 1 bits, and the sum of up to 8 of them at most 3
     more, which fp32 holds (22 bits for fp16, 23 for bf16): the sum is exact in any order and
     the result must be its round-to-nearest-even, bit for bit.  Otherwise the spread makes the
     fp32 sums round, and the result must stay within the accumulation bound. */
  int mbits = dt == MOECOMM_FLOAT16 ? 10 : 7;
  int emax = exact ? (dt == MOECOMM_FLOAT16 ? 4 : 6) : (dt == MOECOMM_FLOAT16 ? 12 : 30);
  uint16_t *in = malloc(n * 2), *out = malloc(n * 2), *all = malloc(n * 2 * (size_t)W);
  size_t bad_ref = 0, bad_same = 0;
  moecomm_result_t r;
  int ok;
  char name[64];
  snprintf(name, sizeof(name), "%s %s", dt == MOECOMM_FLOAT16 ? "fp16" : "bf16",
           exact ? "sum exact in fp32" : "sum with fp32 rounding");
  if (!MC_CHECK(W <= 8 || !exact, "exact case needs at most 8 ranks")) exact = 0;
  if (!MC_CHECK(in && out && all, "out of memory")) {
    free(in);
    free(out);
    free(all);
    return 0;
  }
  for (size_t j = 0; j < n; j++)
    put(in, j, dt, nonint_val(input_key(case_id, gs->ranks[me]), j, mbits, emax));
  memset(out, POISON_BYTE, n * 2);
  r = api->all_reduce(g, in, out, n, dt, MOECOMM_SUM, NULL);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "%s: %d %s", name, (int)r,
                api->last_error(g_ctx)))
    goto done;
  for (size_t j = 0; j < n; j++) {
    double ref = 0, abs_sum = 0, got = mc_test_get(out, j, dt), tol;
    for (int p = 0; p < W; p++) {
      double v = nonint_val(input_key(case_id, gs->ranks[p]), j, mbits, emax);
      uint16_t bits;
      put(&bits, 0, dt, v);
      v = mc_test_get(&bits, 0, dt);
      ref += v;
      abs_sum += fabs(v);
    }
    if (exact) {
      uint16_t want;
      put(&want, 0, dt, ref);
      if (want != out[j] && bad_ref++ < 4)
        printf("[rank %d] %s: element %zu is %.9g (0x%04x), want %.9g (0x%04x), exact sum "
               "%.12g\n",
               me, name, j, got, out[j], mc_test_get(&want, 0, dt), want, ref);
      continue;
    }
    /* fp32 accumulation (W roundings of 2^-24 relative to the running sums) + one final
       rounding to the dtype (half an ulp, taken as a full one) */
    tol = (double)W * ldexp(abs_sum, -23) + ldexp(fabs(ref), -mbits) + ldexp(1.0, -24);
    if (!(fabs(got - ref) <= tol) && bad_ref++ < 4)
      printf("[rank %d] %s: element %zu is %.9g, reference %.9g (tolerance %.3g)\n", me, name,
             j, got, ref, tol);
  }
  memset(all, POISON_BYTE, n * 2 * (size_t)W);
  r = api->all_gather(g, out, all, n, dt, NULL);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "%s all_gather of results: %d %s", name, (int)r,
                api->last_error(g_ctx)))
    goto done;
  for (int p = 0; p < W; p++)
    for (size_t j = 0; j < n; j++)
      if (all[(size_t)p * n + j] != out[j] && bad_same++ < 4)
        printf("[rank %d] %s: element %zu is 0x%04x here, 0x%04x on group rank "
               "%d\n",
               me, name, j, out[j], all[(size_t)p * n + j], p);
done:
  ok = MC_CHECK(bad_ref == 0, "%s: %zu elements wrong", name, bad_ref);
  ok &= MC_CHECK(bad_same == 0, "%s: %zu elements differ between ranks", name, bad_same);
  free(in);
  free(out);
  free(all);
  return ok;
}

/* ---- one rank ---- */

static int rank_main(int rank, int world, void *arg) {
  moecomm_topology_t topo = mc_test_topo(world, rank, world);
  moecomm_context_params_t p;
  moecomm_context_t *ctx = NULL;
  moecomm_group_t *g;
  moecomm_group_stats_t gs;
  moecomm_result_t r;
  uint64_t id = (uint64_t)world * 100000u;
  int failed = 0;
  double t0 = now_s(), t1, t2, t3;
  (void)arg;
  topo.ep = world % 2 == 0 ? 2 : 1;
  p = mc_test_ctx_params(&topo, MOECOMM_DEVICE_CPU);
  r = api->context_create(&p, &ctx);
  if (!MC_CHECK(r == MOECOMM_SUCCESS, "rank %d: context_create: %d %s", rank, (int)r,
                api->last_error(NULL)))
    return 1;
  g_ctx = ctx;
  if (!get_group(ctx, MOECOMM_GROUP_TP, &g, &gs)) return 1;
  MC_CHECK(gs.size == world && gs.rank == rank && strcmp(gs.backend_name, "shm") == 0,
           "TP group: size %d rank %d backend %s", gs.size, gs.rank, gs.backend_name);

  failed += small_cases(g, &gs, &id);
  t1 = now_s();
  failed += subgroup_cases(ctx, &id);
  for (int exact = 0; exact < 2; exact++) {
    failed += !determinism_case(g, &gs, MOECOMM_FLOAT16, exact, id++);
    failed += !determinism_case(g, &gs, MOECOMM_BFLOAT16, exact, id++);
  }
  t2 = now_s();
  failed += large_cases(g, &gs, &id);
  t3 = now_s();
  if (rank == 0)
    printf("world %d: small cases %.1f s, sub-groups and determinism %.1f s, 1M/16M %.1f s\n",
           world, t1 - t0, t2 - t1, t3 - t2);
  r = api->context_destroy(ctx);
  MC_CHECK(r == MOECOMM_SUCCESS, "context_destroy: %d", (int)r);
  return failed != 0;
}

int main(int argc, char **argv) {
  static const int worlds[] = {2, 3, 4, 8};
  mc_test_init("shm_collectives", argc, argv);
  api = mc_test_plugin();
  /* A hang becomes a MOECOMM_ERR_TIMEOUT with a message, well before the launcher's limit. */
  setenv("MOECOMM_TIMEOUT_MS", "30000", 0);
  for (size_t i = 0; i < sizeof(worlds) / sizeof(worlds[0]); i++) {
    double t0 = now_s();
    int bad = mc_test_ranks(worlds[i], rank_main, NULL, 240);
    MC_CHECK(bad == 0, "world %d: %d ranks failed", worlds[i], bad);
    printf("world %d done in %.1f s\n", worlds[i], now_s() - t0);
  }
  return mc_test_finish();
}
