/* SPDX-License-Identifier: Apache-2.0 */
/* store_table.c - the store server's keys and their byte budget (store_table.h). */
#include "store_table.h"

#include <stdlib.h>
#include <string.h>

#include "store_wire.h"

uint64_t mc_store_table_hash(const char *key, size_t len) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* 1 when `bytes` more fit the budget; charges them then. */
static int mc_store_table_charge(mc_store_table_t *t, size_t bytes) {
  if (bytes > t->budget - t->used) return 0;
  t->used += bytes;
  return 1;
}

int mc_store_table_init(mc_store_table_t *t, size_t budget) {
  memset(t, 0, sizeof(*t));
  t->nbuckets = 256;
  t->budget = budget;
  t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
  return t->buckets != NULL ? 0 : -1;
}

void mc_store_table_fini(mc_store_table_t *t) {
  for (size_t i = 0; t->buckets != NULL && i < t->nbuckets; i++) {
    mc_store_entry_t *e = t->buckets[i];
    while (e != NULL) {
      mc_store_entry_t *next = e->next;
      mc_store_blob_release(t, e->blob);
      free(e);
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = NULL;
}

mc_store_blob_t *mc_store_blob_new(mc_store_table_t *t, size_t len, int *full_p) {
  size_t bytes = sizeof(mc_store_blob_t) + len;
  *full_p = 0;
  if (len > MC_STORE_VALUE_MAX || !mc_store_table_charge(t, bytes)) {
    *full_p = 1;
    return NULL;
  }
  mc_store_blob_t *b = malloc(bytes);
  if (b == NULL) {
    t->used -= bytes;
    return NULL;
  }
  b->refs = 1;
  b->len = len;
  return b;
}

void mc_store_blob_release(mc_store_table_t *t, mc_store_blob_t *b) {
  if (b == NULL || --b->refs > 0) return;
  t->used -= sizeof(*b) + b->len;
  free(b);
}

static mc_store_entry_t **mc_store_table_slot(mc_store_table_t *t, const char *key, size_t len,
                                              uint64_t h) {
  mc_store_entry_t **pp = &t->buckets[h & (t->nbuckets - 1)];
  for (; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->hash == h && (*pp)->key_len == len && memcmp((*pp)->key, key, len) == 0) break;
  return pp;
}

mc_store_entry_t *mc_store_table_find(mc_store_table_t *t, const char *key, size_t key_len) {
  return *mc_store_table_slot(t, key, key_len, mc_store_table_hash(key, key_len));
}

/* Doubling keeps chains short; a failed growth only makes chains longer, so it is not an error. */
static void mc_store_table_grow(mc_store_table_t *t) {
  size_t n = t->nbuckets * 2;
  mc_store_entry_t **nb = calloc(n, sizeof(*nb));
  if (nb == NULL) return;
  for (size_t i = 0; i < t->nbuckets; i++) {
    mc_store_entry_t *e = t->buckets[i];
    while (e != NULL) {
      mc_store_entry_t *next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = nb;
  t->nbuckets = n;
}

uint32_t mc_store_table_set(mc_store_table_t *t, const char *key, size_t key_len,
                            mc_store_blob_t *blob, uint32_t readers, uint32_t flags,
                            mc_store_entry_t **entry_p) {
  uint64_t h = mc_store_table_hash(key, key_len);
  mc_store_entry_t **pp = mc_store_table_slot(t, key, key_len, h);
  mc_store_entry_t *e = *pp;
  if (e != NULL && ((e->flags | flags) & MC_STORE_FLAG_WRITE_ONCE)) return MC_STORE_EXISTS;
  if (e == NULL) {
    size_t bytes = sizeof(*e) + key_len + 1;
    if (!mc_store_table_charge(t, bytes)) return MC_STORE_FULL;
    e = malloc(bytes);
    if (e == NULL) {
      t->used -= bytes;
      return MC_STORE_FULL;
    }
    e->hash = h;
    e->key_len = key_len;
    memcpy(e->key, key, key_len);
    e->key[key_len] = '\0';
    e->next = NULL;
    e->blob = NULL;
    *pp = e;
    t->nkeys++;
  }
  mc_store_blob_release(t, e->blob);
  e->blob = blob;
  e->readers = readers;
  e->flags = flags;
  if (t->nkeys > t->nbuckets) mc_store_table_grow(t);
  *entry_p = e;
  return MC_STORE_OK;
}

int mc_store_table_read(mc_store_table_t *t, mc_store_entry_t *e) {
  if (e->readers == 0 || --e->readers > 0) return 0;
  mc_store_entry_t **pp = mc_store_table_slot(t, e->key, e->key_len, e->hash);
  *pp = e->next;
  t->nkeys--;
  t->used -= sizeof(*e) + e->key_len + 1;
  mc_store_blob_release(t, e->blob);
  free(e);
  return 1;
}
