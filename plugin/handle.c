/* SPDX-License-Identifier: Apache-2.0 */
/* handle.c - ABI handles as (tag, kind, generation, slot), checked against one table (handle.h).
 *
 * Encoding (64 bits): tag in bits 60..63 (0xC context, 0xA group), group kind in 56..59, slot
 * generation in 16..47, slot index + 1 in 0..15 (so no handle is NULL).  Lookups read the slot's
 * generation and context pointer with acquire loads; registration publishes with release stores.
 * A context is used by one thread at a time (the ABI's rule, enforced in api_guard.c), so a
 * context is never destroyed while a lookup of its own handle is in flight on another thread that
 * obeys it. */
#include "handle.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MC_HANDLE_TAG_CONTEXT 0xCull
#define MC_HANDLE_TAG_GROUP 0xAull

typedef struct mc_handle_slot {
  _Atomic(mc_context_t *) ctx;
  _Atomic uint32_t gen;
} mc_handle_slot_t;

static mc_handle_slot_t mc_handle_table[MC_HANDLE_SLOTS];
static pthread_mutex_t mc_handle_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned mc_handle_next; /* round-robin start, so a freed slot is reused last */

static uint64_t mc_handle_encode(uint64_t tag, int kind, uint32_t gen, int slot) {
  return tag << 60 | (uint64_t)(kind & 0xf) << 56 | (uint64_t)gen << 16 | (uint64_t)(slot + 1);
}

moecomm_result_t mc_handle_register(mc_context_t *ctx, moecomm_context_t **h_p, mc_err_t *err) {
  int slot = -1;
  uint32_t gen;
  pthread_mutex_lock(&mc_handle_lock);
  for (unsigned i = 0; i < MC_HANDLE_SLOTS && slot < 0; i++) {
    unsigned s = (mc_handle_next + i) % MC_HANDLE_SLOTS;
    if (atomic_load_explicit(&mc_handle_table[s].ctx, memory_order_relaxed) == NULL) slot = (int)s;
  }
  if (slot < 0) {
    pthread_mutex_unlock(&mc_handle_lock);
    return mc_err_set(err, MOECOMM_ERR_NO_MEMORY,
                      "%d contexts are alive in this process, the most there can be; destroy "
                      "one first",
                      MC_HANDLE_SLOTS);
  }
  mc_handle_next = (unsigned)slot + 1;
  gen = atomic_load_explicit(&mc_handle_table[slot].gen, memory_order_relaxed);
  ctx->handle_slot = slot;
  ctx->handle_gen = gen;
  atomic_store_explicit(&mc_handle_table[slot].ctx, ctx, memory_order_release);
  pthread_mutex_unlock(&mc_handle_lock);
  *h_p = (moecomm_context_t *)(uintptr_t)mc_handle_encode(MC_HANDLE_TAG_CONTEXT, 0, gen, slot);
  return MOECOMM_SUCCESS;
}

void mc_handle_release(mc_context_t *ctx) {
  mc_handle_slot_t *s = &mc_handle_table[ctx->handle_slot];
  pthread_mutex_lock(&mc_handle_lock);
  atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
  atomic_store_explicit(&s->ctx, NULL, memory_order_release);
  pthread_mutex_unlock(&mc_handle_lock);
}

/* The live context of the handle's slot and generation, or NULL. */
static mc_context_t *mc_handle_lookup(uint64_t v, uint64_t tag) {
  const int slot = (int)(v & 0xffff) - 1;
  const uint32_t gen = (uint32_t)(v >> 16);
  mc_context_t *ctx;
  if (v >> 60 != tag || slot < 0 || slot >= MC_HANDLE_SLOTS || (v >> 48 & 0xff) != 0) return NULL;
  if (tag == MC_HANDLE_TAG_CONTEXT && (v >> 56 & 0xf) != 0) return NULL;
  if (atomic_load_explicit(&mc_handle_table[slot].gen, memory_order_acquire) != gen) return NULL;
  ctx = atomic_load_explicit(&mc_handle_table[slot].ctx, memory_order_acquire);
  /* the generation moves before the pointer is cleared: read it again */
  if (atomic_load_explicit(&mc_handle_table[slot].gen, memory_order_acquire) != gen) return NULL;
  return ctx;
}

mc_context_t *mc_handle_context(const moecomm_context_t *h) {
  return mc_handle_lookup((uint64_t)(uintptr_t)h, MC_HANDLE_TAG_CONTEXT);
}

mc_group_t *mc_handle_group(const moecomm_group_t *h) {
  const uint64_t v = (uint64_t)(uintptr_t)h;
  const int kind = (int)(v >> 56 & 0xf);
  mc_context_t *ctx = mc_handle_lookup(v, MC_HANDLE_TAG_GROUP);
  if (ctx == NULL || kind >= MC_GROUP_KIND_COUNT) return NULL;
  return &ctx->groups[kind];
}

moecomm_group_t *mc_handle_of_group(const mc_context_t *ctx, int kind) {
  return (moecomm_group_t *)(uintptr_t)mc_handle_encode(MC_HANDLE_TAG_GROUP, kind, ctx->handle_gen,
                                                        ctx->handle_slot);
}
