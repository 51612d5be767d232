/* SPDX-License-Identifier: Apache-2.0 */
/* ep.cu - expert-parallel dispatch and combine: the NVLink kernels, the NCCL path's pack and
 * unpack kernels, and their C launchers.  The protocol, the call numbering and the proof that
 * buffers are never overwritten early are in mc_ep.h; the layout is in plugin/ep_layout.h.
 *
 * One kernel template per direction covers the three modes: NVL (send to the peers' segments,
 * raise the flags, wait, receive), PACK (send to local staging only) and UNPACK (receive only, the
 * exchange having happened in between), so both paths run the same receive code.  Rows move in
 * 16-byte vectors (the layout makes every row a multiple of 16 bytes); data that a peer wrote is
 * read through L2 only (.cg), never from a possibly stale L1 line. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/mc_ep.h"

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 4;            /* 16-byte vectors in flight per lane when copying a row */
constexpr int kChunk = 32 * kUnroll;  /* vectors (2 KB) one warp copies per work unit */
constexpr uint32_t kSpinCheck = 1024; /* spins between clock reads */
constexpr unsigned kFull = 0xffffffffu;

enum { M_NVL = 0, M_PACK = 1, M_UNPACK = 2 };

/* ---- memory access primitives ---------------------------------------------------------------- */

__device__ __forceinline__ uint64_t globaltimer() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void st_release_sys(uint64_t *p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t *p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ int ld_int(const char *base, int64_t i) {
  return __ldcg(reinterpret_cast<const int *>(base) + i);
}

/* Rows are split into chunks of kChunk vectors, each a unit of work for one warp, so that a few
   rows still keep many warps busy. */
__device__ __forceinline__ int64_t chunks_of(int64_t nv) {
  return (nv + kChunk - 1) / kChunk;
}

/* Chunk c of a row of nv 16-byte vectors, one warp, lanes strided; sources read through L2. */
__device__ __forceinline__ void copy_chunk(char *dst, const char *src, int64_t nv, int64_t c,
                                           int lane) {
  const uint4 *s = reinterpret_cast<const uint4 *>(src);
  uint4 *d = reinterpret_cast<uint4 *>(dst);
  const int64_t v0 = c * kChunk + lane;
  uint4 r[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; u++)
    if (v0 + 32 * u < nv) r[u] = __ldcg(s + v0 + 32 * u);
#pragma unroll
  for (int u = 0; u < kUnroll; u++)
    if (v0 + 32 * u < nv) d[v0 + 32 * u] = r[u];
}

/* ---- 16-byte vectors of the combine dtype as fp32 ------------------------------------------- */

template <typename T>
__device__ __forceinline__ void unpack_vec(const uint4 &v, float *f);
template <>
__device__ __forceinline__ void unpack_vec<float>(const uint4 &v, float *f) {
  f[0] = __uint_as_float(v.x);
  f[1] = __uint_as_float(v.y);
  f[2] = __uint_as_float(v.z);
  f[3] = __uint_as_float(v.w);
}
template <>
__device__ __forceinline__ void unpack_vec<__half>(const uint4 &v, float *f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int q = 0; q < 4; q++) {
    f[2 * q] = __half2float(__ushort_as_half((unsigned short)(w[q] & 0xffffu)));
    f[2 * q + 1] = __half2float(__ushort_as_half((unsigned short)(w[q] >> 16)));
  }
}
template <>
__device__ __forceinline__ void unpack_vec<__nv_bfloat16>(const uint4 &v, float *f) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int q = 0; q < 4; q++) {
    f[2 * q] = __uint_as_float(w[q] << 16);
    f[2 * q + 1] = __uint_as_float(w[q] & 0xffff0000u);
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack_vec(const float *f);
template <>
__device__ __forceinline__ uint4 pack_vec<float>(const float *f) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                    __float_as_uint(f[3]));
}
template <>
__device__ __forceinline__ uint4 pack_vec<__half>(const float *f) {
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; q++)
    w[q] = (uint32_t)__half_as_ushort(__float2half_rn(f[2 * q])) |
           ((uint32_t)__half_as_ushort(__float2half_rn(f[2 * q + 1])) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}
template <>
__device__ __forceinline__ uint4 pack_vec<__nv_bfloat16>(const float *f) {
  uint32_t w[4];
#pragma unroll
  for (int q = 0; q < 4; q++)
    w[q] = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * q])) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f[2 * q + 1])) << 16);
  return make_uint4(w[0], w[1], w[2], w[3]);
}

/* ---- per-call state, errors, waits ----------------------------------------------------------- */

struct call_t {
  uint64_t calls;    /* state.calls at the start */
  uint64_t epoch;    /* call pair number: the tag of this call */
  uint64_t deadline; /* globaltimer value after which a wait gives up */
  int abort;
};

