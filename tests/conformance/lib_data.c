/* SPDX-License-Identifier: Apache-2.0 */
/* lib_data.c - inputs and exact expected outputs of the conformance matrix (conf.h).
 *
 * A case's input on a rank is the host library's test data (host_shim/lib/data.h) keyed by (case
 * id, world rank): every rank regenerates its peers' inputs and builds the whole expected output
 * itself.  The values are non-zero integers in [-4, 4], so every sum, max and min over up to 64
 * ranks is exact in every dtype and the comparison is bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "../../host_shim/lib/data.h"
#include "conf.h"

shim_data_key_t conf_key(uint64_t case_id, int world_rank) {
  shim_data_key_t k;
  memset(&k, 0, sizeof(k));
  k.seed = case_id;
  k.rank = world_rank;
  return k;
}

/* Elements [first, first + n) of the reduction over the members' inputs, as integers. */
static int reduce_ints(const conf_case_t *c, const shim_data_key_t *keys, int size, size_t first,
                       size_t n, int32_t *acc) {
  int32_t *tmp = NULL;
  memset(acc, 0, n * sizeof(*acc));
  if (c->op == MOECOMM_SUM) {
    for (int p = 0; p < size; p++) shim_data_accumulate(acc, first, n, &keys[p]);
    return 1;
  }
  tmp = malloc(n * sizeof(*tmp) + 1);
  if (tmp == NULL) return 0;
  /* int32 "encoding" is the integer itself */
  shim_data_fill(acc, first, n, MOECOMM_INT32, &keys[0]);
  for (int p = 1; p < size; p++) {
    shim_data_fill(tmp, first, n, MOECOMM_INT32, &keys[p]);
    for (size_t i = 0; i < n; i++)
      acc[i] = c->op == MOECOMM_MAX ? (tmp[i] > acc[i] ? tmp[i] : acc[i])
                                    : (tmp[i] < acc[i] ? tmp[i] : acc[i]);
  }
  free(tmp);
  return 1;
}

int conf_expect(const conf_case_t *c, const shim_data_key_t *keys, int size, int me, void *want) {
  const size_t es = shim_dtype_size(c->dt), n = c->n;
  int32_t *acc;
  switch (c->coll) {
    case CONF_AG:
      for (int p = 0; p < size; p++)
        shim_data_fill((unsigned char *)want + (size_t)p * n * es, 0, n, c->dt, &keys[p]);
      return 1;
    case CONF_BC: shim_data_fill(want, 0, n, c->dt, &keys[c->root]); return 1;
    default: break;
  }
  acc = malloc(n * sizeof(*acc) + 1);
  if (acc == NULL || !reduce_ints(c, keys, size, c->coll == CONF_RS ? (size_t)me * n : 0, n, acc)) {
    free(acc);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    shim_data_put_bits(want, i, c->dt, shim_data_encode(acc[i], c->dt));
  free(acc);
  return 1;
}

uint64_t conf_digest(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

const char *conf_coll_name(int coll) {
  static const char *const names[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast"};
  return coll >= 0 && coll < CONF_NCOLL ? names[coll] : "?";
}

const char *conf_op_name(moecomm_redop_t op) {
  return op == MOECOMM_SUM ? "sum" : op == MOECOMM_MAX ? "max" : op == MOECOMM_MIN ? "min" : "?";
}
