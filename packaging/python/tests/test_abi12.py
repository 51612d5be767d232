# SPDX-License-Identifier: Apache-2.0
"""What ABI 1.2 added, through the package: all_reduce_rmsnorm on 2 and 4 shm ranks against a
numpy reference of kernels/mc_rmsnorm.h's definition (bit for bit), group rank lists without a
context, the configuration table, the per-backend counts of group stats, and the argument
errors of send/recv, all_to_all(_v) and the expert-parallel calls (multi-rank traffic and a
working dispatch are the backends' tests)."""

from __future__ import annotations

import array
import os
import subprocess
import sys
from typing import Any, Dict, List

import ml_dtypes
import numpy as np
import pytest
from conftest import barrier, run_ranks
from reference import KINDS, Topo, rmsnorm

import moecomm

BF16 = np.dtype(ml_dtypes.bfloat16)
FP16 = np.dtype(np.float16)


def _one(**kw: Any) -> moecomm.Context:
    """A context of one CPU rank (its own host all-gather is a copy)."""
    return moecomm.Context(kw.pop("topo", {"tp": 1}), 0, 1, bootstrap=lambda b: [b],
                           device="cpu", **kw)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8 if a.itemsize == 1 else np.uint16 if a.itemsize == 2 else np.uint32)


# ---- all_reduce_rmsnorm ----

def _rms_inputs(world: int, tokens: int, hidden: int, dtype: np.dtype, seed: int) -> Any:
    """Every rank's x, and the residual and weight: the same on every rank for the same seed."""
    rng = np.random.default_rng([seed, world, tokens, hidden])
    xs = [rng.normal(0, 1, (tokens, hidden)).astype(np.float32).astype(dtype)
          for _ in range(world)]
    residual = rng.normal(0, 2, (tokens, hidden)).astype(np.float32).astype(dtype)
    weight = rng.uniform(0.5, 1.5, hidden).astype(np.float32).astype(dtype)
    return xs, residual, weight


def _rms_rank(rank: int, world: int, ag: Any, cases: List[Any], deterministic: bool) -> List[str]:
    bad = []
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device="cpu",
                         deterministic=deterministic) as ctx:
        tp = ctx.group("TP")
        for tokens, hidden, dtype, eps, fp8 in cases:
            dtype = np.dtype(dtype)
            xs, residual, weight = _rms_inputs(world, tokens, hidden, dtype, 7)
            want_res, want_y, want_q, want_scale = rmsnorm(xs, residual, weight, eps, dtype)
            x = xs[rank].copy()
            res = residual.copy()
            out = np.full((tokens, hidden), 0x7fc1, np.uint16).view(dtype)  # poisoned
            q = np.full((tokens, hidden), 0x55, np.uint8) if fp8 else None
            scale = np.full(tokens, -1.0, np.float32) if fp8 else None
            got = tp.all_reduce_rmsnorm(x, res, weight, eps, out=out, out_fp8=q, out_scale=scale)
            what = "T=%d H=%d %s eps=%g" % (tokens, hidden, dtype.name, eps)
            if (got[0] if fp8 else got) is not out:
                bad.append("%s: did not return out" % what)
            if not np.array_equal(_bits(x), _bits(xs[rank])):
                bad.append("%s: x was changed" % what)
            for name, a, b in (("residual", res, want_res), ("out", out, want_y)) + (
                    (("out_fp8", q, want_q), ("out_scale", scale, want_scale)) if fp8 else ()):
                diff = np.flatnonzero(_bits(a).ravel() != _bits(b).ravel())
                if diff.size:
                    i = diff[0]
                    bad.append("%s: %s differs at %d of %d elements, first at %d: %r vs the "
                               "reference's %r" % (what, name, diff.size, a.size, i,
                                                   a.ravel()[i], b.ravel()[i]))
        st = tp.stats()
        if st.ops_shm != len(cases) or st.ops_local != 0:
            bad.append("stats after %d fused calls: ops_shm %d ops_local %d"
                       % (len(cases), st.ops_shm, st.ops_local))
    return bad


