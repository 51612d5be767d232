/* SPDX-License-Identifier: Apache-2.0 */
/* scatter_ref.h - a reference model of the scatter modes (ABI 1.1), shared by the host shim's
 * MoE step (host_shim/step_v11.c) and the tests that check moecomm's scatter transitions
 * (tests/core/scatter_modes.c, tests/gpu/scatter_gpu.c).
 *
 * Written from the contract in abi/moecomm.h (moecomm_scatter_args_t: the row layout of each mode)
 * and DESIGN.md's group formulas, not from plugin/scatter.c.  Every row any rank holds is a pure
 * function of (seed, token) or (seed, rank, row), so each rank can build every other rank's input
 * and compute its own expected output alone, exactly:
 *   - a token row (not reduce) holds the token's value V(block, group, token);
 *   - a partial-sum row (reduce) holds P(rank, row), small integers whose sums are exact;
 *   - an input padding row is zero when the transition keeps the mode (its padding is reduced or
 *     copied, and the contract says padding is zero) and garbage otherwise (it must not leak).
 * Output padding must be zero.  Header-only (static inline); depends only on the host library's
 * data.c (exact encodings), which every test and the shim link. */
#ifndef SHIM_SCATTER_REF_H_
#define SHIM_SCATTER_REF_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../../abi/moecomm.h"
#include "data.h"

#define SREF_MAX_RANKS 64
#define SREF_CHUNK 512 /* elements of a row summed at a time (sref_expect) */

typedef struct sref {
  int world, tp, ep, moe_dp, attn_cp, attn_dp; /* defaults applied (no zeros) */
  int attn_tp, moe_tp, ngroups;                /* derived; ngroups = attn_dp * attn_cp */
  const int32_t *tokens; /* (world / tp) blocks of ngroups counts: block k at k * ngroups */
  moecomm_dtype_t dtype;
  size_t hidden;
  uint64_t seed;
} sref_t;

/* This rank's place and row geometry for the current token counts. */
typedef struct sref_geom {
  int base;    /* first world rank of the TP block */
  int blk;     /* TP block index */
  int g, a;    /* attention group in the block, index in its ATTN_TP group */
  size_t t_g;  /* T[g] */
  size_t n_g;  /* SCATTERED rows */
  size_t s;    /* FULL block rows: max T / attn_tp over the block */
  size_t p;    /* MOE_FULL block rows: max T over the MOE_CP members' groups */
  int cp_rank; /* index in MOE_CP */
  int cp_size;
  int32_t cp[SREF_MAX_RANKS]; /* MOE_CP members, group order */
} sref_geom_t;

static inline sref_t sref_make(int world, int tp, int ep, int moe_dp, int attn_cp, int attn_dp) {
  sref_t s;
  memset(&s, 0, sizeof(s));
  s.world = world;
  s.tp = tp;
  s.ep = ep > 0 ? ep : 1;
  s.moe_dp = moe_dp > 0 ? moe_dp : 1;
  s.attn_cp = attn_cp > 0 ? attn_cp : 1;
  s.attn_dp = attn_dp > 0 ? attn_dp : 1;
  s.ngroups = s.attn_dp * s.attn_cp;
  s.attn_tp = tp / s.ngroups;
  s.moe_tp = tp / (s.ep * s.moe_dp);
  s.dtype = MOECOMM_FLOAT32;
  s.hidden = 1;
  return s;
}

static inline size_t sref_esize(moecomm_dtype_t dt) {
  return shim_dtype_size(dt);
}

static inline size_t sref_row_bytes(const sref_t *s) {
  return s->hidden * sref_esize(s->dtype);
}

/* Rank list of `kind` for `rank` (DESIGN.md "Groups"); returns its size.  Kinds: TP, ATTN_TP,
   ATTN_CP, MOE_EP, MOE_TP, MOE_DP and MOE_CP (= MOE_DP). */
