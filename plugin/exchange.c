/* SPDX-License-Identifier: Apache-2.0 */
/* exchange.c - all-gathers through the rendezvous store (exchange.h). */
#include "exchange.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

/* Names every member from index `from` on that has not set its key (up to 64), and whether one
   of them is a dead process of this host. */
static moecomm_result_t mc_xchg_timeout(const mc_xchg_set_t *s, const char *prefix, int from,
                                        const char *what, mc_err_t *err) {
  int32_t missing[64];
  int nmiss = 0, dead = -1;
  char key[256], list[512];
  for (int j = from; j < s->n && nmiss < 64; j++) {
    int exists = 0;
    if (j == s->me) continue;
    snprintf(key, sizeof(key), "%s/%d", prefix, (int)s->ranks[j]);
    if (j == from ||
        (mc_store_check(s->x->store, key, &exists, NULL) == MOECOMM_SUCCESS && !exists))
      missing[nmiss++] = s->ranks[j];
    if (dead < 0 && !mc_world_alive(s->x->world, s->ranks[j])) dead = s->ranks[j];
  }
  mc_format_ranks(missing, nmiss, list, sizeof(list));
  return mc_err_set(err, MOECOMM_ERR_TIMEOUT,
                    "%s: timed out after %d ms (MOECOMM_TIMEOUT_MS) waiting for rank%s %s%s", what,
                    s->x->timeout_ms, nmiss > 1 ? "s" : "", list,
                    dead >= 0 ? " (a process of this host has exited)" : "");
}

moecomm_result_t mc_xchg_allgather(const mc_xchg_set_t *s, const char *what_in, const void *send,
                                   void *recv, size_t bytes, mc_err_t *err) {
  char prefix[192], key[256], what[320];
  const int64_t deadline = mc_now_ms() + s->x->timeout_ms;
  moecomm_result_t r;

  snprintf(what, sizeof(what), "%s%s%s", what_in, s->label ? " on " : "", s->label ? s->label : "");
  if (bytes > MC_XCHG_MAX_BYTES)
    return mc_err_set(err, MOECOMM_ERR_INTERNAL, "%s: exchange of %zu bytes is too large", what,
                      bytes);
  snprintf(prefix, sizeof(prefix), "%s%s%s/%llu", s->x->ns, s->x->ns[0] ? "/" : "", s->scope,
           (unsigned long long)(*s->seq)++);
  if (s->n == 1) { /* a world of one has no store: nothing to meet */
    memcpy(recv, send, bytes);
    return MOECOMM_SUCCESS;
  }
  snprintf(key, sizeof(key), "%s/%d", prefix, (int)s->ranks[s->me]);
  r = mc_store_set(s->x->store, key, send, bytes, (uint32_t)(s->n - 1), 0, err);
  if (r != MOECOMM_SUCCESS) return mc_err_wrap(err, r, "%s", what);
  memcpy((char *)recv + (size_t)s->me * bytes, send, bytes);
  for (int i = 0; i < s->n; i++) {
    size_t len = 0;
    if (i == s->me) continue;
    snprintf(key, sizeof(key), "%s/%d", prefix, (int)s->ranks[i]);
    /* the writer is named so that a member that died is reported at once (by the store) */
    r = mc_store_get(s->x->store, key, s->ranks[i], (char *)recv + (size_t)i * bytes, bytes, &len,
                     deadline, err);
    if (r == MOECOMM_ERR_TIMEOUT) return mc_xchg_timeout(s, prefix, i, what, err);
    if (r != MOECOMM_SUCCESS) return mc_err_wrap(err, r, "%s", what);
    if (len != bytes)
      return mc_err_set(err, MOECOMM_ERR_PEER,
                        "%s: rank %d sent %zu bytes where %zu were expected (ranks are issuing "
                        "different calls)",
                        what, (int)s->ranks[i], len, bytes);
  }
  return MOECOMM_SUCCESS;
}
