/* SPDX-License-Identifier: Apache-2.0 */
/* store_wire.c - the rendezvous store's wire format (plugin/store_wire.c) and the parsing on
 * both ends of a connection, without a network.
 *
 *  - every frame and body round-trips through encode/decode with random fields;
 *  - each validation rule refuses a frame that breaks only that rule (oversized lengths, unknown
 *    ops and statuses, fields that must be unused);
 *  - the server's connection state machine (plugin/store_core.c) fed every truncation of a
 *    valid request stream answers nothing until the last byte, then the right thing; announced
 *    lengths over the limits allocate nothing;
 *  - the client (plugin/store_client.c) facing every truncation of a valid reply, oversized
 *    lengths and unusable limits fails with MOECOMM_ERR_PEER at once, writing no output. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugin/sha256.h"
#include "../../plugin/store_core.h"
#include "store_peer.h"
#include "store_test.h"

#define NOW 1000000 /* the core's clock in these tests */

/* ---- frames ------------------------------------------------------------------------------- */

static mc_store_req_t valid_req(uint32_t op, uint64_t *rng) {
  mc_store_req_t q;
  memset(&q, 0, sizeof(q));
  q.magic = MC_STORE_MAGIC;
  q.op = op;
  q.rank = -1;
  q.key_len = op == MC_STORE_OP_BYE ? 0 : 1 + (uint32_t)(mc_test_rand(rng) % MC_STORE_KEY_MAX);
  if (op == MC_STORE_OP_HELLO) {
    q.value_len = MC_STORE_HELLO_BYTES;
    q.rank = (int32_t)(mc_test_rand(rng) % 100000) - 1;
  } else if (op == MC_STORE_OP_SET) {
    q.value_len = mc_test_rand(rng) % (MC_STORE_VALUE_MAX + 1);
    q.readers = (uint32_t)mc_test_rand(rng);
    q.flags = (uint32_t)(mc_test_rand(rng) & MC_STORE_FLAG_WRITE_ONCE);
  } else if (op == MC_STORE_OP_GET) {
    q.rank = (int32_t)(mc_test_rand(rng) % 100000) - 1;
    q.timeout_ms = mc_test_rand(rng);
  }
  return q;
}

static void test_req_roundtrip(void) {
  uint64_t rng = 11;
  int bad = 0;
  for (int i = 0; i < 2000; i++) {
    mc_store_req_t q = valid_req(MC_STORE_OP_HELLO + (uint32_t)(i % 5), &rng), d;
    uint8_t buf[MC_STORE_REQ_BYTES];
    memset(&d, 0xA5, sizeof(d));
    mc_store_req_encode(&q, buf);
    const char *why = mc_store_req_decode(buf, &d);
    if (why != NULL || memcmp(&q, &d, sizeof(q)) != 0) {
      if (bad++ == 0) printf("  op %u: %s\n", q.op, why ? why : "fields differ");
    }
  }
  MC_CHECK(bad == 0, "%d of 2000 valid requests did not round-trip", bad);
}

