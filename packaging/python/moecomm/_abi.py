# SPDX-License-Identifier: Apache-2.0
"""The C ABI of abi/moecomm.h as ctypes: constants, struct layouts and the table of slots.

Every struct that crosses the boundary starts with ``struct_size``.  The function table is read
slot by slot from ``_SLOTS``: a slot past the table's ``struct_size``, NULL, or newer than the
negotiated ABI version is absent (the MOECOMM_API_HAS rule).  A new ABI slot is one line there.
"""

from __future__ import annotations

import ctypes
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_size_t,
                    c_uint32, c_uint64, c_void_p)
from typing import Any, Callable, Dict, List, Optional, Tuple

ENTRY_SYMBOL = "moecomm_get_api_v1"


def version_make(major: int, minor: int) -> int:
    return (major << 16) | minor


def version_str(v: int) -> str:
    return "%d.%d" % (v >> 16, v & 0xFFFF)


ABI_1_0 = version_make(1, 0)
ABI_1_1 = version_make(1, 1)
ABI_1_2 = version_make(1, 2)
# The newest version this package speaks: the last "since" of _SLOTS.
ABI_NEWEST = ABI_1_2

# moecomm_result_t
SUCCESS = 0
RESULT_NAMES = (
    "MOECOMM_SUCCESS", "MOECOMM_ERR_INVALID_ARGUMENT", "MOECOMM_ERR_STRUCT_SIZE",
    "MOECOMM_ERR_VERSION", "MOECOMM_ERR_CONFIG", "MOECOMM_ERR_NOT_SUPPORTED",
    "MOECOMM_ERR_UNAVAILABLE", "MOECOMM_ERR_TIMEOUT", "MOECOMM_ERR_PEER", "MOECOMM_ERR_BACKEND",
    "MOECOMM_ERR_NO_MEMORY", "MOECOMM_ERR_CAPTURE", "MOECOMM_ERR_STATE", "MOECOMM_ERR_INTERNAL")
ERR_INVALID_ARGUMENT = 1
ERR_VERSION = 3
ERR_NOT_SUPPORTED = 5
ERR_STATE = 12

# moecomm_dtype_t, moecomm_redop_t
FLOAT32, FLOAT16, BFLOAT16, INT32 = 0, 1, 2, 3
DTYPE_NAMES = ("float32", "float16", "bfloat16", "int32")
DTYPE_SIZES = (4, 2, 2, 4)
SUM, MAX, MIN = 0, 1, 2
# ABI 1.2: float8 e4m3, a #define and not a moecomm_dtype_t value (dispatch payloads and the fused
# norm's optional copy only; the collectives refuse it)
FLOAT8_E4M3 = 4
MOE_MAX_TOP_K = 32

# moecomm_group_kind_t, in order
GROUP_KINDS = ("WORLD", "TP", "PP", "ATTN_TP", "ATTN_CP", "MOE_EP", "MOE_TP", "MOE_DP", "MOE_CP")
BACKEND_NAMES = ("none", "shm", "nccl", "custom")
# moecomm_scatter_mode_t and moecomm_layer_kind_t (ABI 1.1)
SCATTER_MODES = ("SCATTERED", "TP_ATTN_FULL", "FULL", "MOE_FULL")
LAYER_KINDS = ("ATTENTION", "DENSE_MLP", "SPARSE_MOE")

CONTEXT_SEPARATE_COMMS = 0x1
CONTEXT_DETERMINISTIC = 0x2  # ABI 1.2
DEVICE_CPU = -1
DEVICE_AUTO = -2
PLAN_DENSE_DP = 0x1
PLAN_DP_ATTENTION = 0x2
PLAN_TWO_BATCH_OVERLAP = 0x4


