/* SPDX-License-Identifier: Apache-2.0 */
/* p2p.c - send and recv of the shm backend: a channel per pair of members that no other member
 * takes part in (the collectives' barriers involve every member, so they are not used here).
 *
 * A pair {lo, hi} (group indices, lo < hi) gets its own segment when one of them first sends to
 * or receives from the other: "<comm segment name>-p<lo>.<hi>", with lo's pid in the name (so
 * the sweep removes it once lo is gone).  Whichever side comes first creates it; the other finds
 * it by name, maps it and unlinks it (the creator unlinks it when it is done with the pair if
 * the other never came).  So a side that gave up before its peer arrived leaves its reason
 * there for the peer to find.  Layout:
 *
 *   page 0: p2p_hdr_t: ready flag, who gave up first, each side's code and note, chan[2]
 *   ring 0 (lo -> hi), ring 1 (hi -> lo): MC_SHM_P2P_RING bytes each
 *
 * A direction is a byte stream through its ring: the sender advances head, the receiver tail
 * (32-bit counters that wrap; head - tail is the fill).  A message is a 64-byte record (its number
 * in the direction, dtype and count) and its data, padded to 64 bytes, published in chunks so the
 * receiver copies out while the sender copies in.  The receiver checks the record against its own
 * call before it takes any data: a count or dtype that differs fails both sides and nothing
 * reaches recv.  Taking the record (tail moves past it) is the acceptance the sender waits for.
 *
 * What blocks: send returns once the receiver has accepted the message and all of its data is in
 * the ring (a message larger than the ring also waits for the receiver to drain it); recv returns
 * once all data is in recv.  So a send waits for the matching recv, as NCCL's does: two ranks
 * that both send to each other first (or both receive first) can never proceed.  That is found
 * and reported on both sides at once (the deadlock checks below), not left to the timeout.
 *
 * Waiting polls and yields as the barriers do (sync.c), then sleeps on a futex on the peer's
 * counter at most MC_SHM_P2P_CHECK_MS at a time.  Before each sleep: did the peer give up on the
 * pair or on the whole communicator; every check period: is its process alive, and has the wait
 * gone MOECOMM_TIMEOUT_MS without progress.  A side that fails writes its code and reason into the
 * header and wakes the peer, which then fails with the same code and that reason (one cause, one
 * code: whichever side gave up first).  The pair stays broken (later calls between the two fail
 * with MOECOMM_ERR_STATE); other pairs and the collectives of the communicator are unaffected. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../util.h"
#include "p2p.h"

#include "copy.h"
#include "segment.h"
#include "shm.h"

#define MC_SHM_P2P_MAGIC 0x70326d63u /* "cm2p" */
#define MC_SHM_P2P_LAYOUT 1u
#ifndef MC_SHM_P2P_RING
#define MC_SHM_P2P_RING (256u << 10) /* bytes of one direction's ring: a power of two */
#endif
#define MC_SHM_P2P_CHUNK (MC_SHM_P2P_RING / 4) /* published to the receiver at least this often */
#define MC_SHM_P2P_REC 64u                     /* a message's record; data are padded to it */
#define MC_SHM_P2P_CHECK_MS 100                /* liveness and deadline checks while sleeping */
#define MC_SHM_P2P_OPEN_US 2000                /* longest pause between looks for the segment */

_Static_assert((MC_SHM_P2P_RING & (MC_SHM_P2P_RING - 1)) == 0 && MC_SHM_P2P_RING >= 4096 &&
                   MC_SHM_P2P_RING <= (1u << 30),
               "the ring is a power of two (positions wrap with the 32-bit counters)");

/* One direction of a pair; each line is written by one side only. */
typedef struct p2p_chan {
  _Atomic uint32_t head;          /* sender: bytes put into the ring (wraps at 2^32) */
  _Atomic uint32_t sent;          /* sender: message records put into the ring */
  _Atomic uint32_t tail_sleepers; /* sender: non-zero while it sleeps on tail */
  uint32_t pad0[13];
  _Atomic uint32_t tail;          /* receiver: bytes taken out (wraps at 2^32) */
  _Atomic uint32_t want;          /* receiver: 1 + records taken while it waits for the next
                                     record in recv; 0 otherwise */
  _Atomic uint32_t head_sleepers; /* receiver: non-zero while it sleeps on head */
  uint32_t pad1[13];
} p2p_chan_t;

