# SPDX-License-Identifier: Apache-2.0
"""moecomm: the Python face of the moecomm communicator plugin (pure Python over ctypes).

    import moecomm
    with moecomm.Context(moecomm.Topology(tp=4, ep=2), rank, 4, bootstrap=pg) as ctx:
        tp = ctx.group("TP")
        y = tp.all_reduce(x)                 # torch tensor, numpy array, CAI or DLPack object

Importing this package imports neither torch nor numpy and loads no plugin; the plugin is found
on first use (``MOECOMM_PLUGIN``, ``MOECOMM_PLUGIN_DIR``, the bundled copy, the build tree: see
``moecomm._loader``).  Group rank lists are DESIGN.md's ("Concepts"); the C contract is
abi/moecomm.h.
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, List

from . import _abi, _loader
from ._types import (Backend, CapturePlan, ConfigVar, ContextInfo, GroupKind, GroupStats,
                     LayerKind, MoeConfig, MoeHandle, ScatterMode, Topology, to_enum)
from .context import Context, Group, MoeDispatch
from .launch import LaunchError, launch
from .errors import (BackendError, CaptureError, ConfigError, InternalError, InvalidArgument,
                     LoadError, MoecommError, NotSupported, OutOfMemory, PeerError, StateError,
                     StructSizeError, Timeout, Unavailable, VersionError)

__version__ = "0.1.0"

DEVICE_CPU = _abi.DEVICE_CPU
DEVICE_AUTO = _abi.DEVICE_AUTO


def plugin() -> "_loader.Plugin":
    """The loaded plugin (found and negotiated on first use): ``path``, ``name``,
    ``plugin_version``, ``version`` (negotiated ABI, an int) and ``api`` (the slot table)."""
    return _loader.plugin()


def plugin_info() -> Dict[str, Any]:
    """Path, name, version and negotiated ABI of the plugin, and which slots it provides."""
    p = _loader.plugin()
    return {"path": p.path, "name": p.name, "version": p.plugin_version,
            "abi_negotiated": _abi.version_str(p.version),
            "abi_plugin": _abi.version_str(p.api.abi_version),
            "slots": {name: p.api.has(name) for name in _abi.SLOT_NAMES}}


def group_ranks(topology: Any, world_size: int, kind: Any, rank: int) -> List[int]:
    """World ranks of the group of ``kind`` that ``rank`` belongs to, in group order, without a
    context (topology_group_ranks, ABI 1.2; NotSupported on an older plugin).  A topology the
    plugin refuses raises ConfigError naming the sizes."""
    fn = _loader.plugin().slot("topology_group_ranks")
    k = int(to_enum(GroupKind, kind, "group kind"))
    topo = Topology.of(topology).to_c(rank, world_size)
    ranks = (ctypes.c_int32 * max(world_size, 1))()
    n = ctypes.c_size_t(0)
    rc = fn(ctypes.byref(topo), k, rank, ranks, len(ranks), ctypes.byref(n))
    if rc:
        raise _error_without_context(rc)
    return list(ranks[:n.value])


def config_vars() -> List[ConfigVar]:
    """The plugin's configuration variables (config_var, ABI 1.2; NotSupported on an older
    plugin)."""
    fn = _loader.plugin().slot("config_var")
    out = []
    for i in range(4096):
        v = _abi.ConfigVarT()
        rc = fn(i, ctypes.byref(v))
        if rc == _abi.ERR_INVALID_ARGUMENT:
            break  # past the last variable
        if rc:
            raise _error_without_context(rc)
        text = [(getattr(v, f) or b"").decode(errors="replace")
                for f in ("name", "type", "default_value", "range", "help")]
        out.append(ConfigVar(*text))
    return out


def _error_without_context(rc: int) -> MoecommError:
    from .errors import error_for
    msg = (_loader.plugin().api.last_error(None) or b"").decode(errors="replace")
    return error_for(rc, msg or "(the plugin gave no message)")


__all__ = [
    "Context", "Group", "Topology", "GroupKind", "ScatterMode", "LayerKind", "Backend",
    "GroupStats", "ContextInfo", "ConfigVar", "CapturePlan", "MoeConfig", "MoeHandle",
    "MoeDispatch", "DEVICE_CPU", "DEVICE_AUTO",
    "plugin", "plugin_info", "group_ranks", "config_vars", "launch", "LaunchError",
    "MoecommError", "LoadError", "InvalidArgument", "StructSizeError", "VersionError",
    "ConfigError", "NotSupported", "Unavailable", "Timeout", "PeerError", "BackendError",
    "OutOfMemory", "CaptureError", "StateError", "InternalError",
]
