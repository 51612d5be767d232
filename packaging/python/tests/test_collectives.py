# SPDX-License-Identifier: Apache-2.0
"""Every collective on every group of 2 and 4 shm ranks, every dtype, in and out of place, checked
exactly against inputs each rank regenerates for its peers; buffers of every accepted kind."""

from __future__ import annotations

import array
import ctypes
from typing import Any, Dict, List

import ml_dtypes
import numpy as np
import pytest
from conftest import barrier, run_ranks
from reference import KINDS, Topo, ints

import moecomm

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
          "int32": np.int32}
POISON = -99
TOPOS = {2: Topo(2, tp=2, ep=2), 4: Topo(4, tp=4, ep=2, attn_cp=2)}
COUNTS = (1, 7, 4099)


def _data(rank: int, rnd: int, n: int) -> np.ndarray:
    return ints((11, rank, rnd), (n,))


def _distinct_groups(ctx: moecomm.Context) -> List[moecomm.Group]:
    seen, out = set(), []
    for k in moecomm.GroupKind:
        g = ctx.group(k)
        if tuple(g.ranks) not in seen:
            seen.add(tuple(g.ranks))
            out.append(g)
    return out


def _all_reduce(g: moecomm.Group, dt: Any, n: int, rnd: int) -> int:
    peers = [_data(r, rnd, n) for r in g.ranks]
    x_ref = peers[g.rank]
    checks = 0
    for op, f in (("sum", np.sum), ("max", np.max), ("min", np.min)):
        want = f(np.stack(peers), axis=0)
        x = x_ref.astype(dt)
        out = np.full(n, POISON, dtype=dt)
        got = g.all_reduce(x, out=out, op=op)
        assert got is out
        np.testing.assert_array_equal(out.astype(np.float64), want, "%s %s" % (op, g))
        np.testing.assert_array_equal(x.astype(np.float64), x_ref, "send changed")
        g.all_reduce(x, out=x, op=op)  # in place
        np.testing.assert_array_equal(x.astype(np.float64), want, "in place %s %s" % (op, g))
        y = g.all_reduce(x_ref.astype(dt), op=op)  # out=None: a new array
        assert y.dtype == dt and y.shape == (n,)
        np.testing.assert_array_equal(y.astype(np.float64), want)
        checks += 3
    return checks


def _all_gather(g: moecomm.Group, dt: Any, n: int, rnd: int) -> int:
    peers = [_data(r, rnd, n) for r in g.ranks]
    want = np.concatenate(peers)
    x = peers[g.rank].astype(dt)
    out = np.full(n * g.size, POISON, dtype=dt)
    g.all_gather(x, out=out)
    np.testing.assert_array_equal(out.astype(np.float64), want)
    buf = np.full(n * g.size, POISON, dtype=dt)  # in place: x is this rank's block of out
    buf[g.rank * n:(g.rank + 1) * n] = peers[g.rank]
    g.all_gather(buf[g.rank * n:(g.rank + 1) * n], out=buf)
    np.testing.assert_array_equal(buf.astype(np.float64), want)
    y = g.all_gather(peers[g.rank].astype(dt).reshape(n, 1))
    assert y.shape == (n * g.size, 1)
    np.testing.assert_array_equal(y.reshape(-1).astype(np.float64), want)
    return 3


def _reduce_scatter(g: moecomm.Group, dt: Any, n: int, rnd: int) -> int:
    peers = [_data(r, rnd, n * g.size) for r in g.ranks]
    want = np.sum(np.stack(peers), axis=0)[g.rank * n:(g.rank + 1) * n]
    x = peers[g.rank].astype(dt)
    out = np.full(n, POISON, dtype=dt)
    g.reduce_scatter(x, out=out)
    np.testing.assert_array_equal(out.astype(np.float64), want)
    g.reduce_scatter(x, out=x[g.rank * n:(g.rank + 1) * n])  # in place
    np.testing.assert_array_equal(x[g.rank * n:(g.rank + 1) * n].astype(np.float64), want)
    y = g.reduce_scatter(peers[g.rank].astype(dt).reshape(g.size * n, 1), op="max")
    assert y.shape == (n, 1)
    top = np.max(np.stack(peers), axis=0)[g.rank * n:(g.rank + 1) * n]
    np.testing.assert_array_equal(y.reshape(-1).astype(np.float64), top)
    return 3


def _broadcast(g: moecomm.Group, dt: Any, n: int, rnd: int) -> int:
    checks = 0
    for root in sorted({0, g.size - 1}):
        want = _data(g.ranks[root], rnd, n)
        x = (want if g.rank == root else np.full(n, POISON)).astype(dt)
        g.broadcast(x, root=root)  # in place
        np.testing.assert_array_equal(x.astype(np.float64), want)
        out = np.full(n, POISON, dtype=dt)
        g.broadcast(want.astype(dt) if g.rank == root else np.zeros(n, dt), root=root, out=out)
        np.testing.assert_array_equal(out.astype(np.float64), want)
        checks += 2
    return checks


COLLECTIVES = {"all_reduce": _all_reduce, "all_gather": _all_gather,
               "reduce_scatter": _reduce_scatter, "broadcast": _broadcast}


