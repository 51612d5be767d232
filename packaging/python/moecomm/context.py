# SPDX-License-Identifier: Apache-2.0
"""Context and Group: the plugin's context and groups, shaped like engines' group coordinators.

A Context is one rank's view of one model instance: ``Context(topology, rank, world_size,
bootstrap=..., device=...)`` is collective over the world.  ``ctx.group("TP")`` gives the rank's
group of that kind (rank lists: DESIGN.md, "Concepts"), whose collectives take torch tensors,
numpy arrays, ``__cuda_array_interface__`` or DLPack objects.  Every failure of the plugin raises
the MoecommError subclass of its code, with the plugin's message.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from ctypes import POINTER, byref, c_int, c_int32, c_size_t, c_uint64, c_void_p
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Union

from . import _abi, _bootstrap, _buffers, _loader
from ._types import (Backend, CapturePlan, ContextInfo, GroupKind, GroupStats, LayerKind,
                     MoeConfig, MoeHandle, ScatterMode, Topology, to_enum)
from .errors import MoecommError, NotSupported, StateError, error_for

_OPS: Dict[Any, int] = {"sum": _abi.SUM, "max": _abi.MAX, "min": _abi.MIN,
                        _abi.SUM: _abi.SUM, _abi.MAX: _abi.MAX, _abi.MIN: _abi.MIN}

Stream = Any  # None, an int cudaStream_t, or an object with .cuda_stream (torch) or .ptr (CuPy)


def _op_code(op: Any) -> int:
    code = _OPS.get(op)
    if code is None:
        code = _OPS.get(str(getattr(op, "name", op)).lower())
        if code is None:
            raise ValueError("moecomm: op %r is not one of 'sum', 'max', 'min'" % (op,))
    return code


def _device_arg(device: Any) -> int:
    """The context_params device for "cpu", "auto"/None, an ordinal, "cuda:N" or torch.device."""
    if device is None or device == "auto":
        return _abi.DEVICE_AUTO
    if device == "cpu":
        return _abi.DEVICE_CPU
    if isinstance(device, int):
        return device
    text = str(device)
    if text == "cuda":
        torch = sys.modules.get("torch")
        return int(torch.cuda.current_device()) if torch is not None else 0
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ValueError("moecomm: device %r is not 'cpu', 'auto', a CUDA ordinal or 'cuda:N'"
                     % (device,))


def _rank_world(rank: Optional[int], world_size: Optional[int]) -> "tuple[int, int]":
    """rank and world size, from MOECOMM_RANK / MOECOMM_WORLD_SIZE when not given."""
    if rank is None:
        rank = int(os.environ.get("MOECOMM_RANK", "0"))
    if world_size is None:
        world_size = int(os.environ.get("MOECOMM_WORLD_SIZE", "1"))
    return int(rank), int(world_size)


def _int32_array(values: Sequence[int], what: str) -> "ctypes.Array[c_int32]":
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not -2**31 <= v < 2**31:
            raise ValueError("moecomm: %s must be 32-bit integers, got %r" % (what, v))
    return (c_int32 * len(values))(*values)


# Dispatch dtypes (ABI 1.2): the collectives' names and float8 e4m3.
_MOE_CODES = {"float32": _abi.FLOAT32, "float16": _abi.FLOAT16, "bfloat16": _abi.BFLOAT16,
              "float8_e4m3": _abi.FLOAT8_E4M3}
_MOE_DTYPE_NAMES = {v: k for k, v in _MOE_CODES.items()}


def _moe_dtype(value: Any, what: str) -> int:
    """A dispatch dtype code from a name ("bfloat16", "float8_e4m3", "float8_e4m3fn", a torch or
    numpy dtype) or a code; the plugin judges the code."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    name = str(getattr(value, "name", None) or value).replace("torch.", "").lower()
    name = "float8_e4m3" if name == "float8_e4m3fn" else name
    if name not in _MOE_CODES:
        raise ValueError("moecomm: moe_configure: %s %r is not one of %s"
                         % (what, value, ", ".join(_MOE_CODES)))
    return _MOE_CODES[name]


def _peer_arg(peer: Any) -> int:
    if not isinstance(peer, int) or isinstance(peer, bool) or not -2**31 <= peer < 2**31:
        raise TypeError("moecomm: peer must be an index in the group (an int), got %r" % (peer,))
    return peer


class MoeDispatch(NamedTuple):
    """What moe_dispatch returns: the receive buffers and the handle for moe_combine."""
    recv_x: Any
    recv_counts: Any
    recv_src: Any
    recv_scales: Any  # None unless the payload is float8 e4m3
    handle: MoeHandle


def _dtype_mismatch(name: str, a: int, b: int) -> TypeError:
    return TypeError("moecomm: %s: input is %s but out is %s; both must have the same dtype"
                     % (name, _abi.DTYPE_NAMES[a], _abi.DTYPE_NAMES[b]))


