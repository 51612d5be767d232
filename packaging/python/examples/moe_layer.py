# SPDX-License-Identifier: Apache-2.0
"""A MoE transformer block run sharded through moecomm, checked against the same block unsharded.

    python packaging/python/examples/moe_layer.py --ranks 4 --tp 4 --ep 2      # GPUs, else CPU

Block: h = x + Attention(RMSNorm(x)); y = h + MoE(RMSNorm(h)).  Attention heads are split over
the ATTN_TP group (q/k/v column shards, output-projection row shard: partial sums); the router
is replicated, experts are split over MOE_EP and each expert's FFN over MOE_TP (partial sums).
Hidden states move between layers in the scatter modes the plugin chooses (``ctx.layer_mode``)
with ``ctx.scatter(..., reduce=True)``, which sums the partial outputs.  Weights come from a
seed; every rank builds the same full weights and keeps its shards, and rank 0 also runs the
unsharded block on the same input as the reference (tolerance by dtype).  On GPUs the step also
runs as a CUDA graph captured through ``ctx.capture()`` around ``torch.cuda.graph`` and replayed
with new inputs.  Prints configuration, groups, eager vs graph time per step, tokens/s and the
memory each group's communicator holds.  Needs torch.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Dict, List

import torch

import moecomm

TOL = {torch.float32: 2e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def make_weights(a: argparse.Namespace, dtype: torch.dtype, device: Any) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(a.seed)
    H, F, E = a.hidden, a.ffn, a.experts

    def w(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dtype).to(device)
    return {"n1": 1 + w(H, scale=0.1), "n2": 1 + w(H, scale=0.1),
            "wq": w(H, H, scale=H ** -0.5), "wk": w(H, H, scale=H ** -0.5),
            "wv": w(H, H, scale=H ** -0.5), "wo": w(H, H, scale=H ** -0.5),
            "router": w(H, E, scale=H ** -0.5),
            "w1": w(E, H, F, scale=H ** -0.5), "w2": w(E, F, H, scale=F ** -0.5)}


def attention(x: torch.Tensor, W: Dict[str, torch.Tensor], heads: slice, hd: int) -> torch.Tensor:
    """Causal attention over the token batch with the heads in `heads`; returns the (partial)
    output projection of those heads."""
    cols = slice(heads.start * hd, heads.stop * hd)
    t = x.shape[0]
    q = (x @ W["wq"][:, cols]).view(t, -1, hd).transpose(0, 1)
    k = (x @ W["wk"][:, cols]).view(t, -1, hd).transpose(0, 1)
    v = (x @ W["wv"][:, cols]).view(t, -1, hd).transpose(0, 1)
    s = (q.float() @ k.float().transpose(1, 2)) / math.sqrt(hd)
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
    o = (s.softmax(-1) @ v.float()).to(x.dtype).transpose(0, 1).reshape(t, -1)
    return o @ W["wo"][cols, :]


def route(x: torch.Tensor, W: Dict[str, torch.Tensor], topk: int) -> Any:
    """Top-k experts of each token and their normalised weights (fp32 router)."""
    probs = (x.float() @ W["router"].float()).softmax(-1)
    top_w, top_i = probs.topk(topk, dim=-1)
    return top_w / top_w.sum(-1, keepdim=True), top_i


def moe(x: torch.Tensor, W: Dict[str, torch.Tensor], experts: range, ffn: slice,
        routing: Any) -> torch.Tensor:
    """MoE over the local experts and the local slice of their FFN (a partial sum).  Dense per
    expert (masked weights), so shapes never depend on routing: graph-capturable."""
    top_w, top_i = routing
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in experts:
        gate = (top_w * (top_i == e)).sum(-1, keepdim=True)  # 0 for tokens not routed to e
        h = torch.nn.functional.silu(x @ W["w1"][e][:, ffn]) @ W["w2"][e][ffn, :]
        out += gate * h.float()
    return out.to(x.dtype)


def reference(x: torch.Tensor, W: Dict[str, torch.Tensor], a: argparse.Namespace,
              routing: Any = None) -> Any:
    """The unsharded block, and the routing it chose.  `routing` given: use it instead, so a
    token whose top-k is a near tie (the sharded sums round differently) is still compared."""
    hd = a.hidden // a.heads
    h = x + attention(rmsnorm(x, W["n1"]), W, slice(0, a.heads), hd)
    hn = rmsnorm(h, W["n2"])
    own = route(hn, W, a.topk)
    y = h + moe(hn, W, range(a.experts), slice(0, a.ffn), routing if routing is not None else own)
    return y, own


class ShardedBlock:
    def __init__(self, ctx: moecomm.Context, W: Dict[str, torch.Tensor],
                 a: argparse.Namespace) -> None:
        self.ctx, self.W, self.a = ctx, W, a
        at, ep, mt = ctx.group("ATTN_TP"), ctx.group("MOE_EP"), ctx.group("MOE_TP")
        hpr = a.heads // at.size
        self.heads = slice(at.rank * hpr, (at.rank + 1) * hpr)
        epr = a.experts // ep.size
        self.experts = range(ep.rank * epr, (ep.rank + 1) * epr)
        fpr = a.ffn // mt.size
        self.ffn = slice(mt.rank * fpr, (mt.rank + 1) * fpr)
        self.attn_mode = ctx.layer_mode("attention")
        self.moe_mode = ctx.layer_mode("sparse_moe")
        self.hd = a.hidden // a.heads

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ctx, W, T = self.ctx, self.W, self.a.tokens
        part = attention(rmsnorm(x, W["n1"]), W, self.heads, self.hd)
        attn = ctx.scatter(part, None, self.attn_mode, self.moe_mode, T, reduce=True)
        h = x + attn
        hn = rmsnorm(h, W["n2"])
        self.routing = route(hn, W, self.a.topk)  # replicated: the same on every rank
        part = moe(hn, W, self.experts, self.ffn, self.routing)
        out = ctx.scatter(part, None, self.moe_mode, self.attn_mode, T, reduce=True)
        return h + out


def _time(fn: Any, steps: int, cuda: bool) -> float:
    fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def rank_main(rank: int, world: int, ag: Any, a: argparse.Namespace) -> Dict[str, Any]:
    cuda = a.device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(1)  # ranks share the CPU cores
    dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
    dtype = getattr(torch, a.dtype)
    topo = moecomm.Topology(tp=a.tp, ep=a.ep)
    res: Dict[str, Any] = {}
    with moecomm.Context(topo, rank, world, bootstrap=ag, device=rank if cuda else "cpu") as ctx:
        W = make_weights(a, dtype, dev)
        block = ShardedBlock(ctx, W, a)
        gen = torch.Generator().manual_seed(a.seed + 1)
        x = torch.randn(a.tokens, a.hidden, generator=gen).to(dtype).to(dev)
        y = block(x)
        ref, own = reference(x, W, a, block.routing)
        res["err"] = float((y.float() - ref.float()).abs().max() / ref.float().abs().max())
        res["rerouted"] = int((own[1].sort(-1).values != block.routing[1].sort(-1).values)
                              .any(-1).sum())
        res["eager_s"] = _time(lambda: block(x), a.steps, cuda)
        if cuda:
            static_x = x.clone()
            g, s = torch.cuda.CUDAGraph(), torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with ctx.capture(stream=s):
                with torch.cuda.graph(g, stream=s):
                    static_y = block(static_x)
            x2 = torch.randn(a.tokens, a.hidden, generator=gen).to(dtype).to(dev)
            static_x.copy_(x2)
            g.replay()
            torch.cuda.synchronize()
            ref2, _ = reference(x2, W, a, block.routing)
            res["graph_err"] = float((static_y.float() - ref2.float()).abs().max() /
                                     ref2.float().abs().max())
            res["graph_s"] = _time(g.replay, a.steps, True)
        res["groups"] = {k.name: ctx.group(k).stats() for k in moecomm.GroupKind}
        res["modes"] = (block.attn_mode.name, block.moe_mode.name)
        res["info"] = ctx.info()
        w = torch.zeros(1, device=dev)  # every rank done before rank 0's store goes
        ctx.group("WORLD").all_reduce(w, out=w)
    return res


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--tp", type=int, default=0, help="default: --ranks")
    ap.add_argument("--ep", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--topk", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--dtype", default="", help="float32, bfloat16, float16 (default: bfloat16 "
                    "on GPUs, float32 on CPU)")
    a = ap.parse_args(argv)
    a.tp = a.tp or a.ranks
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() and \
            torch.cuda.device_count() >= a.ranks else "cpu"
    a.dtype = a.dtype or ("bfloat16" if a.device == "cuda" else "float32")
    if a.device == "cpu" and a.dtype == "float16":
        ap.error("torch has no float16 matmul on CPU: use float32 or bfloat16 there")
    for what, n, d in (("heads", a.heads, a.tp), ("experts", a.experts, a.ep),
                       ("ffn", a.ffn, a.tp // a.ep)):
        if n % d:
            ap.error("--%s %d must be a multiple of %d" % (what, n, d))
    print("moe_layer: %d ranks on %s (%s), tp=%d ep=%d, tokens=%d hidden=%d heads=%d experts=%d "
          "top-%d ffn=%d, %s" % (a.ranks, a.device, "GPUs" if a.device == "cuda" else "shm",
                                 a.tp, a.ep, a.tokens, a.hidden, a.heads, a.experts, a.topk,
                                 a.ffn, a.dtype))
    out = moecomm.launch(a.ranks, rank_main, a, start_method="spawn" if a.device == "cuda"
                         else "fork", timeout=600)
    r0 = out[0]
    print("plugin %s %s, ABI %s; layer modes: attention %s, MoE %s" % (
        r0["info"].plugin_path, r0["info"].plugin_version, r0["info"].abi_version, *r0["modes"]))
    for name, st in r0["groups"].items():
        lists = sorted({tuple(r["groups"][name].ranks) for r in out})
        print("  %-8s %-26s %-6s comm %d  device %8d B  host %8d B  ops %d" % (
            name, " ".join("[%s]" % ",".join(map(str, g)) for g in lists), st.backend_name,
            st.comm_id, st.device_bytes, st.host_bytes, st.ops))
    tol = TOL[getattr(torch, a.dtype)]
    worst = max(r["err"] for r in out)
    ok = worst <= tol
    print("eager: %.3f ms/step, %.0f tokens/s; max relative error vs unsharded %.2e (tol %.0e); "
          "%d of %d tokens routed differently from the unsharded block (near ties in %s; "
          "compared with the sharded routing)" % (r0["eager_s"] * 1e3, a.tokens / r0["eager_s"],
                                                  worst, tol, r0["rerouted"], a.tokens, a.dtype))
    if "graph_s" in r0:
        gworst = max(r["graph_err"] for r in out)
        ok = ok and gworst <= tol
        print("graph: %.3f ms/step, %.0f tokens/s; replay with new input: error %.2e" % (
            r0["graph_s"] * 1e3, a.tokens / r0["graph_s"], gworst))
    else:
        print("graph: not on CPU ranks (CUDA graphs need GPUs)")
    print("moe_layer: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
