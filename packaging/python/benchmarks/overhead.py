# SPDX-License-Identifier: Apache-2.0
"""Python overhead of moecomm's per-call path, against the same call through raw ctypes.

    python packaging/python/benchmarks/overhead.py --cpu             # shm, world 1 (any machine)
    python packaging/python/benchmarks/overhead.py                   # GPU 0, world 1
    python packaging/python/benchmarks/overhead.py --ranks 2         # 2 GPUs (rank 0 reports)

Each number is the median over --repeats rounds of the host time per call of --calls calls in a
row (perf_counter; the device is synchronised after each round, outside the timing), for an
all-reduce of --bytes (default 1 KB) in place:
  package      group.all_reduce(x, out=x)                      (buffer, dtype, device, stream
                                                                resolved per call)
  package+s    the same with stream= an int handle             (no torch stream lookup)
  raw ctypes   api.all_reduce(handle, ptr, ptr, n, dtype, op, stream) with every argument
               precomputed: the C path as a ctypes engine would call it
  torch.dist   torch.distributed.all_reduce(x) on NCCL (GPU only; world 1 is NCCL's own)
overhead = package - raw ctypes, the Python this package adds (target: <= 3 us).  A world of one
is a copy in the plugin, so the absolute times are mostly launch cost; the difference is what
matters.  On GPUs also: replay time of a CUDA graph of K all-reduces captured through the package
vs captured through raw ctypes (capture_begin/end on the raw table): equal when the package adds
nothing inside graphs.  Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import moecomm  # noqa: E402


def per_call_us(fn: Callable[[], Any], calls: int, repeats: int, sync: Callable[[], Any]) -> float:
    for _ in range(min(calls, 200)):
        fn()
    sync()
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        t1 = time.perf_counter()
        sync()
        rounds.append((t1 - t0) / calls * 1e6)
    return statistics.median(rounds)


def cpu_case(a: argparse.Namespace) -> Dict[str, float]:
    import array
    api = moecomm.plugin().api
    n = a.bytes // 4
    with moecomm.Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b], device="cpu") as ctx:
        g = ctx.group("TP")
        out: Dict[str, float] = {}
        buffers: Dict[str, Any] = {"array.array": array.array("f", [1.0] * n)}
        try:
            import numpy
            buffers["numpy"] = numpy.ones(n, numpy.float32)
        except ImportError:
            pass
        if "torch" in sys.modules or a.torch:
            import torch
            buffers["torch"] = torch.ones(n)

        def nothing() -> None:
            pass
        for name, x in buffers.items():
            out["package " + name] = per_call_us(lambda: g.all_reduce(x, out=x), a.calls,
                                                 a.repeats, nothing)
        h, ptr = g._h, moecomm._buffers.describe(buffers["array.array"])[0]
        fn = api.all_reduce
        out["raw ctypes"] = per_call_us(lambda: fn(h, ptr, ptr, n, 0, 0, None), a.calls,
                                        a.repeats, nothing)
    return out


def _graph_us(torch: Any, ctx: Any, fn: Callable[[], Any], capture: Any, k: int,
              replays: int) -> float:
    g, s = torch.cuda.CUDAGraph(), torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with capture(s):
        with torch.cuda.graph(g, stream=s):
            for _ in range(k):
                fn()
    g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / replays / k


def gpu_rank(rank: int, world: int, ag: Any, a: argparse.Namespace) -> Dict[str, float]:
    import contextlib

    import torch
    import torch.distributed as dist
    torch.cuda.set_device(rank)
    api = moecomm.plugin().api
    n = a.bytes // 2
    out: Dict[str, float] = {}
    with moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device=rank) as ctx:
        g = ctx.group("TP")
        x = torch.ones(n, dtype=torch.bfloat16, device="cuda")
        sync = torch.cuda.synchronize
        stream = torch.cuda.current_stream().cuda_stream
        out["package"] = per_call_us(lambda: g.all_reduce(x, out=x), a.calls, a.repeats, sync)
        out["package+s"] = per_call_us(lambda: g.all_reduce(x, out=x, stream=stream), a.calls,
                                       a.repeats, sync)
        h, ptr, fn = g._h, x.data_ptr(), api.all_reduce
        out["raw ctypes"] = per_call_us(lambda: fn(h, ptr, ptr, n, 2, 0, stream), a.calls,
                                        a.repeats, sync)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(a.port))
        dist.init_process_group("nccl", rank=rank, world_size=world)
        out["torch.dist"] = per_call_us(lambda: dist.all_reduce(x), a.calls, a.repeats, sync)
        dist.destroy_process_group()

        @contextlib.contextmanager
        def raw_capture(s: Any) -> Any:
            api.capture_begin(ctx._h, s.cuda_stream)
            yield
            api.capture_end(ctx._h, s.cuda_stream)

        y = torch.empty_like(x)
        out["graph package"] = _graph_us(torch, ctx, lambda: g.all_reduce(x, out=y),
                                         lambda s: ctx.capture(stream=s), a.graph_ops, a.replays)
        out["graph raw"] = _graph_us(
            torch, ctx, lambda: fn(h, ptr, y.data_ptr(), n, 2, 0,
                                   torch.cuda.current_stream().cuda_stream),
            raw_capture, a.graph_ops, a.replays)
        w = torch.zeros(1, device="cuda")
        ctx.group("WORLD").all_reduce(w, out=w)
        torch.cuda.synchronize()
    return out


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="shm context of one rank")
    ap.add_argument("--torch", action="store_true", help="--cpu: also torch CPU tensors")
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--bytes", type=int, default=1024)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--graph-ops", type=int, default=20)
    ap.add_argument("--replays", type=int, default=100)
    ap.add_argument("--port", type=int, default=29517)
    a = ap.parse_args(argv)
    if a.cpu:
        res = cpu_case(a)
        where = "CPU, shm, world 1"
    else:
        res = moecomm.launch(a.ranks, gpu_rank, a, start_method="spawn", timeout=600)[0]
        where = "GPU, world %d" % a.ranks
    raw = res["raw ctypes"]
    print("moecomm Python overhead: all_reduce of %d bytes in place, %s (%s)" % (
        a.bytes, where, moecomm.plugin().path))
    print("%-22s %10s %12s" % ("path", "us/call", "vs raw"))
    for name, us in res.items():
        extra = "%+10.2f us" % (us - raw) if not name.startswith("graph") else ""
        print("%-22s %10.2f %12s" % (name, us, extra))
    print(json.dumps({"where": where, "bytes": a.bytes, "us_per_call": res,
                      "commit": os.environ.get("BENCH_COMMIT", "")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
