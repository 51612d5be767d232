/* SPDX-License-Identifier: Apache-2.0 */
/* kern_shape.c - the kernels' host-side C on the CPU: grid shapes and slot plans
 * (kernels/shape.c) and the reference arithmetic (kernels/rmsnorm_ref.c).  Links only those two
 * files, so it runs in CPU-only builds too.
 *
 * Plans, for every member count 2..8, every push algorithm, dtype, a spread of counts (1 to 2^27
 * elements, around every chunk boundary) and rows x hidden, grid caps and staging sizes:
 * the grid is within limits and under the cap (so a simulated call of n members with cap
 * floor(SMs / n) is resident), every element belongs to a chunk and no chunk of part 0 is empty,
 * the slots of every peer fit in the staging half, rings are whole rounds of the grid (two for a
 * one-shot team with several chunks), and "no space" is answered exactly when one team's ring
 * cannot fit.  Bad arguments are refused without touching the output.  The plan has no rank
 * argument, so every member computes the same one.
 *
 * Reference: fp16 and bf16 rounding agree with the harness's (independent) converters on random
 * and boundary floats, and every code round-trips; e4m3 round-trips every code, rounds ties to
 * even, saturates, and is the nearest code for random values; the all-reduce reduces in rank
 * order; the fused reference is RMSNorm within fp32 rounding of a float64 computation. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../abi/moecomm.h"
#include "../../kernels/mc_kernels.h"
#include "../../kernels/mc_shape.h"
#include "../../kernels/rmsnorm_ref.h"
#include "../common/harness.h"

#define SIM_SMS 132 /* H200: the simulated GPU tests cap the grid at SIM_SMS / members */

static const int kPushAlgos[2] = {MC_KERN_TWOSHOT_PUSH, MC_KERN_ONESHOT_PUSH};
static const int kFusedAlgos[3] = {MC_KERN_LL, MC_KERN_ONESHOT_PUSH, MC_KERN_TWOSHOT_PUSH};

static uint64_t div_up(uint64_t a, uint64_t b) {
  return (a + b - 1) / b;
}

static int cap_of(int max_blocks) {
  return max_blocks > 0 && max_blocks <= MC_KERN_MAX_BLOCKS ? max_blocks : MC_KERN_BLOCKS_DEFAULT;
}

/* Bytes of one chunk position, from the protocol's definition (mc_shape.h). */
static size_t chunk_bytes_of(int ll, uint64_t vecs) {
  return ll ? vecs * 32 : div_up(vecs, 8) * 128 + 128;
}

/* Whether one team (the smallest grid) cannot hold its ring in a slot of the half. */
static int no_room(uint64_t chunks, size_t chunk_bytes, int kinds, int n, size_t half) {
  const size_t slot_cap = half / ((size_t)kinds * (size_t)(n - 1)) / 128 * 128;
  const size_t need = kinds == 1 && chunks >= 2 ? 2 : 1;
  return slot_cap < need * chunk_bytes;
}

