# SPDX-License-Identifier: Apache-2.0
"""Every MoecommError class from a real failure where the public API can cause one (the rest
through the code table), and the checks the package makes in Python before calling the plugin:
the exception, its message, and outputs left as they were."""

from __future__ import annotations

import array
from typing import Any

import numpy as np
import pytest
from conftest import barrier, free_port, run_ranks

import moecomm
from moecomm import _abi, errors


def _one(**kw: Any) -> moecomm.Context:
    """A context of one CPU rank (its own host all-gather is a copy)."""
    return moecomm.Context(kw.pop("topo", {"tp": 1}), 0, 1, bootstrap=lambda b: [b],
                           device="cpu", **kw)


def test_code_table() -> None:
    assert set(errors.ERROR_CLASSES) == set(range(1, len(_abi.RESULT_NAMES)))
    for code, cls in errors.ERROR_CLASSES.items():
        e = errors.error_for(code, "what went wrong")
        assert type(e) is cls and isinstance(e, moecomm.MoecommError)
        assert e.code == code and e.message == "what went wrong"
        assert e.code_name == _abi.RESULT_NAMES[code] and e.code_name in str(e)
    assert type(errors.error_for(99, "x")) is moecomm.MoecommError
    assert issubclass(moecomm.Timeout, TimeoutError)
    assert issubclass(moecomm.InvalidArgument, ValueError)


def test_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(moecomm.ConfigError) as e:
        _one(topo={"tp": 1, "ep": 2})
    assert e.value.code == 4 and "ep=2" in e.value.message
    monkeypatch.setenv("MOECOMM_BACKEND", "bogus")
    with pytest.raises(moecomm.ConfigError) as e:
        _one()
    assert "MOECOMM_BACKEND" in e.value.message and "bogus" in e.value.message


def test_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOECOMM_BACKEND", "nccl")
    with pytest.raises(moecomm.Unavailable) as e:
        _one()
    assert "MOECOMM_BACKEND=nccl" in e.value.message


def test_peer_error_from_a_raising_bootstrap() -> None:
    def broken(data: bytes) -> Any:
        raise ConnectionError("peer vanished")
    with pytest.raises(moecomm.PeerError) as e:
        moecomm.Context({"tp": 1}, 0, 1, bootstrap=broken, device="cpu")
    assert "ConnectionError: peer vanished" in e.value.message
    with pytest.raises(moecomm.PeerError) as e:  # wrong shape of answer
        moecomm.Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b, b], device="cpu")
    assert "2 parts for a world of 1" in e.value.message


def test_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOECOMM_STORE", "tcp://127.0.0.1:%d" % free_port())
    monkeypatch.setenv("MOECOMM_TIMEOUT_MS", "700")
    with pytest.raises(moecomm.Timeout) as e:  # rank 1 of 2 never comes
        moecomm.Context({"tp": 2}, 0, 2, bootstrap=None, device="cpu")
    assert e.value.code == 7 and "waiting for rank 1" in e.value.message, e.value.message


def test_invalid_argument_and_not_supported() -> None:
    with _one(topo={"tp": 1}) as ctx:
        with pytest.raises(moecomm.InvalidArgument) as e:
            ctx.plan_capture_sizes([4, 0, 8])
        assert "candidate 1 is 0" in e.value.message
        x = np.ones((2, 4), np.float32)
        with pytest.raises(moecomm.InvalidArgument) as e:  # send and recv overlap
            ctx.scatter(x, x, "TP_ATTN_FULL", "TP_ATTN_FULL", 2)
        assert "overlap" in e.value.message
        out = np.full((2, 4), 7, np.float32)
        with pytest.raises(moecomm.NotSupported) as e:
            ctx.scatter(x, out, "SCATTERED", "FULL", 2, reduce=True)
        assert "SCATTERED -> FULL with reduce" in e.value.message and (out == 7).all()
        if not moecomm.plugin().api.has("config_var"):
            with pytest.raises(moecomm.NotSupported) as e:
                moecomm.config_vars()
            assert "config_var" in e.value.message
        if not moecomm.plugin().api.has("topology_group_ranks"):
            with pytest.raises(moecomm.NotSupported):
                moecomm.group_ranks({"tp": 2}, 2, "TP", 0)


def test_not_supported_layer_mode() -> None:
    def rank(r: int, world: int, ag: Any) -> None:
        topo = {"tp": 4, "attn_cp": 2, "attn_dp": 2, "ep": 4}
        with moecomm.Context(topo, r, world, bootstrap=ag, device="cpu") as ctx:
            with pytest.raises(moecomm.NotSupported) as e:
                ctx.layer_mode("sparse_moe")
            assert "attn_dp=2" in e.value.message
            barrier(ctx)
    run_ranks(4, rank)