__device__ __forceinline__ mc_ep_state_t *state_of(const mc_ep_args_t &a) {
  return reinterpret_cast<mc_ep_state_t *>(a.seg);
}

/* The first fatal error of the segment goes to host memory; later ones are dropped. */
__device__ void report(const mc_ep_args_t &a, uint32_t code, int peer, uint64_t epoch,
                       uint32_t op) {
  mc_ep_state_t *st = state_of(a);
  if (atomicCAS(&st->err_claim, 0u, 1u) != 0u) return;
  volatile mc_ep_err_t *e = a.err;
  e->peer = peer;
  e->epoch = epoch;
  e->op = op;
  __threadfence_system();
  e->code = code;
  __threadfence_system();
}

/* The first data error of a call replaces that of an earlier call. */
__device__ void report_data(const mc_ep_args_t &a, uint32_t code, int expert, int token,
                            int64_t rows, uint64_t epoch) {
  unsigned long long *claim = reinterpret_cast<unsigned long long *>(&state_of(a)->data_claim);
  unsigned long long old = *(volatile unsigned long long *)claim;
  while (old < epoch) {
    const unsigned long long prev = atomicCAS(claim, old, (unsigned long long)epoch);
    if (prev == old) {
      volatile mc_ep_err_t *e = a.err;
      e->data_expert = expert;
      e->data_token = token;
      e->data_rows = rows;
      e->data_epoch = epoch;
      __threadfence_system();
      e->data_code = code;
      __threadfence_system();
      return;
    }
    old = prev;
  }
}

/* Returns false when the call must not run: the segment already failed (its members are out of
   step, so nothing is sent and nothing awaited) or dispatch and combine did not alternate. */
__device__ bool call_begin(const mc_ep_args_t &a, call_t &c, uint32_t op) {
  if (threadIdx.x == 0) {
    const mc_ep_state_t *st = state_of(a);
    c.calls = *(const volatile uint64_t *)&st->calls;
    c.epoch = c.calls / 2 + 1;
    c.deadline = a.timeout_ns ? globaltimer() + a.timeout_ns : ~0ull;
    c.abort = *(const volatile uint32_t *)&st->err_claim != 0;
    if (!c.abort && (int)(c.calls & 1) != (int)(op == MC_EP_OP_COMBINE)) {
      report(a, MC_EP_ERR_ORDER, -1, c.epoch, op);
      c.abort = 1;
    }
  }
  __syncthreads();
  return !c.abort;
}

/* The last block to finish ends the call: every block read state.calls at its start, so it may
   advance; the next kernel reads it after this grid completed (stream order). */
__device__ void call_end(const mc_ep_args_t &a, const call_t &c) {
  __syncthreads();
  if (threadIdx.x == 0) {
    mc_ep_state_t *st = state_of(a);
    if (atomicAdd(&st->done, 1u) == gridDim.x - 1) {
      *(volatile uint32_t *)&st->done = 0;
      *(volatile uint64_t *)&st->calls = c.calls + 1;
    }
  }
}

/* Returns true after a timeout (recorded) or when the call already gave up. */
__device__ bool timed_out(const mc_ep_args_t &a, call_t &c, uint32_t &spins, int peer,
                          uint32_t op) {
  if (++spins < kSpinCheck) return false;
  spins = 0;
  if (*(volatile int *)&c.abort) return true;
  if (*(const volatile uint32_t *)&state_of(a)->err_claim != 0) { /* another block gave up */
    *(volatile int *)&c.abort = 1;
    return true;
  }
  if (globaltimer() <= c.deadline) return false;
  report(a, MC_EP_ERR_TIMEOUT, peer, c.epoch, op);
  *(volatile int *)&c.abort = 1;
  return true;
}

/* Where member q's arrival for this call is announced in this member's segment. */
__device__ __forceinline__ const uint64_t *arrival(const mc_ep_args_t &a, int q, uint32_t op,
                                                   int mode) {
  const mc_ep_layout_t &L = a.layout;
  if (op == MC_EP_OP_DISPATCH)
    return reinterpret_cast<const uint64_t *>(a.seg + L.inbox_off + (int64_t)q * L.mb_bytes);
  if (mode == M_NVL) return reinterpret_cast<const uint64_t *>(a.seg + MC_EP_CFLAG_OFF) + q;
  return reinterpret_cast<const uint64_t *>(a.seg + L.cin_off + (int64_t)q * L.cmsg_bytes);
}

