/* SPDX-License-Identifier: Apache-2.0 */
/* p2p_cases.h - data, buffer layouts and the cases of the send/recv and all-to-all tests
 * (tests/core/shm_p2p.c on CPU contexts, tests/gpu/p2p_gpu.c on GPUs).  A case reaches its buffers
 * through a p2p_env_t: host memory on CPU, device memory and a stream on a GPU.
 *
 * The calls only move data, so data are random bytes: the block that group member `src` sends to
 * member `dst` in case `case_id` is p2p_fill(p2p_seed(case_id, src, dst)), which the receiver
 * regenerates and compares byte for byte.  A block from the wrong sender, for the wrong receiver
 * or at the wrong offset differs (16 or 32 random bits per element).  Outputs start as
 * P2P_POISON bytes; everything between and after the blocks must keep them.
 *
 * all_to_all_v layouts: counts from a shape (all zero; uneven with zeros; some blocks larger than
 * the shm backend's per-peer piece), and the blocks of each side in a shuffled order with gaps of
 * 0-3 elements between them and P2P_GUARD elements after the last. */
#ifndef MC_TEST_P2P_CASES_H_
#define MC_TEST_P2P_CASES_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define P2P_POISON 0xa5
#define P2P_GUARD 5
#define P2P_MAX_RANKS 64

static inline uint64_t p2p_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t p2p_seed(uint64_t case_id, int src, int dst) {
  return p2p_mix(p2p_mix(case_id + 0x70327032ull) ^ ((uint64_t)(src + 1) << 32) ^ (uint64_t)dst);
}

static inline void p2p_fill(void *buf, size_t bytes, uint64_t seed) {
  unsigned char *b = buf;
  uint64_t st = seed;
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t r = mc_test_rand(&st);
    memcpy(b + i, &r, bytes - i < 8 ? bytes - i : 8);
  }
}

/* The first byte of buf[0, bytes) that differs from p2p_fill(seed), or SIZE_MAX. */
static inline size_t p2p_diff(const void *buf, size_t bytes, uint64_t seed) {
  const unsigned char *b = buf;
  uint64_t st = seed;
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t r = mc_test_rand(&st);
    size_t n = bytes - i < 8 ? bytes - i : 8;
    if (memcmp(b + i, &r, n) != 0)
      for (size_t j = 0; j < n; j++)
        if (b[i + j] != ((const unsigned char *)&r)[j]) return i + j;
  }
  return SIZE_MAX;
}

/* Bytes of buf[0, bytes) that are not P2P_POISON. */
static inline size_t p2p_unpoisoned(const void *buf, size_t bytes) {
  const unsigned char *b = buf;
  size_t bad = 0;
  for (size_t i = 0; i < bytes; i++) bad += b[i] != P2P_POISON;
  return bad;
}

/* ---- all_to_all_v ---- */

typedef enum p2p_vshape {
  P2P_V_ZERO = 0, /* every count 0 */
  P2P_V_UNEVEN,   /* 0..9 elements, about one pair in four 0 */
  P2P_V_LARGE,    /* like UNEVEN, and one pair in three gets `large` + a few elements */
  P2P_V_SHAPES
} p2p_vshape_t;

static const char *const p2p_vshape_names[P2P_V_SHAPES] = {"zero", "uneven", "large"};

/* Elements src sends to dst. */
static inline size_t p2p_vcount(int shape, uint64_t case_id, int src, int dst, size_t large) {
  uint64_t h = p2p_mix(p2p_seed(case_id, src, dst) + 17);
  if (shape == P2P_V_ZERO || h % 4 == 0) return 0;
  if (shape == P2P_V_LARGE && (h >> 8) % 3 == 0) return large + (size_t)((h >> 16) % 5);
  return 1 + (size_t)((h >> 24) % 9);
}

/* Places n blocks of `counts` in an order shuffled by key, with gaps; returns the elements the
   buffer needs (guard included). */
static inline size_t p2p_place(uint64_t key, int n, const size_t *counts, size_t *displs) {
  int order[P2P_MAX_RANKS];
  uint64_t st = key;
  size_t at;
  for (int p = 0; p < n; p++) order[p] = p;
  for (int p = n - 1; p > 0; p--) {
    int q = (int)(mc_test_rand(&st) % (uint64_t)(p + 1)), t = order[p];
    order[p] = order[q];
    order[q] = t;
  }
  at = (size_t)(mc_test_rand(&st) % 4);
  for (int i = 0; i < n; i++) {
    displs[order[i]] = at;
    at += counts[order[i]] + (size_t)(mc_test_rand(&st) % 4);
  }
  return at + P2P_GUARD;
}