/* Each rule: a valid request of `op` with one field broken is refused. */
static void test_req_rules(void) {
  uint64_t rng = 3;
  int n = 0, missed = 0;
  for (uint32_t op = MC_STORE_OP_HELLO; op <= MC_STORE_OP_BYE; op++) {
    for (int k = 0; k < 17; k++) {
      mc_store_req_t q = valid_req(op, &rng), d;
      int applies = 1;
      switch (k) {
        case 0: q.magic ^= 1; break;
        case 1: q.op = 0; break;
        case 2: q.op = MC_STORE_OP_BYE + 1; break;
        case 3: q.op = UINT32_MAX; break;
        case 4: q.key_len = op == MC_STORE_OP_BYE ? 1 : 0; break;
        case 5: q.key_len = MC_STORE_KEY_MAX + 1; break;
        case 6: q.key_len = UINT32_MAX; break;
        case 7:
          q.value_len = op == MC_STORE_OP_SET ? MC_STORE_VALUE_MAX + 1 : q.value_len + 1;
          break;
        case 8: q.value_len = UINT64_MAX; break;
        case 9: applies = op == MC_STORE_OP_HELLO, q.value_len = MC_STORE_HELLO_BYTES - 1; break;
        case 10: q.rank = -2; break;
        case 11: q.rank = INT32_MIN; break;
        case 12: applies = op != MC_STORE_OP_HELLO && op != MC_STORE_OP_GET, q.rank = 0; break;
        case 13: applies = op != MC_STORE_OP_SET, q.readers = 1; break;
        case 14: q.flags |= 2; break;
        case 15: applies = op != MC_STORE_OP_SET, q.flags = MC_STORE_FLAG_WRITE_ONCE; break;
        default: applies = op != MC_STORE_OP_GET, q.timeout_ms = 1; break;
      }
      if (!applies) continue;
      uint8_t buf[MC_STORE_REQ_BYTES];
      mc_store_req_encode(&q, buf);
      n++;
      if (mc_store_req_decode(buf, &d) == NULL) {
        if (missed++ == 0) printf("  op %u, rule %d accepted\n", op, k);
      }
    }
  }
  MC_CHECK(missed == 0, "%d of %d broken requests accepted", missed, n);
}

/* The statuses that answer each op, and the body length each carries (-1: any up to max). */
typedef struct rep_case {
  uint32_t op, status;
  uint64_t len, max;
} rep_case_t;

static const rep_case_t rep_cases[] = {
    {MC_STORE_OP_GREETING, MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES, 0},
    {MC_STORE_OP_HELLO, MC_STORE_OK, MC_STORE_WELCOME_BYTES, 0},
    {MC_STORE_OP_HELLO, MC_STORE_DENIED, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_HELLO, MC_STORE_RANK_TAKEN, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_HELLO, MC_STORE_BUSY, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_SET, MC_STORE_OK, 0, 0},
    {MC_STORE_OP_SET, MC_STORE_EXISTS, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_SET, MC_STORE_TOO_LARGE, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_SET, MC_STORE_FULL, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_GET, MC_STORE_OK, 0, MC_STORE_VALUE_MAX},
    {MC_STORE_OP_GET, MC_STORE_TIMEOUT, 0, 0},
    {MC_STORE_OP_GET, MC_STORE_PEER_GONE, 0, MC_STORE_TEXT_MAX},
    {MC_STORE_OP_CHECK, MC_STORE_OK, 0, 0},
    {MC_STORE_OP_CHECK, MC_STORE_ABSENT, 0, 0},
};

static int rep_valid(uint32_t op, uint32_t status, uint64_t len) {
  for (size_t i = 0; i < sizeof(rep_cases) / sizeof(rep_cases[0]); i++) {
    const rep_case_t *c = &rep_cases[i];
    if (c->op == op && c->status == status) return c->max > 0 ? len <= c->max : len == c->len;
  }
  return 0;
}

/* Every (op, status, length) around the limits: accepted exactly when the table says so. */
static void test_rep_rules(void) {
  uint64_t lens[] = {0,
                     1,
                     MC_STORE_NONCE_BYTES - 1,
                     MC_STORE_NONCE_BYTES,
                     MC_STORE_WELCOME_BYTES,
                     MC_STORE_WELCOME_BYTES + 1,
                     MC_STORE_TEXT_MAX,
                     MC_STORE_TEXT_MAX + 1,
                     MC_STORE_VALUE_MAX,
                     MC_STORE_VALUE_MAX + 1,
                     UINT64_MAX};
  int n = 0, wrong = 0;
  for (uint32_t op = MC_STORE_OP_GREETING; op <= MC_STORE_OP_BYE + 1; op++)
    for (uint32_t status = 0; status <= MC_STORE_PEER_GONE + 1; status++)
      for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        mc_store_rep_t p = {MC_STORE_MAGIC, status, lens[l]}, d;
        uint8_t buf[MC_STORE_REP_BYTES];
        mc_store_rep_encode(&p, buf);
        int ok = mc_store_rep_decode(buf, op, &d) == NULL;
        n++;
        if (ok != rep_valid(op, status, lens[l]) || memcmp(&p, &d, sizeof(p)) != 0) {
          if (wrong++ < 3)
            printf("  op %u status %u len %llu: %s\n", op, status, (unsigned long long)lens[l],
                   ok ? "accepted" : "refused");
        }
        buf[0] ^= 1; /* a wrong magic is never an answer */
        wrong += mc_store_rep_decode(buf, op, &d) == NULL;
      }
  MC_CHECK(wrong == 0, "%d of %d reply headers judged wrongly", wrong, n);
}