/* Checks shared by both kinds of plan; cap is the staging half (LL: the LL slot). */
static int check_plan(const mc_kern_plan_t *p, int algo, int n, int max_blocks, size_t cap,
                      int per_block, const char *what) {
  const uint64_t rounds = div_up(p->chunks, (uint64_t)p->teams);
  const size_t used = (size_t)p->kinds * (size_t)(n - 1) * p->slot_bytes;
  int ok = 1;
  ok &= MC_CHECK(p->blocks >= 1 && p->blocks <= cap_of(max_blocks), "%s: %d blocks, cap %d", what,
                 p->blocks, cap_of(max_blocks));
  ok &= MC_CHECK(p->threads % p->team_threads == 0 && p->threads >= p->team_threads &&
                     p->threads <= per_block * p->team_threads,
                 "%s: %d threads for teams of %d", what, p->threads, p->team_threads);
  ok &= MC_CHECK(p->teams == p->blocks * (p->threads / p->team_threads), "%s: %d teams", what,
                 p->teams);
  ok &=
      MC_CHECK(p->kinds == (algo == MC_KERN_TWOSHOT_PUSH ? 2 : 1) && p->ll == (algo == MC_KERN_LL),
               "%s: kinds %d, ll %d", what, p->kinds, p->ll);
  ok &= MC_CHECK(p->chunk_bytes == chunk_bytes_of(p->ll, p->chunk_vecs) &&
                     p->chunk_lines == div_up(p->chunk_vecs, 8),
                 "%s: chunk of %zu bytes, %u lines for %u vectors", what, p->chunk_bytes,
                 p->chunk_lines, p->chunk_vecs);
  ok &= MC_CHECK(p->chunks >= 1 && p->chunks <= MC_KERN_CHUNK_LIMIT, "%s: %llu chunks", what,
                 (unsigned long long)p->chunks);
  if (p->ll) {
    /* LL: every chunk has its own place, all of them in the sender's LL slot */
    ok &= MC_CHECK(
        p->ring == p->chunks && p->slot_bytes == p->chunks * p->chunk_bytes && p->slot_bytes <= cap,
        "%s: LL chunks take %zu bytes of a %zu-byte slot", what, p->slot_bytes, cap);
  } else {
    ok &= MC_CHECK(p->ring % (uint32_t)p->teams == 0 && p->ring >= (uint32_t)p->teams &&
                       p->ring <= rounds * (uint64_t)p->teams,
                   "%s: ring %u for %d teams and %llu rounds", what, p->ring, p->teams,
                   (unsigned long long)rounds);
    if (p->kinds == 1 && rounds >= 2)
      ok &= MC_CHECK(p->ring >= 2u * (uint32_t)p->teams,
                     "%s: one-shot ring %u holds less than two rounds of %d teams", what, p->ring,
                     p->teams);
    ok &= MC_CHECK(p->slot_bytes == (size_t)p->ring * p->chunk_bytes && p->slot_bytes % 128 == 0 &&
                       used <= cap,
                   "%s: slots of %zu bytes x %d x %d > half %zu", what, p->slot_bytes, p->kinds,
                   n - 1, cap);
  }
  if (max_blocks == SIM_SMS / n)
    ok &= MC_CHECK(p->blocks * n <= SIM_SMS, "%s: %d members x %d blocks are not resident", what, n,
                   p->blocks);
  return ok;
}

static const size_t kHalves[] = {SIZE_MAX, 32u << 20, 4u << 20, 256u << 10, 16u << 10, 1024};
static const int kCaps[] = {0, 1, 7, 16, 64, 128, 500};
#define NCAPS ((int)(sizeof(kCaps) / sizeof(kCaps[0])))
#define NHALVES (sizeof(kHalves) / sizeof(kHalves[0]))

static int check_all_reduce_plans(void) {
  static const size_t counts[] = {1,       2,        3,         7,        8,       9,     15,
                                  16,      17,       127,       128,      129,     255,   256,
                                  257,     1000,     4095,      4096,     4097,    65535, 65537,
                                  1000003, 1u << 22, 16777217u, 1u << 26, 1u << 27};
  int ok = 1;
  for (int n = 2; n <= 8 && ok; n++)
    for (int a = 0; a < 2; a++)
      for (int dt = 0; dt < 3; dt++)
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
          for (size_t h = 0; h < NHALVES; h++)
            for (int cb = 0; cb <= NCAPS; cb++) {
              const int algo = kPushAlgos[a], mb = cb < NCAPS ? kCaps[cb] : SIM_SMS / n;
              const size_t es = dt == MOECOMM_FLOAT32 ? 4 : 2, nv = div_up(counts[k] * es, 16);
              mc_kern_plan_t p, again;
              char what[160];
              int rc;
              snprintf(what, sizeof(what),
                       "all-reduce algo %d n=%d dtype %d count %zu half %zu cap %d", algo, n, dt,
                       counts[k], kHalves[h], mb);
              rc = mc_kern_plan_all_reduce(algo, n, counts[k], dt, mb, kHalves[h], &p);
              if (rc != MC_KERN_PLAN_OK) {
                const uint64_t vecs = 32u * (uint64_t)MC_KERN_UNROLL(n);
                const int kinds = algo == MC_KERN_TWOSHOT_PUSH ? 2 : 1;
                const uint64_t chunks = div_up(div_up(nv, kinds == 1 ? 1 : n), vecs);
                ok &= MC_CHECK(rc == MC_KERN_PLAN_ENOSPACE &&
                                   no_room(chunks, chunk_bytes_of(0, vecs), kinds, n, kHalves[h]),
                               "%s: refused with %d", what, rc);
                continue;
              }
              ok &= check_plan(&p, algo, n, mb, kHalves[h], MC_KERN_THREADS / 32, what);
              ok &= MC_CHECK(p.team_threads == 32 && p.unroll == MC_KERN_UNROLL(n) &&
                                 p.chunk_vecs == 32u * (uint32_t)p.unroll && p.smem_bytes == 0,
                             "%s: chunk geometry", what);
              /* every vector is in a chunk of its part; part 0's last chunk is not empty */
              ok &= MC_CHECK(p.part_vecs * (p.kinds == 1 ? 1u : (uint64_t)n) >= nv &&
                                 p.chunks * p.chunk_vecs >= p.part_vecs &&
                                 (p.chunks - 1) * p.chunk_vecs < p.part_vecs,
                             "%s: %llu chunks of %u vectors for parts of %llu, %zu in all", what,
                             (unsigned long long)p.chunks, p.chunk_vecs,
                             (unsigned long long)p.part_vecs, nv);
              rc = mc_kern_plan_all_reduce(algo, n, counts[k], dt, mb, kHalves[h], &again);
              ok &= MC_CHECK(rc == 0 && memcmp(&p, &again, sizeof(p)) == 0, "%s: not repeatable",
                             what);
              if (!ok) return 0;
            }
  return ok;
}