class _Sized(Structure):
    """A struct whose first member is struct_size, set to the Python layout's size."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(struct_size=ctypes.sizeof(self), **kw)


class TopologyT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("world_size", c_int32), ("rank", c_int32),
                ("tp", c_int32), ("pp", c_int32), ("ep", c_int32), ("moe_dp", c_int32),
                ("attn_cp", c_int32), ("attn_dp", c_int32), ("moe_dense_tp", c_int32)]


# int (*)(void *user, const void *send, void *recv, size_t bytes)
HOST_ALLGATHER_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_size_t)


class ContextParamsT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("topology", POINTER(TopologyT)),
                ("host_allgather", HOST_ALLGATHER_FN), ("host_user", c_void_p),
                ("device", c_int32), ("flags", c_uint64)]


class ContextInfoT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("device", c_int32), ("local_rank", c_int32),
                ("local_size", c_int32), ("num_hosts", c_int32), ("abi_version", c_uint32)]


class GroupStatsT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("kind", c_int32), ("kind_name", c_char_p),
                ("size", c_int32), ("rank", c_int32), ("ranks", POINTER(c_int32)),
                ("backend", c_int32), ("backend_name", c_char_p), ("comm_id", c_int32),
                ("created", c_int32), ("device_bytes", c_uint64), ("host_bytes", c_uint64),
                ("ops", c_uint64),
                # ABI 1.2 (a 1.1 plugin writes only the fields above: these stay 0)
                ("ops_local", c_uint64), ("ops_shm", c_uint64), ("ops_nccl", c_uint64),
                ("ops_custom", c_uint64), ("moe_max_tokens", c_int32),
                ("moe_expert_capacity", c_int32)]


class PlanParamsT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("flags", c_uint32), ("candidates", POINTER(c_int32)),
                ("num_candidates", c_size_t)]


class ScatterArgsT(_Sized):
    _fields_ = [("struct_size", c_size_t), ("from_", c_int32), ("to", c_int32),
                ("reduce", c_int32), ("dtype", c_int32), ("hidden", c_size_t),
                ("tokens", POINTER(c_int32)), ("send", c_void_p), ("recv", c_void_p)]


class ConfigVarT(_Sized):
    """moecomm_config_var_t (ABI 1.2): one configuration variable, static strings."""
    _fields_ = [("struct_size", c_size_t), ("name", c_char_p), ("type", c_char_p),
                ("default_value", c_char_p), ("range", c_char_p), ("help", c_char_p)]


class MoeConfigT(_Sized):
    """moecomm_moe_config_t (ABI 1.2): the MOE_EP group's dispatch shape."""
    _fields_ = [("struct_size", c_size_t), ("num_experts", c_int32), ("top_k", c_int32),
                ("dtype", c_int32), ("max_tokens", c_int32), ("hidden", c_size_t),
                ("expert_capacity", c_int32), ("num_scales", c_int32),
                ("combine_dtype", c_int32)]


class MoeDispatchArgsT(_Sized):
    """moecomm_moe_dispatch_args_t (ABI 1.2)."""
    _fields_ = [("struct_size", c_size_t), ("num_tokens", c_int32), ("x", c_void_p),
                ("x_scales", c_void_p), ("topk_ids", c_void_p), ("recv_x", c_void_p),
                ("recv_scales", c_void_p), ("recv_counts", c_void_p), ("recv_src", c_void_p)]


class MoeCombineArgsT(_Sized):
    """moecomm_moe_combine_args_t (ABI 1.2)."""
    _fields_ = [("struct_size", c_size_t), ("num_tokens", c_int32), ("handle", c_uint64),
                ("expert_out", c_void_p), ("topk_weights", c_void_p), ("out", c_void_p)]


class RmsnormArgsT(_Sized):
    """moecomm_rmsnorm_args_t (ABI 1.2)."""
    _fields_ = [("struct_size", c_size_t), ("dtype", c_int32), ("eps", c_float),
                ("tokens", c_size_t), ("hidden", c_size_t), ("x", c_void_p),
                ("residual", c_void_p), ("weight", c_void_p), ("out", c_void_p),
                ("out_fp8", c_void_p), ("out_scale", c_void_p)]


_P = c_void_p  # opaque handles, buffers and streams
_R = c_int     # moecomm_result_t

