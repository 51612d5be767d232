# SPDX-License-Identifier: Apache-2.0
"""Plain data the API takes and returns: the topology, enums, stats and info records."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, List, Mapping, Tuple, Union

from . import _abi


class GroupKind(enum.IntEnum):
    """Parallel groups (moecomm_group_kind_t).  Rank lists: DESIGN.md, "Concepts"."""
    WORLD = 0
    TP = 1
    PP = 2
    ATTN_TP = 3
    ATTN_CP = 4
    MOE_EP = 5
    MOE_TP = 6
    MOE_DP = 7
    MOE_CP = 8  # where the MoE all-gather runs when attn_cp > moe_dp


class ScatterMode(enum.IntEnum):
    """How a layer's hidden states are spread over ranks (moecomm_scatter_mode_t, ABI 1.1)."""
    SCATTERED = 0
    TP_ATTN_FULL = 1
    FULL = 2
    MOE_FULL = 3


class LayerKind(enum.IntEnum):
    """Layer kinds whose input mode the plugin decides (moecomm_layer_kind_t, ABI 1.1)."""
    ATTENTION = 0
    DENSE_MLP = 1
    SPARSE_MOE = 2


class Backend(enum.IntEnum):
    NONE = 0
    SHM = 1
    NCCL = 2
    CUSTOM = 3


for _cls in (GroupKind, ScatterMode, LayerKind, Backend):
    _cls.__str__ = lambda self: self.name  # type: ignore

E = Any  # an enum member, its name (any case) or its value


def to_enum(cls: Any, value: E, what: str) -> Any:
    """cls member for a member, a name ("tp", "MOE_EP") or an int; ValueError otherwise."""
    if isinstance(value, cls):
        return value
    try:
        if isinstance(value, str):
            return cls[value.upper()]
        return cls(int(value))
    except (KeyError, ValueError, TypeError):
        raise ValueError("moecomm: %r is not a %s; one of %s" % (
            value, what, ", ".join(m.name for m in cls))) from None


@dataclass(frozen=True)
class Topology:
    """Sizes of the parallel layout (moecomm_topology_t without world size and rank).

    attn_tp = tp / (attn_dp * attn_cp) and moe_tp = tp / (ep * moe_dp) are derived; sizes that
    do not divide are refused by the plugin with ConfigError naming them.  moe_dense_tp is 1 or
    tp (0 means tp).  Group rank lists follow DESIGN.md ("Concepts"); ``moecomm.group_ranks``
    and ``python -m moecomm groups`` print them.
    """
    tp: int = 1
    pp: int = 1
    ep: int = 1
    moe_dp: int = 1
    attn_cp: int = 1
    attn_dp: int = 1
    moe_dense_tp: int = 0

    @classmethod
    def of(cls, value: Union["Topology", Mapping[str, int], Any]) -> "Topology":
        """A Topology from a Topology, a dict or any object with those attributes."""
        if isinstance(value, Topology):
            return value
        names = [f for f in cls.__dataclass_fields__]
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError("moecomm: unknown topology field(s) %s; fields are %s"
                                 % (", ".join(unknown), ", ".join(names)))
            return cls(**{k: int(v) for k, v in value.items()})
        if all(hasattr(value, n) for n in ("tp",)):
            return cls(**{n: int(getattr(value, n)) for n in names if hasattr(value, n)})
        raise TypeError("moecomm: topology must be a moecomm.Topology, a dict or a dataclass with "
                        "tp, pp, ep, moe_dp, attn_cp, attn_dp, moe_dense_tp; got %s"
                        % type(value).__name__)

    def to_c(self, rank: int, world_size: int) -> _abi.TopologyT:
        return _abi.TopologyT(world_size=world_size, rank=rank, **asdict(self))


@dataclass(frozen=True)
class GroupStats:
    """moecomm_group_stats_t: a group's rank list, backend, communicator and memory; since ABI 1.2
    also the calls each backend served (``ops_local``: a group of one, served by a local copy)
    and the expert-parallel shape moe_configure fixed (0 before, and from a 1.1 plugin)."""
    kind: GroupKind
    kind_name: str
    size: int
    rank: int
    ranks: Tuple[int, ...]
    backend: Backend
    backend_name: str
    comm_id: int
    created: bool
    device_bytes: int
    host_bytes: int
    ops: int
    ops_local: int = 0
    ops_shm: int = 0
    ops_nccl: int = 0
    ops_custom: int = 0
    moe_max_tokens: int = 0
    moe_expert_capacity: int = 0


@dataclass(frozen=True)
class ContextInfo:
    """What a context ended up with (moecomm_context_info_t) and the plugin serving it."""
    device: int  # CUDA ordinal, or -1 (moecomm.DEVICE_CPU): buffers are host memory
    local_rank: int
    local_size: int
    num_hosts: int
    abi_version: str  # negotiated, "1.1"
    plugin_path: str
    plugin_name: str
    plugin_version: str
    rank: int
    world_size: int
    topology: Topology


@dataclass(frozen=True)
class ConfigVar:
    """One configuration variable of the plugin (config_var, ABI 1.2)."""
    name: str
    type: str
    default: str
    range: str
    help: str


@dataclass(frozen=True)
class MoeConfig:
    """The MOE_EP group's dispatch shape (moecomm_moe_config_t, ABI 1.2) as moe_configure took
    it, with the defaults applied: ``max_tokens`` (T_max) and ``expert_capacity`` (C) as the
    plugin resolved them, ``local_experts`` = num_experts / group size."""
    num_experts: int
    top_k: int
    hidden: int
    dtype: str
    max_tokens: int
    expert_capacity: int
    num_scales: int
    combine_dtype: str
    local_experts: int


class MoeHandle:
    """What moe_dispatch returns for the matching moe_combine: the dispatch's handle (an int the
    plugin checks), its token count, and the group it ran on."""

    __slots__ = ("value", "num_tokens", "group")

    def __init__(self, value: int, num_tokens: int, group: Any) -> None:
        self.value = value
        self.num_tokens = num_tokens
        self.group = group

    def __repr__(self) -> str:
        return "MoeHandle(%d, num_tokens=%d)" % (self.value, self.num_tokens)


class CapturePlan(List[int]):
    """The capture sizes every group can split (a list), and ``multiple``: what they had to be
    a multiple of."""

    def __init__(self, sizes: List[int], multiple: int) -> None:
        super().__init__(sizes)
        self.multiple = multiple

    def __repr__(self) -> str:
        return "CapturePlan(%s, multiple=%d)" % (list.__repr__(self), self.multiple)


__all__ = ["GroupKind", "ScatterMode", "LayerKind", "Backend", "Topology", "GroupStats",
           "ContextInfo", "ConfigVar", "CapturePlan", "MoeConfig", "MoeHandle"]