class Group:
    """One parallel group of this rank (a moecomm_group_t).  Collectives are called by every
    rank of the group in the same order; on a GPU context they are enqueued on ``stream``
    (default: torch's current stream when torch is imported, else the legacy default stream),
    on a CPU context they return when the result is in ``out``."""

    _h: Optional[int]
    __slots__ = ("_ctx", "_h", "kind", "_dev", "_cpu", "_size", "_rank", "_ranks", "_api",
                 "_moe")

    def __init__(self, ctx: "Context", handle: Optional[int], kind: GroupKind) -> None:
        self._ctx = ctx
        self._h = handle
        self.kind = kind
        self._dev = ctx.device
        self._cpu = ctx.device < 0
        self._api = ctx._api
        self._moe: Optional[MoeConfig] = None
        st = self.stats()
        self._size = st.size
        self._rank = st.rank
        self._ranks = st.ranks

    @property
    def size(self) -> int:
        """Ranks in the group."""
        return self._size

    @property
    def rank(self) -> int:
        """This rank's index in the group."""
        return self._rank

    @property
    def ranks(self) -> List[int]:
        """World ranks of the group in group order (DESIGN.md, "Concepts")."""
        return list(self._ranks)

    def __repr__(self) -> str:
        return "<moecomm.Group %s rank %d of %s>" % (self.kind.name, self._rank, self._ranks)

    def stats(self) -> GroupStats:
        """Rank list, backend, communicator id, creation state, memory and op count."""
        st = _abi.GroupStatsT()
        self._check(self._api.group_stats(self._h, byref(st)), "group_stats")
        return GroupStats(
            kind=GroupKind(st.kind), kind_name=st.kind_name.decode(), size=st.size, rank=st.rank,
            ranks=tuple(st.ranks[i] for i in range(st.size)), backend=Backend(st.backend),
            backend_name=st.backend_name.decode(), comm_id=st.comm_id, created=bool(st.created),
            device_bytes=st.device_bytes, host_bytes=st.host_bytes, ops=st.ops,
            ops_local=st.ops_local, ops_shm=st.ops_shm, ops_nccl=st.ops_nccl,
            ops_custom=st.ops_custom, moe_max_tokens=st.moe_max_tokens,
            moe_expert_capacity=st.moe_expert_capacity)

    # ---- collectives ----

    def all_reduce(self, x: Any, out: Any = None, op: Any = "sum", stream: Stream = None) -> Any:
        """out[i] = op over the group's ranks of x[i].  out=None: a new buffer like x; out=x: in
        place.  op: "sum", "max" or "min".  Returns out."""
        sp, n, dt, dev = _buffers.describe(x)
        if dev != self._dev:
            self._bad_device(x, dev)
        if out is None:
            out = _buffers.empty_like(x, _buffers.shape_of(x))
        rp = sp if out is x else self._out(out, n, dt, "all_reduce")
        s = None if stream is None and self._cpu else self._stream(stream)
        code = _OPS.get(op)
        if code is None:
            code = _op_code(op)
        rc = self._api.all_reduce(self._h, sp, rp, n, dt, code, s)
        if rc:
            self._check(rc, "all_reduce")
        return out

    def all_gather(self, x: Any, out: Any = None, stream: Stream = None) -> Any:
        """out holds size * x.numel() elements, rank r's x at r * x.numel() (along dim 0, as
        torch's all_gather_into_tensor).  out=None: a new buffer.  Returns out."""
        sp, n, dt, dev = _buffers.describe(x)
        if dev != self._dev:
            self._bad_device(x, dev)
        if out is None:
            shape = _buffers.shape_of(x)
            out = _buffers.empty_like(x, (self._size * shape[0],) + shape[1:] if shape
                                      else (self._size,))
        rp = self._out(out, n * self._size, dt, "all_gather")
        s = None if stream is None and self._cpu else self._stream(stream)
        rc = self._api.all_gather(self._h, sp, rp, n, dt, s)
        if rc:
            self._check(rc, "all_gather")
        return out

    def reduce_scatter(self, x: Any, out: Any = None, op: Any = "sum",
                       stream: Stream = None) -> Any:
        """x holds size * k elements; out (k elements) = op over ranks of this rank's block k
        (along dim 0).  out=None: a new buffer.  Returns out."""
        sp, n, dt, dev = _buffers.describe(x)
        if dev != self._dev:
            self._bad_device(x, dev)
        if n % self._size:
            raise ValueError("moecomm: reduce_scatter: input has %d elements, not a multiple of "
                             "the group size %d" % (n, self._size))
        k = n // self._size
        if out is None:
            shape = _buffers.shape_of(x)
            if len(shape) > 1 and shape[0] % self._size == 0:
                shape = (shape[0] // self._size,) + shape[1:]
            else:
                shape = (k,)
            out = _buffers.empty_like(x, shape)
        rp = self._out(out, k, dt, "reduce_scatter")
        s = None if stream is None and self._cpu else self._stream(stream)
        rc = self._api.reduce_scatter(self._h, sp, rp, k, dt, _op_code(op), s)
        if rc:
            self._check(rc, "reduce_scatter")
        return out

    def broadcast(self, x: Any, root: int = 0, out: Any = None, stream: Stream = None) -> Any:
        """Every rank gets root's x.  root is an index in the group (not a world rank).
        out=None: in place in x (torch.distributed.broadcast's habit).  Returns out."""
        sp, n, dt, dev = _buffers.describe(x)
        if dev != self._dev:
            self._bad_device(x, dev)
        if out is None:
            out = x
        rp = sp if out is x else self._out(out, n, dt, "broadcast")
        if not isinstance(root, int) or not 0 <= root < self._size:
            raise ValueError("moecomm: broadcast: root %r is not an index in group %s of %d ranks"
                             % (root, self.kind.name, self._size))
        s = None if stream is None and self._cpu else self._stream(stream)
        rc = self._api.broadcast(self._h, sp, rp, n, dt, root, s)
        if rc:
            self._check(rc, "broadcast")
        return out

    # ---- ABI 1.2: point to point and all-to-all ----

    def send(self, x: Any, peer: int, stream: Stream = None) -> None:
        """Sends x to ``peer`` (an index in the group, another rank than this one); the peer's
        matching ``recv`` gets it.  Sends and receives between a pair match in issue order, with
        the same element count and dtype.  On a CPU context it may block until the peer
        receives (ABI 1.2)."""
        fn = self._ctx._slot("send")
        sp, n, dt = self._in(x)
        self._check(fn(self._h, sp, n, dt, _peer_arg(peer), self._s(stream)), "send")

    def recv(self, out: Any, peer: int, stream: Stream = None) -> Any:
        """Receives into ``out`` what ``peer`` (an index in the group) sends (ABI 1.2).
        Returns out."""
        fn = self._ctx._slot("recv")
        rp, n, dt = self._in(out, "out", writable="recv")
        self._check(fn(self._h, rp, n, dt, _peer_arg(peer), self._s(stream)), "recv")
        return out

    def all_to_all(self, x: Any, out: Any = None, stream: Stream = None) -> Any:
        """x holds size equal blocks (along dim 0); block p of out is what peer p sent in its
        block for this rank.  out=None: a new buffer like x; x and out must not overlap (ABI
        1.2).  Returns out."""
        fn = self._ctx._slot("all_to_all")
        sp, n, dt = self._in(x)
        if n % self._size:
            raise ValueError("moecomm: all_to_all: input has %d elements, not a multiple of the "
                             "group size %d" % (n, self._size))
        if out is None:
            out = _buffers.empty_like(x, _buffers.shape_of(x))
        rp = self._out(out, n, dt, "all_to_all")
        self._check(fn(self._h, sp, rp, n // self._size, dt, self._s(stream)), "all_to_all")
        return out

    def all_to_all_v(self, x: Any, send_counts: Sequence[int], out: Any,
                     recv_counts: Sequence[int], send_displs: Optional[Sequence[int]] = None,
                     recv_displs: Optional[Sequence[int]] = None, stream: Stream = None) -> Any:
        """send_counts[p] elements of x from send_displs[p] go to peer p; recv_counts[p] from
        peer p land in out at recv_displs[p] (elements; displacements default to the counts'
        running sums).  The counts must agree pairwise between ranks (ABI 1.2).  Returns out."""
        fn = self._ctx._slot("all_to_all_v")
        sp, n, dt = self._in(x)
        rp, rn, rdt = self._in(out, "out", writable="all_to_all_v")
        if rdt != dt:
            raise _dtype_mismatch("all_to_all_v", dt, rdt)
        sc, sd = self._blocks("send", send_counts, send_displs, n)
        rc, rd = self._blocks("recv", recv_counts, recv_displs, rn)
        self._check(fn(self._h, sp, sc, sd, rp, rc, rd, dt, self._s(stream)), "all_to_all_v")
        return out

    def _blocks(self, what: str, counts: Sequence[int], displs: Optional[Sequence[int]],
                have: int) -> "tuple[Any, Any]":
        """The size_t arrays of all_to_all_v, checked against the buffer's `have` elements."""
        counts = list(counts)
        if displs is None:
            displs = [sum(counts[:p]) for p in range(len(counts))]
        displs = list(displs)
        for name, v in (("%s_counts" % what, counts), ("%s_displs" % what, displs)):
            if len(v) != self._size or any(not isinstance(e, int) or e < 0 for e in v):
                raise ValueError("moecomm: all_to_all_v: %s must be %d non-negative ints (one per "
                                 "rank of %s), got %r" % (name, self._size, self.kind.name, v))
        for p in range(self._size):
            if counts[p] and displs[p] + counts[p] > have:
                raise ValueError("moecomm: all_to_all_v: %s block %d (%d elements at %d) ends "
                                 "past the buffer's %d elements"
                                 % (what, p, counts[p], displs[p], have))
        return (c_size_t * self._size)(*counts), (c_size_t * self._size)(*displs)

    # ---- ABI 1.2: expert parallelism (the MOE_EP group) ----

    def moe_configure(self, num_experts: int, top_k: int, hidden: int, dtype: Any = "bfloat16",
                      max_tokens: int = 0, expert_capacity: int = 0, num_scales: int = 0,
                      combine_dtype: Any = None) -> MoeConfig:
        """Fixes the MOE_EP group's dispatch shape, the same on every rank, before its first
        dispatch: E experts (rank r holds [r*E/n, (r+1)*E/n)), top-k, hidden size, the dispatched
        dtype ("bfloat16", "float16", "float32" or "float8_e4m3" with ``num_scales`` fp32 scales
        per row and a ``combine_dtype``), T_max (0: MOECOMM_EP_MAX_TOKENS) and the rows C each
        local expert receives at most (0: n * T_max).  Again with the same shape: nothing; with
        another once the first dispatch sized the buffers: StateError (ABI 1.2)."""
        fn = self._ctx._slot("moe_configure")
        vals = {"num_experts": num_experts, "top_k": top_k, "hidden": hidden,
                "max_tokens": max_tokens, "expert_capacity": expert_capacity,
                "num_scales": num_scales}
        for name, v in vals.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError("moecomm: moe_configure: %s must be an int, got %r" % (name, v))
        if hidden < 0:
            raise ValueError("moecomm: moe_configure: hidden must be > 0, got %d" % hidden)
        dt = _moe_dtype(dtype, "dtype")
        cdt = _moe_dtype(combine_dtype, "combine_dtype") if combine_dtype is not None else 0
        cfg = _abi.MoeConfigT(num_experts=num_experts, top_k=top_k, dtype=dt,
                              max_tokens=max_tokens, hidden=hidden,
                              expert_capacity=expert_capacity, num_scales=num_scales,
                              combine_dtype=cdt)
        self._check(fn(self._h, byref(cfg)), "moe_configure")
        st = self.stats()
        # the outputs have the payload's dtype, except that an fp8 payload combines in cdt
        self._moe = MoeConfig(num_experts, top_k, hidden, _MOE_DTYPE_NAMES[dt], st.moe_max_tokens,
                              st.moe_expert_capacity, num_scales,
                              _MOE_DTYPE_NAMES[cdt if dt == _abi.FLOAT8_E4M3 else dt],
                              num_experts // self._size)
        return self._moe

    @property
    def moe_config(self) -> Optional[MoeConfig]:
        """The shape the last successful moe_configure fixed, or None."""
        return self._moe

    def moe_dispatch(self, x: Any, topk_ids: Any, x_scales: Any = None, recv_x: Any = None,
                     recv_scales: Any = None, recv_counts: Any = None, recv_src: Any = None,
                     stream: Stream = None) -> MoeDispatch:
        """Sends each of the T tokens of x ([T, hidden]) to the ranks holding its top-k experts
        (topk_ids [T, K] int32, -1 masks a slot) into the expert-major layout: recv_x [E_local, C,
        hidden] (local expert e's rows from row 0), recv_counts [E_local] int32, recv_src
        [E_local, C, 3] int32 (source index in the group, token, k), recv_scales [E_local, C,
        num_scales] with an fp8 payload (x_scales [T, num_scales]).  Outputs left None are
        allocated like x.  Returns them with the handle the matching moe_combine takes (ABI
        1.2)."""
        fn = self._ctx._slot("moe_dispatch")
        m = self._moe_shape("moe_dispatch")
        fp8 = m.dtype == "float8_e4m3"
        e, c, h = m.local_experts, m.expert_capacity, m.hidden
        xp, n, dev = self._moe_buf(x, "x", m.dtype)
        if n % h:
            raise ValueError("moecomm: moe_dispatch: x has %d elements, not rows of hidden %d"
                             % (n, h))
        t = n // h
        ids = self._typed(topk_ids, "topk_ids", _abi.INT32, t * m.top_k)
        if recv_x is None:
            recv_x = (_buffers.empty_as(x, (e, c, h), "fp8") if fp8
                      else _buffers.empty_like(x, (e, c, h)))
        if recv_counts is None:
            recv_counts = _buffers.empty_as(x, (e,), "int32")
        if recv_src is None:
            recv_src = _buffers.empty_as(x, (e, c, 3), "int32")
        args = _abi.MoeDispatchArgsT(num_tokens=t, x=xp, topk_ids=ids,
                                     recv_x=self._moe_buf(recv_x, "recv_x", m.dtype,
                                                          e * c * h)[0],
                                     recv_counts=self._typed(recv_counts, "recv_counts",
                                                             _abi.INT32, e, True),
                                     recv_src=self._typed(recv_src, "recv_src", _abi.INT32,
                                                          e * c * 3, True))
        if fp8:
            if x_scales is None:
                raise ValueError("moecomm: moe_dispatch: an fp8 payload needs x_scales [T, %d]"
                                 % m.num_scales)
            if recv_scales is None:
                recv_scales = _buffers.empty_as(x, (e, c, m.num_scales), "float32")
            args.x_scales = self._typed(x_scales, "x_scales", _abi.FLOAT32, t * m.num_scales)
            args.recv_scales = self._typed(recv_scales, "recv_scales", _abi.FLOAT32,
                                           e * c * m.num_scales, True)
        handle = c_uint64(0)
        self._check(fn(self._h, byref(args), byref(handle), self._s(stream)), "moe_dispatch")
        return MoeDispatch(recv_x, recv_counts, recv_src, recv_scales,
                           MoeHandle(handle.value, t, self))

    def moe_combine(self, handle: MoeHandle, expert_out: Any, topk_weights: Any, out: Any = None,
                    stream: Stream = None) -> Any:
        """Brings the experts' outputs (expert_out [E_local, C, hidden], the layout dispatch
        produced, in the combine dtype) back: out[t] = sum over k of topk_weights[t, k] (fp32,
        [T, K]) times the row of (t, k), in k order, masked slots skipped.  out=None: a new [T,
        hidden] buffer like expert_out (ABI 1.2).  Returns out."""
        fn = self._ctx._slot("moe_combine")
        m = self._moe_shape("moe_combine")
        if not isinstance(handle, MoeHandle) or handle.group is not self:
            raise TypeError("moecomm: moe_combine: handle must be what this group's moe_dispatch "
                            "returned, got %r" % (handle,))
        t, e, c, h = handle.num_tokens, m.local_experts, m.expert_capacity, m.hidden
        ep = self._typed(expert_out, "expert_out", _MOE_CODES[m.combine_dtype], e * c * h)
        if out is None:
            out = _buffers.empty_like(expert_out, (t, h))
        args = _abi.MoeCombineArgsT(num_tokens=t, handle=handle.value, expert_out=ep,
                                    topk_weights=self._typed(topk_weights, "topk_weights",
                                                             _abi.FLOAT32, t * m.top_k),
                                    out=self._typed(out, "out", _MOE_CODES[m.combine_dtype],
                                                    t * h, True))
        self._check(fn(self._h, byref(args), self._s(stream)), "moe_combine")
        return out

    # ---- ABI 1.2: the fused all-reduce + residual add + RMSNorm ----

    def all_reduce_rmsnorm(self, x: Any, residual: Any, weight: Any, eps: float, out: Any = None,
                           out_fp8: Any = None, out_scale: Any = None,
                           stream: Stream = None) -> Any:
        """residual += sum over the group of x; out = RMSNorm(residual) * weight, rows of
        weight.numel() elements, bf16 or fp16, fp32 math (kernels/mc_rmsnorm.h gives every
        rounding; the same bits on every rank and whatever the batch).  out=None: a new buffer
        like x.  out_fp8: also a float8 e4m3 copy with a per-row fp32 scale (out_scale, [T];
        allocated when None).  Returns out, or (out, out_fp8, out_scale) (ABI 1.2)."""
        fn = self._ctx._slot("all_reduce_rmsnorm")
        xp, n, dt = self._in(x)
        wp, h, wdt = self._in(weight, "weight")
        if wdt != dt:
            raise _dtype_mismatch("all_reduce_rmsnorm (weight)", dt, wdt)
        if h == 0 or n % h:
            raise ValueError("moecomm: all_reduce_rmsnorm: x has %d elements, not rows of the "
                             "weight's %d" % (n, h))
        rs = self._out(residual, n, dt, "all_reduce_rmsnorm (residual)")
        if out is None:
            out = _buffers.empty_like(x, _buffers.shape_of(x))
        args = _abi.RmsnormArgsT(dtype=dt, eps=float(eps), tokens=n // h, hidden=h, x=xp,
                                 residual=rs, weight=wp,
                                 out=self._out(out, n, dt, "all_reduce_rmsnorm"))
        if out_fp8 is not None:
            args.out_fp8 = self._moe_buf(out_fp8, "out_fp8", "float8_e4m3", n)[0]
            if out_scale is None:
                out_scale = _buffers.empty_as(x, (n // h,), "float32")
            args.out_scale = self._typed(out_scale, "out_scale", _abi.FLOAT32, n // h, True)
        self._check(fn(self._h, byref(args), self._s(stream)), "all_reduce_rmsnorm")
        return out if out_fp8 is None else (out, out_fp8, out_scale)

    # ---- helpers of the 1.2 methods ----

    def _in(self, buf: Any, what: str = "input", writable: str = "") -> "tuple[int, int, int]":
        """(address, elements, dtype) of a buffer on this context's device; `writable`: the
        call's name when buf is written."""
        p, n, dt, dev = _buffers.describe(buf)
        if dev != self._dev:
            self._bad_device(buf, dev, what)
        if writable and not _buffers.writable(buf):
            raise ValueError("moecomm: %s: %s is read-only" % (writable, what))
        return p, n, dt

    def _s(self, stream: Stream) -> Optional[int]:
        return None if stream is None and self._cpu else self._stream(stream)

    def _moe_shape(self, name: str) -> MoeConfig:
        if self._moe is None:
            raise StateError("moecomm: %s on %s: call moe_configure first"
                             % (name, self.kind.name), 12)
        return self._moe

    def _typed(self, buf: Any, what: str, dt: int, want: int, output: bool = False) -> int:
        """The address of `buf`, which must hold `want` elements of dtype dt here."""
        p, n, bdt = self._in(buf, what, writable="moecomm" if output else "")
        if bdt != dt:
            raise TypeError("moecomm: %s is %s; %s expected"
                            % (what, _abi.DTYPE_NAMES[bdt], _abi.DTYPE_NAMES[dt]))
        if n != want:
            raise ValueError("moecomm: %s has %d elements, %d expected" % (what, n, want))
        return p

    def _moe_buf(self, buf: Any, what: str, dtype: str, want: int = -1) -> "tuple[int, int, Any]":
        """(address, elements, device) of a payload buffer of the configured dtype name."""
        if dtype == "float8_e4m3":
            p, n, dev = _buffers.describe_fp8(buf)
        else:
            p, n, dt, dev = _buffers.describe(buf)
            if dt != _MOE_CODES[dtype]:
                raise TypeError("moecomm: %s is %s; the group was configured for %s"
                                % (what, _abi.DTYPE_NAMES[dt], dtype))
        if dev != self._dev:
            self._bad_device(buf, dev, what)
        if want >= 0 and n != want:
            raise ValueError("moecomm: %s has %d elements, %d expected" % (what, n, want))
        return p, n, dev

    # ---- helpers (off the fast path) ----

    def _out(self, out: Any, want: int, dt: int, name: str) -> int:
        rp, rn, rdt, rdev = _buffers.describe(out)
        if rdev != self._dev:
            self._bad_device(out, rdev, "out")
        if rdt != dt:
            raise _dtype_mismatch(name, dt, rdt)
        if rn != want:
            raise ValueError("moecomm: %s: out has %d elements, %d expected" % (name, rn, want))
        if not _buffers.writable(out):
            raise ValueError("moecomm: %s: out is read-only" % name)
        return rp

    def _bad_device(self, x: Any, dev: Optional[int], what: str = "input") -> None:
        if dev is None:  # a CUDA array interface: ask the driver
            dev = _buffers.pointer_device(_buffers.describe(x)[0])
            if dev == self._dev:
                return
        self._ctx._bad_device(x, dev, what)

    def _stream(self, stream: Stream) -> Optional[int]:
        return self._ctx._stream(stream)

    def _check(self, rc: int, name: str) -> None:
        if rc:
            if self._h is None:
                raise StateError("moecomm: %s on a closed context" % name, 12)
            raise self._ctx._error(rc)


class Context:
    """One rank's moecomm context (collective over the world to create).

    ``topology``: a ``moecomm.Topology``, a dict or a dataclass with its fields.  ``rank`` and
    ``world_size`` default to MOECOMM_RANK and MOECOMM_WORLD_SIZE.  ``bootstrap``: a
    ``torch.distributed`` CPU (gloo) process group, a ``torch.distributed.Store``, a callable
    all-gather ``f(bytes) -> list[bytes]`` (every rank's bytes in rank order), or None for
    MOECOMM_STORE=tcp://HOST:PORT.  ``device``: "cpu" (host buffers, shm backend), "auto"
    (a GPU if any, else CPU), a CUDA ordinal or "cuda:N".  ``separate_comms``: one communicator
    per group instead of one per distinct rank list.  ``deterministic`` (ABI 1.2, also
    MOECOMM_DETERMINISTIC=1): all_reduce, reduce_scatter and all_reduce_rmsnorm give each element
    the same bits whatever the message size, batch or algorithm.  Use as ``with Context(...) as
    ctx:`` or call ``close()``.
    """

    def __init__(self, topology: Any, rank: Optional[int] = None,
                 world_size: Optional[int] = None, bootstrap: Any = None,
                 device: Any = "auto", separate_comms: bool = False,
                 deterministic: bool = False) -> None:
        self._h: Optional[int] = None
        self.device: int = _abi.DEVICE_CPU
        self._groups: Dict[GroupKind, Group] = {}
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.topology = Topology.of(topology)
        self._plugin = _loader.plugin()
        self._api = self._plugin.api
        self._raw_stream: Any = None
        gather = _bootstrap.make_allgather(bootstrap, self.rank, self.world_size)
        # Kept for the context's life: C must never call a collected callback.
        self._host_ag = (_bootstrap.HostAllGather(gather, self.world_size)
                         if gather is not None else None)
        if deterministic and self._plugin.version < _abi.ABI_1_2:
            raise NotSupported("moecomm: deterministic=True needs ABI 1.2; %s negotiated %s"
                               % (self._plugin.path, _abi.version_str(self._plugin.version)), 5)
        ctopo = self.topology.to_c(self.rank, self.world_size)
        flags = ((_abi.CONTEXT_SEPARATE_COMMS if separate_comms else 0) |
                 (_abi.CONTEXT_DETERMINISTIC if deterministic else 0))
        params = _abi.ContextParamsT(topology=ctypes.pointer(ctopo), device=_device_arg(device),
                                     flags=flags)
        if self._host_ag is not None:
            params.host_allgather = self._host_ag.cfunc
        handle = c_void_p()
        rc = self._api.context_create(byref(params), byref(handle))
        if rc:
            msg = self._message(None)
            if self._host_ag is not None and self._host_ag.error:
                msg += " (the host all-gather raised: %s)" % self._host_ag.error
            raise error_for(rc, msg)
        self._h = handle.value
        info = _abi.ContextInfoT()
        rc = self._api.context_info(self._h, byref(info))
        if rc:
            err = self._error(rc)
            self._api.context_destroy(self._h)  # nothing half-made stays behind
            self._h = None
            raise err
        self.device = info.device

    # ---- lifetime ----

    def close(self) -> None:
        """Frees the context and its groups (local; rank 0 serves the rendezvous until the other
        ranks are done, at most MOECOMM_TIMEOUT_MS).  On a GPU context with torch imported, the
        device is synchronised first: no work of the context may still be running."""
        h, self._h = self._h, None
        if h is None:
            return
        for g in self._groups.values():
            g._h = None
        torch = sys.modules.get("torch")
        if self.device >= 0 and torch is not None:
            torch.cuda.synchronize(self.device)
        rc = self._api.context_destroy(h)
        if rc:
            raise error_for(rc, self._message(None))

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_h", None) is not None:
                self.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._h is None

    # ---- groups and information ----

    def group(self, kind: Any) -> Group:
        """This rank's group of ``kind`` ("TP", "moe_ep", GroupKind.TP or its value).  Creates no
        communicator: the first collective on it does."""
        k = to_enum(GroupKind, kind, "group kind")
        g = self._groups.get(k)
        if g is None:
            self._live()
            handle = c_void_p()
            self._check(self._api.group_get(self._h, int(k), byref(handle)))
            g = self._groups[k] = Group(self, handle.value or 0, k)
        return g

    def groups(self) -> Dict[str, Group]:
        """Every group kind of this rank, by name."""
        return {k.name: self.group(k) for k in GroupKind}

    def info(self) -> ContextInfo:
        """Device, host layout, negotiated ABI and the plugin serving the context."""
        self._live()
        i = _abi.ContextInfoT()
        self._check(self._api.context_info(self._h, byref(i)))
        return ContextInfo(device=i.device, local_rank=i.local_rank, local_size=i.local_size,
                           num_hosts=i.num_hosts, abi_version=_abi.version_str(i.abi_version),
                           plugin_path=self._plugin.path, plugin_name=self._plugin.name,
                           plugin_version=self._plugin.plugin_version, rank=self.rank,
                           world_size=self.world_size, topology=self.topology)

    # ---- planning and scatter modes ----

    def plan_capture_sizes(self, candidates: Optional[Sequence[int]] = None,
                           dense_dp: bool = False, dp_attention: bool = False,
                           two_batch_overlap: bool = False) -> CapturePlan:
        """The candidate token counts (default: the engines' usual 1, 2, 4, 8, 12, 16, 24,
        32..256 step 8, 272..512 step 16) every group can split, in order, with the multiple
        they had to be of.  None fits: ConfigError naming the multiple."""
        self._live()
        cand = _int32_array(list(candidates or ()), "candidates")
        flags = ((_abi.PLAN_DENSE_DP if dense_dp else 0) |
                 (_abi.PLAN_DP_ATTENTION if dp_attention else 0) |
                 (_abi.PLAN_TWO_BATCH_OVERLAP if two_batch_overlap else 0))
        params = _abi.PlanParamsT(flags=flags, candidates=ctypes.cast(cand, POINTER(c_int32)),
                                  num_candidates=len(cand))
        num, mult = c_size_t(0), c_int32(0)
        fn = self._api.plan_capture_sizes
        self._check(fn(self._h, byref(params), None, 0, byref(num), byref(mult)))
        sizes = (c_int32 * max(num.value, 1))()
        self._check(fn(self._h, byref(params), sizes, num.value, byref(num), byref(mult)))
        return CapturePlan(list(sizes[:num.value]), mult.value)

    def layer_mode(self, layer: Any) -> ScatterMode:
        """The scatter mode a layer kind's input must be in ("attention", "dense_mlp",
        "sparse_moe" or a LayerKind), decided from the topology (ABI 1.1)."""
        fn = self._slot("layer_mode")
        mode = c_int(-1)
        self._check(fn(self._h, int(to_enum(LayerKind, layer, "layer kind")), byref(mode)))
        return ScatterMode(mode.value)

    def _tokens(self, tokens: Union[int, Sequence[int]]) -> "ctypes.Array[c_int32]":
        t = self.topology
        groups = t.attn_dp * t.attn_cp
        if isinstance(tokens, int):
            tokens = [tokens] * groups
        tokens = list(tokens)
        if len(tokens) != groups:
            raise ValueError("moecomm: tokens has %d entries; pass one token count per attention "
                             "group of the TP block (attn_dp * attn_cp = %d), or one int"
                             % (len(tokens), groups))
        return _int32_array(tokens, "tokens")

    def mode_rows(self, mode: Any, tokens: Union[int, Sequence[int]]) -> int:
        """Rows (tokens and padding) a buffer of ``mode`` holds on this rank for the token
        counts of the attention groups (one int: the same count in every group)."""
        fn = self._slot("mode_rows")
        rows = c_size_t(0)
        self._check(fn(self._h, int(to_enum(ScatterMode, mode, "scatter mode")),
                       self._tokens(tokens), byref(rows)))
        return rows.value

    def scatter(self, x: Any, out: Any, from_mode: Any, to_mode: Any,
                tokens: Union[int, Sequence[int]], reduce: bool = False,
                stream: Stream = None) -> Any:
        """Moves hidden states (rows of x.shape[-1] elements) from one scatter mode to another;
        ``reduce``: x holds partial sums of the layer that made it.  out=None: a new buffer of
        mode_rows(to_mode) rows.  Collective over the groups it uses (every rank of the world,
        same order).  Returns out."""
        fn = self._slot("scatter")
        fm = to_enum(ScatterMode, from_mode, "scatter mode")
        tm = to_enum(ScatterMode, to_mode, "scatter mode")
        tok = self._tokens(tokens)
        sp, n, dt, dev = _buffers.describe(x)
        if dev != self.device:
            self._bad_device(x, dev, "input")
        shape = _buffers.shape_of(x)
        hidden = shape[-1] if shape else 0
        if hidden <= 0:
            raise ValueError("moecomm: scatter: x must be rows of hidden elements (shape "
                             "[rows, hidden]); got shape %s" % (shape,))
        rows_from, rows_to = self.mode_rows(fm, tokens), self.mode_rows(tm, tokens)
        if n != rows_from * hidden:
            raise ValueError("moecomm: scatter: x has %d rows of %d; %s holds %d rows here for "
                             "tokens %s" % (n // hidden, hidden, fm.name, rows_from, list(tok)))
        if out is None:
            out = _buffers.empty_like(x, (rows_to, hidden))
        rp, rn, rdt, rdev = _buffers.describe(out)
        if rdev != self.device:
            self._bad_device(out, rdev, "out")
        if rdt != dt:
            raise _dtype_mismatch("scatter", dt, rdt)
        if rn != rows_to * hidden:
            raise ValueError("moecomm: scatter: out has %d elements; %s needs %d rows of %d here"
                             % (rn, tm.name, rows_to, hidden))
        args = _abi.ScatterArgsT(from_=int(fm), to=int(tm), reduce=1 if reduce else 0, dtype=dt,
                                 hidden=hidden, tokens=ctypes.cast(tok, POINTER(c_int32)),
                                 send=sp, recv=rp)
        self._check(fn(self._h, byref(args), self._stream(stream)))
        return out

    # ---- graph capture ----

    @contextlib.contextmanager
    def capture(self, stream: Stream = None) -> Iterator["Context"]:
        """The plugin's capture scope, which covers every group, around a CUDA graph capture::

            with ctx.capture():                      # capture_begin
                with torch.cuda.graph(g, stream=s):  # torch's stream capture inside
                    ...                              # collectives on any group
            # capture_end ran after torch ended stream capture: g can be replayed

        capture_end is collective over the world: it checks that every rank captured the same
        number of operations per group and registers the captured buffers with peers.  If the
        body raises, the scope is still ended (on every rank that got here) and the body's
        exception propagates; a rank whose capture differs then fails capture_end with
        CaptureError on the others.  On a CPU context collectives inside run eagerly."""
        self._live()
        s = self._stream(stream) if stream is not None else None
        self._check(self._api.capture_begin(self._h, s))
        try:
            yield self
        except BaseException:
            rc = self._api.capture_end(self._h, s) if self._h is not None else 0
            if rc:
                # The body's exception is the cause; the scope's state goes with it.
                sys.stderr.write("moecomm: capture_end after an exception in the capture body "
                                 "failed: %s\n" % self._error(rc))
            raise
        self._check(self._api.capture_end(self._h, s))

    graph_capture = capture

    # ---- internals ----

    def _slot(self, name: str) -> Any:
        self._live()
        return self._plugin.slot(name)

    def _live(self) -> None:
        if self._h is None:
            raise StateError("moecomm: the context is closed", 12)

    def _message(self, handle: Optional[int]) -> str:
        text = self._api.last_error(handle) or b""
        return text.decode(errors="replace") or "(the plugin gave no message)"

    def _error(self, rc: int) -> MoecommError:
        msg = self._message(self._h)
        if msg == "(the plugin gave no message)":
            msg = self._message(None)
        return error_for(rc, msg)

    def _check(self, rc: int) -> None:
        if rc:
            raise self._error(rc)

    def _stream(self, stream: Stream) -> Optional[int]:
        if self.device < 0:
            if stream is not None:
                raise ValueError("moecomm: a CPU context takes no stream (got %r): buffers are "
                                 "host memory and calls complete before returning" % (stream,))
            return None
        if stream is None:
            return self._current_torch_stream()
        if isinstance(stream, int):
            return stream or None
        handle = getattr(stream, "cuda_stream", None)
        if handle is None:
            handle = getattr(stream, "ptr", None)
        if not isinstance(handle, int):
            raise TypeError("moecomm: stream must be an int cudaStream_t or have .cuda_stream or "
                            ".ptr; got %s" % type(stream).__name__)
        return handle or None

    def _current_torch_stream(self) -> Optional[int]:
        f = self._raw_stream
        if f is None:
            torch = sys.modules.get("torch")
            if torch is None:
                return None  # no torch: the legacy default stream
            raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
            dev = self.device
            f = self._raw_stream = ((lambda: raw(dev)) if raw is not None else
                                    (lambda: torch.cuda.current_stream(dev).cuda_stream))
        return f() or None

    def _bad_device(self, x: Any, dev: Optional[int], what: str) -> None:
        if dev is None:
            dev = _buffers.pointer_device(_buffers.describe(x)[0])
            if dev == self.device:
                return
        have = "host memory" if dev == -1 else ("device memory of GPU %d" % dev if dev is not None
                                                else "memory of unknown location")
        want = ("host memory (a CPU context)" if self.device < 0
                else "device memory of GPU %d (this context's)" % self.device)
        raise ValueError("moecomm: %s is %s; this context needs %s" % (what, have, want))
