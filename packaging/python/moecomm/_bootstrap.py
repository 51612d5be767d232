# SPDX-License-Identifier: Apache-2.0
"""The host all-gather a context is bootstrapped with (moecomm_host_allgather_fn_t).

``make_allgather(bootstrap, rank, world_size)`` turns what the user passed into a Python
function ``f(bytes) -> list[bytes]``: a ``torch.distributed`` process group (gloo), a
``torch.distributed.Store``, or any callable of that shape.  ``HostAllGather`` wraps it in the C
callback; the object (and so the CFUNCTYPE) must stay referenced for as long as C may call it,
which the Context ensures by keeping it.
"""

from __future__ import annotations

import ctypes
import sys
import traceback
from typing import Any, Callable, List, Optional

from . import _abi

AllGather = Callable[[bytes], List[bytes]]

# Contexts bootstrapped through one store in this process: keys of the n-th are under n.  Every
# rank creates its contexts in the same order (context creation is collective).
_store_uses: "dict[int, int]" = {}


def _is_process_group(obj: Any) -> bool:
    dist = sys.modules.get("torch.distributed")
    pg = getattr(dist, "ProcessGroup", None) if dist is not None else None
    return pg is not None and isinstance(obj, pg)


def _is_store(obj: Any) -> bool:
    dist = sys.modules.get("torch.distributed")
    store = getattr(dist, "Store", None) if dist is not None else None
    if store is not None and isinstance(obj, store):
        return True
    return all(callable(getattr(obj, m, None)) for m in ("set", "get", "add")) and not callable(obj)


def _process_group_allgather(pg: Any, rank: int, world_size: int) -> AllGather:
    import torch  # the caller passed a torch object: torch is already imported
    import torch.distributed as dist
    if pg.size() != world_size or pg.rank() != rank:
        raise ValueError("moecomm: bootstrap process group has rank %d of %d, but the context "
                         "was asked for rank %d of %d" % (pg.rank(), pg.size(), rank, world_size))

    def gather(data: bytes) -> List[bytes]:
        send = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else \
            torch.empty(0, dtype=torch.uint8)
        recv = [torch.empty(len(data), dtype=torch.uint8) for _ in range(world_size)]
        dist.all_gather(recv, send, group=pg)
        # ctypes, not .numpy(): numpy is not needed (nor always usable) next to torch.
        return [ctypes.string_at(r.data_ptr(), len(data)) if data else b"" for r in recv]
    return gather


def _store_allgather(store: Any, rank: int, world_size: int) -> AllGather:
    use = _store_uses.get(id(store), 0)
    _store_uses[id(store)] = use + 1
    seq = [0]

    def gather(data: bytes) -> List[bytes]:
        prefix = "moecomm/boot/%d/%d/" % (use, seq[0])
        seq[0] += 1
        store.set(prefix + str(rank), data)
        # Store.get blocks until the key exists (up to the store's own timeout).
        return [bytes(store.get(prefix + str(r))) for r in range(world_size)]
    return gather


def make_allgather(bootstrap: Any, rank: int, world_size: int) -> Optional[AllGather]:
    """The all-gather for `bootstrap`; None means MOECOMM_STORE (the plugin's own store)."""
    if bootstrap is None:
        return None
    if _is_process_group(bootstrap):
        return _process_group_allgather(bootstrap, rank, world_size)
    if _is_store(bootstrap):
        return _store_allgather(bootstrap, rank, world_size)
    if callable(bootstrap):
        return bootstrap
    raise TypeError("moecomm: bootstrap must be a torch.distributed process group, a "
                    "torch.distributed.Store, a callable f(bytes) -> list[bytes], or None "
                    "(MOECOMM_STORE); got %s" % type(bootstrap).__name__)


class HostAllGather:
    """The C callback over a Python all-gather.  A failure returns non-zero to the plugin (which
    then fails context_create with MOECOMM_ERR_PEER) and is kept in ``error`` for the message."""

    def __init__(self, gather: AllGather, world_size: int) -> None:
        self.gather = gather
        self.world_size = world_size
        self.error: Optional[str] = None
        self.cfunc = _abi.HOST_ALLGATHER_FN(self._call)

    def _call(self, user: Any, send: int, recv: int, nbytes: int) -> int:
        try:
            data = ctypes.string_at(send, nbytes) if nbytes else b""
            parts = list(self.gather(data))
            if len(parts) != self.world_size:
                raise ValueError("host all-gather returned %d parts for a world of %d"
                                 % (len(parts), self.world_size))
            for r, part in enumerate(parts):
                if len(part) != nbytes:
                    raise ValueError("host all-gather returned %d bytes for rank %d, %d expected"
                                     % (len(part), r, nbytes))
                if nbytes:
                    ctypes.memmove(recv + r * nbytes, bytes(part), nbytes)
            return 0
        except BaseException:  # never let an exception unwind through C
            self.error = traceback.format_exc(limit=3).strip().splitlines()[-1]
            return 1