static inline int sref_group(const sref_t *s, int kind, int rank, int32_t *out) {
  int b = rank / s->tp * s->tp, q = rank - b, n = 0;
  int start, stop, step;
  if (kind == MOECOMM_GROUP_MOE_CP || kind == MOECOMM_GROUP_MOE_DP) {
    kind = MOECOMM_GROUP_MOE_DP;
    if (s->attn_cp > s->moe_dp)
      kind = MOECOMM_GROUP_ATTN_CP;
    else if (s->moe_dp == s->tp)
      kind = MOECOMM_GROUP_TP;
  }
  switch (kind) {
    case MOECOMM_GROUP_TP:
      start = b;
      stop = b + s->tp;
      step = 1;
      break;
    case MOECOMM_GROUP_ATTN_TP:
      start = b + q / s->attn_tp * s->attn_tp;
      stop = start + s->attn_tp;
      step = 1;
      break;
    case MOECOMM_GROUP_ATTN_CP: {
      int span = s->attn_tp * s->attn_cp, d = q / span, i = q % s->attn_tp;
      start = b + d * span + i;
      stop = b + (d + 1) * span + i;
      step = s->attn_tp;
      break;
    }
    case MOECOMM_GROUP_MOE_EP: {
      int span = s->ep * s->moe_tp, d = q / span, t = q % s->moe_tp;
      start = b + d * span + t;
      stop = b + (d + 1) * span + t;
      step = s->moe_tp;
      break;
    }
    case MOECOMM_GROUP_MOE_TP:
      start = b + q / s->moe_tp * s->moe_tp;
      stop = start + s->moe_tp;
      step = 1;
      break;
    case MOECOMM_GROUP_MOE_DP: {
      int k = q % (s->moe_tp * s->ep);
      start = b + k;
      stop = b + s->tp + k;
      step = s->moe_tp * s->ep;
      break;
    }
    default: return 0;
  }
  for (int r = start; r < stop && n < SREF_MAX_RANKS; r += step) out[n++] = r;
  return n;
}

static inline const int32_t *sref_tokens_of(const sref_t *s, int rank) {
  return s->tokens + (size_t)(rank / s->tp) * (size_t)s->ngroups;
}

static inline void sref_geom(const sref_t *s, int rank, sref_geom_t *g) {
  const int32_t *t = sref_tokens_of(s, rank);
  memset(g, 0, sizeof(*g));
  g->base = rank / s->tp * s->tp;
  g->blk = rank / s->tp;
  g->g = (rank - g->base) / s->attn_tp;
  g->a = (rank - g->base) % s->attn_tp;
  g->t_g = (size_t)t[g->g];
  g->n_g = g->t_g / (size_t)s->attn_tp;
  for (int k = 0; k < s->ngroups; k++)
    if ((size_t)t[k] / (size_t)s->attn_tp > g->s) g->s = (size_t)t[k] / (size_t)s->attn_tp;
  g->cp_size = sref_group(s, MOECOMM_GROUP_MOE_CP, rank, g->cp);
  for (int c = 0; c < g->cp_size; c++) {
    size_t tc = (size_t)t[(g->cp[c] - g->base) / s->attn_tp];
    if (g->cp[c] == rank) g->cp_rank = c;
    if (tc > g->p) g->p = tc;
  }
}

static inline size_t sref_rows(const sref_t *s, int rank, int mode) {
  sref_geom_t g;
  sref_geom(s, rank, &g);
  switch (mode) {
    case MOECOMM_SCATTERED: return g.n_g;
    case MOECOMM_TP_ATTN_FULL: return g.t_g;
    case MOECOMM_FULL: return (size_t)s->tp * g.s;
    case MOECOMM_MOE_FULL: return (size_t)g.cp_size * g.p;
  }
  return 0;
}

/* Which token row `row` of `mode` holds on `rank`: 1 and (group, token) for a token row, 0 for
   padding.  group is the attention group's index in the rank's TP block. */
static inline int sref_row_token(const sref_t *s, int rank, int mode, size_t row, int *group_p,
                                 size_t *tok_p) {
  const int32_t *t = sref_tokens_of(s, rank);
  sref_geom_t g;
  sref_geom(s, rank, &g);
  switch (mode) {
    case MOECOMM_SCATTERED:
      *group_p = g.g;
      *tok_p = (size_t)g.a * g.n_g + row;
      return 1;
    case MOECOMM_TP_ATTN_FULL:
      *group_p = g.g;
      *tok_p = row;
      return 1;
    case MOECOMM_FULL: {
      size_t qb = row / g.s, j = row % g.s;
      int gq = (int)qb / s->attn_tp, aq = (int)qb % s->attn_tp;
      size_t n = (size_t)t[gq] / (size_t)s->attn_tp;
      if (j >= n) return 0;
      *group_p = gq;
      *tok_p = (size_t)aq * n + j;
      return 1;
    }
    case MOECOMM_MOE_FULL: {
      size_t c = row / g.p, i = row % g.p;
      int gc = (g.cp[c] - g.base) / s->attn_tp;
      if (i >= (size_t)t[gc]) return 0;
      *group_p = gc;
      *tok_p = i;
      return 1;
    }
  }
  return 0;
}

/* ---- values ---- */

/* splitmix64: the same sequence on every rank for the same state. */
static inline uint64_t sref_rand(uint64_t *state) {
  return shim_data_rand(state);
}

