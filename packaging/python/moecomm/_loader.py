# SPDX-License-Identifier: Apache-2.0
"""Finds, loads and negotiates with the plugin, by the rules of host_shim/loader.c.

``MOECOMM_PLUGIN``: a path (contains '/'), a name (``libmoecomm-<name>.so``; ``moecomm`` also
matches ``libmoecomm.so``), a comma list tried in order, or ``none``.  A name is looked for in
``MOECOMM_PLUGIN_DIR``, then next to this package (the bundled copy), then in the build tree
(a source checkout's ``build/``), then in the installed layouts (``<prefix>/lib/moecomm``).
Unset: ``libmoecomm.so`` in the same directories, in the same order.  Every failure is a
``LoadError`` naming each path tried and why.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import c_char_p, c_uint32, c_void_p
from typing import Any, List, Optional, Tuple

from . import _abi
from .errors import LoadError, NotSupported, VersionError

_lock = threading.Lock()
_plugin: Optional["Plugin"] = None


class Plugin:
    """A loaded, negotiated plugin: ``path`` (resolved), ``version`` (negotiated) and ``api``."""

    def __init__(self, path: str, lib: ctypes.CDLL, api: _abi.Api, version: int) -> None:
        self.path = path
        self.lib = lib  # never unloaded: contexts and callbacks may outlive any Python object
        self.api = api
        self.version = version

    @property
    def name(self) -> str:
        return self.api.plugin_name

    @property
    def plugin_version(self) -> str:
        return self.api.plugin_version

    def slot(self, name: str) -> Any:
        """The ctypes function of a table slot; NotSupported when the plugin lacks it (past the
        table, NULL, or newer than the negotiated ABI)."""
        fn = self.api.slots.get(name)
        if fn is None:
            raise NotSupported("moecomm: %s is not provided by %s (ABI %s negotiated)"
                               % (name, self.path, _abi.version_str(self.version)),
                               _abi.ERR_NOT_SUPPORTED)
        return fn

    def result_string(self, code: int) -> str:
        return (self.api.result_string(code) or b"").decode(errors="replace")


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def bundled_dir() -> str:
    """Where a wheel puts its copy of the plugin."""
    return os.path.join(_package_dir(), "_lib")


def build_tree_dir() -> Optional[str]:
    """``build/`` of the source checkout this package sits in (packaging/python/moecomm), if any."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(_package_dir())))
    if os.path.isfile(os.path.join(root, "abi", "moecomm.h")):
        return os.path.join(root, "build")
    return None


def search_dirs() -> List[Tuple[str, str]]:
    """(directory, label) pairs searched for a plugin name or the default, in order."""
    dirs = []
    env = os.environ.get("MOECOMM_PLUGIN_DIR", "")
    if env:
        dirs.append((env, "MOECOMM_PLUGIN_DIR"))
    dirs.append((bundled_dir(), "bundled with the package"))
    tree = build_tree_dir()
    if tree is not None:
        dirs.append((tree, "source checkout's build tree"))
    seen = set()
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        d = os.path.join(prefix, "lib", "moecomm")
        if d not in seen:
            seen.add(d)
            dirs.append((d, "installed plugin directory"))
    return dirs


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", c_char_p), ("dli_fbase", c_void_p), ("dli_sname", c_char_p),
                ("dli_saddr", c_void_p)]


def _defining_file(address: int) -> Optional[str]:
    """The object file that defines ``address`` (dladdr), or None."""
    try:
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if dladdr(address, ctypes.byref(info)) == 0 or not info.dli_fname:
        return None
    return info.dli_fname.decode(errors="replace")


def _range(lo: int, hi: int) -> str:
    return "[%s, %s]" % (_abi.version_str(lo), _abi.version_str(hi))


