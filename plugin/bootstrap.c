/* SPDX-License-Identifier: Apache-2.0 */
/* bootstrap.c - rendezvous at context creation (bootstrap.h).
 *
 * With the host's all-gather (every rank at once, no address known beforehand):
 *   1. every rank's record (pid, host, topology) is all-gathered; rank 0's also carries the new
 *      context's id and its secret (32 random bytes): the host's all-gather is the trusted
 *      channel that shares it;
 *   2. rank 0 starts the store, bound to loopback when every rank is on its host, else to
 *      MOECOMM_SOCKET_IFNAME's interface or the hostname's address (never all interfaces), and a
 *      second all-gather tells the others where;
 *   3. every rank connects, proves the secret and checks in as (context id, rank);
 *   4. an arrival barrier through the store ends it.
 * A world of one needs none of this: no listener, no connection.
 * With MOECOMM_STORE (no all-gather): rank 0 serves at the address it names, the secret is the
 * SHA-256 of MOECOMM_STORE_TOKEN (required off loopback), every rank checks in as (the process's
 * n-th bootstrap, rank), and the records go through the store (which is the barrier). */
#include "bootstrap.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "boot_net.h"
#include "boot_server.h"
#include "log.h"
#include "sha256.h"
#include "util.h"

#define MC_BOOT_MAGIC 0x6d63626fu /* "mcbo" */

typedef struct mc_boot_rec {
  uint32_t magic;
  uint32_t version; /* MOECOMM_ABI_VERSION of the plugin build */
  int32_t rank;
  int32_t pid;
  int32_t topo[9]; /* world, tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp, device>=0 */
  int32_t pad;
  uint64_t host_hash;
  char host_id[128];
  char ctx_id[48];                      /* rank 0 only */
  uint8_t secret[MC_BOOT_SECRET_BYTES]; /* rank 0 only, host all-gather only */
} mc_boot_rec_t;

/* Rank 0's second message on the host all-gather: where its store listens. */
typedef struct mc_boot_where {
  int32_t port;
  char host[64];
} mc_boot_where_t;

static uint64_t mc_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void mc_boot_fill_rec(const mc_topo_t *t, int uses_gpu, const char *host_id,
                             mc_boot_rec_t *rec) {
  const int32_t topo[9] = {t->world,   t->tp,      t->pp,           t->ep,   t->moe_dp,
                           t->attn_cp, t->attn_dp, t->moe_dense_tp, uses_gpu};
  memset(rec, 0, sizeof(*rec));
  rec->magic = MC_BOOT_MAGIC;
  rec->version = MOECOMM_ABI_VERSION;
  rec->rank = t->rank;
  rec->pid = (int32_t)getpid();
  memcpy(rec->topo, topo, sizeof(topo));
  snprintf(rec->host_id, sizeof(rec->host_id), "%s", host_id);
  rec->host_hash = mc_hash(host_id);
}

