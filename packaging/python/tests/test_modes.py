# SPDX-License-Identifier: Apache-2.0
"""The planner, layer modes, mode rows and every scatter transition (with and without reduce)
on 2 and 4 shm ranks, against the references in reference.py."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np
import pytest
from conftest import barrier, run_ranks
from reference import Topo, ints, transition_supported

import moecomm

MODES = ("SCATTERED", "TP_ATTN_FULL", "FULL", "MOE_FULL")
HIDDEN = 3
TOPOS = [
    (4, {"tp": 4, "ep": 2}),                              # attn_tp == tp
    (4, {"tp": 4, "ep": 4, "attn_cp": 2}),                # MOE_FULL (attn_cp > moe_dp)
    (4, {"tp": 4, "attn_dp": 2, "ep": 2, "moe_dp": 2}),   # a MoE replica is one attention group
    (4, {"tp": 2, "pp": 2, "ep": 2, "moe_dense_tp": 1}),  # two TP blocks, dense MLP data-parallel
    (4, {"tp": 4, "attn_cp": 2, "moe_dp": 2, "ep": 2}),   # MOE_CP = MOE_DP
    (2, {"tp": 2, "attn_cp": 2}),                         # attn_tp 1
]


def _plan_rank(rank: int, world: int, ag: Any, topo: Dict[str, int]) -> int:
    ref = Topo(world, **topo)
    cands = [1, 2, 3, 4, 6, 8, 12, 16, 24, 30]
    with moecomm.Context(topo, rank, world, bootstrap=ag, device="cpu") as ctx:
        checks = 0
        for dense_dp in (False, True):
            for dpa in (False, True):
                for tbo in (False, True):
                    m = ref.plan_multiple(dense_dp, dpa)
                    want = [c for c in cands if c % m == 0 and (not tbo or c >= 2 * m)]
                    try:
                        got = ctx.plan_capture_sizes(cands, dense_dp=dense_dp, dp_attention=dpa,
                                                     two_batch_overlap=tbo)
                    except moecomm.ConfigError as e:
                        assert not want and ("multiples of %d" % m) in e.message, e.message
                    else:
                        assert list(got) == want and got.multiple == m, (got, want, m)
                    checks += 1
        engines = [1, 2, 4, 8, 12, 16, 24] + list(range(32, 257, 8)) + list(range(272, 513, 16))
        m = ref.plan_multiple(False, False)
        assert ctx.plan_capture_sizes() == [c for c in engines if c % m == 0]
        for layer in ("ATTENTION", "DENSE_MLP", "SPARSE_MOE"):
            want_mode = ref.layer_mode(layer)
            if want_mode is None:
                with pytest.raises(moecomm.NotSupported):
                    ctx.layer_mode(layer)
            else:
                assert ctx.layer_mode(layer.lower()) == moecomm.ScatterMode[want_mode], layer
            checks += 1
        barrier(ctx)
        return checks


@pytest.mark.parametrize("world,topo", TOPOS)
def test_planner_and_layer_modes(world: int, topo: Dict[str, int]) -> None:
    assert min(run_ranks(world, _plan_rank, topo)) > 0


def _tokens(ref: Topo) -> List[int]:
    """Uneven counts, multiples of attn_tp (SCATTERED and FULL split them)."""
    n = ref.attn_dp * ref.attn_cp
    return [ref.attn_tp * (2 + (3 * g) % 4) for g in range(n)]


def _value(block: int, g: int, t: int) -> np.ndarray:
    return ints((block, g, t), (HIDDEN,))


def _send(ref: Topo, mode: str, rank: int, T: Sequence[int], reduce: bool) -> np.ndarray:
    rows = ref.rows(mode, rank, T)
    out = np.zeros((len(rows), HIDDEN))
    for i, row in enumerate(rows):
        if reduce:  # partial sums: every rank its own numbers; padding rows zero
            out[i] = 0 if row is None else ints((rank, i, 7), (HIDDEN,))
        else:  # token values; padding rows hold junk that must not leak
            out[i] = ints((rank, i, 9), (HIDDEN,)) * 100 if row is None else \
                _value(rank // ref.tp, *row)
    return out


def _expected(ref: Topo, frm: str, to: str, rank: int, T: Sequence[int],
              reduce: bool) -> np.ndarray:
    rows = ref.rows(to, rank, T)
    if frm == to and not reduce:
        return _send(ref, frm, rank, T, False)
    out = np.zeros((len(rows), HIDDEN))
    for i, row in enumerate(rows):
        if row is None:
            continue
        if not reduce:
            out[i] = _value(rank // ref.tp, *row)
            continue
        for m in ref.reducers(frm, rank, row[0]):
            idx = ref.rows(frm, m, T).index(row)
            out[i] += _send(ref, frm, m, T, True)[idx]
    return out


def _scatter_rank(rank: int, world: int, ag: Any, topo: Dict[str, int]) -> int:
    ref = Topo(world, **topo)
    T = _tokens(ref)
    checks = 0
    with moecomm.Context(topo, rank, world, bootstrap=ag, device="cpu") as ctx:
        for mode in MODES:
            assert ctx.mode_rows(mode, T) == len(ref.rows(mode, rank, T)), mode
        for dtype in (np.float32, np.int32):
            for frm in MODES:
                for to in MODES:
                    for reduce in (False, True):
                        x = _send(ref, frm, rank, T, reduce).astype(dtype)
                        out = np.full((len(ref.rows(to, rank, T)), HIDDEN), -55, dtype)
                        if not transition_supported(frm, to, reduce):
                            with pytest.raises(moecomm.NotSupported):
                                ctx.scatter(x, out, frm, to, T, reduce=reduce)
                            assert (out == -55).all()
                            continue
                        got = ctx.scatter(x, out, frm, to, T, reduce=reduce)
                        assert got is out
                        want = _expected(ref, frm, to, rank, T, reduce)
                        np.testing.assert_array_equal(out.astype(np.float64), want,
                                                      "%s -> %s reduce %s" % (frm, to, reduce))
                        checks += 1
        y = ctx.scatter(_send(ref, "TP_ATTN_FULL", rank, T, False).astype(np.float32), None,
                        moecomm.ScatterMode.TP_ATTN_FULL, "MOE_FULL", T)
        assert y.shape == (ctx.mode_rows("MOE_FULL", T), HIDDEN)
        np.testing.assert_array_equal(y, _expected(ref, "TP_ATTN_FULL", "MOE_FULL", rank, T,
                                                   False))
    return checks


@pytest.mark.parametrize("world,topo", TOPOS)
def test_scatter_transitions(world: int, topo: Dict[str, int]) -> None:
    assert min(run_ranks(world, _scatter_rank, topo)) > 0


def _uneven_rank(rank: int, world: int, ag: Any) -> None:
    topo = {"tp": 4, "ep": 4, "attn_cp": 2}
    ref = Topo(world, **topo)
    T = [3, 5]  # not multiples of attn_tp=2: only TP_ATTN_FULL <-> MOE_FULL exist
    with moecomm.Context(topo, rank, world, bootstrap=ag, device="cpu") as ctx:
        with pytest.raises(moecomm.InvalidArgument) as e:
            ctx.mode_rows("SCATTERED", T)
        assert "multiple" in e.value.message
        x = _send(ref, "TP_ATTN_FULL", rank, T, False).astype(np.float32)
        y = ctx.scatter(x, None, "TP_ATTN_FULL", "MOE_FULL", T)
        np.testing.assert_array_equal(y, _expected(ref, "TP_ATTN_FULL", "MOE_FULL", rank, T,
                                                   False))
        back = ctx.scatter(y, None, "MOE_FULL", "TP_ATTN_FULL", T)
        np.testing.assert_array_equal(back, x)


def test_scatter_uneven_tokens() -> None:
    run_ranks(4, _uneven_rank)
