# SPDX-License-Identifier: Apache-2.0
"""python -m moecomm info | groups | selftest  (``python -m moecomm -h`` for options)."""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
from typing import Any, Dict, List, Optional

from . import _abi, _loader
from ._types import GroupKind, Topology
from .context import Context
from .errors import MoecommError
from .launch import launch


def _probe_backend(backend: str, device: str) -> Optional[str]:
    """None when a one-rank context with every group on `backend` can be made, else why not."""
    old = os.environ.get("MOECOMM_BACKEND")
    os.environ["MOECOMM_BACKEND"] = backend
    try:
        with Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b], device=device) as ctx:
            if backend != "shm" and ctx.device < 0:
                return "no CUDA device (the context fell back to CPU)"
            return None
    except MoecommError as e:
        return str(e)
    finally:
        if old is None:
            del os.environ["MOECOMM_BACKEND"]
        else:
            os.environ["MOECOMM_BACKEND"] = old


def cmd_info(args: argparse.Namespace) -> int:
    p = _loader.plugin()
    print("plugin:        %s" % p.path)
    print("name, version: %s %s" % (p.name, p.plugin_version))
    print("ABI:           %s negotiated (plugin's newest %s; this package speaks %s..%s)" % (
        _abi.version_str(p.version), _abi.version_str(p.api.abi_version),
        _abi.version_str(_abi.ABI_1_0), _abi.version_str(_abi.ABI_NEWEST)))
    missing = [s for s in _abi.SLOT_NAMES if not p.api.has(s)]
    absent = " (absent: %s)" % ", ".join(missing) if missing else ""
    have = len(_abi.SLOT_NAMES) - len(missing)
    print("slots:         %d of %d%s" % (have, len(_abi.SLOT_NAMES), absent))
    print("backends:")
    for backend, device in (("shm", "cpu"), ("nccl", "auto"), ("custom", "auto")):
        why = _probe_backend(backend, device)
        print("  %-7s %s" % (backend, "available" if why is None else "unavailable: " + why))
    if p.api.has("config_var"):
        print_config_table()
    else:
        print("configuration: the config_var slot needs ABI 1.2 (README.md lists the variables)")
    return 0


def print_config_table() -> None:
    """The plugin's configuration variables (config_var): name, type, default, accepted values,
    and the help line under them."""
    from . import config_vars
    rows = [(v.name, v.type, v.default or "-", v.range, v.help) for v in config_vars()]
    head = ("variable", "type", "default", "values")
    w = [max(len(r[i]) for r in rows + [head + ("",)]) for i in range(3)]
    print("configuration (config_var; 'host': read by loaders, launchers and make):")
    fmt = "  %%-%ds  %%-%ds  %%-%ds  %%s" % tuple(w)
    print(fmt % head)
    for r in rows:
        print(fmt % r[:4])
        print("  %s%s" % (" " * (w[0] + 2), r[4]))


def _fallback_rank(rank: int, world: int, allgather: Any, topo: Dict[str, int]) -> List[List[int]]:
    os.environ["MOECOMM_BACKEND"] = "shm"
    with Context(topo, rank, world, bootstrap=allgather, device="cpu") as ctx:
        lists = [ctx.group(k).ranks for k in GroupKind]
        # A WORLD all-reduce before closing: rank 0 must not close its rendezvous store while
        # another rank is still on its way there.
        x = array.array("f", [0.0])
        ctx.group("WORLD").all_reduce(x, out=x)
        return lists


def group_table(topo: Dict[str, int], world: int) -> List[List[List[int]]]:
    """table[rank][kind] = rank list: topology_group_ranks (ABI 1.2); only a 1.1 plugin, which
    lacks it, gets world CPU processes on shm reading group_stats instead."""
    if _loader.plugin().api.has("topology_group_ranks"):
        from . import group_ranks
        return [[group_ranks(topo, world, k, r) for k in GroupKind] for r in range(world)]
    return launch(world, _fallback_rank, topo, timeout=120.0)


def cmd_groups(args: argparse.Namespace) -> int:
    topo = {k: getattr(args, k) for k in ("tp", "pp", "ep", "moe_dp", "attn_cp", "attn_dp",
                                          "moe_dense_tp")}
    t = Topology.of(topo)
    world = args.world or t.tp * t.pp
    try:
        table = group_table(topo, world)
    except Exception as e:  # the fallback's ranks report the plugin's ConfigError
        print("moecomm groups: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"topology": topo, "world_size": world, "ranks": [
            {k.name: table[r][k] for k in GroupKind} for r in range(world)]}, indent=1))
        return 0
    print("topology %s, world %d" % (", ".join("%s=%d" % kv for kv in topo.items()), world))
    for k in GroupKind:
        lists = []
        for r in range(world):
            if table[r][k] not in lists:
                lists.append(table[r][k])
        print("  %-8s %s" % (k.name, " ".join("[%s]" % ",".join(map(str, g)) for g in lists)))
    if t.attn_cp > t.moe_dp:
        print("  note: attn_cp=%d > moe_dp=%d, so MOE_DP and MOE_CP are the ATTN_CP groups "
              "(DESIGN.md, Concepts)" % (t.attn_cp, t.moe_dp))
    if args.per_rank:
        for r in range(world):
            print("rank %d: %s" % (r, "  ".join("%s=%s" % (k.name, ",".join(map(str, table[r][k])))
                                                for k in GroupKind)))
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from . import selftest
    topo = {"tp": args.tp or args.ranks, "ep": args.ep}
    return 1 if selftest.run(args.ranks, topo, timeout=args.timeout) else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m moecomm", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="plugin, ABI, backends this machine runs, configuration")
    g = sub.add_parser("groups", help="rank lists of every group kind for every rank")
    for name, default in (("tp", 1), ("pp", 1), ("ep", 1), ("moe-dp", 1), ("attn-cp", 1),
                          ("attn-dp", 1), ("moe-dense-tp", 0)):
        g.add_argument("--" + name, type=int, default=default)
    g.add_argument("--world", type=int, default=0, help="world size (default tp * pp)")
    g.add_argument("--per-rank", action="store_true", help="also one line per rank")
    g.add_argument("--json", action="store_true")
    s = sub.add_parser("selftest", help="every collective on local CPU ranks (shm), checked")
    s.add_argument("--ranks", type=int, default=4)
    s.add_argument("--tp", type=int, default=0, help="default: --ranks")
    s.add_argument("--ep", type=int, default=1)
    s.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    try:
        return {"info": cmd_info, "groups": cmd_groups, "selftest": cmd_selftest}[args.cmd](args)
    except MoecommError as e:
        print("moecomm: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