typedef struct p2p_hdr {
  uint32_t magic, layout;
  int32_t lo, hi; /* group indices of side 0 and side 1 */
  uint64_t ring_bytes;
  _Atomic uint32_t ready;      /* MC_SHM_P2P_MAGIC once the creator wrote the fields above */
  _Atomic uint32_t first;      /* 1 + the side that gave up first; 0 while neither has */
  _Atomic uint32_t aborted[2]; /* the code each side gave up with; 0 while it has not */
  unsigned char pad[24];
  p2p_chan_t chan[2];              /* chan[s]: side s sends */
  char note[2][MC_SHM_NOTE_BYTES]; /* why each side gave up */
} p2p_hdr_t;

_Static_assert(sizeof(p2p_chan_t) == MC_SHM_LINE, "a channel is two cache lines");
_Static_assert(sizeof(p2p_hdr_t) <= MC_SHM_PAGE, "the header fits its page");

/* The record in front of every message's data. */
typedef struct p2p_rec {
  uint32_t magic;
  uint32_t seq; /* 1, 2, ... in its direction */
  int32_t dtype;
  uint32_t pad0;
  uint64_t count;
  unsigned char pad[40];
} p2p_rec_t;

_Static_assert(sizeof(p2p_rec_t) == MC_SHM_P2P_REC, "a record is one cache line");

/* This rank's view of one pair. */
struct mc_shm_pair {
  mc_shm_segment_t seg;
  p2p_hdr_t *hdr; /* NULL when the pair could not be set up */
  int side;       /* 0 when this rank is lo */
  p2p_chan_t *out, *in;
  unsigned char *out_ring, *in_ring;
  uint64_t head, tail;     /* bytes this side put into out / took from in */
  uint32_t sent, taken;    /* records this side put into out / took from in */
  moecomm_result_t broken; /* non-zero once this side gave up on the pair */
  char cause[MC_ERR_MSG_MAX];
};

/* What a wait may find besides progress. */
enum { P2P_CHECK_NONE = 0, P2P_CHECK_SENDING, P2P_CHECK_RECEIVING };

/* One send or recv in progress. */
typedef struct p2p_op {
  mc_comm_t *comm;
  mc_shm_t *shm;
  struct mc_shm_pair *pr;
  const mc_coll_t *c;
  const char *what; /* "send" or "recv" */
  int peer;         /* group index */
  uint32_t seq;     /* the message's number in its direction */
  int check;        /* P2P_CHECK_*: the deadlock that waiting here could be */
} p2p_op_t;

/* ---- futex words ---- */

static void p2p_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

static long p2p_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

/* Stores v and wakes the peer if it sleeps on the word (the store and the sleeper count are read
   in this order, and written in the other order by the sleeper: one of them sees the other). */
static void p2p_publish(_Atomic uint32_t *word, _Atomic uint32_t *sleepers, uint32_t v) {
  atomic_store_explicit(word, v, memory_order_seq_cst);
  if (atomic_load_explicit(sleepers, memory_order_seq_cst) != 0)
    p2p_futex(word, FUTEX_WAKE, INT_MAX, NULL);
}

static void p2p_wake_all(p2p_hdr_t *h) {
  for (int d = 0; d < 2; d++) {
    p2p_futex(&h->chan[d].head, FUTEX_WAKE, INT_MAX, NULL);
    p2p_futex(&h->chan[d].tail, FUTEX_WAKE, INT_MAX, NULL);
  }
}

static int64_t p2p_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Polls for up to spin_ns; 1 when the word moved off `seen`. */
static int p2p_spin(_Atomic uint32_t *word, uint32_t seen, int64_t spin_ns) {
  int64_t until = -1;
  if (spin_ns <= 0) return 0;
  for (unsigned i = 0;; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != seen) return 1;
    if ((i & 63u) == 63u) { /* read the clock only every 64 polls */
      int64_t t = p2p_now_ns();
      if (until < 0) until = t + spin_ns;
      if (t >= until) return 0;
    }
    p2p_relax();
  }
}