static moecomm_result_t mc_boot_check_recs(const mc_topo_t *t, const mc_boot_rec_t *recs,
                                           mc_err_t *err) {
  static const char *const names[9] = {
      "world_size", "tp", "pp", "ep", "moe_dp", "attn_cp", "attn_dp", "moe_dense_tp", "uses a GPU"};
  const mc_boot_rec_t *me = &recs[t->rank];
  for (int r = 0; r < t->world; r++) {
    if (recs[r].magic != MC_BOOT_MAGIC || recs[r].rank != r)
      return mc_err_set(err, MOECOMM_ERR_PEER,
                        "bootstrap: the record in slot %d is not rank %d's (the host all-gather "
                        "must return ranks in order; got rank %d, magic 0x%x)",
                        r, r, (int)recs[r].rank, recs[r].magic);
    for (int k = 0; k < 9; k++)
      if (recs[r].topo[k] != me->topo[k])
        return mc_err_set(err, MOECOMM_ERR_CONFIG,
                          "topology differs between ranks: rank %d has %s=%d, rank %d has %s=%d", r,
                          names[k], (int)recs[r].topo[k], t->rank, names[k], (int)me->topo[k]);
  }
  return MOECOMM_SUCCESS;
}
static moecomm_result_t mc_boot_layout(const mc_boot_rec_t *recs, int world, int me,
                                       mc_world_t *w_p, mc_err_t *err) {
  mc_world_t w;
  memset(&w, 0, sizeof(w));
  w.size = world;
  w.rank = me;
  w.host_hash = calloc((size_t)world, sizeof(uint64_t));
  w.pids = calloc((size_t)world, sizeof(int32_t));
  if (w.host_hash == NULL || w.pids == NULL) {
    mc_world_free(&w);
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  }
  for (int r = 0; r < world; r++) {
    int first = 1;
    w.host_hash[r] = recs[r].host_hash;
    w.pids[r] = recs[r].pid;
    for (int q = 0; q < r && first; q++) first = recs[q].host_hash != recs[r].host_hash;
    w.num_hosts += first;
    if (recs[r].host_hash == recs[me].host_hash) {
      if (r < me) w.local_rank++;
      w.local_size++;
    }
  }
  *w_p = w;
  return MOECOMM_SUCCESS;
}
void mc_boot_world_set(mc_boot_t *boot, int32_t *ranks, mc_xchg_set_t *set_p) {
  for (int i = 0; i < boot->world.size; i++) ranks[i] = i;
  memset(set_p, 0, sizeof(*set_p));
  set_p->x = &boot->xchg;
  set_p->scope = "world";
  set_p->seq = &boot->world_seq;
  set_p->ranks = ranks;
  set_p->n = boot->world.size;
  set_p->me = boot->world.rank;
}
static moecomm_result_t mc_boot_arrive(mc_boot_t *b, mc_err_t *err) {
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)b->world.size * 2), *pids;
  mc_xchg_set_t set;
  moecomm_result_t r;
  uint64_t seq = 0;
  int32_t pid = (int32_t)getpid();
  if (ranks == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  pids = ranks + b->world.size;
  b->xchg.world = &b->world;
  mc_boot_world_set(b, ranks, &set);
  set.scope = "arrive";
  set.seq = &seq;
  r = mc_xchg_allgather(&set, "bootstrap: every rank reaching rank 0's store", &pid, pids,
                        sizeof(pid), err);
  b->xchg.world = NULL; /* b moves to the caller, which points it at its own copy */
  free(ranks);
  return r;
}

/* Rank 0: a fresh context id (and, for the host all-gather, the secret). */
static moecomm_result_t mc_boot_new_context(mc_boot_rec_t *rec, int with_secret, mc_err_t *err) {
  uint32_t nonce = 0;
  moecomm_result_t r = mc_boot_random(&nonce, sizeof(nonce), err);
  if (r == MOECOMM_SUCCESS && with_secret)
    r = mc_boot_random(rec->secret, sizeof(rec->secret), err);
  if (r == MOECOMM_SUCCESS)
    snprintf(rec->ctx_id, sizeof(rec->ctx_id), "%d-%08x", (int)getpid(), nonce);
  return r;
}

