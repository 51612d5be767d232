/* bootstrap.c - rendezvous at context creation (bootstrap.h). */
#include "bootstrap.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MC_BOOT_MAGIC 0x6d63626fu /* "mcbo" */
#define MC_BOOT_MAX_EXCHANGE (16u << 20)

typedef struct mc_boot_rec {
  uint32_t magic;
  uint32_t version; /* MOECOMM_ABI_VERSION of the plugin build */
  int32_t rank;
  int32_t pid;
  int32_t topo[9];    /* world, tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp, device>=0 */
  int32_t store_port; /* rank 0 only */
  uint64_t host_hash;
  char host_id[128];
  char store_host[64]; /* rank 0 only */
  char ctx_id[48];     /* rank 0 only */
} mc_boot_rec_t;

/* One store server per (process, port) when MOECOMM_STORE is shared by several contexts. */
typedef struct mc_boot_server {
  mc_store_server_t *srv;
  int port;
  int refs;
  int fixed; /* listening on MOECOMM_STORE's port (shared), or ephemeral (own) */
  struct mc_boot_server *next;
} mc_boot_server_t;

static pthread_mutex_t mc_boot_lock = PTHREAD_MUTEX_INITIALIZER;
static mc_boot_server_t *mc_boot_servers;

static uint64_t mc_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* MOECOMM_HOST_ID, else hostname plus boot id (distinguishes containers that share a name). */
static void mc_boot_host_id(const mc_config_t *cfg, char *out, size_t size) {
  char host[64] = "localhost", boot[64] = "";
  FILE *f;
  if (cfg->host_id[0]) {
    snprintf(out, size, "%s", cfg->host_id);
    return;
  }
  (void)gethostname(host, sizeof(host) - 1);
  f = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f != NULL) {
    if (fgets(boot, sizeof(boot), f) == NULL) boot[0] = '\0';
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
  }
  snprintf(out, size, "%s:%s", host, boot);
}

/* An IPv4 address of this host that other hosts can reach, or 127.0.0.1. */
static void mc_boot_my_address(char *out, size_t size) {
  char host[256];
  struct addrinfo hints, *res = NULL;
  snprintf(out, size, "127.0.0.1");
  if (gethostname(host, sizeof(host) - 1) != 0) return;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) != 0) return;
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    struct sockaddr_in *sin = (struct sockaddr_in *)a->ai_addr;
    if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127) continue;
    inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)size);
    break;
  }
  freeaddrinfo(res);
}

static moecomm_result_t mc_boot_server_acquire(int port, int fixed, mc_boot_server_t **out_p,
                                               mc_err_t *err) {
  mc_boot_server_t *s;
  moecomm_result_t r = MOECOMM_SUCCESS;
  pthread_mutex_lock(&mc_boot_lock);
  for (s = mc_boot_servers; fixed && s != NULL; s = s->next)
    if (s->fixed && s->port == port) break;
  if (fixed && s != NULL) {
    s->refs++;
    goto out;
  }
  s = calloc(1, sizeof(*s));
  if (s == NULL) {
    r = mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory for the rendezvous store");
    goto out;
  }
  r = mc_store_server_start(NULL, port, &s->srv, &s->port, err);
  if (r != MOECOMM_SUCCESS) {
    free(s);
    s = NULL;
    goto out;
  }
  s->refs = 1;
  s->fixed = fixed;
  s->next = mc_boot_servers;
  mc_boot_servers = s;
out:
  pthread_mutex_unlock(&mc_boot_lock);
  if (r == MOECOMM_SUCCESS) *out_p = s;
  return r;
}

/* The last local user of the store: the other ranks may still be reading the keys of their last
   exchange, so rank 0 keeps serving until every client has gone (they leave when they destroy
   their context or exit) or linger_ms passes. */