static int check_rmsnorm_plans(void) {
  static const size_t rows[] = {1, 3, 7, 8, 9, 64, 512, 4096, 65536};
  static const size_t hiddens[] = {8, 128, 1000, 4096, 7168, 8192, 8200, 16384};
  int ok = 1;
  for (int n = 2; n <= 8 && ok; n++)
    for (int a = 0; a < 3; a++)
      for (int dt = MOECOMM_FLOAT16; dt <= MOECOMM_BFLOAT16; dt++)
        for (size_t t = 0; t < sizeof(rows) / sizeof(rows[0]); t++)
          for (size_t hh = 0; hh < sizeof(hiddens) / sizeof(hiddens[0]); hh++)
            for (size_t h = 0; h < NHALVES; h++)
              for (int cb = 0; cb <= NCAPS; cb++) {
                const int algo = kFusedAlgos[a], mb = cb < NCAPS ? kCaps[cb] : SIM_SMS / n;
                const size_t hid = hiddens[hh];
                const int per_block = hid <= 8192 ? 2 : 1, ll = algo == MC_KERN_LL;
                const int kinds = algo == MC_KERN_TWOSHOT_PUSH ? 2 : 1;
                const size_t cbytes = chunk_bytes_of(ll, hid / 8);
                mc_kern_plan_t p;
                char what[160];
                int rc;
                snprintf(what, sizeof(what),
                         "rmsnorm algo %d n=%d dtype %d T %zu H %zu cap %zu blocks %d", algo, n, dt,
                         rows[t], hid, kHalves[h], mb);
                /* the LL slot and the staging half get the same size here */
                rc =
                    mc_kern_plan_rmsnorm(algo, n, rows[t], hid, dt, mb, kHalves[h], kHalves[h], &p);
                if (rc != MC_KERN_PLAN_OK) {
                  const uint64_t chunks = div_up(rows[t], kinds == 1 ? 1 : n);
                  ok &= MC_CHECK(rc == MC_KERN_PLAN_ENOSPACE &&
                                     (ll ? rows[t] * cbytes > kHalves[h]
                                         : no_room(chunks, cbytes, kinds, n, kHalves[h])),
                                 "%s: refused with %d", what, rc);
                  continue;
                }
                ok &= check_plan(&p, algo, n, mb, kHalves[h], per_block, what);
                ok &=
                    MC_CHECK(p.team_threads == MC_KERN_ROW_TEAM && p.chunk_vecs == hid / 8 &&
                                 p.part_rows * (p.kinds == 1 ? 1u : (uint64_t)n) >= rows[t] &&
                                 (p.part_rows - 1) * (p.kinds == 1 ? 1u : (uint64_t)n) < rows[t] &&
                                 p.chunks == p.part_rows,
                             "%s: row geometry (%u vectors, %llu rows per part)", what,
                             p.chunk_vecs, (unsigned long long)p.part_rows);
                ok &= MC_CHECK(p.smem_bytes == (size_t)(p.threads / MC_KERN_ROW_TEAM) * hid * 2 &&
                                   p.smem_bytes <= 48u << 10,
                               "%s: %zu bytes of shared memory", what, p.smem_bytes);
                if (!ok) return 0;
              }
  return ok;
}