/* The host all-gather path, steps 1-3 (bootstrap.c's header). */
static moecomm_result_t mc_boot_via_host(mc_boot_t *b, const mc_topo_t *topo,
                                         const mc_config_t *cfg, moecomm_host_allgather_fn_t ag,
                                         void *user, mc_boot_rec_t *rec, mc_boot_rec_t *recs,
                                         mc_err_t *err) {
  mc_boot_where_t where, *wheres = calloc((size_t)topo->world, sizeof(*wheres));
  const int64_t deadline = mc_now_ms() + cfg->timeout_ms;
  moecomm_result_t r = MOECOMM_SUCCESS;
  if (wheres == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  memset(&where, 0, sizeof(where));
  if (topo->rank == 0) r = mc_boot_new_context(rec, 1, err);
  if (r == MOECOMM_SUCCESS && ag(user, rec, recs, sizeof(*rec)) != 0)
    r = mc_err_set(err, MOECOMM_ERR_PEER,
                   "bootstrap: the host's all-gather callback failed (returned non-zero)");
  if (r == MOECOMM_SUCCESS) r = mc_boot_check_recs(topo, recs, err);
  if (r == MOECOMM_SUCCESS) r = mc_boot_layout(recs, topo->world, topo->rank, &b->world, err);
  /* rank 0 serves; a failure there reaches the others as port 0 in the second all-gather */
  if (r == MOECOMM_SUCCESS && topo->rank == 0 &&
      (r = mc_boot_bind_address(cfg, b->world.num_hosts == 1, where.host, sizeof(where.host),
                                err)) == MOECOMM_SUCCESS)
    r = mc_boot_server_acquire(where.host, 0, 0, rec->secret, sizeof(rec->secret), cfg->timeout_ms,
                               (mc_boot_server_t **)&b->server, &where.port, err);
  if (ag(user, &where, wheres, sizeof(where)) != 0 && r == MOECOMM_SUCCESS)
    r = mc_err_set(err, MOECOMM_ERR_PEER,
                   "bootstrap: the host's all-gather callback failed (returned non-zero)");
  if (r == MOECOMM_SUCCESS && wheres[0].port <= 0)
    r = mc_err_set(err, MOECOMM_ERR_PEER, "bootstrap: rank 0 could not start the rendezvous store");
  wheres[0].host[sizeof(wheres[0].host) - 1] = '\0';
  if (r == MOECOMM_SUCCESS)
    r = mc_store_connect(wheres[0].host, wheres[0].port, recs[0].secret, sizeof(recs[0].secret),
                         recs[0].ctx_id, topo->rank, deadline, &b->xchg.store, err);
  if (r != MOECOMM_SUCCESS && topo->rank != 0 && wheres[0].port > 0)
    mc_err_wrap(err, r, "bootstrap: cannot reach rank 0's rendezvous store at %s:%d",
                wheres[0].host, (int)wheres[0].port);
  mc_sha256_wipe(recs[0].secret, sizeof(recs[0].secret));
  mc_sha256_wipe(rec->secret, sizeof(rec->secret));
  free(wheres);
  return r;
}

/* The MOECOMM_STORE path: rank 0 serves at the named address; the records go through the store
   (a timeout names the ranks that never came). */
static moecomm_result_t mc_boot_via_store(mc_boot_t *b, const mc_topo_t *topo,
                                          const mc_config_t *cfg, mc_boot_rec_t *rec,
                                          mc_boot_rec_t *recs, mc_err_t *err) {
  static uint64_t ctx_seq; /* contexts bootstrapped here: each gets its own namespace (counted on
                              success only, so a refused attempt does not shift the next one) */
  static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
  const int64_t deadline = mc_now_ms() + cfg->timeout_ms;
  uint8_t secret[MC_BOOT_SECRET_BYTES];
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)topo->world);
  char host[256], ns[32];
  uint64_t seq = 0;
  mc_xchg_set_t set;
  moecomm_result_t r;
  int port = 0, bound = 0;
  if (ranks == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  pthread_mutex_lock(&seq_lock);
  snprintf(ns, sizeof(ns), "boot%llu", (unsigned long long)ctx_seq);
  pthread_mutex_unlock(&seq_lock);
  mc_boot_parse_store(cfg->store, host, sizeof(host), &port);
  r = mc_boot_store_secret(cfg, host, secret, err);
  if (r == MOECOMM_SUCCESS && topo->rank == 0) r = mc_boot_new_context(rec, 0, err);
  if (r == MOECOMM_SUCCESS && topo->rank == 0)
    r = mc_boot_server_acquire(host, port, 1, secret, sizeof(secret), cfg->timeout_ms,
                               (mc_boot_server_t **)&b->server, &bound, err);
  if (r != MOECOMM_SUCCESS && topo->rank == 0)
    mc_err_wrap(err, r, "bootstrap: rank 0 cannot serve the rendezvous store at %s", cfg->store);
  if (r == MOECOMM_SUCCESS)
    r = mc_store_connect(host, port, secret, sizeof(secret), ns, topo->rank, deadline,
                         &b->xchg.store, err);
  mc_sha256_wipe(secret, sizeof(secret));
  if (r == MOECOMM_SUCCESS) {
    mc_boot_world_set(b, ranks, &set);
    set.scope = ns;
    set.seq = &seq;
    r = mc_xchg_allgather(&set, "bootstrap through MOECOMM_STORE", rec, recs, sizeof(*rec), err);
  }
  if (r == MOECOMM_SUCCESS) r = mc_boot_check_recs(topo, recs, err);
  if (r == MOECOMM_SUCCESS) r = mc_boot_layout(recs, topo->world, topo->rank, &b->world, err);
  if (r == MOECOMM_SUCCESS) {
    pthread_mutex_lock(&seq_lock);
    ctx_seq++;
    pthread_mutex_unlock(&seq_lock);
  }
  free(ranks);
  return r;
}

