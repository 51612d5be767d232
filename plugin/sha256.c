/* SPDX-License-Identifier: Apache-2.0 */
/* sha256.c - SHA-256 after FIPS 180-4 section 6.2, HMAC after RFC 2104 (sha256.h). */
#include "sha256.h"

#include <string.h>

static const uint32_t mc_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t mc_sha256_rotr(uint32_t x, int n) {
  return (x >> n) | (x << (32 - n));
}

static void mc_sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++)
    w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 |
           (uint32_t)p[4 * t + 3];
  for (int t = 16; t < 64; t++) {
    uint32_t s0 = mc_sha256_rotr(w[t - 15], 7) ^ mc_sha256_rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    uint32_t s1 = mc_sha256_rotr(w[t - 2], 17) ^ mc_sha256_rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int t = 0; t < 64; t++) {
    uint32_t s1 = mc_sha256_rotr(e, 6) ^ mc_sha256_rotr(e, 11) ^ mc_sha256_rotr(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = hh + s1 + ch + mc_sha256_k[t] + w[t];
    uint32_t s0 = mc_sha256_rotr(a, 2) ^ mc_sha256_rotr(a, 13) ^ mc_sha256_rotr(a, 22);
    uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = s0 + maj;
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

void mc_sha256_init(mc_sha256_t *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof(iv));
  s->total = 0;
  s->fill = 0;
}

void mc_sha256_update(mc_sha256_t *s, const void *data, size_t len) {
  const uint8_t *p = data;
  s->total += len;
  if (s->fill > 0) {
    size_t take = MC_SHA256_BLOCK - s->fill < len ? MC_SHA256_BLOCK - s->fill : len;
    memcpy(s->block + s->fill, p, take);
    s->fill += take;
    p += take;
    len -= take;
    if (s->fill < MC_SHA256_BLOCK) return;
    mc_sha256_block(s->h, s->block);
    s->fill = 0;
  }
  for (; len >= MC_SHA256_BLOCK; p += MC_SHA256_BLOCK, len -= MC_SHA256_BLOCK)
    mc_sha256_block(s->h, p);
  if (len > 0) memcpy(s->block, p, len);
  s->fill = len;
}

void mc_sha256_final(mc_sha256_t *s, uint8_t out[MC_SHA256_BYTES]) {
  uint64_t bits = s->total * 8;
  /* Padding: 0x80, zeros up to 56 mod 64, then the length in bits, big-endian. */
  s->block[s->fill++] = 0x80;
  if (s->fill > 56) {
    memset(s->block + s->fill, 0, MC_SHA256_BLOCK - s->fill);
    mc_sha256_block(s->h, s->block);
    s->fill = 0;
  }
  memset(s->block + s->fill, 0, 56 - s->fill);
  for (int i = 0; i < 8; i++) s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  mc_sha256_block(s->h, s->block);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
  mc_sha256_wipe(s, sizeof(*s));
}

void mc_sha256(const void *data, size_t len, uint8_t out[MC_SHA256_BYTES]) {
  mc_sha256_t s;
  mc_sha256_init(&s);
  mc_sha256_update(&s, data, len);
  mc_sha256_final(&s, out);
}

void mc_sha256_hmac_init(mc_sha256_hmac_t *h, const void *key, size_t key_len) {
  uint8_t k[MC_SHA256_BLOCK], pad[MC_SHA256_BLOCK];
  memset(k, 0, sizeof(k));
  if (key_len > MC_SHA256_BLOCK)
    mc_sha256(key, key_len, k);
  else if (key_len > 0)
    memcpy(k, key, key_len);
  for (int i = 0; i < MC_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x36;
  mc_sha256_init(&h->inner);
  mc_sha256_update(&h->inner, pad, sizeof(pad));
  for (int i = 0; i < MC_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x5c;
  mc_sha256_init(&h->outer);
  mc_sha256_update(&h->outer, pad, sizeof(pad));
  mc_sha256_wipe(k, sizeof(k));
  mc_sha256_wipe(pad, sizeof(pad));
}

void mc_sha256_hmac_update(mc_sha256_hmac_t *h, const void *data, size_t len) {
  mc_sha256_update(&h->inner, data, len);
}

void mc_sha256_hmac_final(mc_sha256_hmac_t *h, uint8_t out[MC_SHA256_BYTES]) {
  uint8_t inner[MC_SHA256_BYTES];
  mc_sha256_final(&h->inner, inner);
  mc_sha256_update(&h->outer, inner, sizeof(inner));
  mc_sha256_final(&h->outer, out);
  mc_sha256_wipe(inner, sizeof(inner));
}

void mc_sha256_hmac(const void *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[MC_SHA256_BYTES]) {
  mc_sha256_hmac_t h;
  mc_sha256_hmac_init(&h, key, key_len);
  mc_sha256_hmac_update(&h, data, len);
  mc_sha256_hmac_final(&h, out);
}

int mc_sha256_equal(const void *a, const void *b, size_t n) {
  const volatile uint8_t *x = a, *y = b;
  uint8_t diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (uint8_t)(x[i] ^ y[i]);
  return diff == 0;
}

void mc_sha256_wipe(void *p, size_t n) {
  volatile uint8_t *v = p;
  for (size_t i = 0; i < n; i++) v[i] = 0;
}