/* Every member's data for this call is here: NVL waits for the tags, UNPACK checks them once. */
template <int MODE>
__device__ bool arrive_all(const mc_ep_args_t &a, call_t &c, uint32_t op) {
  __syncthreads();
  for (int q = threadIdx.x; q < a.layout.cfg.ranks; q += blockDim.x) {
    const uint64_t *tag = arrival(a, q, op, MODE);
    if (MODE == M_NVL) {
      uint32_t spins = 0;
      while ((int64_t)(ld_acquire_sys(tag) - c.epoch) < 0)
        if (timed_out(a, c, spins, q, op)) break;
    } else if (*(const volatile uint64_t *)tag != c.epoch) {
      report(a, MC_EP_ERR_TAG, q, c.epoch, op);
      *(volatile int *)&c.abort = 1;
    }
  }
  __syncthreads();
  return !*(volatile int *)&c.abort;
}

/* NVL: once every block has sent (each fenced its stores at system scope first), the last one
   raises this member's tag or flag in every member's segment with a release. */
__device__ void signal_all(const mc_ep_args_t &a, const call_t &c, uint32_t op) {
  const mc_ep_layout_t &L = a.layout;
  __syncthreads();
  if (threadIdx.x != 0) return;
  mc_ep_state_t *st = state_of(a);
  __threadfence_system();
  if (atomicAdd(&st->sent, 1u) != gridDim.x - 1) return;
  *(volatile uint32_t *)&st->sent = 0;
  __threadfence_system();
  for (int q = 0; q < L.cfg.ranks; q++) {
    uint64_t *f =
        op == MC_EP_OP_DISPATCH
            ? reinterpret_cast<uint64_t *>(a.peer[q] + L.inbox_off + (int64_t)a.rank * L.mb_bytes)
            : reinterpret_cast<uint64_t *>(a.peer[q] + MC_EP_CFLAG_OFF) + a.rank;
    st_release_sys(f, c.epoch);
  }
}

/* ---- addresses ------------------------------------------------------------------------------- */

/* The mailbox this member fills for destination d. */
template <int MODE>
__device__ __forceinline__ char *mbox_out(const mc_ep_args_t &a, int d) {
  const mc_ep_layout_t &L = a.layout;
  if (MODE == M_NVL) return a.peer[d] + L.inbox_off + (int64_t)a.rank * L.mb_bytes;
  if (d == a.rank) return a.seg + L.inbox_off + (int64_t)d * L.mb_bytes;
  return a.seg + L.stage_off + (int64_t)d * L.mb_bytes;
}

__device__ __forceinline__ const char *mbox_in(const mc_ep_args_t &a, int s) {
  return a.seg + a.layout.inbox_off + (int64_t)s * a.layout.mb_bytes;
}

/* Where this member returns rows to source s: NVL the base of s's slots (slot = item), else the
   message for s. */
template <int MODE>
__device__ __forceinline__ char *cdst(const mc_ep_args_t &a, int s) {
  const mc_ep_layout_t &L = a.layout;
  if (MODE == M_NVL) return a.peer[s] + L.cin_off;
  if (s == a.rank) return a.seg + L.cin_off + (int64_t)s * L.cmsg_bytes;
  return a.seg + L.cstage_off + (int64_t)s * L.cmsg_bytes;
}

/* ---- shared memory --------------------------------------------------------------------------- */

struct route_sm {
  int hist[MC_EP_MAX_EXPERTS];           /* this member's items per expert */
  int off[MC_EP_MAX_EXPERTS];            /* where expert e starts in its destination's row list */
  int run[MC_EP_MAX_EXPERTS];            /* items of expert e ranked so far */
  uint8_t wc[kWarps][MC_EP_MAX_EXPERTS]; /* items of expert e in warp w of the current tile */
};

/* [s][e] tables index s * El + e (e local); [g] tables index a global expert. */
struct tab_sm {
  int cnt[MC_EP_MAX_EXPERTS];   /* [s][e] items of source s for local expert e */
  int base[MC_EP_MAX_EXPERTS];  /* [s][e] rows of e from sources before s */
  int roff[MC_EP_MAX_EXPERTS];  /* [s][e] where e's items start in s's row list for this member */
  int moff[MC_EP_MAX_EXPERTS];  /* [s][e] where e's kept rows start in the message to s */
  int sbase[MC_EP_MAX_EXPERTS]; /* [g] rows of expert g from members before this one */
  int smoff[MC_EP_MAX_EXPERTS]; /* [g] where g's kept rows start in the message from its member */
  int rstart[MC_EP_MAX_EXPERTS + 1]; /* [e] first fan-out row of local expert e; [El]: all rows */
};

union ep_sm {
  route_sm r;
  tab_sm t;
};

/* Exclusive scan of nseg segments of len ints each (out may alias in); one warp per segment.
   Called by the whole block; the caller synchronises before reading out. */