/* Sleeps on the word while it still holds `seen`, at most ms. */
static moecomm_result_t p2p_sleep(p2p_op_t *op, _Atomic uint32_t *word, _Atomic uint32_t *sleepers,
                                  uint32_t seen, int64_t ms) {
  moecomm_result_t res = MOECOMM_SUCCESS;
  atomic_fetch_add_explicit(sleepers, 1u, memory_order_seq_cst);
  if (atomic_load_explicit(word, memory_order_seq_cst) == seen) {
    if (ms < 1) ms = 1;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    if (p2p_futex(word, FUTEX_WAIT, seen, &ts) != 0 && errno != EAGAIN && errno != ETIMEDOUT &&
        errno != EINTR)
      res = mc_err_set(op->comm->err, MOECOMM_ERR_BACKEND, "shm %s on %s: futex wait failed: %s",
                       op->what, op->comm->label, strerror(errno));
  }
  atomic_fetch_sub_explicit(sleepers, 1u, memory_order_seq_cst);
  return res;
}

/* ---- giving up ---- */

static int p2p_world(const p2p_op_t *op, int group_rank) {
  return (int)op->comm->ranks[group_rank];
}

/* Gives up on the pair.  code and comm->err's message are this side's reason, unless the peer
   gave up first: then its code and reason are what this call reports.  Either way the pair stays
   broken and the peer is woken to see it.  Returns the code reported. */
static moecomm_result_t p2p_fail(p2p_op_t *op, moecomm_result_t code) {
  struct mc_shm_pair *pr = op->pr;
  p2p_hdr_t *h = pr->hdr;
  const uint32_t me = (uint32_t)pr->side, other = 1u - me;
  uint32_t first = 0;
  snprintf(h->note[me], MC_SHM_NOTE_BYTES, "%s", op->comm->err->msg);
  atomic_store_explicit(&h->aborted[me], (uint32_t)code, memory_order_release);
  if (!atomic_compare_exchange_strong_explicit(&h->first, &first, me + 1u, memory_order_acq_rel,
                                               memory_order_acquire) &&
      first == other + 1u) {
    uint32_t pc = atomic_load_explicit(&h->aborted[other], memory_order_acquire);
    code = pc == 0 || pc > MOECOMM_ERR_INTERNAL ? MOECOMM_ERR_PEER : (moecomm_result_t)pc;
    mc_err_set(op->comm->err, code,
               "shm %s on %s: rank %d gave up on its channel with rank %d: %.*s", op->what,
               op->comm->label, p2p_world(op, op->peer), p2p_world(op, op->comm->rank),
               (int)MC_SHM_NOTE_BYTES, h->note[other]);
  }
  pr->broken = code;
  snprintf(pr->cause, sizeof pr->cause, "%s", op->comm->err->msg);
  p2p_wake_all(h);
  return code;
}

/* The deadlocks a wait (on `word`, still `seen`) can be in: both ranks inside send to each other
   (each waits for the other to receive), or both inside recv from each other.  Each side
   publishes its state before it waits and reads the other's after (sequentially consistent), so
   at least one of them sees it.  The waited-for word is read again after the peer's state: a peer
   that moved on from serving this wait (its last store for it precedes the state read) shows as
   progress, not as a deadlock. */
static moecomm_result_t p2p_check_deadlock(p2p_op_t *op, _Atomic uint32_t *word, uint32_t seen) {
  const struct mc_shm_pair *pr = op->pr;
  const int me = p2p_world(op, op->comm->rank), peer = p2p_world(op, op->peer);
  /* A record of the peer's not taken yet: the peer is in send to us, waiting for us. */
  if (op->check == P2P_CHECK_SENDING &&
      atomic_load_explicit(&pr->in->sent, memory_order_seq_cst) != pr->taken &&
      atomic_load_explicit(word, memory_order_seq_cst) == seen)
    return mc_err_set(op->comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "shm send on %s: ranks %d and %d are both sending to each other (message "
                      "%u from rank %d, message %u from rank %d); on a CPU context a send waits "
                      "for the matching recv, so one of them must receive first",
                      op->comm->label, me, peer, op->seq, me, pr->taken + 1u, peer);
  /* The peer waits in recv for a message we have not sent. */
  if (op->check == P2P_CHECK_RECEIVING &&
      atomic_load_explicit(&pr->out->want, memory_order_seq_cst) == pr->sent + 1u &&
      atomic_load_explicit(word, memory_order_seq_cst) == seen)
    return mc_err_set(op->comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "shm recv on %s: ranks %d and %d are both waiting to receive from each "
                      "other (message %u from rank %d, message %u from rank %d); one of them must "
                      "send first",
                      op->comm->label, me, peer, op->seq, peer, pr->sent + 1u, me);
  return MOECOMM_SUCCESS;
}