/* Arguments outside the contract: refused with EINVAL, output untouched. */
static int check_plan_refusals(void) {
  static const int ar[][3] = {/* algo, members, dtype; count 64 */
                              {MC_KERN_LL, 2, MOECOMM_BFLOAT16},
                              {MC_KERN_TWOSHOT, 2, MOECOMM_FLOAT32},
                              {7, 2, MOECOMM_BFLOAT16},
                              {MC_KERN_ONESHOT_PUSH, 1, MOECOMM_BFLOAT16},
                              {MC_KERN_ONESHOT_PUSH, 9, MOECOMM_BFLOAT16},
                              {MC_KERN_TWOSHOT_PUSH, 2, MOECOMM_INT32},
                              {MC_KERN_TWOSHOT_PUSH, 2, 7}};
  static const size_t rn[][4] = {
      /* algo, members, rows, hidden; bf16 unless hidden is 4096 */
      {MC_KERN_ONESHOT, 2, 8, 128},      {MC_KERN_LL, 9, 8, 128},
      {MC_KERN_LL, 2, 0, 128},           {MC_KERN_TWOSHOT_PUSH, 2, 8, 0},
      {MC_KERN_TWOSHOT_PUSH, 2, 8, 12},  {MC_KERN_ONESHOT_PUSH, 2, 8, 16392},
      {MC_KERN_ONESHOT_PUSH, 2, 8, 4096}};
  mc_kern_plan_t p, poison;
  int ok = 1;
  memset(&poison, 0x5a, sizeof(poison));
  for (size_t i = 0; i < sizeof(ar) / sizeof(ar[0]); i++) {
    memcpy(&p, &poison, sizeof(p));
    ok &= MC_CHECK(mc_kern_plan_all_reduce(ar[i][0], ar[i][1], 64, ar[i][2], 0, SIZE_MAX, &p) ==
                           MC_KERN_PLAN_EINVAL &&
                       memcmp(&p, &poison, sizeof(p)) == 0,
                   "all-reduce plan (algo %d, %d members, dtype %d) not refused cleanly", ar[i][0],
                   ar[i][1], ar[i][2]);
  }
  memcpy(&p, &poison, sizeof(p));
  ok &= MC_CHECK(mc_kern_plan_all_reduce(MC_KERN_TWOSHOT_PUSH, 2, 0, MOECOMM_FLOAT32, 0, SIZE_MAX,
                                         &p) == MC_KERN_PLAN_EINVAL &&
                     memcmp(&p, &poison, sizeof(p)) == 0,
                 "all-reduce plan of 0 elements not refused cleanly");
  for (size_t i = 0; i < sizeof(rn) / sizeof(rn[0]); i++) {
    const int dt = rn[i][3] == 4096 ? MOECOMM_FLOAT32 : MOECOMM_BFLOAT16;
    memcpy(&p, &poison, sizeof(p));
    ok &=
        MC_CHECK(mc_kern_plan_rmsnorm((int)rn[i][0], (int)rn[i][1], rn[i][2], rn[i][3], dt, 0,
                                      SIZE_MAX, SIZE_MAX, &p) == MC_KERN_PLAN_EINVAL &&
                     memcmp(&p, &poison, sizeof(p)) == 0,
                 "rmsnorm plan (algo %zu, %zu members, T %zu, H %zu, dtype %d) not refused cleanly",
                 rn[i][0], rn[i][1], rn[i][2], rn[i][3], dt);
  }
  return ok;
}

/* The LL, one-shot and two-shot grids (mc_kern_shape) stay within their limits. */
static int check_old_shapes(void) {
  static const size_t counts[] = {1, 7, 8, 33, 1000, 4099, 65536, 1u << 20, 1u << 25};
  int ok = 1;
  for (int n = 2; n <= 8; n++)
    for (int algo = MC_KERN_LL; algo <= MC_KERN_TWOSHOT; algo++)
      for (int dt = 0; dt < 3; dt++)
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
          for (size_t cb = 0; cb < sizeof(kCaps) / sizeof(kCaps[0]); cb++) {
            int blocks = -1, threads = -1;
            mc_kern_shape(algo, n, counts[k], dt, kCaps[cb], &blocks, &threads);
            ok &= MC_CHECK(blocks >= 1 && blocks <= cap_of(kCaps[cb]) && threads >= 32 &&
                               threads <= MC_KERN_THREADS && threads % 32 == 0,
                           "algo %d n=%d dtype %d count %zu cap %d: %d blocks of %d threads", algo,
                           n, dt, counts[k], kCaps[cb], blocks, threads);
          }
  return ok;
}

