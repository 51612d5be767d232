/* bootstrap.c - how the ranks of a context find each other, and every later exchange.
 *
 * Rank 0 serves a rendezvous store (store.c); every rank is a client.  The store's address reaches
 * the ranks either through the host's all-gather callback (rank 0 listens on an ephemeral port) or
 * through MOECOMM_STORE=tcp://HOST:PORT (rank 0 listens there).  Then every rank publishes a record
 * (pid, host, topology) so that each knows the world's layout and checks that all ranks passed the
 * same topology.  Later exchanges (NCCL ids, IPC handles, capture checks) are all-gathers among the
 * members of one communicator through the store, each under a key that names the context, the
 * communicator and a sequence number every member advances identically. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <netdb.h>
#include <arpa/inet.h>

#include "context.h"
#include "store_server.h"
#include "log.h"
#include "util.h"

#define MC_BOOT_MAGIC 0x6d63626fu /* "mcbo" */
#define MC_BOOT_MAX_EXCHANGE (16u << 20)
/* NOT a secret: a placeholder until the bootstrap shares a real one (host all-gather record or
   MOECOMM_STORE_TOKEN).  The store's API requires one. */
#define MC_BOOT_STORE_SECRET (const uint8_t *)"moecomm-bootstrap-placeholder-key", 33

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
static uint64_t mc_boot_ctx_seq; /* contexts created in this process: keys them under one store */

