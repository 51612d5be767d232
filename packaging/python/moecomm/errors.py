# SPDX-License-Identifier: Apache-2.0
"""Exceptions: one MoecommError subclass per moecomm_result_t code (abi/moecomm.h).

Each carries the plugin's ``last_error`` sentence (``message``) and the code (``code``, with
``code_name`` such as "MOECOMM_ERR_CONFIG").  Checks the package makes in Python before calling
the plugin raise the built-in TypeError / ValueError instead (wrong dtype, shape, device).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _abi


class MoecommError(RuntimeError):
    """A moecomm call failed.  ``code`` is the moecomm_result_t (None for loader failures)."""

    code: Optional[int] = None

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(message)

    @property
    def code_name(self) -> str:
        if self.code is None:
            return "none"
        if 0 <= self.code < len(_abi.RESULT_NAMES):
            return _abi.RESULT_NAMES[self.code]
        return "unknown moecomm result %d" % self.code

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return "%s (%s)" % (self.message, self.code_name)


class LoadError(MoecommError):
    """The plugin could not be found, loaded or negotiated with (the loader's message)."""


class InvalidArgument(MoecommError, ValueError):
    """MOECOMM_ERR_INVALID_ARGUMENT: a NULL, out-of-range or misused argument."""
    code = 1


class StructSizeError(MoecommError):
    """MOECOMM_ERR_STRUCT_SIZE: a struct smaller than its ABI 1.0 layout."""
    code = 2


class VersionError(MoecommError):
    """MOECOMM_ERR_VERSION: no ABI version in common with the plugin."""
    code = 3


class ConfigError(MoecommError):
    """MOECOMM_ERR_CONFIG: the topology or MOECOMM_* environment is inconsistent."""
    code = 4


class NotSupported(MoecommError):
    """MOECOMM_ERR_NOT_SUPPORTED: a feature, dtype, op or ABI slot this plugin lacks."""
    code = 5


class Unavailable(MoecommError):
    """MOECOMM_ERR_UNAVAILABLE: the requested backend or device is not on this machine."""
    code = 6


class Timeout(MoecommError, TimeoutError):
    """MOECOMM_ERR_TIMEOUT: peers did not answer within MOECOMM_TIMEOUT_MS."""
    code = 7


class PeerError(MoecommError):
    """MOECOMM_ERR_PEER: a peer failed or disconnected, or the host all-gather failed."""
    code = 8


class BackendError(MoecommError):
    """MOECOMM_ERR_BACKEND: a CUDA, NCCL or operating-system call failed."""
    code = 9


class OutOfMemory(MoecommError, MemoryError):
    """MOECOMM_ERR_NO_MEMORY: a host or device allocation failed."""
    code = 10


class CaptureError(MoecommError):
    """MOECOMM_ERR_CAPTURE: capture misuse, or ranks captured different work."""
    code = 11


class StateError(MoecommError):
    """MOECOMM_ERR_STATE: the context is unusable after an earlier fatal error."""
    code = 12


class InternalError(MoecommError):
    """MOECOMM_ERR_INTERNAL: a bug in moecomm; please report the message."""
    code = 13


ERROR_CLASSES: Dict[int, Type[MoecommError]] = {
    c.code: c for c in (InvalidArgument, StructSizeError, VersionError, ConfigError, NotSupported,
                        Unavailable, Timeout, PeerError, BackendError, OutOfMemory, CaptureError,
                        StateError, InternalError)}  # type: ignore[misc]


def error_for(code: int, message: str) -> MoecommError:
    """The exception for a result code (a plain MoecommError for a code this package lacks)."""
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return MoecommError(message, code)
    return cls(message, code)
