/* SPDX-License-Identifier: Apache-2.0 */
/* store_sha256.c - plugin/sha256.c against published vectors: FIPS 180-4 (SHA-256 examples and
 * the million-'a' message), RFC 4231 (HMAC-SHA256 test cases 1-7), digests of messages around the
 * padding boundaries (computed with Python's hashlib), every split of an incremental update, and
 * the constant-time comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugin/sha256.h"
#include "../common/harness.h"

static void to_hex(const uint8_t *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_digest(const char *what, const uint8_t *got, size_t n, const char *want_hex) {
  char hex[2 * MC_SHA256_BYTES + 1];
  to_hex(got, n, hex);
  MC_CHECK(strcmp(hex, want_hex) == 0, "%s: got %s, want %s", what, hex, want_hex);
}

static void test_fips(void) {
  static const struct {
    const char *msg, *hex;
  } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmn"
       "opqrsmnopqrstnopqrstu",
       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
  };
  uint8_t d[MC_SHA256_BYTES];
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    mc_sha256(v[i].msg, strlen(v[i].msg), d);
    check_digest(v[i].msg, d, sizeof(d), v[i].hex);
  }
  /* One million 'a', fed in uneven pieces. */
  char chunk[997];
  memset(chunk, 'a', sizeof(chunk));
  mc_sha256_t s;
  mc_sha256_init(&s);
  size_t left = 1000000;
  while (left > 0) {
    size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
    mc_sha256_update(&s, chunk, n);
    left -= n;
  }
  mc_sha256_final(&s, d);
  check_digest("million a", d, sizeof(d),
               "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_padding_boundaries(void) {
  static const struct {
    size_t n;
    const char *hex;
  } v[] = {
      {55, "16fa57a0a3423a715d594516339f36189d6b5f93754a9714fef202616a9fabfe"},
      {56, "c37b44e5f1b18554b36966f4f8e08bfbf3164c4b6c10374d12d89850892073c5"},
      {57, "12b234922502022f755ab8550a3d4e202ad39c81d961a4f59ec39d5fd83d15a7"},
      {63, "bbba992d2c85af960fb2987a1fd05e0aa82a3db3c740dd8982a9e273b75e36a3"},
      {64, "66bd4633ed6f71c4ecfa4763bf7ba1c8ec7612de9aa6c0578a7b675207c71e0b"},
      {65, "9f7dc47107b750a1f3d35db5d9547f24ef40da5b731b9540d4f43710a154f6c9"},
      {119, "a3ed307b730fa77c07531300c6e4a282330011d4d4caf6bb7b63ae05950f4b66"},
      {120, "8e3b15d9fea7472655aa069620b7f8c2e55ee1499f763200a7515fe826e99d20"},
      {127, "44480fb9672845177f5368a08b69ea263275f2a5ec42e06a933370fe0d2968a4"},
      {128, "e462c130fef8c97e34f7dc3ff3ad2f8b3533ab849af21c10531552a2852387a4"},
      {129, "aa7ea4e8bf89146aeb67ff195fd8182a0e504c9d580aa7af8d2c862e14b98405"},
  };
  uint8_t msg[129], d[MC_SHA256_BYTES];
  for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)(i * 7 + 1);
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    char what[32];
    snprintf(what, sizeof(what), "%zu-byte message", v[i].n);
    mc_sha256(msg, v[i].n, d);
    check_digest(what, d, sizeof(d), v[i].hex);
  }
}