static void test_bodies(void) {
  uint64_t rng = 5;
  mc_store_hello_t h, hd;
  uint8_t hb[MC_STORE_HELLO_BYTES], wb[MC_STORE_WELCOME_BYTES];
  fill_bytes(h.nonce, sizeof(h.nonce), 1);
  fill_bytes(h.mac, sizeof(h.mac), 2);
  h.pid = (uint32_t)mc_test_rand(&rng);
  mc_store_hello_encode(&h, hb);
  mc_store_hello_decode(hb, &hd);
  MC_CHECK(memcmp(&h, &hd, sizeof(h)) == 0, "hello body round trip");
  mc_store_welcome_t w = {{0}, 1 << 20, 64 << 20, 60000}, wd;
  fill_bytes(w.mac, sizeof(w.mac), 3);
  mc_store_welcome_encode(&w, wb);
  MC_CHECK(mc_store_welcome_decode(wb, &wd) == NULL && memcmp(&w, &wd, sizeof(w)) == 0,
           "welcome body round trip");
  mc_store_welcome_t bad[] = {{{0}, 0, 64, 1},
                              {{0}, MC_STORE_VALUE_MAX + 1, UINT64_MAX, 1},
                              {{0}, 100, 99, 1},
                              {{0}, 1, 1, 0},
                              {{0}, 1, 1, (uint64_t)INT32_MAX + 1}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    mc_store_welcome_encode(&bad[i], wb);
    MC_CHECK(mc_store_welcome_decode(wb, &wd) != NULL, "unusable limits %zu accepted", i);
  }
}

/* The MAC depends on every input, and on nothing else. */
static void test_auth_mac(void) {
  uint8_t ch[MC_STORE_NONCE_BYTES], no[MC_STORE_NONCE_BYTES], macs[9][MC_STORE_MAC_BYTES];
  fill_bytes(ch, sizeof(ch), 7);
  fill_bytes(no, sizeof(no), 8);
  uint8_t *k = st_secret;
  mc_store_auth_mac(k, 32, 'C', ch, no, "ns", 2, 1, 100, macs[0]);
  mc_store_auth_mac(k, 32, 'S', ch, no, "ns", 2, 1, 100, macs[1]);
  mc_store_auth_mac(k, 31, 'C', ch, no, "ns", 2, 1, 100, macs[2]);
  mc_store_auth_mac(k, 32, 'C', no, ch, "ns", 2, 1, 100, macs[3]);
  mc_store_auth_mac(k, 32, 'C', ch, no, "nt", 2, 1, 100, macs[4]);
  mc_store_auth_mac(k, 32, 'C', ch, no, "ns", 1, 1, 100, macs[5]);
  mc_store_auth_mac(k, 32, 'C', ch, no, "ns", 2, 2, 100, macs[6]);
  mc_store_auth_mac(k, 32, 'C', ch, no, "ns", 2, 1, 101, macs[7]);
  mc_store_auth_mac(k, 32, 'C', ch, no, "ns", 2, 1, 100, macs[8]);
  int same = 0;
  for (int i = 0; i < 8; i++)
    for (int j = i + 1; j < 8; j++) same += memcmp(macs[i], macs[j], MC_STORE_MAC_BYTES) == 0;
  MC_CHECK(same == 0, "%d pairs of different transcripts share a MAC", same);
  MC_CHECK(memcmp(macs[0], macs[8], MC_STORE_MAC_BYTES) == 0, "the MAC is not deterministic");
}