static inline uint64_t sref_mix(const sref_t *s, uint64_t tag, uint64_t a, uint64_t b) {
  uint64_t st = s->seed ^ (tag << 56) ^ (a << 32) ^ b;
  return sref_rand(&st);
}

/* Element i of buf as a number (NaN for the 0xff poison of the float dtypes). */
static inline double sref_get(const void *buf, size_t i, moecomm_dtype_t dt) {
  return shim_data_decode(shim_data_bits(buf, i, dt), dt);
}

/* Stores the integer v, exactly: every value the model makes is an integer with |v| <= 512
   (shim_data_encode is exact up to 256 in bf16, whose inputs stay within 4 * 64 ranks). */
static inline void sref_set(void *buf, size_t i, moecomm_dtype_t dt, double v) {
  shim_data_put_bits(buf, i, dt, shim_data_encode((int)v, dt));
}

/* n non-zero integers in [-m, m] (m = 4 in bf16, else 8: sums over 64 ranks stay exact), one
   random word per 8 elements. */
static inline void sref_fill(void *out, size_t n, moecomm_dtype_t dt, uint64_t seed) {
  uint64_t st = seed * 0x2545f4914f6cdd1dull + 0x632be59bd9b4e019ull, w = 0;
  uint32_t enc[16];
  int m = dt == MOECOMM_BFLOAT16 ? 4 : 8;
  for (int k = 0; k < 2 * m; k++) enc[k] = shim_data_encode(k < m ? k - m : k - m + 1, dt);
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0) w = sref_rand(&st);
    /* & (2m - 1): the same as % 2m, as 2m divides 256, without a division */
    shim_data_put_bits(out, i, dt, enc[(w >> (8 * (i & 7))) & (uint64_t)(2 * m - 1)]);
  }
}

/* acc[k] += element first + k of what sref_fill(seed) writes, as an integer, k < n: reduced rows
   are summed in integers and encoded once (far cheaper than adding encoded rows). */
static inline void sref_accumulate(int32_t *acc, size_t first, size_t n, moecomm_dtype_t dt,
                                   uint64_t seed) {
  uint64_t st0 = seed * 0x2545f4914f6cdd1dull + 0x632be59bd9b4e019ull, w = 0;
  int m = dt == MOECOMM_BFLOAT16 ? 4 : 8;
  for (size_t i = first; i < first + n; i++) {
    int k;
    /* word j of sref_fill's sequence: the (j + 1)-th step of its splitmix64 state */
    if (i == first || (i & 7) == 0) w = shim_data_mix64(st0 + (i / 8 + 1) * 0x9e3779b97f4a7c15ull);
    k = (int)((w >> (8 * (i & 7))) & (uint64_t)(2 * m - 1));
    acc[i - first] += k < m ? k - m : k - m + 1;
  }
}

/* Token `tok` of attention group `group` of TP block `blk`. */
static inline void sref_token_row(const sref_t *s, int blk, int group, size_t tok, void *out) {
  sref_fill(out, s->hidden, s->dtype,
            sref_mix(s, 1, (uint64_t)(blk * SREF_MAX_RANKS + group), (uint64_t)tok));
}

/* Rank `rank`'s partial sum in its input row `row`. */
static inline void sref_partial_row(const sref_t *s, int rank, size_t row, void *out) {
  sref_fill(out, s->hidden, s->dtype, sref_mix(s, 2, (uint64_t)rank, (uint64_t)row));
}

static inline void sref_garbage_row(const sref_t *s, int rank, size_t row, void *out) {
  sref_fill(out, s->hidden, s->dtype, sref_mix(s, 3, (uint64_t)rank, (uint64_t)row));
}

/* `rank`'s send buffer of mode `from` for the transition from -> to (reduce or not). */
static inline void sref_input(const sref_t *s, int rank, int from, int to, int reduce, void *buf) {
  size_t rows = sref_rows(s, rank, from), rb = sref_row_bytes(s);
  for (size_t r = 0; r < rows; r++) {
    char *row = (char *)buf + r * rb;
    int group;
    size_t tok;
    if (!sref_row_token(s, rank, from, r, &group, &tok)) {
      if (from == to)
        memset(row, 0, rb);
      else
        sref_garbage_row(s, rank, r, row);
    } else if (reduce) {
      sref_partial_row(s, rank, r, row);
    } else {
      sref_token_row(s, rank / s->tp, group, tok, row);
    }
  }
}

/* Ranks whose partial sums a reduce from `from` adds into `rank`'s token (group, tok), and the
   row of their `from` buffers that holds it.  Returns the number of ranks. */