static moecomm_result_t p2p_timeout(p2p_op_t *op) {
  const mc_comm_t *comm = op->comm;
  const int me = p2p_world(op, comm->rank), peer = p2p_world(op, op->peer);
  const char *dn = mc_dtype_name(op->c->dtype);
  if (op->c->kind == MC_COLL_SEND)
    return mc_err_set(comm->err, MOECOMM_ERR_TIMEOUT,
                      "shm send on %s: rank %d did not receive message %u (%zu %s) from rank %d "
                      "within %d ms (MOECOMM_TIMEOUT_MS); it is stuck, or the two ranks' sends "
                      "and receives do not match",
                      comm->label, peer, op->seq, op->c->count, dn, me, comm->cfg->timeout_ms);
  return mc_err_set(comm->err, MOECOMM_ERR_TIMEOUT,
                    "shm recv on %s: rank %d did not send message %u (%zu %s) to rank %d within "
                    "%d ms (MOECOMM_TIMEOUT_MS); it is stuck, or the two ranks' sends and "
                    "receives do not match",
                    comm->label, peer, op->seq, op->c->count, dn, me, comm->cfg->timeout_ms);
}

/* Before each sleep on `word`: the peer's abort (of the pair or of the whole communicator) and the
   deadlocks; when `full`, also its process; when `late`, the deadline has passed. */
static moecomm_result_t p2p_check(p2p_op_t *op, _Atomic uint32_t *word, uint32_t seen, int full,
                                  int late) {
  const mc_comm_t *comm = op->comm;
  const int peer = p2p_world(op, op->peer);
  if (atomic_load_explicit(&op->pr->hdr->first, memory_order_acquire) != 0)
    return mc_err_set(comm->err, MOECOMM_ERR_PEER, "shm %s on %s: rank %d gave up", op->what,
                      comm->label, peer); /* p2p_fail reports its code and reason */
  uint32_t code = atomic_load_explicit(&op->shm->ctl[op->peer].aborted, memory_order_acquire);
  if (code != 0)
    return mc_err_set(
        comm->err, code > MOECOMM_ERR_INTERNAL ? MOECOMM_ERR_PEER : (moecomm_result_t)code,
        "shm %s on %s: rank %d gave up on the communicator: %.*s", op->what, comm->label, peer,
        (int)MC_SHM_NOTE_BYTES, op->shm->notes + (size_t)op->peer * MC_SHM_NOTE_BYTES);
  moecomm_result_t res = p2p_check_deadlock(op, word, seen);
  if (res != MOECOMM_SUCCESS) return res;
  if (full && !mc_world_alive(comm->world, peer))
    return mc_err_set(comm->err, MOECOMM_ERR_PEER, "shm %s on %s: rank %d (pid %d) exited",
                      op->what, comm->label, peer,
                      comm->world->pids != NULL ? (int)comm->world->pids[peer] : -1);
  return late ? p2p_timeout(op) : MOECOMM_SUCCESS;
}

/* Waits until the peer moves `word` off `seen`: polls and yields as the comm's policy says, then
   sleeps, checking as above; the deadline is MOECOMM_TIMEOUT_MS after the first sleep. */
