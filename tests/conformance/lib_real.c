/* SPDX-License-Identifier: Apache-2.0 */
/* lib_real.c - sum all-reduces of non-integer values (conf.h).
 *
 * Element j of a rank's input is +-(1 + k / 2^mbits) * 2^e with e in [-emax, emax], rounded to
 * the dtype (mbits: its mantissa bits).  "exact": emax is small enough that every partial sum of
 * up to 8 inputs fits fp32 (fp16: 2*4 + 10 + 1 + 3 bits; bf16: 2*6 + 7 + 1 + 3), so a backend
 * that accumulates in fp32 must return the round-to-nearest-even of the exact sum, whatever its
 * order; for fp32 inputs that holds for 2 ranks only (one rounding).  Otherwise the exponents
 * spread so that the sums round: every rank must get the same bits (compared through the host
 * all-gather) within the accumulation bound of a float64 reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/launch.h"
#include "conf.h"

static int mant_bits(moecomm_dtype_t dt) {
  return dt == MOECOMM_FLOAT16 ? 10 : dt == MOECOMM_BFLOAT16 ? 7 : 23;
}

static uint32_t real_bits(double v, moecomm_dtype_t dt) {
  float f = (float)v;
  uint32_t u;
  if (dt == MOECOMM_FLOAT16) return mc_test_to_half(f);
  if (dt == MOECOMM_BFLOAT16) return mc_test_to_bf16(f);
  memcpy(&u, &f, sizeof(u));
  return u;
}

/* Element j of the input of world rank wr, as a double of the dtype's value. */
static double real_val(uint64_t case_id, int wr, size_t j, moecomm_dtype_t dt, int emax) {
  const int mbits = mant_bits(dt);
  uint64_t h = shim_data_mix64(shim_data_mix64(case_id * 0x9e3779b97f4a7c15ull + (uint64_t)wr) +
                               (uint64_t)j * 0xc2b2ae3d27d4eb4full);
  double v = ldexp(1.0 + (double)(h & ((1ull << mbits) - 1)) / (double)(1ull << mbits),
                   (int)((h >> 24) % (uint64_t)(2 * emax + 1)) - emax);
  if ((h >> 40) & 1) v = -v;
  return dt == MOECOMM_FLOAT32 ? (double)(float)v : shim_data_decode(real_bits(v, dt), dt);
}

/* Compares out with the float64 reference; returns the wrong count (prints the first few). */
static size_t check_values(const conf_rank_t *r, const conf_group_t *grp, const void *out,
                           moecomm_dtype_t dt, int exact, int emax, size_t n, uint64_t case_id,
                           const char *what) {
  const int W = grp->st.size, mbits = mant_bits(dt);
  /* fp32 accumulation rounds each partial sum by 2^-24 of it; a dtype-precision one by
     2^-(mbits+1); plus the final rounding to the dtype (half an ulp, taken as a full one) */
  const int acc_bits = dt == MOECOMM_FLOAT32 || r->be->fp32_accum ? 23 : mbits;
  size_t bad = 0;
  for (size_t j = 0; j < n; j++) {
    double ref = 0, abs_sum = 0, got = shim_data_decode(shim_data_bits(out, j, dt), dt), tol;
    for (int p = 0; p < W; p++) {
      double v = real_val(case_id, grp->st.ranks[p], j, dt, emax);
      ref += v;
      abs_sum += fabs(v);
    }
    if (exact) {
      uint32_t want = real_bits(ref, dt), have = shim_data_bits(out, j, dt);
      if (want != have && bad++ < 4)
        printf("[group rank %d] %s: element %zu is %.9g (0x%x), want %.9g (0x%x)\n", grp->st.rank,
               what, j, got, have, shim_data_decode(want, dt), want);
      continue;
    }
    tol = (double)W * ldexp(abs_sum, -acc_bits) + ldexp(fabs(ref), -mbits) + ldexp(1.0, -24);
    if (!(fabs(got - ref) <= tol) && bad++ < 4)
      printf("[group rank %d] %s: element %zu is %.9g, reference %.9g (tolerance %.3g)\n",
             grp->st.rank, what, j, got, ref, tol);
  }
  return bad;
}

/* Every member of the group holds the same output bits (host all-gather over the world). */
static int same_everywhere(const conf_rank_t *r, const conf_group_t *grp, const void *out,
                           size_t bytes, const char *what) {
  unsigned char *all = malloc(bytes * (size_t)r->world + 1);
  int differ = -1;
  if (!MC_CHECK(all != NULL, "%s: out of memory", what)) return 0;
  if (!MC_CHECK(shim_host_allgather(shim_launch_hub(), out, all, bytes) == 0,
                "%s: host all-gather of the results", what)) {
    free(all);
    return 0;
  }
  for (int p = 0; p < grp->st.size && differ < 0; p++)
    if (memcmp(all + (size_t)grp->st.ranks[p] * bytes, out, bytes) != 0) differ = p;
  free(all);
  return MC_CHECK(differ < 0, "%s: group rank %d got other bits than group rank %d", what, differ,
                  grp->st.rank);
}

int conf_run_real(const conf_rank_t *r, conf_group_t *grp, moecomm_dtype_t dt, int exact, size_t n,
                  uint64_t case_id) {
  const size_t es = shim_dtype_size(dt), bytes = n * es;
  const int emax = exact ? (dt == MOECOMM_BFLOAT16 ? 6 : 4) : (dt == MOECOMM_FLOAT16 ? 12 : 30);
  unsigned char *in_d = NULL, *in_h = NULL, *out_d = NULL, *out_h = NULL;
  moecomm_result_t res;
  char what[128];
  int ok = 0;
  snprintf(what, sizeof(what), "%s sum of %zu non-integers (%s) on %s", shim_dtype_name(dt), n,
           exact ? "exact in fp32" : "rounding", grp->st.kind_name);
  if (!conf_mem_alloc(r, bytes, &in_d, &in_h)) return 0;
  if (!conf_mem_alloc(r, bytes, &out_d, &out_h)) goto out;
  for (size_t j = 0; j < n; j++)
    shim_data_put_bits(in_h, j, dt, real_bits(real_val(case_id, r->rank, j, dt, emax), dt));
  memset(out_h, 0x7f, bytes);
  if (!conf_mem_put(r, in_d, in_h, bytes) || !conf_mem_put(r, out_d, out_h, bytes)) goto out;
  grp->calls++;
  res = r->api->all_reduce(grp->g, in_d, out_d, n, dt, MOECOMM_SUM, r->stream);
  if (!MC_CHECK(res == MOECOMM_SUCCESS, "%s on %s: got %d (%s): %s", what, r->be->name, (int)res,
                r->api->result_string(res), r->api->last_error(r->ctx)) ||
      !conf_mem_sync(r, what) || !conf_mem_get(r, out_h, out_d, bytes))
    goto out;
  ok = MC_CHECK(check_values(r, grp, out_h, dt, exact, emax, n, case_id, what) == 0,
                "%s on %s: elements wrong", what, r->be->name);
  ok &= same_everywhere(r, grp, out_h, bytes, what);
out:
  if (out_h != NULL) conf_mem_free(r, out_d, out_h);
  conf_mem_free(r, in_d, in_h);
  return ok;
}
