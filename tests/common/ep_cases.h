/* SPDX-License-Identifier: Apache-2.0 */
/* ep_cases.h - routing cases, data and the exact identity-expert expectation for the
 * expert-parallel tests (tests/core/ep_layout.c on CPU, tests/gpu/ep_kernels.c on a GPU).
 *
 * Integer data (kind 0): payload values are non-zero integers |v| <= 4 and weights are +-1/2, 1,
 * 2, so with top-k <= 8 every partial sum is a multiple of 1/2 of magnitude <= 64 (7 significant
 * bits): exact in fp32 and in the final bf16/fp16/fp32 rounding.  Real data (kind 1): values of
 * mixed sign and magnitude, for bit-for-bit comparisons between implementations. */
#ifndef MC_TEST_EP_CASES_H_
#define MC_TEST_EP_CASES_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../plugin/ep_layout.h"
#include "harness.h"

typedef enum ep_route {
  EP_ROUTE_RANDOM,   /* distinct experts per token, about one slot in ten masked */
  EP_ROUTE_SUBSET,   /* only every third expert is used: the others stay empty */
  EP_ROUTE_ONE,      /* every token's slot 0 goes to one expert, the other slots are masked */
  EP_ROUTE_MASKED,   /* three slots in four masked */
  EP_ROUTE_ONE_RANK, /* all of a token's experts on one member, ids may repeat within a token */
  EP_ROUTE_COUNT
} ep_route_t;

static const char *const ep_route_names[EP_ROUTE_COUNT] = {"random", "subset", "one-expert",
                                                           "masked", "one-rank"};

/* A configuration; every field given. */
static inline mc_ep_config_t ep_config(int n, int experts, int k_n, int dtype, int cdtype,
                                       int scales, int path, int64_t t_max, int64_t hidden,
                                       int64_t cap) {
  mc_ep_config_t c;
  memset(&c, 0, sizeof(c));
  c.ranks = n;
  c.experts = experts;
  c.top_k = k_n;
  c.dtype = dtype;
  c.combine_dtype = cdtype;
  c.scales = scales;
  c.path = path;
  c.t_max = t_max;
  c.hidden = hidden;
  c.capacity = cap;
  return c;
}

/* One random expert id for slot k of a token whose earlier slots are ids[0..k). */
static inline int32_t ep_pick(const int32_t *ids, int k, int experts, int ranks, int kind, int hot,
                              int home, uint64_t *st) {
  const int el = experts / ranks;
  uint64_t r = mc_test_rand(st);
  switch (kind) {
    case EP_ROUTE_RANDOM: {
      int32_t e;
      int dup;
      if (r % 10 == 0) return -1;
      do { /* distinct while there are experts left */
        e = (int32_t)(mc_test_rand(st) % (uint64_t)experts);
        dup = 0;
        for (int j = 0; j < k; j++) dup |= ids[j] == e;
      } while (dup && k < experts);
      return e;
    }
    case EP_ROUTE_SUBSET: return (int32_t)(r % (uint64_t)((experts + 2) / 3)) * 3;
    case EP_ROUTE_ONE: return k == 0 ? hot : -1;
    case EP_ROUTE_MASKED: return r % 4 == 0 ? (int32_t)((r >> 8) % (uint64_t)experts) : -1;
    default: return (int32_t)(home * el + (int)(r % (uint64_t)el));
  }
}

/* ids [tokens][k_n] of one member; `hot` is the expert EP_ROUTE_ONE uses (the same on every
   member of a case). */
static inline void ep_make_ids(int32_t *ids, int64_t tokens, int k_n, int experts, int ranks,
                               int kind, int hot, uint64_t *st) {
  for (int64_t t = 0; t < tokens; t++) {
    const int home = (int)(mc_test_rand(st) % (uint64_t)ranks);
    for (int k = 0; k < k_n; k++)
      ids[t * k_n + k] = ep_pick(ids + t * k_n, k, experts, ranks, kind, hot, home, st);
  }
}

/* n elements of a payload or combine dtype (kind 0 integers, 1 reals); fp8 gets any byte that is
   not a NaN (the payload is only moved, never interpreted). */
static inline void ep_fill(void *buf, size_t n, int32_t dtype, int kind, uint64_t *st) {
  for (size_t i = 0; i < n; i++) {
    const uint64_t r = mc_test_rand(st);
    float v;
    if (dtype == MC_EP_FLOAT8_E4M3) {
      uint8_t b = (uint8_t)r;
      ((uint8_t *)buf)[i] = (b & 0x7f) == 0x7f ? 0x3c : b;
      continue;
    }
    if (kind == 0) {
      v = (float)((int)(r % 8) - 4);
      if (v >= 0) v += 1;
    } else {
      v = (float)ldexp(1.0 + (double)(r >> 40) / (double)(1ull << 24), (int)((r >> 8) % 8) - 4);
      if (r & 1) v = -v;
    }
    if (dtype == MOECOMM_FLOAT32)
      ((float *)buf)[i] = v;
    else if (dtype == MOECOMM_FLOAT16)
      ((uint16_t *)buf)[i] = mc_ep_to_half(v);
    else
      ((uint16_t *)buf)[i] = mc_ep_to_bf16(v);
  }
}

/* n router weights: kind 0 +-1/2, +-1, +-2; kind 1 reals in (-2, 2). */
static inline void ep_fill_weights(float *w, size_t n, int kind, uint64_t *st) {
  static const float k_w[6] = {0.5f, -0.5f, 1.0f, -1.0f, 2.0f, -2.0f};
  for (size_t i = 0; i < n; i++) {
    const uint64_t r = mc_test_rand(st);
    w[i] = kind == 0 ? k_w[r % 6] : (float)(((double)(r >> 11) / (double)(1ull << 53)) * 4.0 - 2.0);
  }
}

/* Element i of a float dtype as double. */
static inline double ep_get(const void *buf, size_t i, int32_t dtype) {
  if (dtype == MOECOMM_FLOAT32) return ((const float *)buf)[i];
  if (dtype == MOECOMM_FLOAT16) return mc_ep_from_half(((const uint16_t *)buf)[i]);
  return mc_ep_from_bf16(((const uint16_t *)buf)[i]);
}

/* Checks out [tokens][H] (combine dtype) of member `me` against the identity experts' exact result
   sum over kept k of w * x (integer data: exact).  kept[i] says whether item i of `me` has a row.
   Returns 1 when every element matches. */
static inline int ep_check_identity(const mc_ep_layout_t *l, const mc_ep_ref_rank_t *me,
                                    const uint8_t *kept, const void *out, const char *what) {
  const int64_t h = l->cfg.hidden, k_n = l->cfg.top_k;
  for (int64_t t = 0; t < me->tokens; t++) {
    for (int64_t j = 0; j < h; j++) {
      double want = 0, got = ep_get(out, (size_t)(t * h + j), l->cfg.combine_dtype);
      for (int64_t k = 0; k < k_n; k++)
        if (kept[t * k_n + k])
          want += me->weights[t * k_n + k] * ep_get(me->x, (size_t)(t * h + j), l->cfg.dtype);
      if (got != want)
        return MC_CHECK(0, "%s: token %lld element %lld is %g, sum of w*x is %g", what,
                        (long long)t, (long long)j, got, want);
    }
  }
  return 1;
}

#endif
