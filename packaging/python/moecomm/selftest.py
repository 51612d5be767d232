# SPDX-License-Identifier: Apache-2.0
"""``python -m moecomm selftest``: every collective on every group of local ranks, checked exactly.

Each rank fills its inputs with small non-zero integers derived from (rank, element, round), so
every rank can regenerate its peers' inputs and sums are exact in every dtype; outputs are
poisoned before each call.  Needs nothing but the package: buffers are plain host arrays
(float32, float16, int32) over ``__array_interface__``; bfloat16 is checked too when numpy and
ml_dtypes are installed.
"""

from __future__ import annotations

import ctypes
import struct
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ._types import GroupKind, Topology
from .context import Context, Group
from .launch import launch

_FORMATS = {"float32": ("f", "<f4"), "float16": ("e", "<f2"), "int32": ("i", "<i4")}
POISON = -77


def value(rank: int, i: int, rnd: int) -> int:
    """Input element i of `rank` in round `rnd`: non-zero, |v| <= 4 (sums of 64 ranks exact)."""
    v = (rank * 7 + i * 13 + rnd * 5) % 8 - 4
    return v + 1 if v >= 0 else v


class HostArray:
    """A 1-D host array over a bytearray, passed to moecomm through ``__array_interface__``."""

    def __init__(self, dtype: str, n: int) -> None:
        self.fmt, typestr = _FORMATS[dtype]
        self.n = n
        self.size = struct.calcsize(self.fmt)
        self.data = bytearray(max(n, 1) * self.size)
        self._c = (ctypes.c_char * len(self.data)).from_buffer(self.data)
        self.__array_interface__ = {"shape": (n,), "typestr": typestr, "version": 3,
                                    "data": (ctypes.addressof(self._c), False)}

    def fill(self, values: List[int]) -> None:
        struct.pack_into("<%d%s" % (len(values), self.fmt), self.data, 0, *values)

    def tolist(self) -> List[float]:
        return list(struct.unpack_from("<%d%s" % (self.n, self.fmt), self.data, 0))


def _numpy_bf16() -> Optional[Any]:
    try:
        import ml_dtypes
        import numpy
    except ImportError:
        return None
    return lambda n: numpy.zeros(n, dtype=ml_dtypes.bfloat16)


def dtypes() -> List[str]:
    return list(_FORMATS) + (["bfloat16"] if _numpy_bf16() is not None else [])


def new_buffer(dtype: str, n: int) -> Any:
    """A host buffer of n elements: a HostArray, or a numpy array for bfloat16."""
    if dtype == "bfloat16":
        make = _numpy_bf16()
        assert make is not None
        return make(n)
    return HostArray(dtype, n)


def fill(buf: Any, values: List[int]) -> None:
    if isinstance(buf, HostArray):
        buf.fill(values)
    else:
        buf[:] = values


def as_list(buf: Any) -> List[float]:
    if isinstance(buf, HostArray):
        return [float(v) for v in buf.tolist()]
    return buf.astype("float64").tolist()


_REDUCE: Dict[str, Callable[[List[int]], int]] = {"sum": sum, "max": max, "min": min}


class Checker:
    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.passed = 0
        self.failures: List[str] = []

    def expect(self, what: str, got: List[float], want: List[float]) -> None:
        if got == want:
            self.passed += 1
            return
        bad = next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])
        self.failures.append("rank %d: %s: element %d is %s, expected %s" % (
            self.rank, what, bad, got[bad] if bad < len(got) else "missing", want[bad]))


def _check_group(c: Checker, g: Group, dtype: str, count: int, rnd: int) -> None:
    ranks, me, n = g.ranks, g.rank, g.size
    mine = [value(ranks[me], i, rnd) for i in range(count * n)]
    peers = [[value(r, i, rnd) for i in range(count * n)] for r in ranks]
    tag = "%s %s count %d" % (g.kind.name, dtype, count)
    for op, f in _REDUCE.items():
        for inplace in (False, True):
            x = new_buffer(dtype, count)
            fill(x, mine[:count])
            out = x if inplace else new_buffer(dtype, count)
            if not inplace:
                fill(out, [POISON] * count)
            g.all_reduce(x, out=out, op=op)
            c.expect("all_reduce %s %s%s" % (op, tag, " in place" if inplace else ""),
                     as_list(out), [float(f([p[i] for p in peers])) for i in range(count)])
    x = new_buffer(dtype, count)
    fill(x, mine[:count])
    out = new_buffer(dtype, count * n)
    fill(out, [POISON] * (count * n))
    g.all_gather(x, out=out)
    c.expect("all_gather " + tag, as_list(out), [float(p[i]) for p in peers for i in range(count)])
    x = new_buffer(dtype, count * n)
    fill(x, mine)
    out = new_buffer(dtype, count)
    fill(out, [POISON] * count)
    g.reduce_scatter(x, out=out)
    c.expect("reduce_scatter " + tag, as_list(out),
             [float(sum(p[me * count + i] for p in peers)) for i in range(count)])
    for root in sorted({0, n - 1}):
        x = new_buffer(dtype, count)
        fill(x, mine[:count] if me == root else [POISON] * count)
        g.broadcast(x, root=root)
        c.expect("broadcast root %d %s" % (root, tag), as_list(x),
                 [float(v) for v in peers[root][:count]])


def rank_main(rank: int, world: int, allgather: Any, topo: Dict[str, int], device: str,
              counts: Tuple[int, ...]) -> Tuple[int, List[str], Dict[str, Any]]:
    c = Checker(rank)
    with Context(topo, rank, world, bootstrap=allgather, device=device) as ctx:
        seen = set()
        rnd = 0
        for kind in GroupKind:
            g = ctx.group(kind)
            if tuple(g.ranks) in seen and g.size > 1:
                continue  # same rank list, same communicator: covered once
            seen.add(tuple(g.ranks))
            for dtype in dtypes():
                for count in counts:
                    _check_group(c, g, dtype, count, rnd)
                    rnd += 1
        with ctx.capture():
            x = new_buffer("float32", 4)
            ctx.group("WORLD").all_reduce(x, out=x)
        c.passed += 1
        stats = {k.name: ctx.group(k).stats().backend_name for k in GroupKind}
    return c.passed, c.failures, stats


def run(ranks: int, topo: Optional[Dict[str, int]] = None, device: str = "cpu",
        counts: Tuple[int, ...] = (1, 7, 1000), timeout: float = 120.0) -> int:
    """Runs the selftest and prints a summary; returns the number of failed checks."""
    topo = topo or {"tp": ranks}
    Topology.of(topo)
    dtypes()  # imports numpy and ml_dtypes once here, before the ranks are forked
    start = time.monotonic()
    results = launch(ranks, rank_main, topo, device, counts, timeout=timeout)
    passed = sum(r[0] for r in results)
    failures = [f for r in results for f in r[1]]
    for f in failures[:20]:
        print("FAIL " + f)
    backends = sorted(set(results[0][2].values()))
    extra = "" if "bfloat16" in dtypes() else " (bfloat16 skipped: needs numpy and ml_dtypes)"
    print("selftest: %d ranks, topology %s, backend %s, dtypes %s%s" % (
        ranks, topo, "/".join(backends), ", ".join(dtypes()), extra))
    print("selftest: %d checks passed, %d failed in %.1f s" % (passed, len(failures),
                                                               time.monotonic() - start))
    return len(failures)