/* One rank's all_to_all_v arguments. */
typedef struct p2p_vplan {
  int n, me;
  uint64_t case_id;
  size_t sc[P2P_MAX_RANKS], sd[P2P_MAX_RANKS], rc[P2P_MAX_RANKS], rd[P2P_MAX_RANKS];
  size_t send_len, recv_len; /* elements, gaps and guard included */
} p2p_vplan_t;

static inline void p2p_vplan_init(p2p_vplan_t *v, uint64_t case_id, int n, int me) {
  memset(v, 0, sizeof(*v));
  v->n = n;
  v->me = me;
  v->case_id = case_id;
}

static inline void p2p_vplan(p2p_vplan_t *v, int shape, uint64_t case_id, int n, int me,
                             size_t large) {
  p2p_vplan_init(v, case_id, n, me);
  for (int p = 0; p < n; p++) {
    v->sc[p] = p2p_vcount(shape, case_id, me, p, large);
    v->rc[p] = p2p_vcount(shape, case_id, p, me, large);
  }
  v->send_len = p2p_place(p2p_seed(case_id, me, -1), n, v->sc, v->sd);
  v->recv_len = p2p_place(p2p_seed(case_id, -1, me), n, v->rc, v->rd);
}

/* all_to_all's layout as a plan: equal blocks of `count` in member order from element `off`. */
static inline void p2p_vplan_equal(p2p_vplan_t *v, uint64_t case_id, int n, int me, size_t count,
                                   size_t off) {
  p2p_vplan_init(v, case_id, n, me);
  for (int p = 0; p < n; p++) {
    v->sc[p] = v->rc[p] = count;
    v->sd[p] = v->rd[p] = off + (size_t)p * count;
  }
  v->send_len = v->recv_len = off + (size_t)n * count + P2P_GUARD;
}

/* Poisons send and writes this rank's blocks into it (es bytes per element). */
static inline void p2p_vfill_send(const p2p_vplan_t *v, void *send, size_t es) {
  memset(send, P2P_POISON, v->send_len * es);
  for (int p = 0; p < v->n; p++)
    p2p_fill((unsigned char *)send + v->sd[p] * es, v->sc[p] * es, p2p_seed(v->case_id, v->me, p));
}

/* recv after the call: block p as member p sent it, every other byte still poison.  Prints the
   first problem with `what`; returns 1 when all is well. */
static inline int p2p_vcheck(const p2p_vplan_t *v, const void *recv, size_t es, const char *what) {
  const unsigned char *r = recv;
  unsigned char *covered = calloc(v->recv_len ? v->recv_len : 1, 1);
  size_t bad_blocks = 0, bad_gaps = 0;
  if (covered == NULL) return MC_CHECK(0, "%s: out of memory", what);
  for (int p = 0; p < v->n; p++) {
    size_t at = p2p_diff(r + v->rd[p] * es, v->rc[p] * es, p2p_seed(v->case_id, p, v->me));
    memset(covered + v->rd[p], 1, v->rc[p]);
    if (at != SIZE_MAX && bad_blocks++ == 0)
      printf("[rank %d] %s: block from member %d (%zu elements at %zu) differs at element %zu\n",
             v->me, what, p, v->rc[p], v->rd[p], at / es);
  }
  for (size_t i = 0; i < v->recv_len; i++)
    if (!covered[i] && p2p_unpoisoned(r + i * es, es) != 0 && bad_gaps++ == 0)
      printf("[rank %d] %s: element %zu outside every block was written\n", v->me, what, i);
  free(covered);
  return MC_CHECK(bad_blocks == 0 && bad_gaps == 0,
                  "%s: %zu of %d blocks wrong, %zu elements outside the blocks written", what,
                  bad_blocks, v->n, bad_gaps);
}

/* ---- the cases, over host or device buffers ---- */

#include "../../host_shim/lib/data.h"

/* Where a case's buffers live and how the calls are made. */
typedef struct p2p_env {
  const moecomm_api_t *api;
  moecomm_context_t *ctx;
  void *stream; /* the calls' stream: NULL on a CPU context */
  void *(*alloc)(size_t bytes);
  void (*release)(void *buf);
  int (*put)(void *dst, const void *host, size_t bytes); /* host -> buffer; 1 on success */
  int (*get)(void *host, const void *src, size_t bytes); /* buffer -> host once the calls are
                                                              done; 1 on success */
} p2p_env_t;