static inline int sref_reducers(const sref_t *s, int rank, int from, int to, size_t out_row,
                                int group, size_t tok, int32_t *ranks, size_t *in_row_p) {
  sref_geom_t g;
  int32_t ep[SREF_MAX_RANKS], mt[SREF_MAX_RANKS];
  int n = 0;
  sref_geom(s, rank, &g);
  if (from == to) {
    *in_row_p = out_row;
  } else if (from == MOECOMM_TP_ATTN_FULL) {
    *in_row_p = tok;
  } else if (from == MOECOMM_FULL) {
    size_t n_grp = (size_t)sref_tokens_of(s, rank)[group] / (size_t)s->attn_tp;
    *in_row_p = ((size_t)group * (size_t)s->attn_tp + tok / n_grp) * g.s + tok % n_grp;
  } else { /* MOE_FULL: this rank's own block */
    *in_row_p = (size_t)g.cp_rank * g.p + tok;
  }
  switch (from) {
    case MOECOMM_TP_ATTN_FULL:
      return sref_group(s, MOECOMM_GROUP_ATTN_TP, g.base + group * s->attn_tp, ranks);
    case MOECOMM_FULL: return sref_group(s, MOECOMM_GROUP_TP, rank, ranks);
    case MOECOMM_MOE_FULL: {
      /* The MoE all-reduce: MOE_TP, then MOE_EP, i.e. over the whole MoE replica. */
      int ne = sref_group(s, MOECOMM_GROUP_MOE_EP, rank, ep);
      for (int e = 0; e < ne; e++) {
        int nt = sref_group(s, MOECOMM_GROUP_MOE_TP, ep[e], mt);
        for (int k = 0; k < nt && n < SREF_MAX_RANKS; k++) ranks[n++] = mt[k];
      }
      return n;
    }
  }
  return 0;
}

/* `rank`'s expected recv rows for from -> to.  scratch (room for one row) is no longer used:
   reduced rows are summed in integers (sref_accumulate). */
static inline void sref_expect(const sref_t *s, int rank, int from, int to, int reduce, void *out,
                               void *scratch) {
  size_t rows = sref_rows(s, rank, to), rb = sref_row_bytes(s);
  int32_t members[SREF_MAX_RANKS];
  for (size_t r = 0; r < rows; r++) {
    char *row = (char *)out + r * rb;
    int group, n;
    size_t tok, in_row;
    if (!sref_row_token(s, rank, to, r, &group, &tok)) {
      memset(row, 0, rb);
      continue;
    }
    if (!reduce) {
      sref_token_row(s, rank / s->tp, group, tok, row);
      continue;
    }
    n = sref_reducers(s, rank, from, to, r, group, tok, members, &in_row);
    for (size_t h0 = 0; h0 < s->hidden; h0 += SREF_CHUNK) {
      int32_t acc[SREF_CHUNK];
      size_t len = s->hidden - h0 < SREF_CHUNK ? s->hidden - h0 : SREF_CHUNK;
      memset(acc, 0, len * sizeof(acc[0]));
      for (int m = 0; m < n; m++)
        sref_accumulate(acc, h0, len, s->dtype, sref_mix(s, 2, (uint64_t)members[m], in_row));
      for (size_t h = 0; h < len; h++) sref_set(row, h0 + h, s->dtype, acc[h]);
    }
  }
}

/* Elements of `rows` rows that differ (NaN-safe: poison never equals a value); *first_p: the
   first wrong row. */
static inline size_t sref_compare(const sref_t *s, const void *got, const void *want, size_t rows,
                                  size_t *first_p) {
  size_t bad = 0;
  for (size_t i = 0; i < rows * s->hidden; i++) {
    double x = sref_get(got, i, s->dtype), y = sref_get(want, i, s->dtype);
    if (!(x == y) && bad++ == 0) *first_p = i / s->hidden;
  }
  return bad;
}

/* Scatter-mode transition arguments (moecomm_scatter_args_t, struct_size set). */
static inline moecomm_scatter_args_t sref_args(int from, int to, int reduce, moecomm_dtype_t dtype,
                                               size_t hidden, const int32_t *tokens, void *send,
                                               void *recv) {
  moecomm_scatter_args_t a;
  memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(a);
  a.from = from;
  a.to = to;
  a.reduce = reduce;
  a.dtype = dtype;
  a.hidden = hidden;
  a.tokens = tokens;
  a.send = send;
  a.recv = recv;
  return a;
}

static inline const char *sref_mode_name(int mode) {
  static const char *const names[4] = {"SCATTERED", "TP_ATTN_FULL", "FULL", "MOE_FULL"};
  return mode >= 0 && mode < 4 ? names[mode] : "?";
}

#endif
