# SPDX-License-Identifier: Apache-2.0
"""torch on CPU ranks (shm): CPU tensors of every dtype, shapes of allocated outputs, torch's
errors, and the two torch bootstraps (a gloo process group, a TCPStore).  Skipped visibly where
torch is not installed (CI); tests/test_gpu.py has the CUDA part."""

from __future__ import annotations

from typing import Any, List

import pytest
from conftest import barrier, free_port, run_ranks

import moecomm

torch = pytest.importorskip("torch", reason="torch is not installed (the CUDA part is test_gpu)")

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int32]


def _data(rank: int, rnd: int, n: int) -> Any:
    g = torch.Generator().manual_seed(1000 * rank + rnd)
    v = torch.randint(-4, 4, (n,), generator=g)
    return torch.where(v >= 0, v + 1, v)


def _tensor_rank(rank: int, world: int, ag: Any) -> int:
    checks = 0
    with moecomm.Context({"tp": world, "ep": 2}, rank, world, bootstrap=ag,
                         device="cpu") as ctx:
        for kind in ("TP", "MOE_EP", "MOE_TP"):
            g = ctx.group(kind)
            for rnd, dt in enumerate(DTYPES):
                n = 33
                peers = [_data(r, rnd, n * g.size) for r in g.ranks]
                mine = peers[g.rank].to(dt)
                total = torch.stack(peers).sum(0)
                y = g.all_reduce(mine[:n])
                assert y.dtype == dt and torch.equal(y.long(), total[:n])
                x = mine.clone()
                g.all_reduce(x, out=x, op="max")
                assert torch.equal(x.long(), torch.stack(peers).max(0).values)
                out = g.all_gather(mine[:n].reshape(n, 1))
                assert out.shape == (n * g.size, 1)
                assert torch.equal(out.reshape(-1).long(), torch.cat([p[:n] for p in peers]))
                rs = g.reduce_scatter(mine.reshape(g.size * n, 1))
                assert rs.shape == (n, 1)
                assert torch.equal(rs.reshape(-1).long(), total[g.rank * n:(g.rank + 1) * n])
                b = mine.clone() if g.rank == 0 else torch.zeros(n * g.size, dtype=dt)
                g.broadcast(b, root=0)
                assert torch.equal(b.long(), peers[0])
                checks += 5
        with pytest.raises(ValueError, match="not contiguous"):
            ctx.group("TP").all_reduce(torch.ones(4, 4).t())
        with pytest.raises(TypeError, match="supported dtypes are"):
            ctx.group("TP").all_reduce(torch.ones(4, dtype=torch.float64))
        p = torch.nn.Parameter(torch.ones(4))  # a Tensor subclass
        with torch.no_grad():
            ctx.group("TP").all_reduce(p, out=p)
        assert torch.equal(p.detach(), torch.full((4,), float(world)))
    return checks


def test_cpu_tensors() -> None:
    assert min(run_ranks(4, _tensor_rank)) > 0


def _gloo_rank(rank: int, world: int, ag: Any, port: int, use_store: bool) -> List[int]:
    import torch.distributed as dist
    if use_store:
        boot: Any = dist.TCPStore("127.0.0.1", port, world, rank == 0)
    else:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                                world_size=world)
        boot = dist.group.WORLD
    with moecomm.Context(moecomm.Topology(tp=world), rank, world, bootstrap=boot,
                         device="cpu") as ctx:
        x = torch.full((3,), rank + 1, dtype=torch.int32)
        ctx.group("TP").all_reduce(x, out=x)
        barrier(ctx)
        out = x.tolist()
    if not use_store:
        dist.destroy_process_group()
    return out


@pytest.mark.parametrize("use_store", [False, True], ids=["process_group", "tcp_store"])
def test_torch_bootstraps(use_store: bool) -> None:
    out = run_ranks(3, _gloo_rank, free_port(), use_store)
    assert out == [[6, 6, 6]] * 3
