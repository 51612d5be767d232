# SPDX-License-Identifier: Apache-2.0
"""Independent references for the suite: DESIGN.md's group formulas, the capture-size rule,
layer modes and the row layouts of scatter modes (abi/moecomm.h), written from the documents,
not from the plugin's code."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

KINDS = ("WORLD", "TP", "PP", "ATTN_TP", "ATTN_CP", "MOE_EP", "MOE_TP", "MOE_DP", "MOE_CP")


class Topo:
    def __init__(self, world: int, tp: int, pp: int = 1, ep: int = 1, moe_dp: int = 1,
                 attn_cp: int = 1, attn_dp: int = 1, moe_dense_tp: int = 0) -> None:
        self.world, self.tp, self.pp, self.ep, self.moe_dp = world, tp, pp, ep, moe_dp
        self.attn_cp, self.attn_dp = attn_cp, attn_dp
        self.moe_dense_tp = moe_dense_tp or tp
        self.attn_tp = tp // (attn_dp * attn_cp)
        self.moe_tp = tp // (ep * moe_dp)

    def as_dict(self) -> Dict[str, int]:
        return {"tp": self.tp, "pp": self.pp, "ep": self.ep, "moe_dp": self.moe_dp,
                "attn_cp": self.attn_cp, "attn_dp": self.attn_dp,
                "moe_dense_tp": self.moe_dense_tp}

    def groups(self, kind: str) -> List[List[int]]:
        """Every group of `kind` (DESIGN.md, Concepts)."""
        t = self
        if kind == "WORLD":
            return [list(range(t.world))]
        if kind == "PP":
            step = t.world // t.pp
            return [list(range(i, t.world, step)) for i in range(step)]
        out: List[List[int]] = []
        for b in range(0, t.world, t.tp):
            out += self._block_groups(kind, b)
        return out

    def _block_groups(self, kind: str, b: int) -> List[List[int]]:
        t = self
        tp_group = [list(range(b, b + t.tp))]
        if kind == "TP":
            return tp_group
        if kind == "ATTN_TP":
            return tp_group if t.attn_tp == t.tp else [
                list(range(b + j * t.attn_tp, b + (j + 1) * t.attn_tp))
                for j in range(t.attn_cp * t.attn_dp)]
        if kind == "ATTN_CP":
            return tp_group if t.attn_cp == t.tp else [
                list(range(b + d * t.attn_tp * t.attn_cp + i, b + (d + 1) * t.attn_tp * t.attn_cp
                           + i, t.attn_tp)) for d in range(t.attn_dp) for i in range(t.attn_tp)]
        if kind == "MOE_EP":
            return tp_group if t.ep == t.tp else [
                list(range(b + d * t.ep * t.moe_tp + i, b + (d + 1) * t.ep * t.moe_tp + i,
                           t.moe_tp)) for d in range(t.moe_dp) for i in range(t.moe_tp)]
        if kind == "MOE_TP":
            return tp_group if t.moe_tp == t.tp else [
                list(range(b + j * t.moe_tp, b + (j + 1) * t.moe_tp))
                for j in range(t.ep * t.moe_dp)]
        if kind in ("MOE_DP", "MOE_CP"):
            if t.attn_cp > t.moe_dp:
                return self._block_groups("ATTN_CP", b)
            if t.moe_dp == t.tp:
                return tp_group
            step = t.moe_tp * t.ep
            return [list(range(b + k, b + t.tp, step)) for k in range(step)]
        raise ValueError(kind)

    def group_of(self, kind: str, rank: int) -> List[int]:
        return next(g for g in self.groups(kind) if rank in g)

    # ---- capture sizes and layer modes ----

    def plan_multiple(self, dense_dp: bool, dp_attention: bool) -> int:
        dense = dense_dp or self.moe_dense_tp == 1
        dpa = dp_attention or self.attn_dp > 1
        if not dense and not dpa and self.attn_tp == self.tp:
            return 1
        m = self.attn_tp
        if self.attn_tp % self.attn_cp:
            m *= self.attn_cp
        return m

    def layer_mode(self, layer: str) -> Optional[str]:
        """Mode name, or None where the plugin must refuse (NotSupported)."""
        full = "TP_ATTN_FULL" if self.attn_tp == self.tp else "FULL"
        if layer == "ATTENTION":
            return "TP_ATTN_FULL"
        if layer == "DENSE_MLP":
            return "SCATTERED" if self.moe_dense_tp == 1 else full
        if self.attn_cp > self.moe_dp:
            return None if self.attn_dp > 1 else "MOE_FULL"
        if self.ep * self.moe_tp == self.attn_tp:
            return "TP_ATTN_FULL"
        return full if self.moe_dp == 1 else None

    # ---- scatter-mode rows: (attention group g, token t) per row, None for padding ----

    def rows(self, mode: str, rank: int, T: Sequence[int]) -> List[Optional[Tuple[int, int]]]:
        b = rank // self.tp * self.tp
        tr = rank - b
        g, a = tr // self.attn_tp, tr % self.attn_tp
        n = T[g] // self.attn_tp
        if mode == "SCATTERED":
            return [(g, a * n + i) for i in range(n)]
        if mode == "TP_ATTN_FULL":
            return [(g, t) for t in range(T[g])]
        if mode == "FULL":
            s = max(T) // self.attn_tp
            out: List[Optional[Tuple[int, int]]] = []
            for r in range(self.tp):
                g2, a2 = r // self.attn_tp, r % self.attn_tp
                n2 = T[g2] // self.attn_tp
                out += [(g2, a2 * n2 + i) for i in range(n2)] + [None] * (s - n2)
            return out
        members = self.group_of("MOE_CP", rank)
        gs = [(m - b) // self.attn_tp for m in members]
        p = max(T[x] for x in gs)
        out = []
        for x in gs:
            out += [(x, t) for t in range(T[x])] + [None] * (p - T[x])
        return out

    def reducers(self, mode: str, rank: int, g: int) -> List[int]:
        """Ranks whose partial sums make token rows of group g in a `mode` buffer of `rank`."""
        b = rank // self.tp * self.tp
        if mode == "TP_ATTN_FULL":
            return list(range(b + g * self.attn_tp, b + (g + 1) * self.attn_tp))
        if mode == "FULL":
            return list(range(b, b + self.tp))
        replica = set()
        for e in self.group_of("MOE_EP", rank):
            replica.update(self.group_of("MOE_TP", e))
        return sorted(replica)


# Transitions the plugin performs (abi/moecomm.h, scatter): others are NotSupported.
def transition_supported(frm: str, to: str, reduce: bool) -> bool:
    if frm == "SCATTERED" and reduce:
        return False
    if frm == to:
        return True
    pairs = {("SCATTERED", "TP_ATTN_FULL"), ("TP_ATTN_FULL", "SCATTERED"),
             ("SCATTERED", "MOE_FULL"), ("TP_ATTN_FULL", "MOE_FULL"), ("SCATTERED", "FULL"),
             ("TP_ATTN_FULL", "FULL"), ("FULL", "SCATTERED"), ("FULL", "TP_ATTN_FULL"),
             ("MOE_FULL", "SCATTERED"), ("MOE_FULL", "TP_ATTN_FULL")}
    return (frm, to) in pairs


def ints(seed: Sequence[int], shape: Tuple[int, ...]) -> np.ndarray:
    """Small non-zero integers (|v| <= 4) from a seed: sums over a few ranks are exact."""
    v = np.random.default_rng(list(seed)).integers(-4, 4, size=shape)
    return np.where(v >= 0, v + 1, v).astype(np.float64)


# ---- all_reduce_rmsnorm (kernels/mc_rmsnorm.h's definition, written again in numpy) ----

F32 = np.float32


def fmaf(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fmaf(a, b, c) rounded once to float32, for products exact in float64 (fp16 and bf16
    values).  The float64 sum s and its error (TwoSum) decide: s rounds like the exact sum
    unless s lies exactly halfway between two float32 values, where the error picks the side."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c64 = c.astype(np.float64)
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    r = s.astype(F32)
    other = np.nextafter(r, np.where(s > r.astype(np.float64), F32(np.inf), F32(-np.inf)))
    mid = (r.astype(np.float64) + other.astype(np.float64)) / 2
    tie = (s != r.astype(np.float64)) & (s == mid) & (err != 0)
    toward = np.where(err > 0, np.maximum(r, other), np.minimum(r, other))
    return np.where(tie, toward, r).astype(F32)


def sum_of_squares(v: np.ndarray) -> "np.float32":
    """The row's sum of v^2 in the fixed order: 256 lanes, lane l over vectors l, l + 256, ...
    (8 elements each, fmaf), butterflies over each 32 lanes, the 8 group sums in order.  A short
    last vector adds only its elements (zeros in its place add exactly nothing)."""
    lane = np.zeros(256, F32)
    nvec = (v.size + 7) // 8
    v = np.concatenate([v, np.zeros(nvec * 8 - v.size, F32)])
    for j0 in range(0, nvec, 256):
        js = np.arange(j0, min(j0 + 256, nvec))
        for k in range(8):
            e = v[8 * js + k]
            lane[js - j0] = fmaf(e, e, lane[js - j0])
    groups = lane.reshape(8, 32)
    for m in (16, 8, 4, 2, 1):
        groups[:, :m] = groups[:, :m] + groups[:, m:2 * m]
    total = groups[0, 0]
    for g in range(1, 8):
        total = F32(total + groups[g, 0])
    return total


def e4m3(y: np.ndarray) -> np.ndarray:
    """Nearest-even float8 e4m3 bits, saturated to +-448 (ml_dtypes' conversion, clipped)."""
    import ml_dtypes
    return np.clip(y, F32(-448), F32(448)).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def rmsnorm(xs: Sequence[np.ndarray], residual: np.ndarray, weight: np.ndarray, eps: float,
            dtype: "np.dtype") -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every rank's x [T, H] in rank order, the residual and weight, all of `dtype` (fp16 or
    bf16): the new residual, y, and y's e4m3 bits with their per-row scales."""
    s = xs[0].astype(F32)
    for x in xs[1:]:
        s = s + x.astype(F32)  # in rank order, fp32
    a = s.astype(dtype)
    v = (a.astype(F32) + residual.astype(F32)).astype(dtype)
    vf = v.astype(F32)
    w = weight.astype(F32)
    rows, hidden = vf.shape
    y = np.empty((rows, hidden), dtype)
    q = np.zeros((rows, hidden), np.uint8)
    scale = np.zeros(rows, F32)
    for t in range(rows):
        inv = F32(1) / np.sqrt(sum_of_squares(vf[t]) / F32(hidden) + F32(eps))
        y[t] = ((vf[t] * inv) * w).astype(dtype)
        yf = y[t].astype(F32)
        scale[t] = np.max(np.abs(yf)) / F32(448)
        if scale[t] != 0:
            q[t] = e4m3(yf / scale[t])
    return v, y, q, scale