/* A group and this rank's place in it. */
typedef struct p2p_grp {
  moecomm_group_t *g;
  int n, me;
} p2p_grp_t;

static const moecomm_dtype_t p2p_dtypes[4] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16,
                                              MOECOMM_INT32};

static inline int p2p_group(const p2p_env_t *e, moecomm_group_kind_t kind, p2p_grp_t *gr) {
  moecomm_group_stats_t st;
  moecomm_result_t r = e->api->group_get(e->ctx, kind, &gr->g);
  memset(&st, 0, sizeof(st));
  st.struct_size = sizeof(st);
  if (r == MOECOMM_SUCCESS) r = e->api->group_stats(gr->g, &st);
  gr->n = st.size;
  gr->me = st.rank;
  return MC_CHECK(r == MOECOMM_SUCCESS, "group %d: %d %s", (int)kind, (int)r,
                  e->api->last_error(e->ctx));
}

/* A buffer of `bytes` holding host's bytes; NULL after a failed check. */
static inline unsigned char *p2p_upload(const p2p_env_t *e, const void *host, size_t bytes) {
  unsigned char *d = e->alloc(bytes ? bytes : 1);
  if (!MC_CHECK(d != NULL, "allocating %zu bytes", bytes)) return NULL;
  if (e->put(d, host, bytes)) return d;
  e->release(d);
  return NULL;
}

/* One message src -> dst on gr (the others return at once): seeded data, a poisoned recv
   buffer with guard elements, the send buffer unchanged.  0 when a call or a check failed. */
static inline int p2p_one(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t id, int src, int dst,
                          moecomm_dtype_t dt, size_t n, int misalign) {
  const size_t es = shim_dtype_size(dt), bytes = n * es, off = (size_t)misalign * es;
  const size_t total = bytes + off + P2P_GUARD * es;
  unsigned char *h, *d = NULL;
  moecomm_result_t r = MOECOMM_ERR_INTERNAL;
  int ok = 0;
  char what[128];
  if (gr->me != src && gr->me != dst) return 1;
  snprintf(what, sizeof(what), "%s of %zu %s from member %d to %d", gr->me == src ? "send" : "recv",
           n, shim_dtype_name(dt), src, dst);
  h = malloc(total);
  if (!MC_CHECK(h != NULL, "%s: out of memory", what)) return 0;
  memset(h, P2P_POISON, total);
  if (gr->me == src) p2p_fill(h + off, bytes, p2p_seed(id, src, dst));
  if ((d = p2p_upload(e, h, total)) == NULL) goto out;
  r = gr->me == src ? e->api->send(gr->g, d + off, n, dt, dst, e->stream)
                    : e->api->recv(gr->g, d + off, n, dt, src, e->stream);
  if (!MC_CHECK_RC(e->api, e->ctx, r, MOECOMM_SUCCESS) || !e->get(h, d, total)) goto out;
  ok = MC_CHECK(p2p_diff(h + off, bytes, p2p_seed(id, src, dst)) == SIZE_MAX, "%s: %s", what,
                gr->me == src ? "the send buffer changed" : "wrong data");
  ok &=
      MC_CHECK(p2p_unpoisoned(h, off) == 0 && p2p_unpoisoned(h + off + bytes, P2P_GUARD * es) == 0,
               "%s: bytes outside the buffer written", what);
out:
  if (d != NULL) e->release(d);
  free(h);
  return ok;
}

/* Every ordered pair in turn, the others skipping ahead (a schedule that cannot deadlock: the
   earliest pair still waiting has both members at it), then a few messages larger than the
   shm ring. */
static inline int p2p_pair_cases(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t *id) {
  static const size_t counts[] = {0, 1, 7, 4095};
  int failed = 0;
  for (int s = 0; s < gr->n; s++)
    for (int d = 0; d < gr->n; d++) {
      if (s == d) continue;
      for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
        for (int t = 0; t < 4; t++, (*id)++)
          failed += !p2p_one(e, gr, *id, s, d, p2p_dtypes[t], counts[k], (int)(*id % 3));
    }
  failed += !p2p_one(e, gr, (*id)++, 0, 1, MOECOMM_FLOAT32, 300007, 1);
  failed += !p2p_one(e, gr, (*id)++, 1, 0, MOECOMM_BFLOAT16, 300007, 0);
  failed += !p2p_one(e, gr, (*id)++, gr->n - 1, 0, MOECOMM_INT32, 300007, 2);
  return failed;
}