static uint64_t mc_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* MOECOMM_HOST_ID, else hostname plus boot id (distinguishes containers that share a name). */
static void mc_boot_host_id(const mc_context_t *ctx, char *out, size_t size) {
  char host[64] = "localhost", boot[64] = "";
  FILE *f;
  if (ctx->cfg.host_id[0]) {
    snprintf(out, size, "%s", ctx->cfg.host_id);
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

static moecomm_result_t mc_boot_server_acquire(int port, int fixed, int timeout_ms,
                                               mc_boot_server_t **out_p, mc_err_t *err) {
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
  r = mc_store_server_start(
      &(mc_store_server_opts_t){"::", port, MC_BOOT_STORE_SECRET, timeout_ms, 0,
                                MC_BOOT_MAX_EXCHANGE, 16 * (size_t)MC_BOOT_MAX_EXCHANGE},
      &s->srv, &s->port, err);
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

/* The all-gather every exchange uses: members set "<prefix>/<rank>" and read the others'. */
static moecomm_result_t mc_boot_allgather(mc_context_t *ctx, const char *prefix,
                                          const int32_t *ranks, int n, int me, const char *what,
                                          const void *send, void *recv, size_t bytes) {
  char key[256];
  int64_t deadline = mc_now_ms() + ctx->cfg.timeout_ms;
  moecomm_result_t r;
  if (bytes > MC_BOOT_MAX_EXCHANGE)
    return mc_err_set(&ctx->err, MOECOMM_ERR_INTERNAL, "%s: exchange of %zu bytes is too large",
                      what, bytes);
  snprintf(key, sizeof(key), "%s/%d", prefix, (int)ranks[me]);
  r = mc_store_set(ctx->store, key, send, bytes, (uint32_t)(n - 1), 0, &ctx->err);
  if (r != MOECOMM_SUCCESS) return mc_err_wrap(&ctx->err, r, "%s", what);
  memcpy((char *)recv + (size_t)me * bytes, send, bytes);
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    if (i == me) continue;
    snprintf(key, sizeof(key), "%s/%d", prefix, (int)ranks[i]);
    r = mc_store_get(ctx->store, key, ranks[i], (char *)recv + (size_t)i * bytes, bytes, &len,
                     deadline, &ctx->err);
    if (r == MOECOMM_ERR_TIMEOUT) {
      /* Name every member that has not arrived, not just the first one we waited for. */
      int32_t missing[64];
      int nmiss = 0, dead = -1;
      char list[512];
      for (int j = i; j < n && nmiss < 64; j++) {
        int exists = 0;
        if (j == me) continue;
        snprintf(key, sizeof(key), "%s/%d", prefix, (int)ranks[j]);
        if (j == i ||
            (mc_store_check(ctx->store, key, &exists, NULL) == MOECOMM_SUCCESS && !exists))
          missing[nmiss++] = ranks[j];
        if (dead < 0 && !mc_boot_peer_alive(ctx, ranks[j])) dead = ranks[j];
      }
      mc_format_ranks(missing, nmiss, list, sizeof(list));
      return mc_err_set(&ctx->err, MOECOMM_ERR_TIMEOUT,
                        "%s: timed out after %d ms (MOECOMM_TIMEOUT_MS) waiting for rank%s %s%s",
                        what, ctx->cfg.timeout_ms, nmiss > 1 ? "s" : "", list,
                        dead >= 0 ? " (a process of this host has exited)" : "");
    }
    if (r != MOECOMM_SUCCESS) return mc_err_wrap(&ctx->err, r, "%s", what);
    if (len != bytes)
      return mc_err_set(&ctx->err, MOECOMM_ERR_PEER,
                        "%s: rank %d sent %zu bytes where %zu were expected (ranks are issuing "
                        "different calls)",
                        what, (int)ranks[i], len, bytes);
  }
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_comm_exchange(mc_comm_t *comm, const char *what, const void *send, void *recv,
                                  size_t bytes) {
  char prefix[192], label[256];
  snprintf(prefix, sizeof(prefix), "%s/%s/%llu", comm->ctx->id, comm->key,
           (unsigned long long)comm->seq++);
  snprintf(label, sizeof(label), "%s on %s", what, comm->label);
  return mc_boot_allgather(comm->ctx, prefix, comm->ranks, comm->size, comm->rank, label, send,
                           recv, bytes);
}

static moecomm_result_t mc_world_exchange_prefix(mc_context_t *ctx, const char *prefix,
                                                 const char *what, const void *send, void *recv,
                                                 size_t bytes) {
  int32_t *ranks = malloc(sizeof(int32_t) * (size_t)ctx->topo.world);
  moecomm_result_t r;
  if (ranks == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  for (int i = 0; i < ctx->topo.world; i++) ranks[i] = i;
  r = mc_boot_allgather(ctx, prefix, ranks, ctx->topo.world, ctx->topo.rank, what, send, recv,
                        bytes);
  free(ranks);
  return r;
}

moecomm_result_t mc_world_exchange(mc_context_t *ctx, const char *what, const void *send,
                                   void *recv, size_t bytes) {
  char prefix[128];
  snprintf(prefix, sizeof(prefix), "%s/world/%llu", ctx->id, (unsigned long long)ctx->world_seq++);
  return mc_world_exchange_prefix(ctx, prefix, what, send, recv, bytes);
}

int mc_boot_peer_alive(const mc_context_t *ctx, int world_rank) {
  if (ctx->host_hash == NULL || ctx->pids == NULL || world_rank < 0 ||
      world_rank >= ctx->topo.world)
    return 1;
  if (ctx->host_hash[world_rank] != ctx->host_hash[ctx->topo.rank]) return 1;
  return kill(ctx->pids[world_rank], 0) == 0 || errno == EPERM;
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

static void mc_boot_fill_rec(const mc_context_t *ctx, const char *host_id, mc_boot_rec_t *rec) {
  const mc_topo_t *t = &ctx->topo;
  memset(rec, 0, sizeof(*rec));
  rec->magic = MC_BOOT_MAGIC;
  rec->version = MOECOMM_ABI_VERSION;
  rec->rank = t->rank;
  rec->pid = (int32_t)getpid();
  int32_t topo[9] = {t->world,   t->tp,      t->pp,           t->ep,           t->moe_dp,
                     t->attn_cp, t->attn_dp, t->moe_dense_tp, ctx->device >= 0};
  memcpy(rec->topo, topo, sizeof(topo));
  snprintf(rec->host_id, sizeof(rec->host_id), "%s", host_id);
  rec->host_hash = mc_hash(host_id);
}

/* Every rank passed the same sizes, and every record is where its rank says. */
static moecomm_result_t mc_boot_check_recs(mc_context_t *ctx, const mc_boot_rec_t *recs) {
  static const char *const names[9] = {
      "world_size", "tp", "pp", "ep", "moe_dp", "attn_cp", "attn_dp", "moe_dense_tp", "uses a GPU"};
  const mc_boot_rec_t *me = &recs[ctx->topo.rank];
  for (int r = 0; r < ctx->topo.world; r++) {
    if (recs[r].magic != MC_BOOT_MAGIC || recs[r].rank != r)
      return mc_err_set(&ctx->err, MOECOMM_ERR_PEER,
                        "bootstrap: the record in slot %d is not rank %d's (the host all-gather "
                        "must return ranks in order; got rank %d, magic 0x%x)",
                        r, r, (int)recs[r].rank, recs[r].magic);
    for (int k = 0; k < 9; k++)
      if (recs[r].topo[k] != me->topo[k])
        return mc_err_set(&ctx->err, MOECOMM_ERR_CONFIG,
                          "topology differs between ranks: rank %d has %s=%d, rank %d has %s=%d", r,
                          names[k], (int)recs[r].topo[k], ctx->topo.rank, names[k],
                          (int)me->topo[k]);
  }
  return MOECOMM_SUCCESS;
}

static moecomm_result_t mc_boot_layout(mc_context_t *ctx, const mc_boot_rec_t *recs) {
  int world = ctx->topo.world, me = ctx->topo.rank;
  ctx->host_hash = calloc((size_t)world, sizeof(uint64_t));
  ctx->pids = calloc((size_t)world, sizeof(int));
  if (ctx->host_hash == NULL || ctx->pids == NULL)
    return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");
  ctx->local_rank = ctx->local_size = 0;
  ctx->num_hosts = 0;
  for (int r = 0; r < world; r++) {
    int first = 1;
    ctx->host_hash[r] = recs[r].host_hash;
    ctx->pids[r] = recs[r].pid;
    for (int q = 0; q < r && first; q++) first = recs[q].host_hash != recs[r].host_hash;
    ctx->num_hosts += first;
    if (recs[r].host_hash == recs[me].host_hash) {
      if (r < me) ctx->local_rank++;
      ctx->local_size++;
    }
  }
  snprintf(ctx->id, sizeof(ctx->id), "%s", recs[0].ctx_id);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_boot_init(mc_context_t *ctx, const moecomm_context_params_t *params,
                              size_t params_size) {
  moecomm_host_allgather_fn_t host_ag = params->host_allgather;
  int world = ctx->topo.world, me = ctx->topo.rank, port = 0;
  int use_store_url = host_ag == NULL;
  char host_id[128], store_host[256] = "127.0.0.1";
  mc_boot_rec_t rec, *recs = NULL;
  mc_boot_server_t *server = NULL;
  int64_t deadline = mc_now_ms() + ctx->cfg.timeout_ms;
  moecomm_result_t r;
  uint64_t seq;

  (void)params_size;
  if (use_store_url && ctx->cfg.store[0] == '\0')
    return mc_err_set(&ctx->err, MOECOMM_ERR_CONFIG,
                      "no way to bootstrap: pass host_allgather in the context params or set "
                      "MOECOMM_STORE=tcp://HOST:PORT (rank 0 listens there)");
  pthread_mutex_lock(&mc_boot_lock);
  seq = mc_boot_ctx_seq++;
  pthread_mutex_unlock(&mc_boot_lock);

  mc_boot_host_id(ctx, host_id, sizeof(host_id));
  mc_boot_fill_rec(ctx, host_id, &rec);
  recs = calloc((size_t)world, sizeof(*recs));
  if (recs == NULL) return mc_err_set(&ctx->err, MOECOMM_ERR_NO_MEMORY, "out of host memory");

  if (use_store_url) mc_boot_parse_store(ctx->cfg.store, store_host, sizeof(store_host), &port);
  if (me == 0) {
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
      nonce = (uint64_t)mc_now_ms() * 2654435761u ^ (uint64_t)getpid();
    snprintf(rec.ctx_id, sizeof(rec.ctx_id), "%d-%08x", (int)getpid(), (unsigned)nonce);
    r = mc_boot_server_acquire(port, use_store_url, ctx->cfg.timeout_ms, &server, &ctx->err);
    if (r != MOECOMM_SUCCESS) {
      mc_err_wrap(&ctx->err, r, "bootstrap: rank 0 cannot serve the rendezvous store%s%s",
                  use_store_url ? " at " : "", use_store_url ? ctx->cfg.store : "");
      goto fail;
    }
    rec.store_port = server->port;
    mc_boot_my_address(rec.store_host, sizeof(rec.store_host));
  }

  if (!use_store_url) {
    /* The host's all-gather carries rank 0's store address to everyone. */
    if (host_ag(params->host_user, &rec, recs, sizeof(rec)) != 0) {
      r = mc_err_set(&ctx->err, MOECOMM_ERR_PEER,
                     "bootstrap: the host's all-gather callback failed (returned non-zero)");
      goto fail;
    }
    if ((r = mc_boot_check_recs(ctx, recs)) != MOECOMM_SUCCESS) goto fail;
    port = recs[0].store_port;
    snprintf(store_host, sizeof(store_host), "%s",
             recs[0].host_hash == rec.host_hash ? "127.0.0.1" : recs[0].store_host);
  }
  r = mc_store_connect(store_host, port, MC_BOOT_STORE_SECRET,
                       use_store_url ? "moecomm-bootstrap" : recs[0].ctx_id,
                       use_store_url ? -1 : me, deadline, &ctx->store, &ctx->err);
  if (r != MOECOMM_SUCCESS) {
    mc_err_wrap(&ctx->err, r, "bootstrap: cannot reach rank 0's rendezvous store at %s:%d",
                store_host, port);
    goto fail;
  }
  if (use_store_url) {
    /* Arrival check through the store: a timeout names the ranks that never came. */
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "boot%llu", (unsigned long long)seq);
    r = mc_world_exchange_prefix(ctx, prefix, "bootstrap through MOECOMM_STORE", &rec, recs,
                                 sizeof(rec));
    if (r != MOECOMM_SUCCESS) goto fail;
    if ((r = mc_boot_check_recs(ctx, recs)) != MOECOMM_SUCCESS) goto fail;
  }
  if ((r = mc_boot_layout(ctx, recs)) != MOECOMM_SUCCESS) goto fail;
  ctx->store_server = server;
  free(recs);
  MC_INFO("bootstrap: context %s, rank %d of %d, local rank %d of %d, %d host%s", ctx->id, me,
          world, ctx->local_rank, ctx->local_size, ctx->num_hosts, ctx->num_hosts > 1 ? "s" : "");
  return MOECOMM_SUCCESS;

fail:
  free(ctx->host_hash);
  free(ctx->pids);
  ctx->host_hash = NULL;
  ctx->pids = NULL;
  if (ctx->store != NULL) mc_store_close(ctx->store);
  ctx->store = NULL;
  mc_boot_server_release(server, ctx->cfg.timeout_ms);
  free(recs);
  return r;
}

void mc_boot_fini(mc_context_t *ctx) {
  if (ctx->store != NULL) mc_store_close(ctx->store);
  ctx->store = NULL;
  mc_boot_server_release(ctx->store_server, ctx->cfg.timeout_ms);
  ctx->store_server = NULL;
  free(ctx->host_hash);
  free(ctx->pids);
  ctx->host_hash = NULL;
  ctx->pids = NULL;
}