/* ---- reference arithmetic -------------------------------------------------------------------- */

static float f_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

static int check_half_bf16(void) {
  uint64_t st = 12345;
  int ok = 1;
  /* every code round-trips (NaN codes excepted) */
  for (uint32_t c = 0; c < 65536; c++) {
    const float h = mc_kern_ref_from_half((uint16_t)c), b = mc_kern_ref_from_bf16((uint16_t)c);
    if (!isnan(h) && mc_kern_ref_to_half(h) != c) ok &= MC_CHECK(0, "half code %04x", c);
    if (!isnan(b) && mc_kern_ref_to_bf16(b) != c) ok &= MC_CHECK(0, "bf16 code %04x", c);
  }
  /* random floats of every magnitude, and the halfway points between neighbouring codes, agree
     with the harness's converters */
  for (int i = 0; i < 2000000 && ok; i++) {
    const uint32_t r = (uint32_t)mc_test_rand(&st);
    float f = f_of(r);
    if (i & 1) { /* a halfway point of half (bits 0..12 = 0x1000) or bf16 (bits 0..15 = 0x8000) */
      f = f_of((i & 2) ? ((r & ~0x1fffu) | 0x1000u) : ((r & ~0xffffu) | 0x8000u));
    }
    if (isnan(f)) continue;
    ok &=
        MC_CHECK(mc_kern_ref_to_half(f) == mc_test_to_half(f) &&
                     mc_kern_ref_to_bf16(f) == mc_test_to_bf16(f),
                 "%a (bits %08x): half %04x / %04x, bf16 %04x / %04x", f, r, mc_kern_ref_to_half(f),
                 mc_test_to_half(f), mc_kern_ref_to_bf16(f), mc_test_to_bf16(f));
  }
  return ok;
}

static int check_e4m3(void) {
  uint64_t st = 777;
  int ok = 1;
  for (int c = 0; c < 256; c++) {
    const float v = mc_kern_ref_from_e4m3((uint8_t)c);
    if ((c & 0x7f) == 0x7f) continue;
    ok &= MC_CHECK(mc_kern_ref_to_e4m3(v) == c, "e4m3 code %02x (%g) round-trips to %02x", c, v,
                   mc_kern_ref_to_e4m3(v));
    /* the point halfway to the next code goes to the even one of the two */
    if ((c & 0x7f) < 0x7e) {
      const float next = mc_kern_ref_from_e4m3((uint8_t)(c + 1));
      const float mid = (float)(((double)v + (double)next) / 2);
      const int even = (c & 1) ? c + 1 : c;
      ok &= MC_CHECK(mc_kern_ref_to_e4m3(mid) == even,
                     "e4m3 halfway %g between %02x and %02x -> %02x", mid, c, c + 1,
                     mc_kern_ref_to_e4m3(mid));
    }
  }
  ok &= MC_CHECK(mc_kern_ref_to_e4m3(1e6f) == 0x7e && mc_kern_ref_to_e4m3(-500.0f) == 0xfe &&
                     mc_kern_ref_to_e4m3(INFINITY) == 0x7e && mc_kern_ref_to_e4m3(NAN) == 0x7f,
                 "e4m3 saturation and NaN");
  for (int i = 0; i < 200000 && ok; i++) {
    const double x = ((double)(mc_test_rand(&st) >> 11) / 9007199254740992.0 - 0.5) *
                     ldexp(1.0, (int)(mc_test_rand(&st) % 24) - 12);
    const uint8_t q = mc_kern_ref_to_e4m3((float)x);
    const double d = fabs((double)(float)x - mc_kern_ref_from_e4m3(q));
    for (int o = -1; o <= 1; o += 2) { /* no neighbour is nearer */
      const int nb = (q & 0x7f) + o;
      if (nb < 0 || nb > 0x7e) continue;
      ok &=
          MC_CHECK(d <= fabs((double)(float)x - mc_kern_ref_from_e4m3((uint8_t)((q & 0x80) | nb))),
                   "e4m3 of %g is %02x, not the nearest", x, q);
    }
  }
  return ok;
}

