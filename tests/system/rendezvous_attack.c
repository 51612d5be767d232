/* SPDX-License-Identifier: Apache-2.0 */
/* rendezvous_attack.c - a hostile local client against a live rank 0 (issue: an unauthenticated,
 * unbounded rendezvous listening on every interface).
 *
 * MOECOMM_STORE contexts of 2 ranks on 127.0.0.1 with MOECOMM_STORE_TOKEN; while they are alive a
 * third process, speaking the store's protocol (plugin/store_client.h), tries:
 *   - no token / a wrong one: refused (MOECOMM_ERR_CONFIG), nothing read;
 *   - the right token, claiming rank 1 while the real rank 1 is checked in: refused naming the
 *     holder, and the real ranks keep working (an all-reduce after the attack);
 *   - 300 idle connections held open while the ranks bootstrap a second context: it still comes
 *     up within a few seconds.
 * Host all-gather contexts: rank 0's store listens on 127.0.0.1 only (read from /proc/net/tcp for
 * the rank's own sockets), and a world of one listens nowhere.  A token is required off loopback.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../plugin/sha256.h"
#include "../../plugin/store_client.h"
#include "../../plugin/util.h"
#include "../common/harness.h"

#define TOKEN "correct horse battery staple"
#define WINDOW_MS 3000

static const moecomm_api_t *api;
static int g_port;

static moecomm_context_t *store_ctx(int rank, int world) {
  moecomm_topology_t t = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  p.host_allgather = NULL; /* MOECOMM_STORE */
  p.host_user = NULL;
  MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS);
  return ctx;
}

static int all_reduce_ok(moecomm_context_t *ctx, int world) {
  moecomm_group_t *g = NULL;
  int32_t x[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  if (ctx == NULL || api->group_get(ctx, MOECOMM_GROUP_WORLD, &g) != MOECOMM_SUCCESS) return 0;
  return MC_CHECK_RC(api, ctx, api->all_reduce(g, x, x, 8, MOECOMM_INT32, MOECOMM_SUM, NULL),
                     MOECOMM_SUCCESS) &&
         MC_CHECK(x[7] == world, "all-reduce after the attack: %d, want %d", x[7], world);
}

/* The two real ranks: a context, a window for the attacker, an all-reduce; then a second context
   bootstrapped during the flood. */
static int real_rank(int rank, int world, void *arg) {
  moecomm_context_t *a, *b;
  (void)arg;
  a = store_ctx(rank, world);
  usleep(WINDOW_MS * 1000);
  all_reduce_ok(a, world);
  b = store_ctx(rank, world); /* the attacker floods meanwhile */
  all_reduce_ok(b, world);
  api->context_destroy(b);
  api->context_destroy(a);
  return 0;
}

static void attacker(void) {
  uint8_t good[MC_SHA256_BYTES], bad[MC_SHA256_BYTES];
  mc_store_t *st = NULL;
  mc_err_t err;
  moecomm_result_t r;
  int fds[300], nfd = 0;
  int64_t deadline = mc_now_ms() + 2000;
  usleep(800 * 1000); /* the ranks are connected by now */
  mc_sha256(TOKEN, strlen(TOKEN), good);
  mc_sha256("guess", 5, bad);
  r = mc_store_connect("127.0.0.1", g_port, bad, sizeof(bad), "boot0", -1, deadline, &st, &err);
  MC_CHECK(r == MOECOMM_ERR_CONFIG, "a wrong secret got %d: %s", (int)r, err.msg);
  r = mc_store_connect("127.0.0.1", g_port, good, sizeof(good), "boot0", 1, deadline, &st, &err);
  MC_CHECK(r == MOECOMM_ERR_CONFIG && strstr(err.msg, "rank 1") != NULL &&
               strstr(err.msg, "already") != NULL,
           "claiming the live rank 1 got %d: %s", (int)r, err.msg);
  if (r == MOECOMM_SUCCESS) mc_store_close(st);
  /* flood while the ranks bootstrap their second context */
  for (; nfd < 300; nfd++) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      if (fd >= 0) close(fd);
      break;
    }
    fds[nfd] = fd;
  }
  usleep((WINDOW_MS + 3000) * 1000);
  for (int i = 0; i < nfd; i++) close(fds[i]);
}