def load_path(path: str, min_version: int = _abi.ABI_1_0,
              max_version: int = _abi.ABI_NEWEST) -> Plugin:
    """Loads exactly ``path`` and negotiates an ABI version in [min_version, max_version]."""
    try:
        # RTLD_LOCAL: the plugin's own dependencies must not leak into the process's symbols.
        lib = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as e:
        raise LoadError("cannot load %s: %s" % (path, e)) from None
    resolved = os.path.realpath(path)
    try:
        entry = getattr(lib, _abi.ENTRY_SYMBOL)
    except AttributeError as e:
        raise LoadError("%s is not a moecomm plugin: it does not define %s (%s)"
                        % (resolved, _abi.ENTRY_SYMBOL, e)) from None
    # dlsym also searches the file's dependencies: the entry must be this file's own.
    where = _defining_file(ctypes.cast(entry, c_void_p).value or 0)
    if where is None or not _same_file(where, resolved):
        raise LoadError("%s is not a moecomm plugin: its %s comes from another object (%s)"
                        % (resolved, _abi.ENTRY_SYMBOL, where or "dladdr could not name it"))
    entry.argtypes = _abi.ENTRY_ARGTYPES
    entry.restype = ctypes.c_int
    version = c_uint32(0)
    api_p = c_void_p(None)
    why = ctypes.create_string_buffer(512)
    r = entry(min_version, max_version, ctypes.byref(version), ctypes.byref(api_p), why,
              ctypes.sizeof(why))
    if r != _abi.SUCCESS:
        name = _abi.RESULT_NAMES[r] if 0 <= r < len(_abi.RESULT_NAMES) else "unknown result"
        cls = VersionError if r == _abi.ERR_VERSION else LoadError
        raise cls("%s refused ABI versions %s: %s (%s)" % (
            resolved, _range(min_version, max_version),
            why.value.decode(errors="replace") or "no reason given", name), r)
    if not api_p.value:
        raise LoadError("%s: %s succeeded but returned no function table"
                        % (resolved, _abi.ENTRY_SYMBOL))
    v = version.value
    if not min_version <= v <= max_version:
        raise LoadError("%s: negotiated ABI %s, outside the requested range %s"
                        % (resolved, _abi.version_str(v), _range(min_version, max_version)))
    head = _abi._ApiHeader.from_address(api_p.value)
    if head.struct_size < _abi.API_V1_0_SIZE or head.abi_version >> 16 != 1:
        raise LoadError("%s: function table is not an ABI 1.x table (struct_size %d, at least %d "
                        "expected; abi_version %s)" % (resolved, head.struct_size,
                                                       _abi.API_V1_0_SIZE,
                                                       _abi.version_str(head.abi_version)))
    api = _abi.Api(api_p.value, v)
    if api.result_string is None or api.last_error is None:
        raise LoadError("%s: function table lacks result_string or last_error" % resolved)
    return Plugin(resolved, lib, api, v)


def _load_entry(entry: str, min_version: int, max_version: int) -> Plugin:
    if "/" in entry:
        return load_path(entry, min_version, max_version)
    files = ["libmoecomm-%s.so" % entry]
    if entry == "moecomm":  # the default build is libmoecomm.so, not libmoecomm-moecomm.so
        files.append("libmoecomm.so")
    dirs = search_dirs()
    for f in files:
        for d, _ in dirs:
            p = os.path.join(d, f)
            if os.path.exists(p):
                return load_path(p, min_version, max_version)
    raise LoadError("plugin '%s': no %s in %s" % (
        entry, files[0], " or ".join("%s (%s)" % (d, label) for d, label in dirs)))


def _load_default(min_version: int, max_version: int) -> Plugin:
    reasons = []
    for d, _ in search_dirs():
        p = os.path.join(d, "libmoecomm.so")
        if not os.path.exists(p):
            reasons.append("%s: No such file or directory" % p)
            continue
        try:
            return load_path(p, min_version, max_version)
        except LoadError as e:
            reasons.append(e.message)
    raise LoadError("no usable default plugin: " + "; ".join(reasons) +
                    " (set MOECOMM_PLUGIN=/path/to/libmoecomm.so, or build it with make)")


def load(min_version: int = _abi.ABI_1_0, max_version: int = _abi.ABI_NEWEST) -> Plugin:
    """Finds and loads the plugin from the environment (module docstring).  Not cached."""
    spec = os.environ.get("MOECOMM_PLUGIN", "")
    if not spec:
        return _load_default(min_version, max_version)
    if spec == "none":
        raise LoadError("MOECOMM_PLUGIN=none: plugin disabled")
    reasons = []
    for tok in spec.split(","):
        tok = tok.strip(" \t")
        if not tok:
            continue
        try:
            return _load_entry(tok, min_version, max_version)
        except LoadError as e:
            reasons.append(e.message)
    if not reasons:
        raise LoadError("MOECOMM_PLUGIN='%s' names no plugin" % spec)
    raise LoadError("; ".join(reasons))


def plugin() -> Plugin:
    """The process's plugin, loaded on first use and kept."""
    global _plugin
    p = _plugin
    if p is None:
        with _lock:
            if _plugin is None:
                _plugin = load()
            p = _plugin
    return p