__device__ void seg_scan(const int *in, int *out, int nseg, int len) {
  const int lane = threadIdx.x & 31;
  for (int sg = threadIdx.x >> 5; sg < nseg; sg += blockDim.x >> 5) {
    int carry = 0;
    for (int b = 0; b < len; b += 32) {
      const int j = sg * len + b + lane;
      const int v = b + lane < len ? in[j] : 0;
      int x = v;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(kFull, x, o);
        if (lane >= o) x += y;
      }
      if (b + lane < len) out[j] = carry + x - v;
      carry += __shfl_sync(kFull, x, 31);
    }
  }
}

/* ---- dispatch: send ------------------------------------------------------------------------ */

/* Block 0: each destination's header and histogram, and this member's items ranked by expert
   (stable: tiles of blockDim items in item order, warps in order, lanes in order), written to the
   row lists; item_row[i] = rank of item i within its expert (-1: masked or invalid). */
template <int MODE>
__device__ void route(const mc_ep_args_t &a, const call_t &c, route_sm &sm) {
  const mc_ep_layout_t &L = a.layout;
  const int E = L.cfg.experts, K = L.cfg.top_k, El = L.local_experts, n = L.cfg.ranks;
  const int items = a.tokens * K, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int32_t *ids = a.topk_ids;
  int32_t *item_row = reinterpret_cast<int32_t *>(a.seg + L.item_row_off);
  for (int e = tid; e < E; e += blockDim.x) sm.hist[e] = sm.run[e] = 0;
  for (int j = tid; j < kWarps * E; j += blockDim.x) sm.wc[j / E][j % E] = 0;
  __syncthreads();
  for (int i = tid; i < items; i += blockDim.x) {
    const int e = ids[i];
    if (e >= 0 && e < E)
      atomicAdd(&sm.hist[e], 1);
    else if (e != -1)
      report_data(a, MC_EP_ERR_EXPERT_ID, e, i / K, i % K, c.epoch);
  }
  __syncthreads();
  seg_scan(sm.hist, sm.off, n, El);
  for (int d = 0; d < n; d++) {
    char *mb = mbox_out<MODE>(a, d);
    for (int e = tid; e < E; e += blockDim.x)
      reinterpret_cast<int32_t *>(mb + L.mb_hist_off)[e] = sm.hist[e];
    if (tid == 0) reinterpret_cast<int32_t *>(mb)[2] = a.tokens;
    if (tid == 0 && MODE == M_PACK) *reinterpret_cast<uint64_t *>(mb) = c.epoch;
  }
  __syncthreads();
  for (int b = 0; b < items; b += blockDim.x) {
    const int i = b + tid;
    const int raw = i < items ? ids[i] : -1;
    const int e = raw >= 0 && raw < E ? raw : -1;
    const unsigned peers = __match_any_sync(kFull, e);
    const int lrank = __popc(peers & ((1u << lane) - 1u));
    const bool leader = __ffs(peers) - 1 == lane;
    if (e >= 0 && leader) sm.wc[warp][e] = (uint8_t)__popc(peers);
    __syncthreads();
    if (e >= 0) {
      int pos = sm.run[e] + lrank;
      for (int w = 0; w < warp; w++) pos += sm.wc[w][e];
      reinterpret_cast<int32_t *>(mbox_out<MODE>(a, e / El) + L.mb_rowlist_off)[sm.off[e] + pos] =
          i;
      item_row[i] = pos;
    } else if (i < items) {
      item_row[i] = -1;
    }
    __syncthreads();
    if (e >= 0 && leader) {
      atomicAdd(&sm.run[e], __popc(peers)); /* leaders of several warps may share an expert */
      sm.wc[warp][e] = 0;
    }
    __syncwarp();
  }
}

/* Payload blocks: every token's row (and scales) once into the mailbox of each member that holds
   one of its experts; a warp per (token, chunk). */
template <int MODE>
__device__ void send_rows(const mc_ep_args_t &a) {
  const mc_ep_layout_t &L = a.layout;
  const int E = L.cfg.experts, K = L.cfg.top_k, El = L.local_experts, S = L.cfg.scales;
  const int lane = threadIdx.x & 31, first = gridDim.x > 1 ? 1 : 0;
  const int64_t rb = L.row_bytes, nv = rb / 16, nch = chunks_of(nv);
  const int64_t nw = (int64_t)(gridDim.x - first) * kWarps;
  for (int64_t g = (int64_t)(blockIdx.x - first) * kWarps + (threadIdx.x >> 5); g < a.tokens * nch;
       g += nw) {
    const int t = (int)(g / nch);
    const int64_t ch = g - t * nch, v0 = ch * kChunk + lane;
    const int e = lane < K ? a.topk_ids[(int64_t)t * K + lane] : -1;
    const uint64_t bit = e >= 0 && e < E ? 1ull << (e / El) : 0ull;
    const uint64_t mask = (uint64_t)__reduce_or_sync(kFull, (unsigned)bit) |
                          ((uint64_t)__reduce_or_sync(kFull, (unsigned)(bit >> 32)) << 32);
    const uint4 *src = reinterpret_cast<const uint4 *>((const char *)a.x + t * rb);
    uint4 r[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++)
      if (v0 + 32 * u < nv) r[u] = __ldg(src + v0 + 32 * u);
    for (uint64_t m = mask; m != 0; m &= m - 1) {
      char *mb = mbox_out<MODE>(a, __ffsll((long long)m) - 1);
      uint4 *dst = reinterpret_cast<uint4 *>(mb + L.mb_rows_off + t * rb);
#pragma unroll
      for (int u = 0; u < kUnroll; u++)
        if (v0 + 32 * u < nv) dst[v0 + 32 * u] = r[u];
      for (int j = lane; ch == 0 && j < S; j += 32)
        reinterpret_cast<float *>(mb + L.mb_scales_off)[(int64_t)t * S + j] =
            a.x_scales[(int64_t)t * S + j];
    }
  }
}