def test_capture_error_and_state_error() -> None:
    ctx = _one()
    with pytest.raises(moecomm.CaptureError):
        with ctx.capture():
            with ctx.capture():  # nested scopes
                pass
    with ctx.capture():  # usable again
        pass
    g = ctx.group("TP")
    ctx.close()
    ctx.close()  # twice is fine
    with pytest.raises(moecomm.StateError):
        ctx.group("WORLD")
    with pytest.raises(moecomm.StateError):
        ctx.info()
    with pytest.raises(moecomm.StateError):
        g.all_reduce(np.ones(4, np.float32))


def test_version_error() -> None:
    from moecomm import _loader
    path = moecomm.plugin().path
    with pytest.raises(moecomm.VersionError) as e:
        _loader.load_path(path, _abi.version_make(1, 90), _abi.version_make(1, 99))
    assert "refused ABI versions [1.90, 1.99]" in e.value.message and e.value.code == 3


def test_python_side_checks() -> None:
    with _one(topo={"tp": 1}) as ctx:
        g = ctx.group("tp")
        x = np.arange(8, dtype=np.float32)
        out = np.full(8, 5, np.float32)
        cases = [
            (TypeError, "float64", lambda: g.all_reduce(np.ones(4), out=out)),
            (TypeError, "supported dtypes are float32, float16, bfloat16, int32",
             lambda: g.all_reduce(np.ones(4, np.int64))),
            (ValueError, "not contiguous", lambda: g.all_reduce(x[::2])),
            (ValueError, "out has 4 elements, 8 expected",
             lambda: g.all_reduce(x, out=np.zeros(4, np.float32))),
            (TypeError, "input is float32 but out is int32",
             lambda: g.all_reduce(x, out=np.zeros(8, np.int32))),
            (ValueError, "op 'avg'", lambda: g.all_reduce(x, out=out, op="avg")),
            (ValueError, "a CPU context takes no stream", lambda: g.all_reduce(x, out, stream=5)),
            (ValueError, "root 3 is not an index", lambda: g.broadcast(x, root=3)),
            (ValueError, "read-only", lambda: g.all_reduce(x, out=_readonly(8))),
            (TypeError, "is not a buffer moecomm takes", lambda: g.all_reduce([1.0, 2.0])),
            (TypeError, "pass out=", lambda: g.all_reduce(_Opaque(x))),
            (ValueError, "read-only buffers", lambda: g.all_reduce(memoryview(b"abcd").cast("f"))),
            (ValueError, "'XP' is not a group kind", lambda: ctx.group("XP")),
            (ValueError, "tokens has 2 entries", lambda: ctx.mode_rows("FULL", [2, 2])),
            (ValueError, "is not a scatter mode", lambda: ctx.mode_rows("HALF", 2)),
            (ValueError, "x has 2 rows of 4; FULL holds 1 rows",
             lambda: ctx.scatter(x.reshape(2, 4), None, "FULL", "FULL", 1)),
            (ValueError, "out has 4 elements",
             lambda: ctx.scatter(x.reshape(2, 4), np.zeros(4, np.float32), "TP_ATTN_FULL",
                                 "TP_ATTN_FULL", 2)),
        ]
        for exc, text, call in cases:
            with pytest.raises(exc) as e:
                call()
            assert text in str(e.value), (text, str(e.value))
            assert (out == 5).all()  # nothing half-written
    with pytest.raises(ValueError, match="unknown topology field"):
        moecomm.Topology.of({"tp": 1, "tpp": 2})
    with pytest.raises(TypeError, match="bootstrap must be"):
        moecomm.Context({"tp": 1}, 0, 1, bootstrap=42, device="cpu")
    with pytest.raises(ValueError, match="device 'gpu9'"):
        moecomm.Context({"tp": 1}, 0, 1, bootstrap=lambda b: [b], device="gpu9")


def test_reduce_scatter_size_check() -> None:
    def rank(r: int, world: int, ag: Any) -> None:
        with moecomm.Context({"tp": 2}, r, world, bootstrap=ag, device="cpu") as ctx:
            with pytest.raises(ValueError, match="not a multiple of the group size 2"):
                ctx.group("TP").reduce_scatter(np.ones(3, np.float32))
            with pytest.raises(ValueError, match="out has 3 elements, 4 expected"):
                ctx.group("TP").all_gather(np.ones(2, np.float32), out=np.ones(3, np.float32))
            barrier(ctx)
    run_ranks(2, rank)


class _Opaque:
    """A host buffer through __array_interface__ only: moecomm cannot allocate one like it."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.__array_interface__ = a.__array_interface__


def _readonly(n: int) -> np.ndarray:
    a = np.zeros(n, np.float32)
    a.flags.writeable = False
    return a


def test_buffer_protocol_dtype() -> None:
    with _one() as ctx:
        with pytest.raises(TypeError, match="typecode 'd'"):
            ctx.group("TP").all_reduce(array.array("d", [1.0]))
