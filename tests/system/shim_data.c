/* SPDX-License-Identifier: Apache-2.0 */
/* shim_data.c - the shim's verification data (host_shim/lib/data.c) and report helpers: exact dtype
 * encodings against the harness's converters, fill/value/accumulate agreeing element by element,
 * inputs that differ per (seed, iteration, rank, op), rank-list formatting and quantiles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/data.h"
#include "../../host_shim/lib/report.h"
#include "../common/harness.h"

static const moecomm_dtype_t kDtypes[] = {MOECOMM_FLOAT32, MOECOMM_FLOAT16, MOECOMM_BFLOAT16};

static uint32_t ref_bits(int v, moecomm_dtype_t dt) {
  float f = (float)v;
  uint32_t u;
  switch (dt) {
    case MOECOMM_FLOAT16: return mc_test_to_half(f);
    case MOECOMM_BFLOAT16: return mc_test_to_bf16(f);
    default: memcpy(&u, &f, sizeof(u)); return u;
  }
}

static void test_encode(void) {
  for (size_t d = 0; d < 3; d++) {
    moecomm_dtype_t dt = kDtypes[d];
    int limit = dt == MOECOMM_BFLOAT16 ? 256 : 2048; /* exact integers of the dtype */
    int bad = 0;
    for (int v = -limit; v <= limit && bad < 3; v++) {
      uint32_t got = shim_data_encode(v, dt), want = ref_bits(v, dt);
      if (!MC_CHECK(got == want, "%s encode(%d) = 0x%x, want 0x%x", shim_dtype_name(dt), v, got,
                    want))
        bad++;
      if (!MC_CHECK(shim_data_decode(got, dt) == (double)v, "%s decode(encode(%d)) = %g",
                    shim_dtype_name(dt), v, shim_data_decode(got, dt)))
        bad++;
    }
    /* The poison pattern is NaN and never equal to a value. */
    MC_CHECK(!shim_data_same(shim_dtype_size(dt) == 2 ? 0xffffu : 0xffffffffu,
                             shim_data_encode(0, dt), dt),
             "%s: poison equals zero", shim_dtype_name(dt));
    MC_CHECK(shim_data_same(shim_dtype_size(dt) == 2 ? 0x8000u : 0x80000000u,
                            shim_data_encode(0, dt), dt),
             "%s: -0 and +0 differ", shim_dtype_name(dt));
    MC_CHECK(!shim_data_same(shim_data_encode(3, dt), shim_data_encode(-3, dt), dt), "%s: 3 == -3",
             shim_dtype_name(dt));
  }
  {
    moecomm_dtype_t dt;
    MC_CHECK(shim_dtype_parse("bf16", &dt) == 0 && dt == MOECOMM_BFLOAT16, "parse bf16");
    MC_CHECK(shim_dtype_parse("fp16", &dt) == 0 && dt == MOECOMM_FLOAT16, "parse fp16");
    MC_CHECK(shim_dtype_parse("fp32", &dt) == 0 && dt == MOECOMM_FLOAT32, "parse fp32");
    MC_CHECK(shim_dtype_parse("int8", &dt) != 0 && shim_dtype_parse(NULL, &dt) != 0,
             "bad dtype names refused");
  }
}

static void test_fill(void) {
  const size_t n = 1000, first = 37; /* not multiples of the 16-element blocks */
  shim_data_key_t key = {0xabcdefu, 3, 5, 2};
  int32_t *acc = calloc(n, sizeof(int32_t));
  uint32_t *buf = malloc(n * sizeof(uint32_t));
  int hist[9] = {0};
  if (!MC_CHECK(acc != NULL && buf != NULL, "alloc")) return;
  for (size_t d = 0; d < 3; d++) {
    moecomm_dtype_t dt = kDtypes[d];
    int bad = 0;
    memset(buf, 0xee, n * sizeof(uint32_t));
    shim_data_fill(buf, first, n, dt, &key);
    for (size_t i = 0; i < n && bad < 3; i++) {
      int v = shim_data_value(&key, first + i);
      if (!MC_CHECK(shim_data_bits(buf, i, dt) == shim_data_encode(v, dt),
                    "%s fill[%zu] != value(%zu) = %d", shim_dtype_name(dt), i, first + i, v))
        bad++;
    }
    /* Nothing written past n elements. */
    MC_CHECK(shim_dtype_size(dt) == 4 || ((uint16_t *)buf)[n] == 0xeeee,
             "%s fill wrote past its end", shim_dtype_name(dt));
  }
  shim_data_accumulate(acc, first, n, &key);
  shim_data_accumulate(acc, first, n, &key);
  for (size_t i = 0; i < n; i++) {
    int v = shim_data_value(&key, first + i);
    if (v >= -4 && v <= 4) hist[v + 4]++;
    if (acc[i] != 2 * v) {
      MC_CHECK(0, "accumulate[%zu] = %d, want %d", i, acc[i], 2 * v);
      break;
    }
  }
  MC_CHECK(hist[4] == 0, "a zero input: sums could hide a missing contribution");
  for (int v = -4; v <= 4; v++)
    if (v != 0)
      MC_CHECK(hist[v + 4] > (int)n / 16, "value %d appears %d times in %zu", v, hist[v + 4], n);
  free(acc);
  free(buf);
}