RMS_CASES = [
    (3, 64, BF16.name, 1e-6, False),
    (5, 2112, BF16.name, 1e-5, True),  # 264 vectors: some lanes sum two
    (2, 4096, FP16.name, 0.0, True),
    (1, 8, FP16.name, 0.5, False),
]


@pytest.mark.parametrize("world", [2, 4])
def test_rmsnorm_matches_the_definition(world: int) -> None:
    results = run_ranks(world, _rms_rank, RMS_CASES, world == 4)
    assert results == [[]] * world, results


def test_rmsnorm_group_of_one_and_errors() -> None:
    xs, residual, weight = _rms_inputs(1, 4, 16, BF16, 3)
    want_res, want_y, _, _ = rmsnorm(xs, residual, weight, 1e-6, BF16)
    with _one() as ctx:
        tp = ctx.group("TP")
        res = residual.copy()
        y = tp.all_reduce_rmsnorm(xs[0], res, weight, 1e-6)
        assert np.array_equal(_bits(y), _bits(want_y)) and np.array_equal(_bits(res),
                                                                          _bits(want_res))
        assert tp.stats().ops_local == 1
        res = residual.copy()
        out = np.zeros_like(res)
        with pytest.raises(moecomm.InvalidArgument) as e:  # fp32 is not a norm dtype
            tp.all_reduce_rmsnorm(xs[0].astype(np.float32), res.astype(np.float32),
                                  weight.astype(np.float32), 1e-6)
        assert "BFLOAT16 or MOECOMM_FLOAT16" in e.value.message
        with pytest.raises(moecomm.InvalidArgument) as e:
            tp.all_reduce_rmsnorm(xs[0], res, weight, -1.0, out=out)
        assert "eps" in e.value.message
        # rows the fused kernels do not take (12 elements) run unfused: the same definition
        x12, r12, w12 = _rms_inputs(1, 2, 12, BF16, 4)
        want12_res, want12_y, _, _ = rmsnorm(x12, r12, w12, 1e-6, BF16)
        y12 = tp.all_reduce_rmsnorm(x12[0], r12, w12, 1e-6)
        assert np.array_equal(_bits(y12), _bits(want12_y)) and np.array_equal(_bits(r12),
                                                                              _bits(want12_res))
        with pytest.raises(TypeError):
            tp.all_reduce_rmsnorm(xs[0], res, weight.astype(np.float16), 0.0, out=out)
        with pytest.raises(ValueError, match="not rows of"):
            tp.all_reduce_rmsnorm(xs[0], res, np.ones(24, BF16), 0.0, out=out)
        with pytest.raises(ValueError, match="residual"):
            tp.all_reduce_rmsnorm(xs[0], res[:2], weight, 0.0, out=out)
        assert np.array_equal(_bits(res), _bits(residual)) and not out.any()


# ---- group rank lists and the configuration table (no context) ----

TOPOLOGIES = [
    Topo(8, 8, ep=2), Topo(8, 8, ep=4, moe_dp=2, attn_cp=2), Topo(8, 4, pp=2),
    Topo(8, 8, attn_dp=2, attn_cp=2), Topo(4, 4, ep=4, attn_cp=2), Topo(8, 2, pp=2, ep=2),
    Topo(1, 1),
]


@pytest.mark.parametrize("t", TOPOLOGIES, ids=lambda t: "world%d-" % t.world + "-".join(
    "%s%d" % kv for kv in t.as_dict().items() if kv[1] != 1))
def test_group_ranks_match_design(t: Topo) -> None:
    for rank in range(t.world):
        for kind in KINDS:
            assert moecomm.group_ranks(t.as_dict(), t.world, kind, rank) == \
                t.group_of(kind, rank), (kind, rank)


def test_group_ranks_errors() -> None:
    with pytest.raises(moecomm.ConfigError) as e:
        moecomm.group_ranks({"tp": 3, "ep": 2}, 3, "MOE_EP", 0)
    assert "ep=2" in e.value.message and "tp=3" in e.value.message
    with pytest.raises(moecomm.ConfigError) as e:
        moecomm.group_ranks({"tp": 2}, 2, "TP", 2)
    assert "rank=2" in e.value.message
    with pytest.raises(ValueError, match="group kind"):
        moecomm.group_ranks({"tp": 2}, 2, "EXPERTS", 0)