static void test_store_attacks(void) {
  char env[64];
  pid_t pid;
  g_port = mc_test_free_port();
  snprintf(env, sizeof(env), "MOECOMM_STORE=tcp://127.0.0.1:%d", g_port);
  putenv(strdup(env));
  setenv("MOECOMM_STORE_TOKEN", TOKEN, 1);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    attacker();
    _exit(mc_test_finish() == 0 ? 0 : 1);
  }
  MC_CHECK(mc_test_ranks(2, real_rank, NULL, 60) == 0, "the real ranks under attack");
  {
    int st = 0;
    waitpid(pid, &st, 0);
    MC_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the attacker's checks (printed above)");
  }
  unsetenv("MOECOMM_STORE");
}

/* The addresses (hex, as /proc/net/tcp writes them) of the listening TCP sockets of this
   process. */
static int listening_addrs(char addrs[][16], int max) {
  char path[64], link[128], line[512];
  long inodes[256];
  int ninodes = 0, n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  FILE *f;
  while (d != NULL && (e = readdir(d)) != NULL && ninodes < 256) {
    ssize_t k;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
    k = readlink(path, link, sizeof(link) - 1);
    if (k <= 0) continue;
    link[k] = '\0';
    if (sscanf(link, "socket:[%ld]", &inodes[ninodes]) == 1) ninodes++;
  }
  if (d != NULL) closedir(d);
  f = fopen("/proc/net/tcp", "r");
  while (f != NULL && fgets(line, sizeof(line), f) != NULL && n < max) {
    char local[64];
    unsigned st;
    long inode;
    if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*s %*s %ld", local, &st, &inode) != 3 ||
        st != 0x0A)
      continue; /* 0x0A: LISTEN */
    for (int i = 0; i < ninodes; i++)
      if (inodes[i] == inode) snprintf(addrs[n++], 16, "%.8s", local);
  }
  if (f != NULL) fclose(f);
  return n;
}

static int bind_rank(int rank, int world, void *arg) {
  moecomm_topology_t t = mc_test_topo(world, rank, world);
  moecomm_context_params_t p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  char addrs[16][16];
  int n;
  (void)arg;
  if (!MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_SUCCESS)) return 1;
  n = listening_addrs(addrs, 16);
  if (rank == 0 && world > 1) {
    MC_CHECK(n == 1, "rank 0 listens on %d TCP sockets, want 1 (its store)", n);
    for (int i = 0; i < n; i++)
      MC_CHECK(strcmp(addrs[i], "0100007F") == 0,
               "rank 0's store listens on %s, not 127.0.0.1 (every rank is on this host)",
               addrs[i]);
  } else {
    MC_CHECK(n == 0, "rank %d of %d listens on %d TCP sockets, want none", rank, world, n);
  }
  api->context_destroy(ctx);
  return 0;
}

/* Off loopback, MOECOMM_STORE needs a token: refused before anything listens. */
static void test_token_required(void) {
  moecomm_topology_t t = mc_test_topo(1, 0, 1);
  moecomm_context_params_t p = mc_test_ctx_params(&t, MOECOMM_DEVICE_CPU);
  moecomm_context_t *ctx = NULL;
  p.host_allgather = NULL;
  setenv("MOECOMM_STORE", "tcp://192.0.2.1:29500", 1);
  unsetenv("MOECOMM_STORE_TOKEN");
  t.world_size = 2; /* a world of one needs no store at all */
  MC_CHECK_RC(api, NULL, api->context_create(&p, &ctx), MOECOMM_ERR_CONFIG);
  MC_CHECK(strstr(api->last_error(NULL), "MOECOMM_STORE_TOKEN") != NULL,
           "no token off loopback: %s", api->last_error(NULL));
  unsetenv("MOECOMM_STORE");
}

int main(int argc, char **argv) {
  mc_test_init("rendezvous_attack", argc, argv);
  api = mc_test_plugin();
  setenv("MOECOMM_TIMEOUT_MS", "20000", 1);
  test_token_required();
  MC_CHECK(mc_test_ranks(2, bind_rank, NULL, 60) == 0, "binds, 2 ranks");
  MC_CHECK(mc_test_ranks(1, bind_rank, NULL, 60) == 0, "binds, a world of one");
  test_store_attacks();
  return mc_test_finish();
}
