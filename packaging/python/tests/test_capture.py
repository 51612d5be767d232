# SPDX-License-Identifier: Apache-2.0
"""The capture scope through ``ctx.capture()`` on CPU contexts (collectives run eagerly there):
equal work on every rank ends cleanly; an exception in the body still ends the scope, the body's
exception wins, a rank whose capture then differs makes capture_end fail with CaptureError on
the others, and the context stays usable afterwards."""

from __future__ import annotations

from typing import Any, List

import numpy as np
from conftest import run_ranks

import moecomm


class BodyFailed(Exception):
    pass


def _capture_rank(rank: int, world: int, ag: Any) -> List[str]:
    seen = []
    with moecomm.Context({"tp": world, "ep": 2}, rank, world, bootstrap=ag,
                         device="cpu") as ctx:
        tp, ep = ctx.group("TP"), ctx.group("MOE_EP")
        x = np.full(16, rank + 1, np.float32)
        with ctx.capture() as scope:
            assert scope is ctx
            tp.all_reduce(x, out=x)  # eager on CPU: the result is there at once
            assert (x == sum(range(1, world + 1))).all()
            ep.all_gather(np.ones(2, np.int32))
        seen.append("equal ok")
        # Rank 1's body issues its all-reduce on WORLD (the same ranks as TP, so the eager CPU
        # collective still meets its peers) and then raises: capture_end still runs on every
        # rank; the others see CaptureError naming the groups, rank 1 its own exception.
        try:
            with ctx.capture():
                if rank == 1:
                    ctx.group("WORLD").all_reduce(x, out=x)
                    raise BodyFailed("model code raised")
                tp.all_reduce(x, out=x)
        except BodyFailed:
            seen.append("body exception")
        except moecomm.CaptureError as e:
            assert "TP" in e.message or "WORLD" in e.message, e.message
            seen.append("capture error")
        with ctx.capture():  # still usable: a clean scope after the failed one
            tp.all_reduce(x, out=x)
        y = tp.all_reduce(np.ones(4, np.float32))
        assert (y == world).all()
        seen.append("usable")
    return seen


def test_capture_scope() -> None:
    out = run_ranks(4, _capture_rank)
    assert out[1] == ["equal ok", "body exception", "usable"], out[1]
    for r in (0, 2, 3):
        assert out[r] == ["equal ok", "capture error", "usable"], out[r]
