# SPDX-License-Identifier: Apache-2.0
"""The GPU part of the suite: CUDA tensors through every collective, the default and explicit
streams, device checks, and CUDA graph capture through ``ctx.capture()`` around
``torch.cuda.graph``, replayed with new inputs.  Needs torch and CUDA devices; skipped visibly
otherwise (a failure instead when MC_TEST_REQUIRE_GPU=1 finds no device).

Runs under pytest (``-m gpu``) or, on a GPU machine without pytest, as a script with its own
small runner (``python tests/test_gpu.py``), which prints the same TESTSUM line.  Ranks are
spawned (not forked): each initialises CUDA itself.  Needs only torch (no numpy).
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, List

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))

import moecomm  # noqa: E402

try:
    import pytest
    pytestmark = pytest.mark.gpu
    _SkipBase: Any = pytest.skip.Exception
except ImportError:  # the script runner below
    pytest = None  # type: ignore[assignment]

    class _SkipBase(Exception):  # type: ignore[no-redef]
        pass


def _skip(why: str) -> None:
    if pytest is not None:
        pytest.skip(why)
    raise _SkipBase(why)


def _gpus(need: int) -> int:
    """Visible CUDA devices, or a skip (a failure under MC_TEST_REQUIRE_GPU=1)."""
    try:
        import torch
    except ImportError:
        _skip("torch is not installed")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0 and os.environ.get("MC_TEST_REQUIRE_GPU") == "1":
        raise AssertionError("MC_TEST_REQUIRE_GPU=1 but torch sees no CUDA device")
    if n < need:
        _skip("needs %d CUDA device(s), torch sees %d" % (need, n))
    return n


def _world() -> int:
    return min(_gpus(1), 4)


def _ranks(world: int, fn: Callable[..., Any], *args: Any) -> List[Any]:
    return moecomm.launch(world, fn, *args, start_method="spawn", timeout=300,
                          env={"MOECOMM_TIMEOUT_MS": "60000"})


def _data(torch: Any, rank: int, rnd: int, n: int) -> Any:
    g = torch.Generator().manual_seed(7919 * rank + rnd)
    v = torch.randint(-4, 4, (n,), generator=g)
    return torch.where(v >= 0, v + 1, v)


def _colls_rank(rank: int, world: int, ag: Any) -> int:
    import torch
    torch.cuda.set_device(rank)
    checks = 0
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device=rank) as ctx:
        assert ctx.device == rank
        g = ctx.group("TP")
        side = torch.cuda.Stream()
        for rnd, dt in enumerate([torch.float32, torch.float16, torch.bfloat16, torch.int32]):
            for n in (1, 1000, 300000):
                peers = [_data(torch, r, rnd, n * world) for r in range(world)]
                total = torch.stack(peers).sum(0)
                x = peers[rank].to(dt).cuda()
                y = g.all_reduce(x)  # current stream
                out = torch.full_like(x, -77)
                side.wait_stream(torch.cuda.current_stream())  # x is ready on side too
                with torch.cuda.stream(side):  # explicit stream object, waited on below
                    g.all_reduce(x, out=out, stream=side)
                torch.cuda.current_stream().wait_stream(side)
                gathered = g.all_gather(x[:n])
                rs = g.reduce_scatter(x)
                b = x.clone() if rank == 0 else torch.zeros_like(x)
                g.broadcast(b, root=0, stream=torch.cuda.current_stream().cuda_stream)
                g.all_reduce(x, out=x, op="max")  # in place
                torch.cuda.synchronize()
                assert torch.equal(y.cpu().long(), total), (dt, n)
                assert torch.equal(out.cpu().long(), total), (dt, n)
                assert torch.equal(gathered.cpu().long(), torch.cat([p[:n] for p in peers]))
                assert torch.equal(rs.cpu().long(), total[rank * n:(rank + 1) * n])
                assert torch.equal(b.cpu().long(), peers[0])
                assert torch.equal(x.cpu().long(), torch.stack(peers).max(0).values)
                checks += 6
        try:
            g.all_reduce(torch.ones(4))
        except ValueError as e:
            assert "host memory" in str(e) and "GPU %d" % rank in str(e), str(e)
            checks += 1
        else:
            raise AssertionError("a CPU tensor on a GPU context was accepted")
        if torch.cuda.device_count() > 1:
            other = (rank + 1) % torch.cuda.device_count()
            try:
                g.all_reduce(torch.ones(4, device="cuda:%d" % other))
            except ValueError as e:
                assert "GPU %d" % other in str(e), str(e)
                checks += 1
        barrier = torch.zeros(1, device="cuda")
        ctx.group("WORLD").all_reduce(barrier, out=barrier)
        torch.cuda.synchronize()
    return checks


def test_cuda_collectives() -> None:
    world = _world()
    assert min(_ranks(world, _colls_rank)) > 0


def _graph_rank(rank: int, world: int, ag: Any) -> int:
    import torch
    torch.cuda.set_device(rank)
    topo = {"tp": world, "ep": 2 if world % 2 == 0 else 1}
    with moecomm.Context(topo, rank, world, bootstrap=ag, device=rank) as ctx:
        tp, ep = ctx.group("TP"), ctx.group("MOE_EP")
        n = 4096
        x = torch.zeros(n, dtype=torch.bfloat16, device="cuda")
        y = torch.empty_like(x)
        z = torch.empty(n * ep.size, dtype=torch.bfloat16, device="cuda")
        tp.all_reduce(x, out=y)  # eager warm-up: communicators exist before capture
        ep.all_gather(x, out=z)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with ctx.capture(stream=s):
            with torch.cuda.graph(g, stream=s):
                tp.all_reduce(x, out=y)  # default stream inside: torch's capture stream
                ep.all_gather(y, out=z)
        checks = 0
        for rnd in range(3):  # replays with new inputs
            peers = [_data(torch, r, 100 + rnd, n) for r in range(world)]
            x.copy_(peers[rank].to(torch.bfloat16))
            g.replay()
            torch.cuda.synchronize()
            total = torch.stack(peers).sum(0)
            assert torch.equal(y.cpu().long(), total), rnd
            assert torch.equal(z.cpu().long(), total.repeat(ep.size)), rnd
            checks += 2
        # An exception inside the capture still ends the scope; the context stays usable.
        g2 = torch.cuda.CUDAGraph()
        try:
            with ctx.capture(stream=s):
                with torch.cuda.graph(g2, stream=s):
                    tp.all_reduce(x, out=y)
                    raise KeyError("model code failed")
        except KeyError:
            checks += 1
        except moecomm.CaptureError:
            checks += 1  # every rank raised the same way, so the counts may still differ
        w = tp.all_reduce(torch.ones(8, device="cuda"))
        torch.cuda.synchronize()
        assert torch.equal(w.cpu(), torch.full((8,), float(world)))
        assert tp.stats().ops > 0
    return checks + 1


def test_graph_capture_replay() -> None:
    world = _world()
    assert min(_ranks(world, _graph_rank)) > 0


def _scatter_rank(rank: int, world: int, ag: Any) -> int:
    import torch
    torch.cuda.set_device(rank)
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device=rank) as ctx:
        tokens, hidden = 4 * world, 8
        full = torch.arange(tokens * hidden, dtype=torch.float32, device="cuda")
        full = full.reshape(tokens, hidden)
        part = ctx.scatter(full, None, "TP_ATTN_FULL", "SCATTERED", tokens)
        back = ctx.scatter(part, None, "SCATTERED", "TP_ATTN_FULL", tokens)
        torch.cuda.synchronize()
        n = tokens // world
        assert torch.equal(part, full[rank * n:(rank + 1) * n])
        assert torch.equal(back, full)
    return 2


def test_cuda_scatter() -> None:
    world = _world()
    assert min(_ranks(world, _scatter_rank)) > 0


def _main() -> int:
    """Runs this module's tests without pytest; prints TESTSUM."""
    passed = failed = skipped = 0
    for name, fn in sorted(globals().items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
        except _SkipBase as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e))
        except Exception:
            failed += 1
            print("FAIL %s\n%s" % (name, traceback.format_exc()))
        else:
            passed += 1
            print("PASS %s" % name)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    print("TESTSUM %d %d %d" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