/* ---- tables shared by the fan-out and the combine's send ----------------------------------- */

/* cnt, base, roff, moff and rstart of this member's local experts, from the received histograms
   (dispatch) or the counts the dispatch kept in pair_cnt (combine). */
__device__ void local_tables(const mc_ep_args_t &a, tab_sm &sm, bool from_inbox) {
  const mc_ep_layout_t &L = a.layout;
  const int n = L.cfg.ranks, El = L.local_experts, cap = (int)L.cfg.capacity;
  const int32_t *pc = reinterpret_cast<const int32_t *>(a.seg + L.pair_cnt_off);
  for (int j = threadIdx.x; j < n * El; j += blockDim.x)
    sm.cnt[j] = from_inbox
                    ? ld_int(mbox_in(a, j / El) + L.mb_hist_off, (int64_t)a.rank * El + j % El)
                    : pc[j];
  if (threadIdx.x == 0) sm.rstart[El] = 0;
  __syncthreads();
  for (int e = threadIdx.x; e < El; e += blockDim.x) {
    int acc = 0;
    for (int s = 0; s < n; s++) {
      const int j = s * El + e;
      sm.base[j] = acc;
      sm.moff[j] = max(0, min(sm.cnt[j], cap - acc)); /* kept rows of (s, e) */
      acc += sm.cnt[j];
    }
    sm.rstart[e] = min(acc, cap);
  }
  __syncthreads();
  seg_scan(sm.cnt, sm.roff, n, El);
  seg_scan(sm.moff, sm.moff, n, El);
  seg_scan(sm.rstart, sm.rstart, 1, El + 1);
  __syncthreads();
}

/* Row g of the fan-out order: local expert e, row r, source s, rank pos within (s, e). */
struct row_t {
  int e, r, s, pos;
};

__device__ __forceinline__ row_t locate(const tab_sm &sm, int g, int n, int El) {
  row_t x;
  int lo = 0, hi = El; /* rstart[lo] <= g < rstart[hi] */
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (sm.rstart[mid] <= g)
      lo = mid;
    else
      hi = mid;
  }
  x.e = lo;
  x.r = g - sm.rstart[lo];
  x.s = n - 1;
  while (x.s > 0 && (sm.base[x.s * El + lo] > x.r || sm.cnt[x.s * El + lo] == 0)) x.s--;
  x.pos = x.r - sm.base[x.s * El + lo];
  return x;
}

/* ---- dispatch: receive --------------------------------------------------------------------- */

/* This member as a source: rows of expert g from earlier members (sbase) and where g's kept
   rows start in the message its member returns (smoff). */
__device__ void source_tables(const mc_ep_args_t &a, tab_sm &sm) {
  const mc_ep_layout_t &L = a.layout;
  const int E = L.cfg.experts, cap = (int)L.cfg.capacity;
  for (int g = threadIdx.x; g < E; g += blockDim.x) {
    int acc = 0;
    for (int s = 0; s < a.rank; s++) acc += ld_int(mbox_in(a, s) + L.mb_hist_off, g);
    sm.sbase[g] = acc;
    sm.smoff[g] = max(0, min(ld_int(mbox_in(a, a.rank) + L.mb_hist_off, g), cap - acc));
  }
  __syncthreads();
  seg_scan(sm.smoff, sm.smoff, L.cfg.ranks, L.local_experts);
  __syncthreads();
}

/* Counts, overflow and pair_cnt (block 0); the rows, scales and sources of every received row;
   then this member's items: item_row = row in the expert (>= C: dropped), item_seq = index in
   the combine messages (member * cmsg_rows + position; -1: not returned). */