def test_config_table() -> None:
    table = moecomm.config_vars()
    names = [v.name for v in table]
    assert len(names) == len(set(names)) >= 10, names
    for v in table:
        assert v.name.startswith("MOECOMM_") and v.range and v.help, v
        assert v.type in ("choice", "int", "bytes", "bool", "text", "host"), v
    by = {v.name: v for v in table}
    assert (by["MOECOMM_TIMEOUT_MS"].type, by["MOECOMM_TIMEOUT_MS"].default) == ("int", "60000")
    assert by["MOECOMM_DETERMINISTIC"].type == "bool"
    assert by["MOECOMM_PLUGIN"].type == "host"
    r = subprocess.run([sys.executable, "-m", "moecomm", "info"], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    for v in table:
        assert "  %s " % v.name in r.stdout and v.help in r.stdout, v.name


# ---- stats, point to point, all-to-all ----

def _stats_rank(rank: int, world: int, ag: Any) -> Any:
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device="cpu") as ctx:
        x = array.array("f", [float(rank + 1)] * 5)
        ctx.group("TP").all_reduce(x, out=x)
        ctx.group("TP").all_reduce(x, out=x)
        ctx.group("PP").all_reduce(x, out=x)  # a group of one: a local copy
        tp, pp = ctx.group("TP").stats(), ctx.group("PP").stats()
        barrier(ctx)
        return (tp.ops, tp.ops_shm, tp.ops_local, pp.ops, pp.ops_local, pp.ops_shm,
                tp.ops_nccl + tp.ops_custom, tp.moe_max_tokens, x[0])


def test_stats_count_per_backend() -> None:
    for got in run_ranks(2, _stats_rank):
        assert got == (2, 2, 0, 1, 1, 0, 0, 0, 6.0), got


def test_p2p_and_all_to_all_on_a_group_of_one() -> None:
    with _one(deterministic=True) as ctx:
        tp = ctx.group("TP")
        x = np.arange(1, 13, dtype=np.float32)
        buf = np.full(12, -7.0, np.float32)
        with pytest.raises(moecomm.InvalidArgument) as e:
            tp.send(x, 0)
        assert "peer 0" in e.value.message
        with pytest.raises(moecomm.InvalidArgument) as e:
            tp.recv(buf, 1)
        assert "peer 1" in e.value.message and (buf == -7).all()
        with pytest.raises(TypeError):
            tp.send(x, "0")  # type: ignore[arg-type]
        y = tp.all_to_all(x)
        assert y is not x and np.array_equal(y, x)
        out = np.full(20, -1.0, np.float32)
        tp.all_to_all_v(x, [5], out, [5], send_displs=[4], recv_displs=[10])
        assert np.array_equal(out[10:15], x[4:9]) and (out[:10] == -1).all() and \
            (out[15:] == -1).all()
        with pytest.raises(moecomm.InvalidArgument) as e:  # sends itself 5, expects 4
            tp.all_to_all_v(x, [5], out, [4])
        assert "must agree" in e.value.message
        with pytest.raises(ValueError, match="ends past"):
            tp.all_to_all_v(x, [13], out, [13])
        with pytest.raises(ValueError, match="1 non-negative ints"):
            tp.all_to_all_v(x, [5, 5], out, [5])
        with pytest.raises(moecomm.InvalidArgument) as e:  # overlapping
            tp.all_to_all(x, out=x)
        assert "overlap" in e.value.message
        st = tp.stats()
        assert st.ops_local == st.ops == 2, st


# ---- expert parallelism: configure, and the arguments ----