/* Every way of cutting a random message in three gives the one-shot digest. */
static void test_incremental(void) {
  uint8_t msg[200], want[MC_SHA256_BYTES], got[MC_SHA256_BYTES];
  uint64_t st = 42;
  for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)mc_test_rand(&st);
  mc_sha256(msg, sizeof(msg), want);
  int bad = 0;
  for (size_t a = 0; a <= sizeof(msg); a += 3)
    for (size_t b = a; b <= sizeof(msg); b += 5) {
      mc_sha256_t s;
      mc_sha256_init(&s);
      mc_sha256_update(&s, msg, a);
      mc_sha256_update(&s, msg + a, b - a);
      mc_sha256_update(&s, msg + b, sizeof(msg) - b);
      mc_sha256_final(&s, got);
      bad += memcmp(got, want, sizeof(want)) != 0;
    }
  MC_CHECK(bad == 0, "%d splits of a 200-byte message gave another digest", bad);
}

static void test_rfc4231(void) {
  uint8_t k0b[20], kaa[131], k25[25], k0c[20], ddd[50], dcd[50], d[MC_SHA256_BYTES];
  memset(k0b, 0x0b, sizeof(k0b));
  memset(kaa, 0xaa, sizeof(kaa));
  memset(k0c, 0x0c, sizeof(k0c));
  memset(ddd, 0xdd, sizeof(ddd));
  memset(dcd, 0xcd, sizeof(dcd));
  for (int i = 0; i < 25; i++) k25[i] = (uint8_t)(i + 1);
  const char *t6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  const char *t7 =
      "This is a test using a larger than block-size key and a larger than block-size data. The "
      "key needs to be hashed before being used by the HMAC algorithm.";
  const struct {
    const void *key;
    size_t klen;
    const void *data;
    size_t dlen;
    size_t out; /* bytes compared (case 5 is truncated to 128 bits) */
    const char *hex;
  } v[] = {
      {k0b, 20, "Hi There", 8, 32,
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"Jefe", 4, "what do ya want for nothing?", 28, 32,
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {kaa, 20, ddd, 50, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {k25, 25, dcd, 50, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {k0c, 20, "Test With Truncation", 20, 16, "a3b6167473100ee06e0c796c2955552b"},
      {kaa, 131, t6, strlen(t6), 32,
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {kaa, 131, t7, strlen(t7), 32,
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    char what[48];
    snprintf(what, sizeof(what), "RFC 4231 case %zu", i + 1);
    memset(d, 0xA5, sizeof(d));
    mc_sha256_hmac(v[i].key, v[i].klen, v[i].data, v[i].dlen, d);
    check_digest(what, d, v[i].out, v[i].hex);
    /* The same through the incremental interface, data in two pieces. */
    mc_sha256_hmac_t h;
    uint8_t d2[MC_SHA256_BYTES];
    mc_sha256_hmac_init(&h, v[i].key, v[i].klen);
    mc_sha256_hmac_update(&h, v[i].data, v[i].dlen / 2);
    mc_sha256_hmac_update(&h, (const char *)v[i].data + v[i].dlen / 2, v[i].dlen - v[i].dlen / 2);
    mc_sha256_hmac_final(&h, d2);
    MC_CHECK(memcmp(d, d2, sizeof(d)) == 0, "%s: incremental HMAC differs", what);
  }
}

static void test_equal(void) {
  uint8_t a[32], b[32];
  uint64_t st = 7;
  for (int i = 0; i < 32; i++) a[i] = b[i] = (uint8_t)mc_test_rand(&st);
  MC_CHECK(mc_sha256_equal(a, b, 32) == 1, "equal MACs compare unequal");
  MC_CHECK(mc_sha256_equal(a, b, 0) == 1, "empty comparison");
  int missed = 0;
  for (int i = 0; i < 32; i++)
    for (int bit = 0; bit < 8; bit++) {
      b[i] ^= (uint8_t)(1u << bit);
      missed += mc_sha256_equal(a, b, 32);
      b[i] ^= (uint8_t)(1u << bit);
    }
  MC_CHECK(missed == 0, "%d single-bit differences compared equal", missed);
}

int main(int argc, char **argv) {
  mc_test_init("store_sha256", argc, argv);
  test_fips();
  test_padding_boundaries();
  test_incremental();
  test_rfc4231();
  test_equal();
  return mc_test_finish();
}