static moecomm_result_t p2p_wait(p2p_op_t *op, _Atomic uint32_t *word, _Atomic uint32_t *sleepers,
                                 uint32_t seen) {
  int yields = op->shm->yields;
  int64_t deadline = -1, next_check = 0;
  if (p2p_spin(word, seen, op->shm->spin_ns)) return MOECOMM_SUCCESS;
  for (;;) {
    if (atomic_load_explicit(word, memory_order_acquire) != seen) return MOECOMM_SUCCESS;
    if (yields > 0) {
      yields--;
      sched_yield();
      continue;
    }
    int64_t now = mc_now_ms();
    if (deadline < 0) {
      deadline = now + op->comm->cfg->timeout_ms;
      next_check = now + MC_SHM_P2P_CHECK_MS;
    }
    const int full = now >= next_check || now >= deadline;
    moecomm_result_t res = p2p_check(op, word, seen, full, now >= deadline);
    if (res != MOECOMM_SUCCESS) return res;
    if (full) next_check = now + MC_SHM_P2P_CHECK_MS;
    res = p2p_sleep(op, word, sleepers, seen, MC_MIN(next_check, deadline) - now);
    if (res != MOECOMM_SUCCESS) return res;
  }
}

/* ---- the byte stream ---- */

/* Copies n bytes between user memory and the ring at stream position pos, wrapping. */
static void p2p_ring_copy(unsigned char *ring, size_t cap, uint64_t pos, unsigned char *user,
                          size_t n, int to_ring) {
  const size_t at = (size_t)(pos & (cap - 1)), first = MC_MIN(n, cap - at);
  if (to_ring) {
    mc_shm_copy(ring + at, user, first);
    mc_shm_copy(ring, user + first, n - first);
  } else {
    mc_shm_copy(user, ring + at, first);
    mc_shm_copy(user + first, ring, n - first);
  }
}

/* Moves `total` bytes through the ring, the first `bytes` of them to or from user (the rest is
   padding): put into the out ring, or take from the in ring.  Publishes per chunk. */
static moecomm_result_t p2p_stream(p2p_op_t *op, int put, unsigned char *user, size_t bytes,
                                   size_t total) {
  struct mc_shm_pair *pr = op->pr;
  p2p_chan_t *ch = put ? pr->out : pr->in;
  unsigned char *ring = put ? pr->out_ring : pr->in_ring;
  uint64_t *pos = put ? &pr->head : &pr->tail;
  _Atomic uint32_t *mine = put ? &ch->head : &ch->tail, *theirs = put ? &ch->tail : &ch->head;
  _Atomic uint32_t *my_sleep = put ? &ch->tail_sleepers : &ch->head_sleepers;
  _Atomic uint32_t *their_sleep = put ? &ch->head_sleepers : &ch->tail_sleepers;
  const size_t cap = (size_t)pr->hdr->ring_bytes;
  size_t done = 0;
  while (done < total) {
    const uint32_t t = atomic_load_explicit(theirs, memory_order_acquire);
    const size_t fill = put ? (uint32_t)((uint32_t)*pos - t) : (uint32_t)(t - (uint32_t)*pos);
    const size_t ready = put ? cap - fill : fill;
    if (ready == 0) {
      moecomm_result_t res = p2p_wait(op, theirs, my_sleep, t);
      if (res != MOECOMM_SUCCESS) return res;
      continue;
    }
    const size_t n = MC_MIN(MC_MIN(ready, total - done), (size_t)MC_SHM_P2P_CHUNK);
    if (done < bytes) p2p_ring_copy(ring, cap, *pos, user + done, MC_MIN(n, bytes - done), put);
    *pos += n;
    done += n;
    p2p_publish(mine, their_sleep, (uint32_t)*pos);
  }
  return MOECOMM_SUCCESS;
}

static size_t p2p_padded(size_t bytes) {
  return (bytes + MC_SHM_P2P_REC - 1) / MC_SHM_P2P_REC * MC_SHM_P2P_REC;
}

/* ---- the pair's segment ---- */

/* The side that came second: waits until the peer has filled in the segment it created, maps it
   and removes its name. */
