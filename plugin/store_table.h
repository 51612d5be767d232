/* SPDX-License-Identifier: Apache-2.0 */
/* store_table.h - the store server's keys: values with read counts, and the byte budget all of
 * them draw on.
 *
 * Only the server thread touches a table, so nothing here locks.  Every byte the table holds
 * for clients (values, entries, keys) is charged to the budget before it is allocated, so a
 * client cannot make the server allocate more than the budget, whatever lengths it announces. */
#ifndef MC_STORE_TABLE_H_
#define MC_STORE_TABLE_H_

#include <stddef.h>
#include <stdint.h>

/* A value, shared by the table and by replies still being sent. */
typedef struct mc_store_blob {
  uint32_t refs;
  size_t len;
  unsigned char data[];
} mc_store_blob_t;

typedef struct mc_store_entry {
  struct mc_store_entry *next;
  uint64_t hash;
  uint32_t readers; /* gets left before deletion; 0 = keep */
  uint32_t flags;   /* MC_STORE_FLAG_* of the set that wrote it */
  mc_store_blob_t *blob;
  size_t key_len;
  char key[];
} mc_store_entry_t;

typedef struct mc_store_table {
  mc_store_entry_t **buckets;
  size_t nbuckets, nkeys;
  size_t used;   /* bytes charged now */
  size_t budget; /* most bytes that may be charged */
} mc_store_table_t;

/* 0 on success, -1 out of memory. */
int mc_store_table_init(mc_store_table_t *t, size_t budget);
void mc_store_table_fini(mc_store_table_t *t);

/* A blob of len bytes (refs 1) charged to the budget; NULL when it does not fit the budget
   (*full_p = 1) or memory ran out (*full_p = 0). */
mc_store_blob_t *mc_store_blob_new(mc_store_table_t *t, size_t len, int *full_p);
void mc_store_blob_release(mc_store_table_t *t, mc_store_blob_t *b);

/* FNV-1a of len bytes: the table's key hash, also the server's namespace hash. */
uint64_t mc_store_table_hash(const char *key, size_t len);

mc_store_entry_t *mc_store_table_find(mc_store_table_t *t, const char *key, size_t key_len);

/* Stores blob under key (the table takes the caller's reference on success).  Returns
   MC_STORE_OK with the entry in *entry_p, MC_STORE_EXISTS when the key exists and either set is
   write-once, or MC_STORE_FULL when a new entry does not fit the budget or memory. */
uint32_t mc_store_table_set(mc_store_table_t *t, const char *key, size_t key_len,
                            mc_store_blob_t *blob, uint32_t readers, uint32_t flags,
                            mc_store_entry_t **entry_p);

/* Counts one read of e; deletes e after its last allowed read and returns 1 then. */
int mc_store_table_read(mc_store_table_t *t, mc_store_entry_t *e);

#endif
