/* SPDX-License-Identifier: Apache-2.0 */
/* store_peer.h - the store's wire spoken by hand, for tests and fuzz targets: request frames
 * (st_req, st_req_frame, st_hello_frame), and a scripted server on one end of a socketpair for
 * tests of the client's reply parsing (st_peer_*).
 *
 * The scripted server greets the client and, when `handshake` is set, answers its HELLO with a
 * correct proof of the secret; then it sends `script` verbatim, closes its sending side, and reads
 * whatever the client sends until the client closes.  Header-only: its users are separate
 * binaries. */
#ifndef MC_TEST_STORE_PEER_H_
#define MC_TEST_STORE_PEER_H_

#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../plugin/store_wire.h"

/* A request header for op on key: unused fields 0, rank -1. */
static inline mc_store_req_t st_req(uint32_t op, const char *key) {
  mc_store_req_t q;
  memset(&q, 0, sizeof(q));
  q.magic = MC_STORE_MAGIC;
  q.op = op;
  q.key_len = key != NULL ? (uint32_t)strlen(key) : 0;
  q.rank = -1;
  return q;
}

/* q's header and key_len bytes of key into out; returns the bytes written. */
static inline size_t st_req_frame(const mc_store_req_t *q, const char *key, uint8_t *out) {
  mc_store_req_encode(q, out);
  if (q->key_len > 0) memcpy(out + MC_STORE_REQ_BYTES, key, q->key_len);
  return MC_STORE_REQ_BYTES + q->key_len;
}

/* A whole HELLO (header, namespace, body) proving `secret` for the server's challenge as rank
   of ns with a fixed nonce; returns the bytes written (at most 40 + 256 + 68). */
static inline size_t st_hello_frame(const uint8_t *challenge, const uint8_t *secret,
                                    size_t secret_len, const char *ns, int rank, uint32_t pid,
                                    uint8_t *out) {
  mc_store_req_t q = st_req(MC_STORE_OP_HELLO, ns);
  mc_store_hello_t h;
  q.rank = rank;
  q.value_len = MC_STORE_HELLO_BYTES;
  memset(h.nonce, 0x42, sizeof(h.nonce));
  h.pid = pid;
  mc_store_auth_mac(secret, secret_len, 'C', challenge, h.nonce, ns, q.key_len, rank, pid, h.mac);
  size_t n = st_req_frame(&q, ns, out);
  mc_store_hello_encode(&h, out + n);
  return n + MC_STORE_HELLO_BYTES;
}

typedef struct st_peer {
  int fd; /* the peer's end */
  const uint8_t *secret;
  size_t secret_len;
  int handshake; /* 0: the script is all the client gets, from its first byte */
  const uint8_t *script;
  size_t script_len;
  pthread_t th;
} st_peer_t;

static inline int st_peer_io(int fd, void *buf, size_t n, int sending) {
  uint8_t *p = buf;
  while (n > 0) {
    ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* Greeting, HELLO, welcome with the server's MAC; 0 on success. */
static inline int st_peer_handshake(st_peer_t *p) {
  uint8_t buf[MC_STORE_REP_BYTES + MC_STORE_WELCOME_BYTES], hdr[MC_STORE_REQ_BYTES];
  uint8_t challenge[MC_STORE_NONCE_BYTES], ns[MC_STORE_KEY_MAX], body[MC_STORE_HELLO_BYTES];
  mc_store_rep_t rep = {MC_STORE_MAGIC, MC_STORE_CHALLENGE, MC_STORE_NONCE_BYTES};
  mc_store_req_t q;
  mc_store_hello_t h;
  memset(challenge, 0x6b, sizeof(challenge));
  mc_store_rep_encode(&rep, buf);
  memcpy(buf + MC_STORE_REP_BYTES, challenge, sizeof(challenge));
  if (st_peer_io(p->fd, buf, MC_STORE_REP_BYTES + sizeof(challenge), 1) != 0 ||
      st_peer_io(p->fd, hdr, sizeof(hdr), 0) != 0 || mc_store_req_decode(hdr, &q) != NULL ||
      q.op != MC_STORE_OP_HELLO || st_peer_io(p->fd, ns, q.key_len, 0) != 0 ||
      st_peer_io(p->fd, body, sizeof(body), 0) != 0)
    return -1;
  mc_store_hello_decode(body, &h);
  mc_store_welcome_t w = {{0}, 1 << 20, 64 << 20, 60000};
  mc_store_auth_mac(p->secret, p->secret_len, 'S', challenge, h.nonce, (const char *)ns, q.key_len,
                    q.rank, h.pid, w.mac);
  rep = (mc_store_rep_t){MC_STORE_MAGIC, MC_STORE_OK, MC_STORE_WELCOME_BYTES};
  mc_store_rep_encode(&rep, buf);
  mc_store_welcome_encode(&w, buf + MC_STORE_REP_BYTES);
  return st_peer_io(p->fd, buf, sizeof(buf), 1);
}

static inline void *st_peer_main(void *arg) {
  st_peer_t *p = arg;
  if ((!p->handshake || st_peer_handshake(p) == 0) && p->script_len > 0)
    (void)st_peer_io(p->fd, (void *)p->script, p->script_len, 1);
  shutdown(p->fd, SHUT_WR);
  uint8_t sink[4096];
  while (recv(p->fd, sink, sizeof(sink), 0) > 0) {
  }
  return NULL;
}

/* Starts the peer; the client's end of the socketpair in *client_fd_p.  0 on success. */
static inline int st_peer_start(st_peer_t *p, int *client_fd_p) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  p->fd = sv[1];
  if (pthread_create(&p->th, NULL, st_peer_main, p) != 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  *client_fd_p = sv[0];
  return 0;
}

/* After the client closed its end. */
static inline void st_peer_join(st_peer_t *p) {
  pthread_join(p->th, NULL);
  close(p->fd);
}

#endif