static moecomm_result_t p2p_open(p2p_op_t *op, int lo, int hi, const char *name, size_t bytes) {
  mc_comm_t *comm = op->comm;
  struct mc_shm_pair *pr = op->pr;
  const int w = p2p_world(op, op->peer);
  const int64_t deadline = mc_now_ms() + comm->cfg->timeout_ms;
  long pause_us = 20;
  for (;;) {
    if (pr->seg.base == NULL) {
      moecomm_result_t res = mc_shm_segment_open(comm, name, bytes, &pr->seg);
      if (res != MOECOMM_SUCCESS && res != MC_DEFER) return res;
    }
    if (pr->seg.base != NULL && atomic_load_explicit(&((p2p_hdr_t *)pr->seg.base)->ready,
                                                     memory_order_acquire) == MC_SHM_P2P_MAGIC)
      break;
    if (!mc_world_alive(comm->world, w))
      return mc_err_set(comm->err, MOECOMM_ERR_PEER,
                        "shm %s on %s: rank %d (pid %d) exited while it set up its channel with "
                        "rank %d",
                        op->what, comm->label, w, (int)comm->world->pids[w],
                        p2p_world(op, comm->rank));
    if (mc_now_ms() >= deadline)
      return mc_err_set(comm->err, MOECOMM_ERR_TIMEOUT,
                        "shm %s on %s: rank %d did not finish setting up its channel with rank %d "
                        "within %d ms (MOECOMM_TIMEOUT_MS)",
                        op->what, comm->label, w, p2p_world(op, comm->rank), comm->cfg->timeout_ms);
    mc_sleep_us(pause_us);
    pause_us = MC_MIN(pause_us * 2, MC_SHM_P2P_OPEN_US);
  }
  shm_unlink(name); /* mapped by both sides now: a killed run leaves nothing behind */
  const p2p_hdr_t *h = pr->seg.base;
  if (h->magic != MC_SHM_P2P_MAGIC || h->layout != MC_SHM_P2P_LAYOUT || h->lo != lo ||
      h->hi != hi || h->ring_bytes != MC_SHM_P2P_RING)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                      "shm %s on %s: the channel segment %s does not hold the expected header "
                      "(layout %u, ring %llu bytes): two moecomm versions mixed in one run?",
                      op->what, comm->label, name, (unsigned)h->layout,
                      (unsigned long long)h->ring_bytes);
  return MOECOMM_SUCCESS;
}

/* Maps this rank's side of the pair with op->peer: creates the segment, or opens the peer's. */
static moecomm_result_t p2p_setup(p2p_op_t *op) {
  mc_comm_t *comm = op->comm;
  struct mc_shm_pair *pr = op->pr;
  const int lo = MC_MIN(comm->rank, op->peer), hi = MC_MAX(comm->rank, op->peer);
  const size_t bytes = MC_SHM_PAGE + 2u * (size_t)MC_SHM_P2P_RING;
  char suffix[40], name[sizeof pr->seg.name];
  if (comm->world->pids == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL, "shm %s on %s: the ranks' pids are unknown",
                      op->what, comm->label);
  snprintf(suffix, sizeof suffix, "-p%d.%d", lo, hi);
  mc_shm_segment_name(comm, (int)comm->world->pids[comm->ranks[lo]], suffix, name, sizeof name);
  moecomm_result_t res = mc_shm_segment_create(comm, name, bytes, 0, &pr->seg);
  if (res == MOECOMM_SUCCESS) {
    p2p_hdr_t *h = pr->seg.base; /* zero pages: counters, flags and notes start at 0 */
    h->magic = MC_SHM_P2P_MAGIC;
    h->layout = MC_SHM_P2P_LAYOUT;
    h->lo = lo;
    h->hi = hi;
    h->ring_bytes = MC_SHM_P2P_RING;
    atomic_store_explicit(&h->ready, MC_SHM_P2P_MAGIC, memory_order_release);
  } else if (res == MC_DEFER) {
    res = p2p_open(op, lo, hi, name, bytes);
  }
  if (res != MOECOMM_SUCCESS) return res;
  unsigned char *base = pr->seg.base;
  pr->side = comm->rank == lo ? 0 : 1;
  pr->hdr = (p2p_hdr_t *)base;
  pr->out = &pr->hdr->chan[pr->side];
  pr->in = &pr->hdr->chan[1 - pr->side];
  pr->out_ring = base + MC_SHM_PAGE + (size_t)pr->side * MC_SHM_P2P_RING;
  pr->in_ring = base + MC_SHM_PAGE + (size_t)(1 - pr->side) * MC_SHM_P2P_RING;
  comm->be[MOECOMM_BACKEND_SHM].host_bytes += bytes;
  return MOECOMM_SUCCESS;
}