static void test_printable(void) {
  char out[8];
  mc_store_printable("ab\ncd\x1b\xff", 7, out, sizeof(out));
  MC_CHECK(strcmp(out, "ab?cd??") == 0, "printable: '%s'", out);
  mc_store_printable("abcdefghij", 10, out, 4);
  MC_CHECK(strcmp(out, "abc") == 0, "cut to the buffer: '%s'", out);
}

/* ---- the server's side of a connection, fed from buffers ------------------------------------ */

static mc_store_core_t core;

/* A fresh server core: values up to 4 KiB, 12 KiB in all, waits up to 500 ms. */
static void core_start(void) {
  mc_store_core_limits_t lim = {64, 4096, 12288, 500};
  MC_CHECK(mc_store_core_init(&core, st_secret, sizeof(st_secret), &lim) == 0, "core init");
}

/* Takes the connection's queued output: the reply's status (-1 when nothing is queued). */
static int take_reply(mc_store_conn_t *c, uint32_t op) {
  if (c->state != MC_CONN_WRITE) return -1;
  struct iovec iov[2];
  int n = mc_store_conn_out(c, iov);
  mc_store_rep_t rep;
  int status =
      iov[0].iov_len >= MC_STORE_REP_BYTES && mc_store_rep_decode(iov[0].iov_base, op, &rep) == NULL
          ? (int)rep.status
          : -2;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  mc_store_conn_sent(&core, c, total);
  return status;
}

static void reap_all(void) {
  mc_store_conn_t *c;
  while ((c = mc_store_core_reap(&core)) != NULL) free(c);
}

/* A connection past its handshake (NULL on failure, with a failed check). */
static mc_store_conn_t *authed_conn(int rank) {
  uint8_t buf[512];
  mc_store_conn_t *c = mc_store_core_accept(&core, "test-peer", NOW);
  if (!MC_CHECK(c != NULL && take_reply(c, MC_STORE_OP_GREETING) == MC_STORE_CHALLENGE, "greeting"))
    return NULL;
  size_t n = st_hello_frame(c->challenge, st_secret, sizeof(st_secret), "wire", rank, 4242, buf);
  mc_store_conn_feed(&core, c, buf, n, NOW);
  int st = take_reply(c, MC_STORE_OP_HELLO);
  MC_CHECK(st == MC_STORE_OK && c->state == MC_CONN_READ, "handshake: status %d", st);
  return st == MC_STORE_OK ? c : NULL;
}

/* A request frame: header, key, value. */
static size_t req_bytes(uint32_t op, const char *key, size_t vlen, uint8_t *out) {
  mc_store_req_t q = st_req(op, key);
  q.value_len = vlen;
  size_t n = st_req_frame(&q, key, out);
  fill_bytes(out + n, vlen, 9);
  return n + vlen;
}

/* Every cut of each request: nothing answered before the last byte, the right answer after it. */
static void test_server_truncation(void) {
  uint8_t frames[4][512];
  size_t lens[4];
  uint32_t ops[4] = {MC_STORE_OP_SET, MC_STORE_OP_GET, MC_STORE_OP_CHECK, MC_STORE_OP_HELLO};
  int want[4] = {MC_STORE_OK, MC_STORE_OK, MC_STORE_OK, MC_STORE_OK};
  lens[0] = req_bytes(MC_STORE_OP_SET, "trunc/k", 100, frames[0]);
  lens[1] = req_bytes(MC_STORE_OP_GET, "trunc/k", 0, frames[1]);
  lens[2] = req_bytes(MC_STORE_OP_CHECK, "trunc/k", 0, frames[2]);
  int early = 0, wrong = 0, cuts = 0;
  for (int f = 0; f < 4; f++) {
    for (size_t cut = 0; cut < (f == 3 ? MC_STORE_REQ_BYTES + 4 + MC_STORE_HELLO_BYTES : lens[f]);
         cut++) {
      mc_store_conn_t *c;
      if (f == 3) {
        c = mc_store_core_accept(&core, "test-peer", NOW);
        if (c == NULL) break;
        take_reply(c, MC_STORE_OP_GREETING);
        lens[3] =
            st_hello_frame(c->challenge, st_secret, sizeof(st_secret), "wire", -1, 4242, frames[3]);
      } else if ((c = authed_conn(-1)) == NULL) {
        break;
      }
      size_t used = mc_store_conn_feed(&core, c, frames[f], cut, NOW);
      early += used != cut || c->state != MC_CONN_READ;
      used = mc_store_conn_feed(&core, c, frames[f] + cut, lens[f] - cut, NOW);
      wrong += used != lens[f] - cut || take_reply(c, ops[f]) != want[f];
      cuts++;
      mc_store_conn_drop(&core, c, "done");
      reap_all();
    }
  }
  MC_CHECK(cuts > 300 && early == 0 && wrong == 0,
           "%d cuts: %d answered or refused early, %d wrong after the last byte", cuts, early,
           wrong);
}