__device__ void fan_out(const mc_ep_args_t &a, const call_t &c, tab_sm &sm) {
  const mc_ep_layout_t &L = a.layout;
  const int n = L.cfg.ranks, El = L.local_experts, K = L.cfg.top_k, S = L.cfg.scales;
  const int64_t cap = L.cfg.capacity, rb = L.row_bytes;
  const int lane = threadIdx.x & 31;
  local_tables(a, sm, true);
  source_tables(a, sm);
  if (blockIdx.x == 0) {
    for (int e = threadIdx.x; e < El; e += blockDim.x) {
      int total = 0;
      for (int s = 0; s < n; s++) total += sm.cnt[s * El + e];
      a.recv_counts[e] = (int32_t)min((int64_t)total, cap);
      if (total > cap)
        report_data(a, MC_EP_ERR_OVERFLOW, a.rank * El + e, -1, total - cap, c.epoch);
    }
    for (int j = threadIdx.x; j < n * El; j += blockDim.x)
      reinterpret_cast<int32_t *>(a.seg + L.pair_cnt_off)[j] = sm.cnt[j];
  }
  const int64_t nch = chunks_of(rb / 16);
  for (int64_t g = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); g < sm.rstart[El] * nch;
       g += (int64_t)gridDim.x * kWarps) {
    const int gr = (int)(g / nch);
    const int64_t ch = g - gr * nch;
    const row_t x = locate(sm, gr, n, El);
    const char *mb = mbox_in(a, x.s);
    const int item = ld_int(mb + L.mb_rowlist_off, sm.roff[x.s * El + x.e] + x.pos);
    const int64_t t = item / K, row = x.e * cap + x.r;
    copy_chunk((char *)a.recv_x + row * rb, mb + L.mb_rows_off + t * rb, rb / 16, ch, lane);
    if (ch != 0) continue;
    for (int j = lane; j < S; j += 32)
      a.recv_scales[row * S + j] =
          __ldcg(reinterpret_cast<const float *>(mb + L.mb_scales_off) + t * S + j);
    if (lane == 0) {
      a.recv_src[row * 3] = x.s;
      a.recv_src[row * 3 + 1] = (int32_t)t;
      a.recv_src[row * 3 + 2] = item % K;
    }
  }
  int32_t *item_row = reinterpret_cast<int32_t *>(a.seg + L.item_row_off);
  int32_t *item_seq = reinterpret_cast<int32_t *>(a.seg + L.item_seq_off);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < a.tokens * K;
       i += gridDim.x * blockDim.x) {
    const int pos = __ldcg(item_row + i), e = a.topk_ids[i];
    if (pos < 0) {
      item_seq[i] = -1;
      continue;
    }
    const int row = sm.sbase[e] + pos;
    item_row[i] = row;
    item_seq[i] = row < cap ? (int)((e / El) * L.cmsg_rows) + sm.smoff[e] + pos : -1;
  }
}

template <int MODE>
__global__ void __launch_bounds__(kThreads, 2) k_dispatch(const mc_ep_args_t a) {
  __shared__ call_t c;
  __shared__ ep_sm sm;
  const bool run = call_begin(a, c, MC_EP_OP_DISPATCH);
  if (run && MODE != M_UNPACK) {
    if (blockIdx.x == 0) route<MODE>(a, c, sm.r);
    if (blockIdx.x > 0 || gridDim.x == 1) send_rows<MODE>(a);
    if (MODE == M_NVL) signal_all(a, c, MC_EP_OP_DISPATCH);
  }
  if (run && MODE != M_PACK && arrive_all<MODE>(a, c, MC_EP_OP_DISPATCH)) fan_out(a, c, sm.t);
  if (MODE != M_PACK) call_end(a, c);
}

/* ---- combine ------------------------------------------------------------------------------- */

/* Every kept row of every local expert back to its source: NVL into slot t*K + k of the source's
   combine region, PACK into the message for the source at the position the source expects. */
template <int MODE>
__device__ void send_back(const mc_ep_args_t &a, const call_t &c, tab_sm &sm) {
  const mc_ep_layout_t &L = a.layout;
  const int n = L.cfg.ranks, El = L.local_experts;
  const int64_t cap = L.cfg.capacity, crb = L.crow_bytes;
  const int64_t nch = chunks_of(crb / 16);
  local_tables(a, sm, false);
  for (int64_t g = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); g < sm.rstart[El] * nch;
       g += (int64_t)gridDim.x * kWarps) {
    const int gr = (int)(g / nch);
    const row_t x = locate(sm, gr, n, El);
    const int j = x.s * El + x.e;
    const int item = ld_int(mbox_in(a, x.s) + L.mb_rowlist_off, sm.roff[j] + x.pos);
    char *dst = MODE == M_NVL
                    ? cdst<MODE>(a, x.s) + item * crb
                    : cdst<MODE>(a, x.s) + MC_EP_HEADER_BYTES + (sm.moff[j] + x.pos) * crb;
    copy_chunk(dst, (const char *)a.y + (x.e * cap + x.r) * crb, crb / 16, g - gr * nch,
               threadIdx.x & 31);
  }
  if (MODE == M_PACK && blockIdx.x == 0)
    for (int s = threadIdx.x; s < n; s += blockDim.x)
      *reinterpret_cast<uint64_t *>(cdst<MODE>(a, s)) = c.epoch;
}

