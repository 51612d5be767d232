/* SPDX-License-Identifier: Apache-2.0 */
/* sha256.h - SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the store's authentication.
 *
 * Small and portable rather than fast: the store hashes a few hundred bytes per connection. */
#ifndef MC_SHA256_H_
#define MC_SHA256_H_

#include <stddef.h>
#include <stdint.h>

#define MC_SHA256_BYTES 32
#define MC_SHA256_BLOCK 64

typedef struct mc_sha256 {
  uint32_t h[8];
  uint64_t total; /* bytes hashed so far */
  size_t fill;    /* bytes waiting in block */
  uint8_t block[MC_SHA256_BLOCK];
} mc_sha256_t;

typedef struct mc_sha256_hmac {
  mc_sha256_t inner, outer;
} mc_sha256_hmac_t;

void mc_sha256_init(mc_sha256_t *s);
void mc_sha256_update(mc_sha256_t *s, const void *data, size_t len);
/* Writes the digest and wipes the state. */
void mc_sha256_final(mc_sha256_t *s, uint8_t out[MC_SHA256_BYTES]);
void mc_sha256(const void *data, size_t len, uint8_t out[MC_SHA256_BYTES]);

/* HMAC-SHA256 with a key of any length (a key longer than a block is hashed first). */
void mc_sha256_hmac_init(mc_sha256_hmac_t *h, const void *key, size_t key_len);
void mc_sha256_hmac_update(mc_sha256_hmac_t *h, const void *data, size_t len);
void mc_sha256_hmac_final(mc_sha256_hmac_t *h, uint8_t out[MC_SHA256_BYTES]);
void mc_sha256_hmac(const void *key, size_t key_len, const void *data, size_t len,
                    uint8_t out[MC_SHA256_BYTES]);

/* 1 when the n bytes of a and b are equal, in time that depends only on n (MAC comparison). */
int mc_sha256_equal(const void *a, const void *b, size_t n);

/* Zeroes n bytes in a way the compiler may not drop (keys, pads). */
void mc_sha256_wipe(void *p, size_t n);

#endif