/* Start of a send or recv: the comm and the pair must be healthy; the pair is set up by its
   first call. */
static moecomm_result_t p2p_begin(mc_comm_t *comm, const mc_coll_t *c, p2p_op_t *op) {
  moecomm_result_t res;
  memset(op, 0, sizeof *op);
  op->comm = comm;
  op->c = c;
  op->peer = c->peer;
  op->what = c->kind == MC_COLL_SEND ? "send" : "recv";
  if ((res = mc_shm_state(comm, op->what, &op->shm)) != MOECOMM_SUCCESS) return res;
  mc_shm_t *shm = op->shm;
  if (shm->pairs == NULL && (shm->pairs = calloc((size_t)comm->size, sizeof *shm->pairs)) == NULL)
    return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "shm %s on %s: out of memory", op->what,
                      comm->label);
  if (shm->pairs[op->peer] == NULL) {
    struct mc_shm_pair *pr = calloc(1, sizeof *pr);
    if (pr == NULL)
      return mc_err_set(comm->err, MOECOMM_ERR_NO_MEMORY, "shm %s on %s: out of memory", op->what,
                        comm->label);
    shm->pairs[op->peer] = op->pr = pr;
    /* A pair that could not be set up stays failed: a later call must not pair up with a call
       the peer made for this one. */
    if ((res = p2p_setup(op)) != MOECOMM_SUCCESS) {
      pr->broken = res;
      snprintf(pr->cause, sizeof pr->cause, "%s", comm->err->msg);
      return res;
    }
  }
  op->pr = shm->pairs[op->peer];
  if (op->pr->broken != MOECOMM_SUCCESS)
    return mc_err_set(comm->err, MOECOMM_ERR_STATE,
                      "shm %s on %s: the channel between ranks %d and %d is unusable after an "
                      "earlier error: %s",
                      op->what, comm->label, p2p_world(op, comm->rank), p2p_world(op, op->peer),
                      op->pr->cause);
  if (atomic_load_explicit(&op->pr->hdr->first, memory_order_acquire) != 0)
    return p2p_fail(op, MOECOMM_ERR_PEER); /* the peer gave up meanwhile: its code and reason */
  return MOECOMM_SUCCESS;
}

/* ---- send and recv ---- */

/* The sender: until the receiver has taken the record that ends at stream position rec_end. */
static moecomm_result_t p2p_wait_accepted(p2p_op_t *op, uint64_t rec_end) {
  struct mc_shm_pair *pr = op->pr;
  for (;;) {
    const uint32_t t = atomic_load_explicit(&pr->out->tail, memory_order_acquire);
    if (pr->head - (uint32_t)((uint32_t)pr->head - t) >= rec_end) return MOECOMM_SUCCESS;
    moecomm_result_t res = p2p_wait(op, &pr->out->tail, &pr->out->tail_sleepers, t);
    if (res != MOECOMM_SUCCESS) return res;
  }
}

moecomm_result_t mc_shm_send(mc_comm_t *comm, const mc_coll_t *c) {
  p2p_op_t op;
  moecomm_result_t res = p2p_begin(comm, c, &op);
  if (res != MOECOMM_SUCCESS) return res;
  struct mc_shm_pair *pr = op.pr;
  const size_t bytes = c->count * mc_dtype_size(c->dtype);
  p2p_rec_t rec;
  memset(&rec, 0, sizeof rec);
  rec.magic = MC_SHM_P2P_MAGIC;
  rec.seq = op.seq = pr->sent + 1u;
  rec.dtype = (int32_t)c->dtype;
  rec.count = c->count;
  op.check = P2P_CHECK_SENDING;
  res = p2p_stream(&op, 1, (unsigned char *)&rec, sizeof rec, sizeof rec);
  if (res == MOECOMM_SUCCESS) {
    const uint64_t rec_end = pr->head;
    atomic_store_explicit(&pr->out->sent, ++pr->sent, memory_order_seq_cst);
    res = p2p_stream(&op, 1, (unsigned char *)(uintptr_t)c->send, bytes, p2p_padded(bytes));
    if (res == MOECOMM_SUCCESS) res = p2p_wait_accepted(&op, rec_end);
  }
  return res == MOECOMM_SUCCESS ? res : p2p_fail(&op, res);
}