/* out[t] = sum over k of w[t,k] * row(t,k) in fp32, k in order, kept items only.  A warp per
   (token, 32 vectors), a lane per vector; the slots' loads go out 8 at a time, the sum stays in
   k order. */
template <int MODE, typename T>
__device__ void reduce(const mc_ep_args_t &a) {
  constexpr int VE = 16 / sizeof(T);
  const mc_ep_layout_t &L = a.layout;
  const int K = L.cfg.top_k, lane = threadIdx.x & 31;
  const int64_t crb = L.crow_bytes, nv = crb / 16, cap = L.cfg.capacity, nch = (nv + 31) / 32;
  const int32_t *item_row = reinterpret_cast<const int32_t *>(a.seg + L.item_row_off);
  const int32_t *item_seq = reinterpret_cast<const int32_t *>(a.seg + L.item_seq_off);
  for (int64_t g = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); g < a.tokens * nch;
       g += (int64_t)gridDim.x * kWarps) {
    const int t = (int)(g / nch);
    const int64_t v = (g - t * nch) * 32 + lane;
    int64_t off = -1; /* lane k < K: segment offset of slot k's row, -1 when skipped */
    float w = 0.0f, acc[VE];
    if (lane < K) {
      const int i = t * K + lane, row = item_row[i];
      if (row >= 0 && row < cap) {
        if (MODE == M_NVL) {
          off = L.cin_off + (int64_t)i * crb;
        } else {
          const int64_t seq = item_seq[i], q = seq / L.cmsg_rows;
          off = L.cin_off + q * L.cmsg_bytes + MC_EP_HEADER_BYTES + (seq - q * L.cmsg_rows) * crb;
        }
        w = a.topk_weights[i];
      }
    }
#pragma unroll
    for (int j = 0; j < VE; j++) acc[j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += 8) {
      uint4 y[8];
      int64_t o[8];
      float wk[8];
#pragma unroll
      for (int j = 0; j < 8; j++) { /* k0 + j < 32: K <= MC_EP_MAX_TOPK */
        o[j] = __shfl_sync(kFull, off, k0 + j);
        wk[j] = __shfl_sync(kFull, w, k0 + j);
        y[j] = make_uint4(0, 0, 0, 0);
        if (o[j] >= 0 && v < nv) y[j] = __ldcg(reinterpret_cast<const uint4 *>(a.seg + o[j]) + v);
      }
#pragma unroll
      for (int j = 0; j < 8; j++) {
        float f[VE];
        if (o[j] < 0) continue;
        unpack_vec<T>(y[j], f);
#pragma unroll
        for (int q = 0; q < VE; q++) acc[q] = __fadd_rn(acc[q], __fmul_rn(wk[j], f[q]));
      }
    }
    if (v < nv) reinterpret_cast<uint4 *>((char *)a.out + (int64_t)t * crb)[v] = pack_vec<T>(acc);
  }
}

template <int MODE, typename T>
__global__ void __launch_bounds__(kThreads, 2) k_combine(const mc_ep_args_t a) {
  __shared__ call_t c;
  __shared__ ep_sm sm;
  const bool run = call_begin(a, c, MC_EP_OP_COMBINE);
  if (run && MODE != M_UNPACK) {
    send_back<MODE>(a, c, sm.t);
    if (MODE == M_NVL) signal_all(a, c, MC_EP_OP_COMBINE);
  }
  if (run && MODE != M_PACK && arrive_all<MODE>(a, c, MC_EP_OP_COMBINE)) reduce<MODE, T>(a);
  if (MODE != M_PACK) call_end(a, c);
}

/* ---- launchers ----------------------------------------------------------------------------- */

typedef void (*kfn_t)(const mc_ep_args_t);

const kfn_t kDispatch[3] = {k_dispatch<M_NVL>, k_dispatch<M_PACK>, k_dispatch<M_UNPACK>};
/* [mode][combine dtype]; packing does not depend on the dtype */
const kfn_t kCombine[3][3] = {
    {k_combine<M_NVL, float>, k_combine<M_NVL, __half>, k_combine<M_NVL, __nv_bfloat16>},
    {k_combine<M_PACK, float>, k_combine<M_PACK, float>, k_combine<M_PACK, float>},
    {k_combine<M_UNPACK, float>, k_combine<M_UNPACK, __half>, k_combine<M_UNPACK, __nv_bfloat16>}};

bool aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

