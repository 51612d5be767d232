/* SPDX-License-Identifier: Apache-2.0 */
/* boot_server.c - the process's rendezvous store servers (boot_server.h). */
#include "boot_server.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_server.h"
#include "util.h"

/* Largest value one rank sets in one exchange, and what the store holds at most. */
#define MC_BOOT_MAX_VALUE (16u << 20)
#define MC_BOOT_MAX_TOTAL ((size_t)256 << 20)

struct mc_boot_server {
  mc_store_server_t *srv;
  int port;
  int refs;
  int shared;
  uint8_t secret[64];
  size_t secret_len;
  struct mc_boot_server *next;
};

static pthread_mutex_t mc_boot_server_lock = PTHREAD_MUTEX_INITIALIZER;
static mc_boot_server_t *mc_boot_servers;

moecomm_result_t mc_boot_server_acquire(const char *bind_host, int port, int shared,
                                        const uint8_t *secret, size_t secret_len, int timeout_ms,
                                        mc_boot_server_t **server_p, int *port_p, mc_err_t *err) {
  mc_boot_server_t *s = NULL;
  moecomm_result_t r = MOECOMM_SUCCESS;
  pthread_mutex_lock(&mc_boot_server_lock);
  for (s = shared ? mc_boot_servers : NULL; s != NULL; s = s->next)
    if (s->shared && s->port == port && s->secret_len == secret_len &&
        memcmp(s->secret, secret, secret_len) == 0)
      break;
  if (s != NULL) {
    s->refs++;
    goto out;
  }
  if (secret_len > sizeof(s->secret) || (s = calloc(1, sizeof(*s))) == NULL) {
    r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory for the rendezvous store");
    goto out;
  }
  r = mc_store_server_start(
      &(mc_store_server_opts_t){bind_host, port, secret, secret_len, timeout_ms, 0,
                                MC_BOOT_MAX_VALUE, MC_BOOT_MAX_TOTAL},
      &s->srv, &s->port, err);
  if (r != MOECOMM_SUCCESS) {
    free(s);
    s = NULL;
    goto out;
  }
  s->refs = 1;
  s->shared = shared;
  memcpy(s->secret, secret, secret_len);
  s->secret_len = secret_len;
  s->next = mc_boot_servers;
  mc_boot_servers = s;
out:
  pthread_mutex_unlock(&mc_boot_server_lock);
  if (r == MOECOMM_SUCCESS) {
    *server_p = s;
    *port_p = s->port;
  }
  return r;
}

void mc_boot_server_release(mc_boot_server_t *s, int linger_ms) {
  mc_boot_server_t **pp;
  const int64_t until = mc_now_ms() + linger_ms;
  if (s == NULL) return;
  pthread_mutex_lock(&mc_boot_server_lock);
  if (--s->refs > 0) {
    pthread_mutex_unlock(&mc_boot_server_lock);
    return;
  }
  for (pp = &mc_boot_servers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_mutex_unlock(&mc_boot_server_lock);
  if (mc_store_server_clients(s->srv) > 0 && linger_ms > 0) {
    MC_INFO("rendezvous store: waiting up to %d ms for %zu other rank(s) to finish with it",
            linger_ms, mc_store_server_clients(s->srv));
    while (mc_store_server_clients(s->srv) > 0 && mc_now_ms() < until) mc_sleep_us(5000);
  }
  mc_store_server_stop(s->srv);
  memset(s->secret, 0, sizeof(s->secret));
  free(s);
}