def _collective_rank(rank: int, world: int, ag: Any, name: str) -> int:
    checks = 0
    with moecomm.Context(TOPOS[world].as_dict(), rank, world, bootstrap=ag, device="cpu") as ctx:
        rnd = 0
        for g in _distinct_groups(ctx):
            for dt in DTYPES.values():
                for n in COUNTS:
                    checks += COLLECTIVES[name](g, dt, n, rnd)
                    rnd += 1
    return checks


@pytest.mark.parametrize("name", sorted(COLLECTIVES))
@pytest.mark.parametrize("world", [2, 4])
def test_collective(world: int, name: str) -> None:
    checks = run_ranks(world, _collective_rank, name)
    assert all(c > 0 for c in checks)


def _groups_rank(rank: int, world: int, ag: Any, topo: Dict[str, int]) -> List[Any]:
    ref = Topo(world, **topo)
    with moecomm.Context(topo, rank, world, bootstrap=ag, device="cpu") as ctx:
        stats = {k: ctx.group(k).stats() for k in KINDS}
        for k in KINDS:
            g = ctx.group(k)
            assert g.ranks == ref.group_of(k, rank), (k, g.ranks, ref.group_of(k, rank))
            assert g.size == len(g.ranks) and g.ranks[g.rank] == rank and g.kind.name == k
            st = stats[k]
            assert st.kind_name == k and st.backend_name == "shm" and not st.created
            assert st.ops == 0 and st.device_bytes == 0
            for k2 in KINDS:  # one communicator per distinct rank list
                assert (st.comm_id == stats[k2].comm_id) == (st.ranks == stats[k2].ranks)
        tp = ctx.group("TP")
        x = np.ones(3, np.float32)
        tp.all_reduce(x, out=x)
        tp.all_reduce(x, out=x)
        after = tp.stats()
        assert after.ops == 2 and (after.created or after.size == 1)
        barrier(ctx)
        return [ctx.group(k).ranks for k in KINDS]


@pytest.mark.parametrize("world,topo", [
    (4, {"tp": 4, "ep": 2}), (4, {"tp": 4, "ep": 4, "attn_cp": 2}),
    (4, {"tp": 2, "pp": 2, "ep": 2}), (4, {"tp": 4, "attn_dp": 2, "ep": 2, "moe_dp": 2}),
    (2, {"tp": 2, "attn_cp": 2}), (2, {"tp": 1, "pp": 2})])
def test_group_ranks(world: int, topo: Dict[str, int]) -> None:
    lists = run_ranks(world, _groups_rank, topo)
    assert len(lists) == world


class _Interface:
    """A host array seen only through __array_interface__."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.__array_interface__ = a.__array_interface__


class _DLPackOnly:
    """An object seen only through DLPack."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __dlpack__(self, stream: Any = None) -> Any:
        return self.a.__dlpack__()

    def __dlpack_device__(self) -> Any:
        return self.a.__dlpack_device__()


def _kinds_rank(rank: int, world: int, ag: Any) -> int:
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device="cpu") as ctx:
        g = ctx.group("TP")
        peers = [_data(r, 5, 64) for r in range(world)]
        want = np.sum(np.stack(peers), axis=0)
        for wrap in (_Interface, _DLPackOnly):
            x = peers[rank].astype(np.float32)
            out = np.full(64, POISON, np.float32)
            g.all_reduce(wrap(x), out=wrap(out))
            np.testing.assert_array_equal(out, want, wrap.__name__)
        a = array.array("i", peers[rank].astype(np.int32).tolist())
        g.all_reduce(a, out=a)
        assert list(a) == want.astype(np.int32).tolist()
        f = array.array("f", peers[rank].tolist())
        y = g.all_reduce(f)  # out=None allocates an array.array
        assert isinstance(y, array.array) and list(y) == want.tolist()
        c = (ctypes.c_float * 64)(*peers[rank].tolist())
        g.all_reduce(c, out=c)
        assert list(c) == want.tolist()
        return 5


def test_buffer_kinds() -> None:
    assert run_ranks(2, _kinds_rank) == [5, 5]


def _store_rank(rank: int, world: int, ag: Any) -> List[int]:
    # bootstrap=None: MOECOMM_STORE (set in env by the test) instead of a host all-gather.
    with moecomm.Context({"tp": world}, rank, world, bootstrap=None, device="cpu") as ctx:
        x = np.full(5, rank + 1, np.int32)
        ctx.group("TP").all_reduce(x, out=x)
        return x.tolist()


def test_moecomm_store_bootstrap() -> None:
    from conftest import free_port
    env = {"MOECOMM_STORE": "tcp://127.0.0.1:%d" % free_port()}
    out = run_ranks(3, _store_rank, env=env)
    assert out == [[6] * 5] * 3


def _env_rank(rank: int, world: int, ag: Any) -> Any:
    # rank and world_size from MOECOMM_RANK / MOECOMM_WORLD_SIZE (moecomm.launch sets them).
    with moecomm.Context(moecomm.Topology(tp=world), bootstrap=ag, device="cpu") as ctx:
        info = ctx.info()
        barrier(ctx)
        return (info.rank, info.world_size, info.device, info.local_size, info.num_hosts,
                info.abi_version)


def test_context_info() -> None:
    out = run_ranks(2, _env_rank)
    assert [o[:2] for o in out] == [(0, 2), (1, 2)]
    assert all(o[2] == moecomm.DEVICE_CPU and o[3] == 2 and o[4] == 1 for o in out)
    assert out[0][5] == moecomm.plugin_info()["abi_negotiated"]