/* Rings both ways: send to me + dir, receive from me - dir; even members send first and odd
   ones receive first, so a send that waits for its receiver cannot deadlock. */
static inline int p2p_ring_cases(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t *id) {
  static const size_t counts[] = {1, 4095, 300007};
  int failed = 0;
  for (int dir = 1; dir >= -1; dir -= 2)
    for (size_t k = 0; k < 3; k++, (*id)++) {
      const moecomm_dtype_t dt = p2p_dtypes[(k + (size_t)(dir + 1)) % 4];
      const int next = (gr->me + dir + gr->n) % gr->n, prev = (gr->me - dir + gr->n) % gr->n;
      for (int half = 0; half < 2; half++)
        failed += (half == gr->me % 2) ? !p2p_one(e, gr, *id, gr->me, next, dt, counts[k], 0)
                                       : !p2p_one(e, gr, *id, prev, gr->me, dt, counts[k], 1);
    }
  return failed;
}

/* One message forwarded hop by hop from member 0 to the last member, checked at every hop. */
static inline int p2p_chain_case(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t id, size_t n) {
  const size_t bytes = n * 4;
  const uint64_t seed = p2p_seed(id, 0, gr->n - 1);
  unsigned char *h = malloc(bytes), *d = NULL;
  int ok = 0;
  if (!MC_CHECK(h != NULL, "out of memory")) return 0;
  memset(h, P2P_POISON, bytes);
  if (gr->me == 0) p2p_fill(h, bytes, seed);
  if ((d = p2p_upload(e, h, bytes)) == NULL) goto out;
  if (gr->me > 0) {
    moecomm_result_t r = e->api->recv(gr->g, d, n, MOECOMM_INT32, gr->me - 1, e->stream);
    if (!MC_CHECK_RC(e->api, e->ctx, r, MOECOMM_SUCCESS) || !e->get(h, d, bytes) ||
        !MC_CHECK(p2p_diff(h, bytes, seed) == SIZE_MAX, "chain: member %d got wrong data", gr->me))
      goto out;
  }
  ok = gr->me == gr->n - 1 ||
       MC_CHECK_RC(e->api, e->ctx, e->api->send(gr->g, d, n, MOECOMM_INT32, gr->me + 1, e->stream),
                   MOECOMM_SUCCESS);
out:
  if (d != NULL) e->release(d);
  free(h);
  return ok;
}

/* Six messages of mixed sizes and dtypes from src to dst, all issued before any is checked (on a
   GPU they are in flight together), then checked in order: sends and receives between a pair
   match in issue order. */
static inline int p2p_fifo_case(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t id, int src,
                                int dst) {
  enum { K = 6 };
  static const moecomm_dtype_t dts[K] = {MOECOMM_FLOAT32, MOECOMM_BFLOAT16, MOECOMM_INT32,
                                         MOECOMM_FLOAT16, MOECOMM_FLOAT32,  MOECOMM_INT32};
  static const size_t ns[K] = {3, 300001, 0, 1, 70001, 129};
  unsigned char *h[K] = {NULL}, *d[K] = {NULL};
  int ok = 1;
  if (gr->me != src && gr->me != dst) return 0;
  for (int i = 0; i < K && ok; i++) {
    const size_t bytes = ns[i] * shim_dtype_size(dts[i]), total = bytes + P2P_GUARD * 4;
    const uint64_t seed = p2p_seed(id * 8 + (uint64_t)i, src, dst);
    moecomm_result_t r;
    ok = MC_CHECK((h[i] = malloc(total)) != NULL, "fifo: out of memory");
    if (!ok) break;
    memset(h[i], P2P_POISON, total);
    if (gr->me == src) p2p_fill(h[i], bytes, seed);
    ok = (d[i] = p2p_upload(e, h[i], total)) != NULL;
    if (!ok) break;
    r = gr->me == src ? e->api->send(gr->g, d[i], ns[i], dts[i], dst, e->stream)
                      : e->api->recv(gr->g, d[i], ns[i], dts[i], src, e->stream);
    ok = MC_CHECK_RC(e->api, e->ctx, r, MOECOMM_SUCCESS);
  }
  for (int i = 0; i < K && ok; i++) {
    const size_t bytes = ns[i] * shim_dtype_size(dts[i]), total = bytes + P2P_GUARD * 4;
    ok = e->get(h[i], d[i], total) &&
         MC_CHECK(p2p_diff(h[i], bytes, p2p_seed(id * 8 + (uint64_t)i, src, dst)) == SIZE_MAX &&
                      p2p_unpoisoned(h[i] + bytes, P2P_GUARD * 4) == 0,
                  "fifo %d -> %d: message %d (%zu %s) wrong on member %d", src, dst, i, ns[i],
                  shim_dtype_name(dts[i]), gr->me);
  }
  for (int i = 0; i < K; i++) {
    if (d[i] != NULL) e->release(d[i]);
    free(h[i]);
  }
  return !ok;
}