/* Inputs of different ranks, ops, iterations and seeds differ (a stale buffer or a peer's
   block in the wrong place cannot pass). */
static void test_keys(void) {
  shim_data_key_t base = {7, 1, 2, 3};
  shim_data_key_t other[4] = {{8, 1, 2, 3}, {7, 2, 2, 3}, {7, 1, 3, 3}, {7, 1, 2, 4}};
  const char *what[4] = {"seed", "iteration", "rank", "op"};
  for (int k = 0; k < 4; k++) {
    int same = 0;
    for (size_t i = 0; i < 256; i++)
      same += shim_data_value(&base, i) == shim_data_value(&other[k], i);
    /* Independent values agree 1/8 of the time: about 32 of 256. */
    MC_CHECK(same < 64, "changing the %s leaves %d of 256 values equal", what[k], same);
  }
}

static void test_format(void) {
  static const int32_t a[] = {0, 1, 2, 3}, b[] = {0, 4}, c[] = {0, 2, 4, 5, 6, 7}, d[] = {3},
                       e[] = {0, 1, 5, 6, 7, 9};
  char buf[64], tiny[8];
  shim_format_ranks(a, 4, buf, sizeof(buf));
  MC_CHECK(strcmp(buf, "[0-3]") == 0, "got %s", buf);
  shim_format_ranks(b, 2, buf, sizeof(buf));
  MC_CHECK(strcmp(buf, "[0,4]") == 0, "got %s", buf);
  shim_format_ranks(c, 6, buf, sizeof(buf));
  MC_CHECK(strcmp(buf, "[0,2,4-7]") == 0, "got %s", buf);
  shim_format_ranks(d, 1, buf, sizeof(buf));
  MC_CHECK(strcmp(buf, "[3]") == 0, "got %s", buf);
  shim_format_ranks(e, 6, buf, sizeof(buf));
  MC_CHECK(strcmp(buf, "[0,1,5-7,9]") == 0, "got %s", buf);
  shim_format_ranks(c, 6, tiny, sizeof(tiny));
  MC_CHECK(strlen(tiny) < sizeof(tiny) && strstr(tiny, "...") != NULL, "cut: got %s", tiny);
}

static void test_quantiles(void) {
  shim_samples_t s;
  memset(&s, 0, sizeof(s));
  MC_CHECK(shim_samples_quantile(&s, 0.5) < 0, "no samples: no median");
  /* 1..100 in a scrambled order. */
  for (int i = 0; i < 100; i++)
    MC_CHECK(shim_samples_add(&s, (double)((i * 37) % 100 + 1)) == 0, "add");
  MC_CHECK(shim_samples_quantile(&s, 0.5) == 50.0, "median %g", shim_samples_quantile(&s, 0.5));
  MC_CHECK(shim_samples_quantile(&s, 0.9) == 90.0, "p90 %g", shim_samples_quantile(&s, 0.9));
  MC_CHECK(shim_samples_quantile(&s, 1.0) == 100.0, "max %g", shim_samples_quantile(&s, 1.0));
  MC_CHECK(shim_samples_quantile(&s, 0.0) == 1.0, "min %g", shim_samples_quantile(&s, 0.0));
  shim_samples_free(&s);
  MC_CHECK(s.n == 0 && s.v == NULL, "free");
}

int main(int argc, char **argv) {
  mc_test_init("shim_data", argc, argv);
  test_encode();
  test_fill();
  test_keys();
  test_format();
  test_quantiles();
  return mc_test_finish();
}
