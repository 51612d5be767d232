# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the moecomm Python suite.

Ranks are local processes started by ``moecomm.launch`` (the package's own launcher, whose
host all-gather bootstraps each Context), so every test goes through the public package.  The
run ends with ``TESTSUM passed failed skipped`` for tests/run.sh.  MOECOMM_PLUGIN (set by
run-tests.sh) chooses the build under test; MC_TEST_BUILD is that build's directory.
"""

from __future__ import annotations

import array
import os
import socket
from typing import Any, Callable, List

import pytest

import moecomm


def run_ranks(world: int, fn: Callable[..., Any], *args: Any, timeout: float = 60.0,
              env: Any = None) -> List[Any]:
    """fn(rank, world, allgather, *args) on `world` forked ranks; results in rank order.  Peers
    that do not answer fail the plugin's waits after 15 s, inside the launch timeout."""
    env = dict(env or {})
    env.setdefault("MOECOMM_TIMEOUT_MS", "15000")
    return moecomm.launch(world, fn, *args, timeout=timeout, env=env)


def barrier(ctx: moecomm.Context) -> None:
    """A WORLD all-reduce: every rank has joined rank 0's store before anyone closes.

    Needed before closing a context that made only local calls: rank 0's context_destroy keeps
    its rendezvous store up only for ranks already connected, so a rank still on its way there
    when rank 0 closes is refused (plugin/bootstrap.c, mc_boot_server_release)."""
    x = array.array("f", [0.0])
    ctx.group("WORLD").all_reduce(x, out=x)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_dir() -> str:
    build = os.environ.get("MC_TEST_BUILD", "")
    if not build:
        plugin = os.environ.get("MOECOMM_PLUGIN", "")
        build = os.path.dirname(plugin) if "/" in plugin else ""
    return build


def pytest_terminal_summary(terminalreporter: Any) -> None:
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    for rep in stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        terminalreporter.write_line("SKIP %s: %s" % (rep.nodeid, reason))
    terminalreporter.write_line("TESTSUM %d %d %d" % (passed, failed, skipped))


@pytest.fixture
def build() -> str:
    d = build_dir()
    if not d or not os.path.isdir(d):
        pytest.skip("MC_TEST_BUILD does not name a build directory")
    return d