/* Announced lengths over the limits: refused before anything is allocated. */
static void test_server_limits(void) {
  uint8_t buf[MC_STORE_REQ_BYTES + 64];
  size_t used0 = core.table.used;
  /* Over the server's largest value (4 KiB here) but within the protocol: TOO_LARGE, then the
     connection closes. */
  uint64_t lens[] = {4097, (uint64_t)60 << 20, MC_STORE_VALUE_MAX};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    mc_store_conn_t *c = authed_conn(-1);
    if (c == NULL) return;
    mc_store_req_t q;
    size_t n = req_bytes(MC_STORE_OP_SET, "big/k", 0, buf);
    mc_store_req_decode(buf, &q);
    q.value_len = lens[i];
    mc_store_req_encode(&q, buf);
    mc_store_conn_feed(&core, c, buf, n, NOW);
    MC_CHECK(core.table.used == used0, "%llu-byte value announced: %zu bytes held",
             (unsigned long long)lens[i], core.table.used - used0);
    MC_CHECK(take_reply(c, MC_STORE_OP_SET) == MC_STORE_TOO_LARGE && c->state == MC_CONN_DEAD,
             "%llu-byte value: refused and closed", (unsigned long long)lens[i]);
    reap_all();
  }
  /* Over the protocol's limits: malformed, dropped at once without a reply. */
  for (int k = 0; k < 4; k++) {
    mc_store_conn_t *c = k < 2 ? authed_conn(-1) : mc_store_core_accept(&core, "raw", NOW);
    if (c == NULL) return;
    if (k >= 2) take_reply(c, MC_STORE_OP_GREETING);
    mc_store_req_t q;
    size_t n = req_bytes(k < 2 ? MC_STORE_OP_SET : MC_STORE_OP_HELLO, "k", 0, buf);
    mc_store_req_decode(buf, &q);
    if (k == 0) q.value_len = MC_STORE_VALUE_MAX + 1;
    if (k == 1 || k == 3) q.key_len = MC_STORE_KEY_MAX + 1;
    if (k == 2) q.value_len = (uint64_t)1 << 40, q.rank = 0;
    mc_store_req_encode(&q, buf);
    mc_store_conn_feed(&core, c, buf, n, NOW);
    MC_CHECK(c->state == MC_CONN_DEAD && c->out_len == 0 && core.table.used == used0,
             "oversized frame %d: state %d", k, (int)c->state);
    reap_all();
  }
}