/* The receiver: until the next record is in the ring; copies it out without taking it. */
static moecomm_result_t p2p_peek(p2p_op_t *op, p2p_rec_t *rec) {
  struct mc_shm_pair *pr = op->pr;
  for (;;) {
    const uint32_t h = atomic_load_explicit(&pr->in->head, memory_order_acquire);
    if ((uint32_t)(h - (uint32_t)pr->tail) >= MC_SHM_P2P_REC) break;
    moecomm_result_t res = p2p_wait(op, &pr->in->head, &pr->in->head_sleepers, h);
    if (res != MOECOMM_SUCCESS) return res;
  }
  p2p_ring_copy(pr->in_ring, (size_t)pr->hdr->ring_bytes, pr->tail, (unsigned char *)rec,
                sizeof *rec, 0);
  return MOECOMM_SUCCESS;
}

/* The record against this recv. */
static moecomm_result_t p2p_match(const p2p_op_t *op, const p2p_rec_t *rec) {
  const mc_comm_t *comm = op->comm;
  const int me = p2p_world(op, comm->rank), peer = p2p_world(op, op->peer);
  const char *dn = mc_dtype_name((moecomm_dtype_t)rec->dtype);
  if (rec->magic != MC_SHM_P2P_MAGIC || rec->seq != op->seq)
    return mc_err_set(comm->err, MOECOMM_ERR_INTERNAL,
                      "shm recv on %s: message %u from rank %d is corrupt (record %#x, number %u)",
                      comm->label, op->seq, peer, (unsigned)rec->magic, (unsigned)rec->seq);
  if (rec->dtype != (int32_t)op->c->dtype || rec->count != op->c->count)
    return mc_err_set(comm->err, MOECOMM_ERR_INVALID_ARGUMENT,
                      "shm recv on %s: rank %d sent %llu %s as message %u to rank %d, which "
                      "expected %zu %s; the sends and receives between two ranks must agree in "
                      "order, count and dtype",
                      comm->label, peer, (unsigned long long)rec->count, dn ? dn : "?", op->seq, me,
                      op->c->count, mc_dtype_name(op->c->dtype));
  return MOECOMM_SUCCESS;
}

moecomm_result_t mc_shm_recv(mc_comm_t *comm, const mc_coll_t *c) {
  p2p_op_t op;
  moecomm_result_t res = p2p_begin(comm, c, &op);
  if (res != MOECOMM_SUCCESS) return res;
  struct mc_shm_pair *pr = op.pr;
  const size_t bytes = c->count * mc_dtype_size(c->dtype);
  p2p_rec_t rec;
  op.seq = pr->taken + 1u;
  op.check = P2P_CHECK_RECEIVING;
  atomic_store_explicit(&pr->in->want, op.seq, memory_order_seq_cst);
  res = p2p_peek(&op, &rec);
  atomic_store_explicit(&pr->in->want, 0u, memory_order_seq_cst);
  if (res == MOECOMM_SUCCESS) res = p2p_match(&op, &rec);
  if (res == MOECOMM_SUCCESS) {
    /* Accept: the sender may return once its data is in the ring. */
    op.check = P2P_CHECK_NONE;
    pr->taken++;
    pr->tail += sizeof rec;
    p2p_publish(&pr->in->tail, &pr->in->tail_sleepers, (uint32_t)pr->tail);
    res = p2p_stream(&op, 0, c->recv, bytes, p2p_padded(bytes));
  }
  return res == MOECOMM_SUCCESS ? res : p2p_fail(&op, res);
}

void mc_shm_p2p_fini(mc_shm_t *shm) {
  if (shm->pairs == NULL) return;
  for (int r = 0; r < shm->comm->size; r++) {
    struct mc_shm_pair *pr = shm->pairs[r];
    if (pr == NULL) continue;
    mc_shm_segment_detach(&pr->seg); /* the creator removes the name if the peer never came */
    free(pr);
  }
  free(shm->pairs);
  shm->pairs = NULL;
}