static void mc_boot_server_release(mc_boot_server_t *s, int linger_ms) {
  mc_boot_server_t **pp;
  int64_t until = mc_now_ms() + linger_ms;
  if (s == NULL) return;
  pthread_mutex_lock(&mc_boot_lock);
  if (--s->refs > 0) {
    pthread_mutex_unlock(&mc_boot_lock);
    return;
  }
  for (pp = &mc_boot_servers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  pthread_mutex_unlock(&mc_boot_lock);
  if (mc_store_server_clients(s->srv) > 0 && linger_ms > 0) {
    MC_INFO("rendezvous store: waiting up to %d ms for %zu other rank(s) to finish with it",
            linger_ms, mc_store_server_clients(s->srv));
    while (mc_store_server_clients(s->srv) > 0 && mc_now_ms() < until) mc_sleep_us(5000);
  }
  mc_store_server_stop(s->srv);
  free(s);
}

/* Splits tcp://HOST:PORT (validated by config.c). */
static void mc_boot_parse_store(const char *url, char *host, size_t host_size, int *port) {
  const char *hp = url + 6, *colon = strrchr(hp, ':');
  size_t n = (size_t)(colon - hp);
  if (n >= host_size) n = host_size - 1;
  memcpy(host, hp, n);
  host[n] = '\0';
  if (host[0] == '[' && n > 1 && host[n - 1] == ']') { /* [v6] */
    memmove(host, host + 1, n - 2);
    host[n - 2] = '\0';
  }
  *port = atoi(colon + 1);
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

/* Every rank passed the same sizes, and every record is where its rank says. */
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

/* The world's layout from every rank's record. */
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

/* Every rank has connected to the store (a world exchange of nothing much). */
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

/* Rank 0: a fresh context id and the store server (shared on MOECOMM_STORE's fixed port). */
static moecomm_result_t mc_boot_serve(const mc_config_t *cfg, int port, int use_store_url,
                                      mc_boot_rec_t *rec, mc_boot_server_t **server_p,
                                      mc_err_t *err) {
  uint64_t nonce = 0;
  moecomm_result_t r;
  if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
    nonce = (uint64_t)mc_now_ms() * 2654435761u ^ (uint64_t)getpid();
  snprintf(rec->ctx_id, sizeof(rec->ctx_id), "%d-%08x", (int)getpid(), (unsigned)nonce);
  r = mc_boot_server_acquire(port, use_store_url, server_p, err);
  if (r != MOECOMM_SUCCESS)
    return mc_err_wrap(err, r, "bootstrap: rank 0 cannot serve the rendezvous store%s%s",
                       use_store_url ? " at " : "", use_store_url ? cfg->store : "");
  rec->store_port = (*server_p)->port;
  mc_boot_my_address(rec->store_host, sizeof(rec->store_host));
  return MOECOMM_SUCCESS;
}

/* MOECOMM_STORE: the records go through the store itself; a timeout names the ranks that never
   came. */
static moecomm_result_t mc_boot_store_records(mc_boot_t *b, const mc_boot_rec_t *rec,
                                              mc_boot_rec_t *recs, mc_err_t *err) {
  static uint64_t ctx_seq; /* contexts created in this process: keys them under one store */
  static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)b->world.size);
  char scope[32];
  uint64_t seq = 0;
  mc_xchg_set_t set;
  moecomm_result_t r;
  if (ranks == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  pthread_mutex_lock(&seq_lock);
  snprintf(scope, sizeof(scope), "boot%llu", (unsigned long long)ctx_seq++);
  pthread_mutex_unlock(&seq_lock);
  mc_boot_world_set(b, ranks, &set);
  set.scope = scope;
  set.seq = &seq;
  r = mc_xchg_allgather(&set, "bootstrap through MOECOMM_STORE", rec, recs, sizeof(*rec), err);
  free(ranks);
  return r;
}

/* The host's all-gather carries rank 0's record (and the store's address) to everyone. */
static moecomm_result_t mc_boot_host_records(const mc_topo_t *topo,
                                             moecomm_host_allgather_fn_t host_ag, void *host_user,
                                             const mc_boot_rec_t *rec, mc_boot_rec_t *recs,
                                             char *store_host, size_t host_size, int *port_p,
                                             mc_err_t *err) {
  moecomm_result_t r;
  if (host_ag(host_user, rec, recs, sizeof(*rec)) != 0)
    return mc_err_set(err, MOECOMM_ERR_PEER,
                      "bootstrap: the host's all-gather callback failed (returned non-zero)");
  if ((r = mc_boot_check_recs(topo, recs, err)) != MOECOMM_SUCCESS) return r;
  *port_p = recs[0].store_port;
  snprintf(store_host, host_size, "%s",
           recs[0].host_hash == rec->host_hash ? "127.0.0.1" : recs[0].store_host);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_boot_init(const mc_topo_t *topo, const mc_config_t *cfg, int uses_gpu,
                              moecomm_host_allgather_fn_t host_ag, void *host_user,
                              mc_boot_t *boot_p, mc_err_t *err) {
  const int world = topo->world, me = topo->rank, use_store_url = host_ag == NULL;
  char host_id[128], store_host[256] = "127.0.0.1";
  mc_boot_rec_t rec, *recs = NULL;
  mc_boot_server_t *server = NULL;
  const int64_t deadline = mc_now_ms() + cfg->timeout_ms;
  mc_boot_t b;
  moecomm_result_t r;
  int port = 0;

  if (use_store_url && cfg->store[0] == '\0')
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "no way to bootstrap: pass host_allgather in the context params or set "
                      "MOECOMM_STORE=tcp://HOST:PORT (rank 0 listens there)");
  memset(&b, 0, sizeof(b));
  b.world.size = world;
  b.world.rank = me;
  b.xchg.timeout_ms = cfg->timeout_ms;
  mc_boot_host_id(cfg, host_id, sizeof(host_id));
  mc_boot_fill_rec(topo, uses_gpu, host_id, &rec);
  recs = calloc((size_t)world, sizeof(*recs));
  if (recs == NULL) return mc_err_set(err, MOECOMM_ERR_NO_MEMORY, "out of host memory");

  if (use_store_url) mc_boot_parse_store(cfg->store, store_host, sizeof(store_host), &port);
  if (me == 0 && (r = mc_boot_serve(cfg, port, use_store_url, &rec, &server, err)) != MOECOMM_SUCCESS)
    goto fail;
  if (!use_store_url && (r = mc_boot_host_records(topo, host_ag, host_user, &rec, recs, store_host,
                                                  sizeof(store_host), &port, err)) != MOECOMM_SUCCESS)
    goto fail;
  r = mc_store_connect(store_host, port, deadline, &b.xchg.store, err);
  if (r != MOECOMM_SUCCESS) {
    mc_err_wrap(err, r, "bootstrap: cannot reach rank 0's rendezvous store at %s:%d", store_host,
                port);
    goto fail;
  }
  if (use_store_url) {
    if ((r = mc_boot_store_records(&b, &rec, recs, err)) != MOECOMM_SUCCESS) goto fail;
    if ((r = mc_boot_check_recs(topo, recs, err)) != MOECOMM_SUCCESS) goto fail;
  }
  if ((r = mc_boot_layout(recs, world, me, &b.world, err)) != MOECOMM_SUCCESS) goto fail;
  snprintf(b.xchg.ns, sizeof(b.xchg.ns), "%s", recs[0].ctx_id);
  /* Arrival barrier: no rank leaves context_create (and may destroy its context, rank 0 taking
     the store with it) before every rank has reached the store.  MOECOMM_STORE's record
     exchange above already is one. */
  if (!use_store_url && world > 1 && (r = mc_boot_arrive(&b, err)) != MOECOMM_SUCCESS) goto fail;
  b.server = server;
  free(recs);
  *boot_p = b;
  boot_p->xchg.world = &boot_p->world;
  MC_INFO("bootstrap: context %s, rank %d of %d, local rank %d of %d, %d host%s", boot_p->xchg.ns,
          me, world, b.world.local_rank, b.world.local_size, b.world.num_hosts,
          b.world.num_hosts > 1 ? "s" : "");
  return MOECOMM_SUCCESS;

fail:
  if (b.xchg.store != NULL) mc_store_close(b.xchg.store);
  mc_boot_server_release(server, cfg->timeout_ms);
  free(recs);
  return r;
}

void mc_boot_fini(mc_boot_t *boot, int linger_ms) {
  if (boot->xchg.store != NULL) mc_store_close(boot->xchg.store);
  boot->xchg.store = NULL;
  mc_boot_server_release(boot->server, linger_ms);
  boot->server = NULL;
  mc_world_free(&boot->world);
}