/* Over the total budget (12 KiB here): FULL, the value skipped, the connection in step. */
static void test_server_full(void) {
  mc_store_conn_t *c = authed_conn(-1);
  if (c == NULL) return;
  uint8_t buf[8192];
  int full_at = -1;
  for (int i = 0; i < 8 && full_at < 0; i++) {
    char key[16];
    snprintf(key, sizeof(key), "full/%d", i);
    size_t n = req_bytes(MC_STORE_OP_SET, key, 4000, buf);
    n += req_bytes(MC_STORE_OP_CHECK, key, 0, buf + n);
    size_t used = mc_store_conn_feed(&core, c, buf, n, NOW);
    int st = take_reply(c, MC_STORE_OP_SET);
    if (st == MC_STORE_FULL) full_at = i;
    MC_CHECK(st == MC_STORE_OK || st == MC_STORE_FULL, "set %d: status %d", i, st);
    used += mc_store_conn_feed(&core, c, buf + used, n - used, NOW);
    int present = take_reply(c, MC_STORE_OP_CHECK);
    MC_CHECK(used == n && present == (st == MC_STORE_OK ? MC_STORE_OK : MC_STORE_ABSENT),
             "check after set %d: status %d", i, present);
  }
  MC_CHECK(full_at == 3, "the 12 KiB store took %d values of 4000 bytes (want 3)", full_at);
  MC_CHECK(core.table.used <= core.table.budget, "%zu bytes held over a %zu budget",
           core.table.used, core.table.budget);
  mc_store_conn_drop(&core, c, "done");
  reap_all();
}

/* A GET's wait is capped at the server's timeout, whatever it asks for. */
static void test_server_wait_cap(void) {
  mc_store_conn_t *c = authed_conn(-1);
  if (c == NULL) return;
  uint8_t buf[MC_STORE_REQ_BYTES + 16];
  mc_store_req_t q;
  size_t n = req_bytes(MC_STORE_OP_GET, "never", 0, buf);
  mc_store_req_decode(buf, &q);
  q.timeout_ms = (uint64_t)1 << 63;
  mc_store_req_encode(&q, buf);
  mc_store_conn_feed(&core, c, buf, n, NOW);
  MC_CHECK(c->state == MC_CONN_WAIT && c->deadline == NOW + core.lim.max_wait_ms,
           "a 2^63 ms wait ends at %lld, not %lld", (long long)c->deadline,
           (long long)(NOW + core.lim.max_wait_ms));
  mc_store_core_expire(&core, NOW + core.lim.max_wait_ms);
  MC_CHECK(take_reply(c, MC_STORE_OP_GET) == MC_STORE_TIMEOUT, "answered TIMEOUT at the cap");
  mc_store_conn_drop(&core, c, "done");
  reap_all();
}

/* ---- the client's side, facing a scripted server ------------------------------------------- */

/* Runs one get (or, with handshake 0, only the connection) against a peer sending `script`. */
static moecomm_result_t client_run(int handshake, const uint8_t *script, size_t n, size_t *len_p,
                                   mc_err_t *err) {
  st_peer_t p = {.secret = st_secret,
                 .secret_len = sizeof(st_secret),
                 .handshake = handshake,
                 .script = script,
                 .script_len = n};
  int fd;
  if (st_peer_start(&p, &fd) != 0) return MOECOMM_ERR_INTERNAL;
  mc_store_t *s = NULL;
  uint8_t value[64];
  moecomm_result_t r = mc_store_open_fd(fd, "peer", st_secret, sizeof(st_secret), "wire", 3,
                                        mc_now_ms() + 2000, &s, err);
  if (r == MOECOMM_SUCCESS && handshake) {
    r = mc_store_get(s, "k", -1, value, sizeof(value), len_p, mc_now_ms() + 2000, err);
    if (r == MOECOMM_SUCCESS) r = mc_store_get(s, "k", -1, value, sizeof(value), len_p, 0, err);
  }
  mc_store_close(s);
  st_peer_join(&p);
  return r;
}

static size_t rep_bytes(uint32_t status, uint64_t len, size_t body, uint8_t *out) {
  mc_store_rep_t rep = {MC_STORE_MAGIC, status, len};
  mc_store_rep_encode(&rep, out);
  fill_bytes(out + MC_STORE_REP_BYTES, body, 4);
  return MC_STORE_REP_BYTES + body;
}