def test_moe_configure_and_arguments() -> None:
    with _one() as ctx:
        ep, tp = ctx.group("MOE_EP"), ctx.group("TP")
        x = np.ones((3, 16), BF16)
        ids = np.zeros((3, 2), np.int32)
        with pytest.raises(moecomm.StateError, match="moe_configure first"):
            ep.moe_dispatch(x, ids)
        with pytest.raises(moecomm.InvalidArgument) as e:
            tp.moe_configure(4, 2, 16)
        assert "MOE_EP" in e.value.message
        for kw, needle in ((dict(top_k=0), "top_k"), (dict(top_k=33), "top_k"),
                           (dict(hidden=0), "hidden"), (dict(num_experts=0), "num_experts"),
                           (dict(max_tokens=-1), "max_tokens"),
                           (dict(dtype="float8_e4m3"), "num_scales"),
                           (dict(num_scales=2), "num_scales")):
            args: Dict[str, Any] = dict(num_experts=4, top_k=2, hidden=16)
            args.update(kw)
            with pytest.raises(moecomm.InvalidArgument) as e:
                ep.moe_configure(**args)
            assert needle in e.value.message, (kw, e.value.message)
        with pytest.raises(ValueError, match="dtype"):
            ep.moe_configure(4, 2, 16, dtype="int32")
        assert ep.moe_config is None and ep.stats().moe_max_tokens == 0
        cfg = ep.moe_configure(4, 2, 16, max_tokens=8)
        assert (cfg.max_tokens, cfg.expert_capacity, cfg.local_experts) == (8, 8, 4), cfg
        assert ep.moe_configure(4, 2, 16, max_tokens=8) == cfg  # the same again: nothing
        st = ep.stats()
        assert (st.moe_max_tokens, st.moe_expert_capacity) == (8, 8)
        cfg = ep.moe_configure(4, 2, 16)  # before any dispatch: another shape is taken
        assert cfg.max_tokens == int(os.environ.get("MOECOMM_EP_MAX_TOKENS", "256"))
        with pytest.raises(ValueError, match="topk_ids has 3 elements, 6 expected"):
            ep.moe_dispatch(x, ids[:, :1].copy())
        with pytest.raises(TypeError, match="configured for bfloat16"):
            ep.moe_dispatch(x.astype(np.float32), ids)
        try:
            d = ep.moe_dispatch(x, ids)
        except moecomm.NotSupported as e:  # no backend of a CPU context dispatches yet
            assert "moe_dispatch" in e.message
            return
        assert d.recv_x.shape == (4, cfg.expert_capacity, 16) and d.handle.num_tokens == 3
        out = ep.moe_combine(d.handle, d.recv_x, np.full((3, 2), 0.5, np.float32))
        assert out.shape == (3, 16)
        with pytest.raises(moecomm.StateError):
            ep.moe_combine(d.handle, d.recv_x, np.full((3, 2), 0.5, np.float32))


# ---- a plugin negotiated at 1.1 (a process of its own: negotiation is process-wide) ----

_V11_SCRIPT = r'''
import sys, moecomm
from moecomm import _abi, _loader, __main__ as cli
_loader._plugin = _loader.load(max_version=_abi.ABI_1_1)
assert moecomm.plugin().version == _abi.ABI_1_1
for call in (lambda: moecomm.group_ranks({"tp": 2}, 2, "TP", 0), moecomm.config_vars,
             lambda: moecomm.Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b], device="cpu",
                                     deterministic=True)):
    try:
        call()
        sys.exit("no NotSupported")
    except moecomm.NotSupported as e:
        print("refused:", e.message)
with moecomm.Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b], device="cpu") as ctx:
    assert ctx.info().abi_version == "1.1"
    try:
        ctx.group("TP").all_to_all(bytearray(8))
        sys.exit("no NotSupported")
    except moecomm.NotSupported as e:
        print("refused:", e.message)
table = cli.group_table({"tp": 4, "ep": 2}, 4)  # the fallback: CPU ranks reading group stats
print("MOE_EP of rank 3:", table[3][5])
'''


def test_plugin_negotiated_at_1_1() -> None:
    r = subprocess.run([sys.executable, "-c", _V11_SCRIPT], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MOECOMM_TIMEOUT_MS="15000"))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    refused = [ln for ln in lines if ln.startswith("refused:")]
    assert len(refused) == 4 and all("ABI 1.1 negotiated" in ln or "needs ABI 1.2" in ln
                                     for ln in refused), lines
    assert "MOE_EP of rank 3: [1, 3]" in lines, lines
