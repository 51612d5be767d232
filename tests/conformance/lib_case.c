/* SPDX-License-Identifier: Apache-2.0 */
/* lib_case.c - one collective of the conformance matrix (conf.h).
 *
 * Buffers: GUARD bytes, the case's offset, the payload, GUARD bytes.  Everything but the inputs
 * is poisoned (0x7f bytes: NaN in fp16, 3.4e38 in fp32 and bf16, 2139062143 in int32) before the
 * call; afterwards the output must equal the expected image bit for bit, the guards on both sides
 * must hold the poison, and an out-of-place send buffer must be unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define GUARD 64
#define POISON 0x7f

typedef struct conf_buf {
  unsigned char *dev, *host;
  size_t bytes; /* whole allocation */
  size_t at;    /* payload offset */
  size_t len;   /* payload bytes */
} conf_buf_t;

typedef struct case_io {
  conf_buf_t a, b;       /* a: the send (or in-place) buffer, b: the out-of-place receive one */
  unsigned char *send_h; /* host image of the send payload */
  unsigned char *recv_h; /* host image of the receive payload */
  const void *send_d;    /* what the collective gets */
  void *recv_d;
  size_t es, in_len, out_len; /* element size; input and output counts */
} case_io_t;

static int buf_make(const conf_rank_t *r, conf_buf_t *b, size_t off, size_t len) {
  b->at = GUARD + off;
  b->len = len;
  b->bytes = b->at + len + GUARD;
  if (!conf_mem_alloc(r, b->bytes, &b->dev, &b->host)) return 0;
  memset(b->host, POISON, b->bytes);
  return 1;
}

/* Bytes of [from, to) that lost the poison. */
static size_t poison_lost(const unsigned char *p, size_t from, size_t to) {
  size_t bad = 0;
  for (size_t i = from; i < to; i++) bad += p[i] != POISON;
  return bad;
}

/* Lays the case out: buffers, poison, this rank's input, device pointers.  1 on success. */
static int case_setup(const conf_rank_t *r, const conf_case_t *c, const moecomm_group_stats_t *gs,
                      case_io_t *io, const shim_data_key_t *mine) {
  const size_t W = (size_t)gs->size, me = (size_t)gs->rank;
  memset(io, 0, sizeof(*io));
  io->es = shim_dtype_size(c->dt);
  io->in_len = c->coll == CONF_RS ? W * c->n : c->n;
  io->out_len = c->coll == CONF_AG ? W * c->n : c->n;
  if (c->inplace) {
    size_t len = (io->in_len > io->out_len ? io->in_len : io->out_len) * io->es;
    if (!buf_make(r, &io->a, c->off_in, len)) return 0;
    io->recv_h = io->a.host + io->a.at;
    io->send_h = io->recv_h;
    if (c->coll == CONF_AG) io->send_h += me * c->n * io->es; /* the own slot of the output */
    if (c->coll == CONF_RS) io->recv_h += me * c->n * io->es; /* the own block of the input */
  } else {
    if (!buf_make(r, &io->a, c->off_in, io->in_len * io->es)) return 0;
    if (!buf_make(r, &io->b, c->off_out, io->out_len * io->es)) return 0;
    io->send_h = io->a.host + io->a.at;
    io->recv_h = io->b.host + io->b.at;
  }
  /* a broadcast's non-root in place has no input: its buffer is all output */
  if (!(c->coll == CONF_BC && c->inplace && gs->rank != c->root))
    shim_data_fill(io->send_h, 0, io->in_len, c->dt, mine);
  /* the same offsets on the device */
  io->send_d = io->a.dev + (io->send_h - io->a.host);
  io->recv_d = c->inplace ? io->a.dev + (io->recv_h - io->a.host) : io->b.dev + io->b.at;
  /* the ABI lets a broadcast's non-roots pass no send buffer: half the cases do */
  if (c->coll == CONF_BC && !c->inplace && gs->rank != c->root && (c->id & 1)) io->send_d = NULL;
  return conf_mem_put(r, io->a.dev, io->a.host, io->a.bytes) &&
         (c->inplace || conf_mem_put(r, io->b.dev, io->b.host, io->b.bytes));
}

static moecomm_result_t case_call(const conf_rank_t *r, conf_group_t *grp, const conf_case_t *c,
                                  const case_io_t *io) {
  const moecomm_api_t *api = r->api;
  grp->calls++;
  grp->not_custom += c->coll != CONF_AR || c->dt == MOECOMM_INT32;
  switch (c->coll) {
    case CONF_AR:
      return api->all_reduce(grp->g, io->send_d, io->recv_d, c->n, c->dt, c->op, r->stream);
    case CONF_AG: return api->all_gather(grp->g, io->send_d, io->recv_d, c->n, c->dt, r->stream);
    case CONF_RS:
      return api->reduce_scatter(grp->g, io->send_d, io->recv_d, c->n, c->dt, c->op, r->stream);
    default: return api->broadcast(grp->g, io->send_d, io->recv_d, c->n, c->dt, c->root, r->stream);
  }
}