static void test_client_truncation(void) {
  uint8_t script[256];
  /* After the handshake: a 20-byte value, then a TIMEOUT for the second get. */
  size_t n = rep_bytes(MC_STORE_OK, 20, 20, script);
  n += rep_bytes(MC_STORE_TIMEOUT, 0, 0, script + n);
  int bad = 0;
  for (size_t cut = 0; cut <= n; cut++) {
    size_t len = 777;
    mc_err_t err;
    int64_t t0 = mc_now_ms();
    moecomm_result_t r = client_run(1, script, cut, &len, &err);
    moecomm_result_t want = cut == n ? MOECOMM_ERR_TIMEOUT : MOECOMM_ERR_PEER;
    size_t want_len = cut >= MC_STORE_REP_BYTES + 20 ? 20 : 777;
    if (r != want || len != want_len || mc_now_ms() - t0 > 1000) {
      if (bad++ < 3) printf("  cut %zu: r=%d len=%zu: %s\n", cut, (int)r, len, err.msg);
    }
  }
  MC_CHECK(bad == 0, "%d of %zu cuts of a reply stream handled wrongly", bad, n + 1);
  /* The greeting cut anywhere: a prompt PEER, no store. */
  n = rep_bytes(MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES, MC_STORE_NONCE_BYTES, script);
  bad = 0;
  for (size_t cut = 0; cut <= n; cut++) {
    mc_err_t err;
    moecomm_result_t r = client_run(0, script, cut, NULL, &err);
    bad += r != MOECOMM_ERR_PEER || strstr(err.msg, "closed the connection") == NULL;
  }
  MC_CHECK(bad == 0, "%d of %zu cuts of the greeting handled wrongly", bad, n + 1);
}

/* Lengths and statuses no server sends: PEER naming a malformed reply, the connection broken. */
static void test_client_malformed(void) {
  uint8_t script[512];
  struct {
    uint32_t status;
    uint64_t len;
    size_t body;
  } cases[] = {{MC_STORE_OK, MC_STORE_VALUE_MAX + 1, 0},
               {MC_STORE_OK, UINT64_MAX, 0},
               {MC_STORE_PEER_GONE, MC_STORE_TEXT_MAX + 1, 0},
               {MC_STORE_TIMEOUT, 1, 1},
               {MC_STORE_EXISTS, 0, 0},
               {99, 0, 0}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t n = rep_bytes(cases[i].status, cases[i].len, cases[i].body, script);
    size_t len = 777;
    mc_err_t err;
    moecomm_result_t r = client_run(1, script, n, &len, &err);
    MC_CHECK(r == MOECOMM_ERR_PEER && strstr(err.msg, "malformed") != NULL && len == 777,
             "reply %zu (status %u, %llu bytes): r=%d %s", i, cases[i].status,
             (unsigned long long)cases[i].len, (int)r, err.msg);
  }
  /* A welcome announcing unusable limits. */
  size_t n = rep_bytes(MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES, MC_STORE_NONCE_BYTES, script);
  mc_store_welcome_t w = {{0}, 0, 1, 1};
  n += rep_bytes(MC_STORE_OK, MC_STORE_WELCOME_BYTES, 0, script + n);
  mc_store_welcome_encode(&w, script + n);
  n += MC_STORE_WELCOME_BYTES;
  mc_err_t err;
  moecomm_result_t r = client_run(0, script, n, NULL, &err);
  MC_CHECK(r == MOECOMM_ERR_PEER && strstr(err.msg, "limits") != NULL, "unusable limits: %s",
           err.msg);
}

int main(int argc, char **argv) {
  mc_test_init("store_wire", argc, argv);
  signal(SIGPIPE, SIG_IGN);
  st_init_secret();
  test_req_roundtrip();
  test_req_rules();
  test_rep_rules();
  test_bodies();
  test_auth_mac();
  test_printable();
  void (*core_tests[])(void) = {test_server_truncation, test_server_limits, test_server_full,
                                test_server_wait_cap};
  for (size_t i = 0; i < sizeof(core_tests) / sizeof(core_tests[0]); i++) {
    core_start();
    core_tests[i]();
    mc_store_core_fini(&core);
  }
  test_client_truncation();
  test_client_malformed();
  return mc_test_finish();
}