/* The arguments one launch needs, checked on the host. */
bool args_ok(const mc_ep_args_t *a, int mode, uint32_t op) {
  if (a == nullptr) return false;
  const mc_ep_layout_t &L = a->layout;
  const int n = L.cfg.ranks, path = mode == M_NVL ? MC_EP_PATH_NVLINK : MC_EP_PATH_NCCL;
  const bool has = a->tokens > 0, sc = L.cfg.scales > 0;
  if (L.cfg.path != path || n < 1 || n > (mode == M_NVL ? MC_EP_MAX_NVL_RANKS : MC_EP_MAX_RANKS) ||
      L.cfg.experts > MC_EP_MAX_EXPERTS || L.cfg.top_k < 1 || L.cfg.top_k > MC_EP_MAX_TOPK ||
      L.local_experts * n != L.cfg.experts || a->rank < 0 || a->rank >= n || a->tokens < 0 ||
      a->tokens > L.cfg.t_max || a->seg == nullptr || !aligned16(a->seg) || a->err == nullptr ||
      L.row_bytes % 16 != 0 || L.crow_bytes % 16 != 0)
    return false;
  if (mode == M_NVL) {
    for (int q = 0; q < n; q++)
      if (a->peer[q] == nullptr || !aligned16(a->peer[q])) return false;
    if (a->peer[a->rank] != a->seg) return false;
  }
  if (op == MC_EP_OP_DISPATCH)
    return (!has || (a->topk_ids != nullptr && a->x != nullptr && aligned16(a->x) &&
                     (!sc || a->x_scales != nullptr))) &&
           a->recv_x != nullptr && aligned16(a->recv_x) && a->recv_counts != nullptr &&
           a->recv_src != nullptr && (!sc || a->recv_scales != nullptr);
  return a->y != nullptr && aligned16(a->y) &&
         (!has || (a->out != nullptr && aligned16(a->out) && a->topk_weights != nullptr));
}

int launch(const kfn_t fn, const mc_ep_args_t *a, void *stream) {
  int blocks, threads;
  mc_ep_shape(a->max_blocks, &blocks, &threads);
  void *args[] = {(void *)a};
  return (int)cudaLaunchKernel((const void *)fn, dim3((unsigned)blocks), dim3((unsigned)threads),
                               args, 0, (cudaStream_t)stream);
}

int launch_dispatch(const mc_ep_args_t *a, int mode, void *stream) {
  if (!args_ok(a, mode, MC_EP_OP_DISPATCH)) return (int)cudaErrorInvalidValue;
  return launch(kDispatch[mode], a, stream);
}

int launch_combine(const mc_ep_args_t *a, int mode, void *stream) {
  if (!args_ok(a, mode, MC_EP_OP_COMBINE) || a->layout.cfg.combine_dtype < 0 ||
      a->layout.cfg.combine_dtype > 2)
    return (int)cudaErrorInvalidValue;
  return launch(kCombine[mode][a->layout.cfg.combine_dtype], a, stream);
}

}  // namespace

/* __launch_bounds__(kThreads, 2) keeps two blocks per SM possible, so a grid of at most twice the
   SM count is resident at once (the NVLink kernels wait for each other's blocks). */
extern "C" void mc_ep_shape(int max_blocks, int *blocks_p, int *threads_p) {
  int dev = 0, sms = 0;
  int blocks =
      max_blocks >= 1 && max_blocks <= MC_EP_MAX_BLOCKS ? max_blocks : MC_EP_DEFAULT_BLOCKS;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && sms > 0 &&
      blocks > 2 * sms)
    blocks = 2 * sms;
  *blocks_p = blocks;
  *threads_p = kThreads;
}

extern "C" int mc_ep_dispatch(const mc_ep_args_t *a, void *stream) {
  return launch_dispatch(a, M_NVL, stream);
}
extern "C" int mc_ep_dispatch_pack(const mc_ep_args_t *a, void *stream) {
  return launch_dispatch(a, M_PACK, stream);
}
extern "C" int mc_ep_dispatch_unpack(const mc_ep_args_t *a, void *stream) {
  return launch_dispatch(a, M_UNPACK, stream);
}
extern "C" int mc_ep_combine(const mc_ep_args_t *a, void *stream) {
  return launch_combine(a, M_NVL, stream);
}
extern "C" int mc_ep_combine_pack(const mc_ep_args_t *a, void *stream) {
  return launch_combine(a, M_PACK, stream);
}
extern "C" int mc_ep_combine_unpack(const mc_ep_args_t *a, void *stream) {
  return launch_combine(a, M_UNPACK, stream);
}

extern "C" int mc_ep_check_device(void) {
  cudaFuncAttributes attr;
  return (int)cudaFuncGetAttributes(&attr, (const void *)kDispatch[0]);
}
