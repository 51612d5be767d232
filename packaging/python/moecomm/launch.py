# SPDX-License-Identifier: Apache-2.0
"""Starts ranks as local processes with a host all-gather between them (like host_shim/launch.c).

    def rank_main(rank, world_size, allgather):
        with moecomm.Context(topo, rank, world_size, bootstrap=allgather, device="cpu") as ctx:
            ...
            return something_picklable

    results = moecomm.launch(4, rank_main)

The parent process is the all-gather's hub: each rank sends its bytes through a pipe and gets
every rank's back.  A rank that raises, exits or times out breaks the hub (ranks waiting in it
get an exception, so context creation fails with PeerError instead of hanging), and
``launch`` raises ``LaunchError`` naming every failed rank with its traceback.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional


class LaunchError(RuntimeError):
    """One or more ranks failed; ``failures`` maps rank -> reason (a traceback)."""

    def __init__(self, failures: Dict[int, str]) -> None:
        self.failures = failures
        text = "\n".join("rank %d: %s" % (r, failures[r].rstrip()) for r in sorted(failures))
        super().__init__("%d rank(s) failed:\n%s" % (len(failures), text))


def _child(rank: int, world: int, conn: Any, fn: Callable[..., Any], args: tuple,
           env: Optional[Mapping[str, str]]) -> None:
    if env:
        os.environ.update(env)
    os.environ["MOECOMM_RANK"] = str(rank)
    os.environ["MOECOMM_WORLD_SIZE"] = str(world)

    def allgather(data: bytes) -> List[bytes]:
        conn.send(("ag", bytes(data)))
        kind, payload = conn.recv()
        if kind != "ok":
            raise RuntimeError("host all-gather broken: %s" % payload)
        return payload

    try:
        value = fn(rank, world, allgather, *args)
        conn.send(("done", value))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


class _Hub:
    def __init__(self, world: int, conns: List[Any], procs: List[Any]) -> None:
        self.world = world
        self.conns = conns
        self.procs = procs
        self.rounds: Dict[int, Dict[int, bytes]] = {}
        self.calls = [0] * world
        self.results: List[Any] = [None] * world
        self.failures: Dict[int, str] = {}
        self.done: set = set()
        self.broken: Optional[str] = None

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
        for rnd in list(self.rounds.values()):
            for r in rnd:
                if r not in self.done:
                    self._send(r, ("broken", self.broken))
        self.rounds.clear()

    def _send(self, rank: int, msg: Any) -> None:
        try:
            self.conns[rank].send(msg)
        except (OSError, EOFError):
            pass

    def _finish(self, rank: int, failure: Optional[str]) -> None:
        self.done.add(rank)
        if failure is not None:
            self.failures[rank] = failure
            self._break("rank %d failed" % rank)
        elif self.rounds:
            self._break("rank %d returned while others wait in the host all-gather" % rank)

    def on_message(self, rank: int) -> None:
        try:
            kind, payload = self.conns[rank].recv()
        except (EOFError, OSError):
            # The pipe closes as the process exits, before it is reaped: wait for the exit code.
            proc = self.procs[rank]
            proc.join(timeout=5)
            self._finish(rank, "exited (exit code %s) without a result" % proc.exitcode)
            return
        if kind == "done":
            self.results[rank] = payload
            self._finish(rank, None)
        elif kind == "error":
            self._finish(rank, payload)
        elif self.broken is not None:
            self._send(rank, ("broken", self.broken))
        else:
            n = self.calls[rank]
            self.calls[rank] += 1
            rnd = self.rounds.setdefault(n, {})
            rnd[rank] = payload
            if len(rnd) == self.world:
                parts = [rnd[r] for r in range(self.world)]
                del self.rounds[n]
                for r in range(self.world):
                    self._send(r, ("ok", parts))

    def run(self, deadline: float) -> None:
        while len(self.done) < self.world:
            left = deadline - time.monotonic()
            if left <= 0:
                for r in range(self.world):
                    if r not in self.done:
                        self.procs[r].kill()
                        self._finish(r, "timed out (still running at the launch timeout)")
                return
            live = [r for r in range(self.world) if r not in self.done]
            ready = multiprocessing.connection.wait([self.conns[r] for r in live],
                                                    timeout=min(left, 0.5))
            for r in live:
                if self.conns[r] in ready:
                    self.on_message(r)


def launch(world_size: int, fn: Callable[..., Any], *args: Any, timeout: float = 120.0,
           start_method: Optional[str] = None,
           env: Optional[Mapping[str, str]] = None) -> List[Any]:
    """Runs ``fn(rank, world_size, allgather, *args)`` in ``world_size`` processes and returns
    their results in rank order.  ``allgather`` is a ``Context`` bootstrap.  ``start_method``:
    "fork" (default: fast; the parent must not have initialised CUDA) or "spawn" (``fn`` must
    then be importable by name).  ``env``: variables set in every rank before ``fn`` runs."""
    if world_size < 1:
        raise ValueError("moecomm.launch: world_size must be >= 1, got %d" % world_size)
    mp: Any = multiprocessing.get_context(start_method or "fork")
    conns, procs = [], []
    for r in range(world_size):
        parent, child = mp.Pipe()
        p = mp.Process(target=_child, args=(r, world_size, child, fn, args, env), daemon=True,
                       name="moecomm-rank%d" % r)
        conns.append(parent)
        procs.append(p)
        p.start()
        child.close()
    hub = _Hub(world_size, conns, procs)
    try:
        hub.run(time.monotonic() + timeout)
    finally:
        for p in procs:
            p.join(timeout=5 if p.pid is not None else 0)
            if p.is_alive():
                p.kill()
                p.join()
        for c in conns:
            c.close()
    if hub.failures:
        raise LaunchError(hub.failures)
    return hub.results
