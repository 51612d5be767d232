# SPDX-License-Identifier: Apache-2.0
"""moecomm.launch: results in rank order, and a rank that raises or dies breaks the host
all-gather for the others (PeerError at once, not a hang) and is named in LaunchError."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from conftest import run_ranks

import moecomm


def _ok(rank: int, world: int, ag: Any, base: int) -> Any:
    return (base + rank, world, os.environ["MOECOMM_RANK"], os.environ["MOECOMM_WORLD_SIZE"])


def test_results_in_rank_order() -> None:
    assert run_ranks(3, _ok, 10) == [(10 + r, 3, str(r), "3") for r in range(3)]


def _one_fails(rank: int, world: int, ag: Any, how: str) -> None:
    if rank == 1:
        if how == "raise":
            raise RuntimeError("rank 1 gave up")
        os._exit(3)
    moecomm.Context({"tp": world}, rank, world, bootstrap=ag, device="cpu")


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_failed_rank_breaks_bootstrap(how: str) -> None:
    start = time.monotonic()
    with pytest.raises(moecomm.LaunchError) as e:
        run_ranks(3, _one_fails, how)
    assert time.monotonic() - start < 10
    f = e.value.failures
    assert sorted(f) == [0, 1, 2], f
    assert ("rank 1 gave up" if how == "raise" else "exit code 3") in f[1]
    for r in (0, 2):
        assert "PeerError" in f[r] and "host all-gather broken" in f[r], f[r]