static int check_ref_all_reduce(void) {
  /* fp32, three members: (a + b) + c differs from a + (b + c), and the rule is rank order */
  const float a[2] = {1e8f, 3.0f}, b[2] = {-1e8f, 1e-7f}, c[2] = {1.0f, -3.0f};
  const void *ins[3] = {a, b, c};
  volatile float x = a[0];
  float out[2];
  x = x + b[0];
  x = x + c[0];
  mc_kern_ref_all_reduce(ins, 3, 2, MOECOMM_FLOAT32, MOECOMM_SUM, out);
  return MC_CHECK(out[0] == x && out[0] != (a[0] + (b[0] + c[0])), "rank order: %g, want %g",
                  out[0], (double)x);
}

/* The fused reference against a float64 RMSNorm of the same rounded inputs. */
static int check_ref_rmsnorm(void) {
  enum { T = 5, H = 4096, N = 3 };
  static uint16_t xs[N][T * H], a[T * H], r[T * H], r0[T * H], w[H], y[T * H];
  static uint8_t q[T * H];
  float scale[T];
  const void *ins[N];
  uint64_t st = 99;
  int ok = 1;
  for (int dt = MOECOMM_FLOAT16; dt <= MOECOMM_BFLOAT16 && ok; dt++) {
    uint16_t (*to)(float) = dt == MOECOMM_FLOAT16 ? mc_kern_ref_to_half : mc_kern_ref_to_bf16;
    float (*from)(uint16_t) = dt == MOECOMM_FLOAT16 ? mc_kern_ref_from_half : mc_kern_ref_from_bf16;
    for (int i = 0; i < T * H; i++) {
      for (int m = 0; m < N; m++)
        xs[m][i] = to((float)((double)(mc_test_rand(&st) % 2001) / 500.0 - 2.0));
      r[i] = r0[i] = to((float)((double)(mc_test_rand(&st) % 2001) / 250.0 - 4.0));
    }
    for (int h = 0; h < H; h++) w[h] = to((float)(0.5 + (double)(mc_test_rand(&st) % 1000) / 1000));
    for (int m = 0; m < N; m++) ins[m] = xs[m];
    mc_kern_ref_all_reduce(ins, N, T * H, dt, MOECOMM_SUM, a);
    ok &= MC_CHECK(mc_kern_ref_add_rmsnorm(dt, T, H, a, r, w, 1e-6f, y, q, scale) == 0, "ref");
    for (int t = 0; t < T && ok; t++) {
      double ss = 0, amax = 0;
      for (int h = 0; h < H; h++) {
        const double v = from(r[t * H + h]);
        ok &= MC_CHECK(r[t * H + h] == to(from(a[t * H + h]) + from(r0[t * H + h])),
                       "residual %d,%d", t, h);
        ss += v * v;
      }
      for (int h = 0; h < H && ok; h++) {
        const double want = from(r[t * H + h]) / sqrt(ss / H + 1e-6) * from(w[h]);
        const double got = from(y[t * H + h]);
        amax = fmax(amax, fabs(got));
        ok &=
            MC_CHECK(fabs(got - want) <= fabs(want) * (dt == MOECOMM_FLOAT16 ? 1e-3 : 8e-3) + 1e-6,
                     "dtype %d y[%d,%d] = %.9g, float64 %.9g", dt, t, h, got, want);
      }
      ok &= MC_CHECK(fabs(scale[t] - amax / 448) <= 1e-6 * amax, "scale of row %d", t);
      for (int h = 0; h < H && ok; h++) {
        const double deq = mc_kern_ref_from_e4m3(q[t * H + h]) * scale[t];
        const double yv = from(y[t * H + h]);
        ok &= MC_CHECK(fabs(deq - yv) <= fabs(yv) / 16 + scale[t] * 0x1p-9,
                       "fp8 of y[%d,%d] = %g dequantises to %g", t, h, yv, deq);
      }
    }
  }
  return ok;
}

int main(int argc, char **argv) {
  mc_test_init("kern_shape", argc, argv);
  check_all_reduce_plans();
  check_rmsnorm_plans();
  check_plan_refusals();
  check_old_shapes();
  check_half_bf16();
  check_e4m3();
  check_ref_all_reduce();
  check_ref_rmsnorm();
  return mc_test_finish();
}
