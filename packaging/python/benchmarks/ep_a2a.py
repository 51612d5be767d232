# SPDX-License-Identifier: Apache-2.0
"""torch.distributed.all_to_all_single carrying the rows of bench/ep.c's dispatch and combine.

    python packaging/python/benchmarks/ep_a2a.py --json BUILD/bench-results/ep-<date>.json

bench/run-ep.sh runs it right after bench/ep.c (`make bench-ep`) when torch is importable.  It
reads that run's JSON: the world size and, per (shape, tokens per rank), how many rows each rank
sends each rank in the dispatch (a token once per destination rank that holds one of its
experts, hidden bf16 each) and in the combine (one row per (token, k)).  One process per GPU,
NCCL process group; per entry two all_to_all_single calls with exactly those splits (the rows a
rank keeps included, as moecomm copies them too).  Method as bench/ep.c: each call timed in a
CUDA graph of 20 of them (torch.cuda.graph), 3 warm-up + 15 timed replays between two events, the
median replay / 20; when a graph cannot be captured (an old NCCL or torch) 20 eager calls between
the events instead, noted as "eager".  Each received block is checked (every element carries its
sender).  The medians of the worse rank go back into the same JSON under "torch", and a table
puts them next to moecomm's NVLink numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import queue as queue_mod
from typing import Any, Callable, Dict, List, Tuple

CALLS = 20
WARMUP = 3
REPLAYS = 15


def time_calls(torch: Any, fn: Callable[[], Any]) -> Tuple[float, str]:
    """Median microseconds per call of fn, from a graph of CALLS calls (else eager)."""
    def eager() -> None:
        for _ in range(CALLS):
            fn()

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    run: Callable[[], Any] = eager
    method = "eager"
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            eager()
        run, method = g.replay, "graph"
    except Exception:  # any capture failure means: measure eagerly
        torch.cuda.synchronize()
    times: List[float] = []
    for rep in range(WARMUP + REPLAYS):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        if rep >= WARMUP:
            times.append(a.elapsed_time(b) * 1000.0 / CALLS)
    return statistics.median(times), method


def one_a2a(torch: Any, dist: Any, rows: List[List[int]], hidden: int, rank: int,
            world: int) -> Tuple[float, str, int]:
    """all_to_all_single of rows[rank][d] rows to each d: (us per call, method, wrong)."""
    send_split = rows[rank]
    recv_split = [rows[q][rank] for q in range(world)]
    x = torch.empty((sum(send_split), hidden), dtype=torch.bfloat16, device="cuda")
    x.fill_(float(rank + 1))
    y = torch.empty((sum(recv_split), hidden), dtype=torch.bfloat16, device="cuda")
    y.fill_(-1.0)
    dist.all_to_all_single(y, x, recv_split, send_split)
    torch.cuda.synchronize()
    wrong, at = 0, 0
    for q in range(world):  # block q holds rank q's rows, every element q + 1
        block = y[at:at + recv_split[q]]
        wrong += int((block != float(q + 1)).sum().item())
        at += recv_split[q]
    us, method = time_calls(torch, lambda: dist.all_to_all_single(y, x, recv_split, send_split))
    return us, method, wrong


def rank_main(rank: int, world: int, results: List[Dict[str, Any]], port: int,
              queue: Any) -> None:
    import torch
    import torch.distributed as dist
    torch.cuda.set_device(rank)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    dist.init_process_group("nccl", rank=rank, world_size=world)
    out = []
    for r in results:
        d_us, d_m, d_w = one_a2a(torch, dist, r["dispatch_rows"], r["hidden"], rank, world)
        c_us, c_m, c_w = one_a2a(torch, dist, r["combine_rows"], r["hidden"], rank, world)
        out.append({"dispatch_us": d_us, "combine_us": c_us, "method": d_m + "/" + c_m,
                    "wrong": d_w + c_w})
    dist.destroy_process_group()
    queue.put((rank, out, torch.__version__))


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", required=True, help="bench/ep.c's JSON (updated in place)")
    ap.add_argument("--port", type=int, default=29533)
    a = ap.parse_args(argv)
    with open(a.json) as f:
        doc = json.load(f)
    world, results = int(doc["world"]), doc["results"]
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, world, results, a.port, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    got: Dict[int, Any] = {}
    version = "?"
    while len(got) < world:
        try:
            rank, out, version = queue.get(timeout=5)
            got[rank] = out
        except queue_mod.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                break
    for p in procs:
        p.join(timeout=60)
    if len(got) < world or any(p.exitcode != 0 for p in procs):
        print("ep_a2a: a rank failed (exit codes %s)" % [p.exitcode for p in procs])
        for p in procs:
            if p.is_alive():
                p.kill()
        return 1
    wrong = 0
    print("\ntorch %s all_to_all_single, the same rows, %d rank(s); us per call, worse rank"
          % (version, world))
    print("%-12s %6s | %10s %10s | %10s %10s | %6s %s" % (
        "shape", "tokens", "a2a disp", "a2a comb", "nvl disp", "nvl comb", "#wrong", "method"))
    for i, r in enumerate(results):
        t = {k: max(got[q][i][k] for q in range(world)) for k in ("dispatch_us", "combine_us")}
        t["wrong"] = sum(got[q][i]["wrong"] for q in range(world))
        t["method"] = got[0][i]["method"]
        r["torch"] = t
        wrong += t["wrong"]
        print("%-12s %6d | %10.1f %10.1f | %10.1f %10.1f | %6d %s" % (
            r["shape"], r["tokens_per_rank"], t["dispatch_us"], t["combine_us"],
            r["nvlink"]["dispatch_us"], r["nvlink"]["combine_us"], t["wrong"], t["method"]))
    doc["torch_version"] = version
    doc["torch_method"] = ("all_to_all_single with the rows of each dispatch and combine; graph "
                           "of %d calls, %d warm-up + %d timed replays, median per call, worse "
                           "rank" % (CALLS, WARMUP, REPLAYS))
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
    print("updated %s" % a.json)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
