/* SPDX-License-Identifier: Apache-2.0 */
/* boot_net.h - where the rendezvous store listens and how ranks reach it: host identity, the
 * address to bind, MOECOMM_STORE's parts, and the per-context secret (boot_net.c). */
#ifndef MC_BOOT_NET_H_
#define MC_BOOT_NET_H_

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

#define MC_BOOT_SECRET_BYTES 32

/* MOECOMM_HOST_ID, else hostname plus boot id (distinguishes containers that share a name). */
void mc_boot_host_id(const mc_config_t *cfg, char *out, size_t size);

/* The address rank 0's store binds when ranks find it through the host's all-gather:
   MOECOMM_SOCKET_IFNAME's interface when set (an error naming the interfaces when none matches),
   127.0.0.1 when every rank is on this host, else this host's address (never all interfaces). */
moecomm_result_t mc_boot_bind_address(const mc_config_t *cfg, int one_host, char *out, size_t size,
                                      mc_err_t *err);

/* Splits MOECOMM_STORE (tcp://HOST:PORT, validated by config.c). */
void mc_boot_parse_store(const char *url, char *host, size_t host_size, int *port);

/* The secret of a MOECOMM_STORE context: SHA-256 of MOECOMM_STORE_TOKEN.  Without a token only a
   store on loopback is allowed (with a fixed, public secret: any local process can join it); any
   other address is a configuration error saying to set the token. */
moecomm_result_t mc_boot_store_secret(const mc_config_t *cfg, const char *host,
                                      uint8_t secret[MC_BOOT_SECRET_BYTES], mc_err_t *err);

/* Random bytes from the kernel (a context's secret and id); MOECOMM_ERR_BACKEND without them. */
moecomm_result_t mc_boot_random(void *buf, size_t n, mc_err_t *err);

#endif