# The function table after its four header fields, in order: (slot, since, restype, argtypes).
_SLOTS: List[Tuple[str, int, Any, List[Any]]] = [
    ("result_string", ABI_1_0, c_char_p, [c_int]),
    ("last_error", ABI_1_0, c_char_p, [_P]),
    ("context_create", ABI_1_0, _R, [POINTER(ContextParamsT), POINTER(c_void_p)]),
    ("context_destroy", ABI_1_0, _R, [_P]),
    ("context_info", ABI_1_0, _R, [_P, POINTER(ContextInfoT)]),
    ("group_get", ABI_1_0, _R, [_P, c_int, POINTER(c_void_p)]),
    ("group_stats", ABI_1_0, _R, [_P, POINTER(GroupStatsT)]),
    ("all_reduce", ABI_1_0, _R, [_P, _P, _P, c_size_t, c_int, c_int, _P]),
    ("all_gather", ABI_1_0, _R, [_P, _P, _P, c_size_t, c_int, _P]),
    ("reduce_scatter", ABI_1_0, _R, [_P, _P, _P, c_size_t, c_int, c_int, _P]),
    ("broadcast", ABI_1_0, _R, [_P, _P, _P, c_size_t, c_int, c_int32, _P]),
    ("capture_begin", ABI_1_0, _R, [_P, _P]),
    ("capture_end", ABI_1_0, _R, [_P, _P]),
    ("plan_capture_sizes", ABI_1_0, _R,
     [_P, POINTER(PlanParamsT), POINTER(c_int32), c_size_t, POINTER(c_size_t), POINTER(c_int32)]),
    ("layer_mode", ABI_1_1, _R, [_P, c_int, POINTER(c_int)]),
    ("mode_rows", ABI_1_1, _R, [_P, c_int, POINTER(c_int32), POINTER(c_size_t)]),
    ("scatter", ABI_1_1, _R, [_P, POINTER(ScatterArgsT), _P]),
    # ABI 1.2
    ("topology_group_ranks", ABI_1_2, _R,
     [POINTER(TopologyT), c_int, c_int32, POINTER(c_int32), c_size_t, POINTER(c_size_t)]),
    ("config_var", ABI_1_2, _R, [c_size_t, POINTER(ConfigVarT)]),
    ("send", ABI_1_2, _R, [_P, _P, c_size_t, c_int, c_int32, _P]),
    ("recv", ABI_1_2, _R, [_P, _P, c_size_t, c_int, c_int32, _P]),
    ("all_to_all", ABI_1_2, _R, [_P, _P, _P, c_size_t, c_int, _P]),
    ("all_to_all_v", ABI_1_2, _R,
     [_P, _P, POINTER(c_size_t), POINTER(c_size_t), _P, POINTER(c_size_t), POINTER(c_size_t),
      c_int, _P]),
    ("moe_configure", ABI_1_2, _R, [_P, POINTER(MoeConfigT)]),
    ("moe_dispatch", ABI_1_2, _R, [_P, POINTER(MoeDispatchArgsT), POINTER(c_uint64), _P]),
    ("moe_combine", ABI_1_2, _R, [_P, POINTER(MoeCombineArgsT), _P]),
    ("all_reduce_rmsnorm", ABI_1_2, _R, [_P, POINTER(RmsnormArgsT), _P]),
]

# struct_size, abi_version, plugin_name, plugin_version
_HEADER = [("struct_size", c_size_t), ("abi_version", c_uint32), ("plugin_name", c_char_p),
           ("plugin_version", c_char_p)]


class _ApiHeader(Structure):
    _fields_ = _HEADER  # type: ignore[assignment]


SLOT_NAMES = tuple(s[0] for s in _SLOTS)
_HEADER_BYTES = ctypes.sizeof(_ApiHeader)
_PTR = ctypes.sizeof(c_void_p)
# The 1.0 table ends with plan_capture_sizes: a smaller table is not a 1.x plugin.
API_V1_0_SIZE = _HEADER_BYTES + _PTR * (SLOT_NAMES.index("plan_capture_sizes") + 1)

# The entry point's prototype.
ENTRY_ARGTYPES = [c_uint32, c_uint32, POINTER(c_uint32), POINTER(c_void_p), c_char_p, c_size_t]


class Api:
    """The negotiated function table: header fields, and one attribute per slot (a ctypes
    function, or None when the plugin lacks it)."""

    struct_size: int
    abi_version: int
    plugin_name: str
    plugin_version: str

    def __init__(self, address: int, negotiated: int) -> None:
        head = _ApiHeader.from_address(address)
        self.address = address
        self.struct_size = int(head.struct_size)
        self.abi_version = int(head.abi_version)
        self.plugin_name = (head.plugin_name or b"").decode(errors="replace")
        self.plugin_version = (head.plugin_version or b"").decode(errors="replace")
        self.negotiated = negotiated
        self.slots: Dict[str, Optional[Callable[..., Any]]] = {}
        for i, (name, since, restype, argtypes) in enumerate(_SLOTS):
            fn = None
            offset = _HEADER_BYTES + i * _PTR
            # Read only inside the plugin's table: never past its struct_size.
            if offset + _PTR <= self.struct_size and since <= negotiated:
                ptr = c_void_p.from_address(address + offset).value
                if ptr:
                    fn = CFUNCTYPE(restype, *argtypes)(ptr)
            self.slots[name] = fn
            setattr(self, name, fn)

    def __getattr__(self, name: str) -> Any:  # slots are set per instance (typing: Any)
        raise AttributeError(name)

    def has(self, slot: str) -> bool:
        """MOECOMM_API_HAS: inside struct_size, non-NULL, and part of the negotiated version."""
        return self.slots.get(slot) is not None