moecomm_result_t mc_boot_init(const mc_topo_t *topo, const mc_config_t *cfg, int uses_gpu,
                              moecomm_host_allgather_fn_t host_ag, void *host_user,
                              mc_boot_t *boot_p, mc_err_t *err) {
  char host_id[128];
  mc_boot_rec_t rec, *recs = NULL;
  mc_boot_t b;
  moecomm_result_t r;

  if (host_ag == NULL && cfg->store[0] == '\0')
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "no way to bootstrap: pass host_allgather in the context params or set "
                      "MOECOMM_STORE=tcp://HOST:PORT (rank 0 listens there)");
  memset(&b, 0, sizeof(b));
  b.world.size = topo->world;
  b.world.rank = topo->rank;
  b.xchg.timeout_ms = cfg->timeout_ms;
  mc_boot_host_id(cfg, host_id, sizeof(host_id));
  mc_boot_fill_rec(topo, uses_gpu, host_id, &rec);
  if ((recs = calloc((size_t)topo->world, sizeof(*recs))) == NULL)
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  if (topo->world == 1) { /* nothing to meet: no listener, no connection */
    r = mc_boot_new_context(&rec, 0, err);
    /* the host's all-gather is still called, as the ABI promises (a copy for one rank) */
    if (r == MOECOMM_SUCCESS && host_ag != NULL && host_ag(host_user, &rec, recs, sizeof(rec)) != 0)
      r = mc_err_set(err, MOECOMM_ERR_PEER,
                     "bootstrap: the host's all-gather callback failed (returned non-zero)");
    else
      recs[0] = rec;
    if (r == MOECOMM_SUCCESS) r = mc_boot_check_recs(topo, recs, err);
    if (r == MOECOMM_SUCCESS) r = mc_boot_layout(recs, 1, 0, &b.world, err);
  } else if (host_ag != NULL) {
    r = mc_boot_via_host(&b, topo, cfg, host_ag, host_user, &rec, recs, err);
  } else {
    r = mc_boot_via_store(&b, topo, cfg, &rec, recs, err);
  }
  if (r == MOECOMM_SUCCESS) snprintf(b.xchg.ns, sizeof(b.xchg.ns), "%s", recs[0].ctx_id);
  /* Arrival barrier: no rank leaves context_create (and may destroy its context, rank 0 taking
     the store with it) before every rank has reached the store.  MOECOMM_STORE's record
     exchange above already is one. */
  if (r == MOECOMM_SUCCESS && host_ag != NULL && topo->world > 1) r = mc_boot_arrive(&b, err);
  free(recs);
  if (r != MOECOMM_SUCCESS) {
    mc_boot_fini(&b, cfg->timeout_ms);
    return r;
  }
  *boot_p = b;
  boot_p->xchg.world = &boot_p->world;
  MC_INFO("bootstrap: context %s, rank %d of %d, local rank %d of %d, %d host%s", boot_p->xchg.ns,
          topo->rank, topo->world, b.world.local_rank, b.world.local_size, b.world.num_hosts,
          b.world.num_hosts > 1 ? "s" : "");
  return MOECOMM_SUCCESS;
}

void mc_boot_fini(mc_boot_t *boot, int linger_ms) {
  if (boot->xchg.store != NULL) mc_store_close(boot->xchg.store);
  boot->xchg.store = NULL;
  mc_boot_server_release(boot->server, linger_ms);
  boot->server = NULL;
  mc_world_free(&boot->world);
}
