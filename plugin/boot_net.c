/* SPDX-License-Identifier: Apache-2.0 */
/* boot_net.c - addresses and secrets of the rendezvous (boot_net.h). */
#include "boot_net.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "sha256.h"

void mc_boot_host_id(const mc_config_t *cfg, char *out, size_t size) {
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

/* This host's IPv4 address as its hostname resolves (not loopback), or 127.0.0.1. */
static void mc_boot_host_address(char *out, size_t size) {
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

/* The first IPv4 address of the first interface named in `list` (comma-separated names or
   prefixes, "eth" matching eth0), in list order. */
static moecomm_result_t mc_boot_ifname(const char *list, char *out, size_t size, mc_err_t *err) {
  struct ifaddrs *ifs = NULL;
  char names[256] = "", item[64];
  size_t w = 0;
  if (getifaddrs(&ifs) != 0)
    return mc_err_set(err, MOECOMM_ERR_BACKEND, "MOECOMM_SOCKET_IFNAME: getifaddrs failed");
  for (const char *p = list; *p != '\0';) {
    size_t n = strcspn(p, ",");
    snprintf(item, sizeof(item), "%.*s", (int)(n < sizeof(item) ? n : sizeof(item) - 1), p);
    for (struct ifaddrs *i = ifs; i != NULL && item[0] != '\0'; i = i->ifa_next) {
      if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
          strncmp(i->ifa_name, item, strlen(item)) != 0 || !(i->ifa_flags & IFF_UP))
        continue;
      inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out, (socklen_t)size);
      freeifaddrs(ifs);
      return MOECOMM_SUCCESS;
    }
    p += n + (p[n] == ',');
  }
  for (struct ifaddrs *i = ifs; i != NULL && w < sizeof(names); i = i->ifa_next)
    if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET)
      w += (size_t)snprintf(names + w, sizeof(names) - w, "%s%s", w ? ", " : "", i->ifa_name);
  freeifaddrs(ifs);
  return mc_err_set(err, MOECOMM_ERR_CONFIG,
                    "MOECOMM_SOCKET_IFNAME=%s: no interface of this host that is up with an IPv4 "
                    "address matches (it has: %s)",
                    list, names[0] ? names : "none");
}

moecomm_result_t mc_boot_bind_address(const mc_config_t *cfg, int one_host, char *out, size_t size,
                                      mc_err_t *err) {
  if (cfg->socket_ifname[0] != '\0') return mc_boot_ifname(cfg->socket_ifname, out, size, err);
  if (one_host)
    snprintf(out, size, "127.0.0.1");
  else
    mc_boot_host_address(out, size);
  return MOECOMM_SUCCESS;
}

void mc_boot_parse_store(const char *url, char *host, size_t host_size, int *port) {
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

/* 1 when every address host resolves to is a loopback one. */
static int mc_boot_is_loopback(const char *host) {
  struct addrinfo hints, *res = NULL;
  int any = 0, all = 1;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, NULL, &hints, &res) != 0) return 0;
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    any = 1;
    if (a->ai_family == AF_INET)
      all &= (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    else if (a->ai_family == AF_INET6)
      all &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr);
    else
      all = 0;
  }
  freeaddrinfo(res);
  return any && all;
}

moecomm_result_t mc_boot_store_secret(const mc_config_t *cfg, const char *host,
                                      uint8_t secret[MC_BOOT_SECRET_BYTES], mc_err_t *err) {
  static const char open_secret[] = "moecomm loopback store without MOECOMM_STORE_TOKEN";
  if (cfg->store_token[0] != '\0') {
    mc_sha256(cfg->store_token, strlen(cfg->store_token), secret);
    return MOECOMM_SUCCESS;
  }
  if (!mc_boot_is_loopback(host))
    return mc_err_set(err, MOECOMM_ERR_CONFIG,
                      "MOECOMM_STORE=%s is reachable from other hosts: set MOECOMM_STORE_TOKEN to "
                      "the same secret on every rank (anyone who can reach the port could "
                      "otherwise join the context)",
                      cfg->store);
  mc_sha256(open_secret, sizeof(open_secret) - 1, secret);
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_boot_random(void *buf, size_t n, mc_err_t *err) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = getrandom((char *)buf + got, n - got, 0);
    if (k <= 0)
      return mc_err_set(err, MOECOMM_ERR_BACKEND,
                        "bootstrap: the kernel gave no random bytes (getrandom); a context's "
                        "secret cannot be drawn");
    got += (size_t)k;
  }
  return MOECOMM_SUCCESS;
}