/* Stage s's part of a pipeline hop: receive from `from` (or start from x), transform on the
   host with f, send to `to` (or return the result in h).  -1: no such stage. */
static inline int p2p_stage(const p2p_env_t *e, const p2p_grp_t *pp, unsigned char *h,
                            unsigned char *d, size_t n, moecomm_dtype_t dt, int from, int to,
                            void (*f)(void *h, size_t n, int stage)) {
  const size_t bytes = n * shim_dtype_size(dt);
  if (from >= 0 &&
      !MC_CHECK_RC(e->api, e->ctx, e->api->recv(pp->g, d, n, dt, from, e->stream), MOECOMM_SUCCESS))
    return 0;
  if (from >= 0 && !e->get(h, d, bytes)) return 0;
  f(h, n, pp->me);
  if (to < 0) return 1;
  return e->put(d, h, bytes) &&
         MC_CHECK_RC(e->api, e->ctx, e->api->send(pp->g, d, n, dt, to, e->stream), MOECOMM_SUCCESS);
}

static inline void p2p_add_stage(void *h, size_t n, int stage) { /* fp32 activations */
  for (size_t i = 0; i < n; i++) ((float *)h)[i] += (float)(stage + 1);
}
static inline void p2p_double(void *h, size_t n, int stage) { /* bf16 gradients */
  (void)stage;
  for (size_t i = 0; i < n; i++)
    ((uint16_t *)h)[i] = mc_test_to_bf16(2.0f * mc_test_from_bf16(((uint16_t *)h)[i]));
}

/* A pipeline over the PP group: micro-batch m's activations enter stage 0 as x_m, each stage adds
   (its index + 1) and hands them on; the last stage checks x_m + S(S+1)/2.  Then gradients g_m
   leave the last stage backwards, each stage doubling them; stage 0 checks g_m * 2^S.  Integer
   values: exact in fp32 and bf16. */
static inline int p2p_pipeline_case(const p2p_env_t *e, uint64_t id) {
  enum { M = 4, H = 5000 };
  float act[H], x[H];
  uint16_t grad[H], g0[H];
  unsigned char *d = NULL;
  p2p_grp_t pp;
  int failed = 0;
  if (!p2p_group(e, MOECOMM_GROUP_PP, &pp)) return 1;
  if ((d = e->alloc(sizeof(act))) == NULL) return !MC_CHECK(0, "pipeline: allocation");
  const int s = pp.me, S = pp.n;
  for (int m = 0; m < M && failed == 0; m++) {
    size_t bad = 0;
    mc_test_fill(x, H, MOECOMM_FLOAT32, id * 16 + (uint64_t)m);
    memcpy(act, x, sizeof(act));
    if (!p2p_stage(e, &pp, (unsigned char *)act, d, H, MOECOMM_FLOAT32, s > 0 ? s - 1 : -1,
                   s < S - 1 ? s + 1 : -1, p2p_add_stage))
      failed++;
    else if (s == S - 1)
      for (int i = 0; i < H; i++) bad += act[i] != x[i] + (float)(S * (S + 1) / 2);
    failed += !MC_CHECK(bad == 0, "pipeline forward, micro-batch %d: %zu of %d wrong", m, bad, H);
  }
  for (int m = M - 1; m >= 0 && failed == 0; m--) {
    size_t bad = 0;
    mc_test_fill(g0, H, MOECOMM_BFLOAT16, id * 16 + 8 + (uint64_t)m);
    memcpy(grad, g0, sizeof(grad));
    if (!p2p_stage(e, &pp, (unsigned char *)grad, d, H, MOECOMM_BFLOAT16, s < S - 1 ? s + 1 : -1,
                   s > 0 ? s - 1 : -1, p2p_double))
      failed++;
    else if (s == 0)
      for (int i = 0; i < H; i++)
        bad += mc_test_from_bf16(grad[i]) != mc_test_from_bf16(g0[i]) * (float)(1 << S);
    failed += !MC_CHECK(bad == 0, "pipeline backward, micro-batch %d: %zu of %d wrong", m, bad, H);
  }
  e->release(d);
  return failed;
}