/* The output against want; prints the first few wrong elements.  Returns the wrong count. */
static size_t compare_output(const case_io_t *io, const conf_case_t *c, const void *want,
                             const char *what, int me) {
  size_t bad = 0;
  if (memcmp(io->recv_h, want, io->out_len * io->es) == 0) return 0;
  for (size_t i = 0; i < io->out_len; i++) {
    uint32_t got = shim_data_bits(io->recv_h, i, c->dt), exp = shim_data_bits(want, i, c->dt);
    if (got != exp && bad++ < 4)
      printf("[group rank %d] %s: element %zu is %g (0x%x), want %g (0x%x)\n", me, what, i,
             shim_data_decode(got, c->dt), got, shim_data_decode(exp, c->dt), exp);
  }
  return bad;
}

/* Guards, and an out-of-place send buffer unchanged.  1 when clean. */
static int check_around(const case_io_t *io, const conf_case_t *c, const shim_data_key_t *mine,
                        const char *what) {
  const conf_buf_t *out = c->inplace ? &io->a : &io->b;
  size_t lost =
      poison_lost(out->host, 0, out->at) + poison_lost(out->host, out->at + out->len, out->bytes);
  size_t send_bad = 0;
  int ok = MC_CHECK(lost == 0, "%s: %zu guard bytes around the output were written", what, lost);
  if (!c->inplace && io->send_d != NULL) {
    unsigned char *again = malloc(io->a.len + 1);
    if (!MC_CHECK(again != NULL, "%s: out of memory", what)) return 0;
    shim_data_fill(again, 0, io->in_len, c->dt, mine);
    send_bad = (size_t)(memcmp(again, io->a.host + io->a.at, io->a.len) != 0) +
               poison_lost(io->a.host, 0, io->a.at) +
               poison_lost(io->a.host, io->a.at + io->a.len, io->a.bytes);
    free(again);
    ok &= MC_CHECK(send_bad == 0, "%s: the send buffer or its guards changed", what);
  }
  return ok;
}

static void case_name(const conf_case_t *c, const moecomm_group_stats_t *gs, char *out, size_t n) {
  char opr[32] = "";
  if (c->coll == CONF_AR || c->coll == CONF_RS)
    snprintf(opr, sizeof(opr), " %s", conf_op_name(c->op));
  if (c->coll == CONF_BC) snprintf(opr, sizeof(opr), " root %d", c->root);
  snprintf(out, n, "%s %s%s n=%zu%s offsets %zu/%zu on %s (%d ranks)", conf_coll_name(c->coll),
           shim_dtype_name(c->dt), opr, c->n, c->inplace ? " in place" : "", c->off_in, c->off_out,
           gs->kind_name, gs->size);
}

int conf_run_case(const conf_rank_t *r, conf_group_t *grp, const conf_case_t *c,
                  uint64_t *digest_p) {
  const moecomm_group_stats_t *gs = &grp->st;
  shim_data_key_t *keys = malloc(sizeof(*keys) * (size_t)gs->size);
  unsigned char *want = NULL;
  case_io_t io;
  moecomm_result_t res;
  char what[192];
  int ok = 0;
  case_name(c, gs, what, sizeof(what));
  memset(&io, 0, sizeof(io));
  if (!MC_CHECK(keys != NULL, "%s: out of memory", what)) return 0;
  for (int p = 0; p < gs->size; p++) keys[p] = conf_key(c->id, gs->ranks[p]);
  if (!case_setup(r, c, gs, &io, &keys[gs->rank])) goto out;
  res = case_call(r, grp, c, &io);
  if (!MC_CHECK(res == MOECOMM_SUCCESS, "%s on %s: got %d (%s): %s", what, r->be->name, (int)res,
                r->api->result_string(res), r->api->last_error(r->ctx)))
    goto out;
  if (!conf_mem_sync(r, what) || !conf_mem_get(r, io.a.host, io.a.dev, io.a.bytes) ||
      (!c->inplace && !conf_mem_get(r, io.b.host, io.b.dev, io.b.bytes)))
    goto out;
  want = malloc(io.out_len * io.es + 1);
  if (!MC_CHECK(want != NULL && conf_expect(c, keys, gs->size, gs->rank, want),
                "%s: out of memory for the reference", what))
    goto out;
  ok = MC_CHECK(compare_output(&io, c, want, what, gs->rank) == 0, "%s on %s: output wrong", what,
                r->be->name);
  ok &= check_around(&io, c, &keys[gs->rank], what);
  if (digest_p != NULL) *digest_p = conf_digest(*digest_p, io.recv_h, io.out_len * io.es);
out:
  free(want);
  if (io.a.host != NULL) conf_mem_free(r, io.a.dev, io.a.host);
  if (io.b.host != NULL) conf_mem_free(r, io.b.dev, io.b.host);
  free(keys);
  return ok;
}

int conf_group_get(const conf_rank_t *r, moecomm_group_kind_t kind, conf_group_t *grp) {
  moecomm_result_t res;
  memset(grp, 0, sizeof(*grp));
  res = r->api->group_get(r->ctx, kind, &grp->g);
  if (!MC_CHECK_RC(r->api, r->ctx, res, MOECOMM_SUCCESS)) return 0;
  grp->st.struct_size = sizeof(grp->st);
  res = r->api->group_stats(grp->g, &grp->st);
  return MC_CHECK_RC(r->api, r->ctx, res, MOECOMM_SUCCESS) &&
         MC_CHECK(grp->st.ranks != NULL && grp->st.size >= 1, "group %d: no rank list", (int)kind);
}