/* One all_to_all_v, or (equal >= 0) an all_to_all of `equal` elements per peer as a plan with no
   gaps.  mismatch: member 0 expects one element more from member 1 than it sends, so every
   member must fail alike and write nothing. */
static inline int p2p_a2a_case(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t id,
                               moecomm_dtype_t dt, int shape, long equal, int mismatch) {
  const size_t es = shim_dtype_size(dt), off = (size_t)(id % 3);
  unsigned char *hs = NULL, *hr = NULL, *ds = NULL, *dr = NULL;
  p2p_vplan_t v;
  moecomm_result_t r;
  char what[128];
  int ok = 0;
  if (equal >= 0)
    p2p_vplan_equal(&v, id, gr->n, gr->me, (size_t)equal, off);
  else
    p2p_vplan(&v, shape, id, gr->n, gr->me, 200000);
  if (mismatch && gr->me == 0) v.rc[1]++;
  if (equal >= 0)
    snprintf(what, sizeof(what), "all_to_all of %ld %s per peer (%d ranks)", equal,
             shim_dtype_name(dt), gr->n);
  else
    snprintf(what, sizeof(what), "all_to_all_v %s of %s (%d ranks)%s", p2p_vshape_names[shape],
             shim_dtype_name(dt), gr->n, mismatch ? " with counts that disagree" : "");
  hs = malloc(v.send_len * es);
  hr = malloc((v.recv_len + 1) * es);
  if (!MC_CHECK(hs && hr, "%s: out of memory", what)) goto out;
  p2p_vfill_send(&v, hs, es);
  memset(hr, P2P_POISON, (v.recv_len + 1) * es);
  if ((ds = p2p_upload(e, hs, v.send_len * es)) == NULL ||
      (dr = p2p_upload(e, hr, (v.recv_len + 1) * es)) == NULL)
    goto out;
  r = equal >= 0
          ? e->api->all_to_all(gr->g, ds + off * es, dr + off * es, (size_t)equal, dt, e->stream)
          : e->api->all_to_all_v(gr->g, ds, v.sc, v.sd, dr, v.rc, v.rd, dt, e->stream);
  if (!MC_CHECK_RC(e->api, e->ctx, r, mismatch ? MOECOMM_ERR_INVALID_ARGUMENT : MOECOMM_SUCCESS) ||
      !e->get(hr, dr, (v.recv_len + 1) * es) || !e->get(hs, ds, v.send_len * es))
    goto out;
  if (mismatch || equal == 0)
    ok = MC_CHECK(p2p_unpoisoned(hr, (v.recv_len + 1) * es) == 0, "%s: recv written", what);
  else
    ok = p2p_vcheck(&v, hr, es, what);
  for (int p = 0; p < gr->n; p++)
    ok &= MC_CHECK(p2p_diff(hs + v.sd[p] * es, v.sc[p] * es, p2p_seed(id, gr->me, p)) == SIZE_MAX,
                   "%s: the send buffer changed", what);
out:
  if (ds != NULL) e->release(ds);
  if (dr != NULL) e->release(dr);
  free(hs);
  free(hr);
  return ok;
}

/* all_to_all: every dtype x per-peer counts 0, 1, 7, 4095, 262147; all_to_all_v: every shape x
   dtype; on CPU also counts that disagree (the error on every member), then a call that works. */
static inline int p2p_a2a_cases(const p2p_env_t *e, const p2p_grp_t *gr, uint64_t *id,
                                int mismatch) {
  static const long counts[] = {0, 1, 7, 4095, 262147};
  int failed = 0;
  for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
    for (int t = 0; t < 4; t++, (*id)++)
      failed += !p2p_a2a_case(e, gr, *id, p2p_dtypes[t], 0, counts[k], 0);
  for (int shape = 0; shape < P2P_V_SHAPES; shape++)
    for (int t = 0; t < 4; t++, (*id)++)
      failed += !p2p_a2a_case(e, gr, *id, p2p_dtypes[t], shape, -1, 0);
  if (mismatch) {
    failed += !p2p_a2a_case(e, gr, (*id)++, MOECOMM_INT32, P2P_V_UNEVEN, -1, 1);
    failed += !p2p_a2a_case(e, gr, (*id)++, MOECOMM_FLOAT16, P2P_V_UNEVEN, -1, 0);
  }
  return failed;
}

#endif
