# SPDX-License-Identifier: Apache-2.0
"""What a buffer is, in the plugin's terms: (address, element count, moecomm dtype, device).

Accepted: torch tensors (CPU and CUDA), numpy arrays, objects with ``__cuda_array_interface__``
or (host memory) ``__array_interface__``, DLPack objects (``__dlpack__``), ``array.array`` and
writable host buffers of the buffer protocol (formats f, e, i).  Neither torch nor numpy is
imported here: a tensor's type is recognised by its module, and the framework is taken from
``sys.modules`` (the caller already imported it).  One adapter per Python type is chosen once
and cached, so a call costs one dict lookup and the framework's own attribute reads.

Device: -1 for host memory, the CUDA ordinal for device memory, or None when only the driver can
tell (a CUDA array interface without a device: ``pointer_device`` asks it).
"""

from __future__ import annotations

import array
import ctypes
import sys
from typing import Any, Callable, Dict, Optional, Tuple

from . import _abi

Desc = Tuple[int, int, int, Optional[int]]  # address, elements, moecomm dtype, device

SUPPORTED = "float32, float16, bfloat16, int32"
_BY_NAME = {"float32": _abi.FLOAT32, "float16": _abi.FLOAT16, "bfloat16": _abi.BFLOAT16,
            "int32": _abi.INT32}


def _dtype_error(what: str, dtype: Any) -> TypeError:
    return TypeError("moecomm: %s has dtype %s; supported dtypes are %s" % (what, dtype, SUPPORTED))


def _layout_error(what: str) -> ValueError:
    return ValueError("moecomm: %s is not contiguous; pass a contiguous buffer (e.g. "
                      "x.contiguous())" % what)


# ---- torch ----

_torch_dtypes: Dict[Any, int] = {}


def _torch_desc(t: Any) -> Desc:
    dt = _torch_dtypes.get(t.dtype)
    if dt is None:
        raise _dtype_error("torch tensor", t.dtype)
    if not t.is_contiguous():
        raise _layout_error("torch tensor of shape %s and stride %s"
                            % (tuple(t.shape), t.stride()))
    return t.data_ptr(), t.numel(), dt, t.get_device()


def _torch_adapter(torch: Any) -> Callable[[Any], Desc]:
    if not _torch_dtypes:
        _torch_dtypes.update({torch.float32: _abi.FLOAT32, torch.float16: _abi.FLOAT16,
                              torch.bfloat16: _abi.BFLOAT16, torch.int32: _abi.INT32})
    return _torch_desc


# ---- numpy ----

_numpy_dtypes: Dict[Any, int] = {}


_char_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def _numpy_desc(a: Any) -> Desc:
    dt = _numpy_dtypes.get(a.dtype)
    if dt is None:
        # bfloat16 comes from ml_dtypes; any dtype of a supported name and size is accepted.
        dt = _BY_NAME.get(a.dtype.name)
        if dt is None or a.dtype.itemsize != _abi.DTYPE_SIZES[dt]:
            raise _dtype_error("numpy array", a.dtype)
        _numpy_dtypes[a.dtype] = dt
    try:
        # The fast way to the address (__array_interface__ builds a dict: several us); it
        # refuses exactly what takes the slow path: read-only, empty or non-contiguous arrays.
        return _addressof(_char_from_buffer(a)), a.size, dt, -1
    except (TypeError, ValueError, BufferError):
        pass
    if not a.flags.c_contiguous:
        raise _layout_error("numpy array of shape %s and strides %s" % (a.shape, a.strides))
    return a.__array_interface__["data"][0], a.size, dt, -1


_ARRAY_CODES = {"f": _abi.FLOAT32, "i": _abi.INT32, "l": _abi.INT32}


def _array_desc(a: Any) -> Desc:
    """array.array: its own address query is the fastest of all."""
    dt = _ARRAY_CODES.get(a.typecode)
    if dt is None or a.itemsize != _abi.DTYPE_SIZES[dt]:
        raise _dtype_error("array.array of typecode %r" % a.typecode, a.typecode)
    return a.buffer_info()[0], len(a), dt, -1


# ---- __cuda_array_interface__ ----

_TYPESTRS = {"<f4": _abi.FLOAT32, "<f2": _abi.FLOAT16, "<i4": _abi.INT32, "=f4": _abi.FLOAT32,
             "=f2": _abi.FLOAT16, "=i4": _abi.INT32}


def _c_strides(shape: Tuple[int, ...], itemsize: int) -> Tuple[int, ...]:
    out = []
    step = itemsize
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


def _count(shape: Tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _interface_desc(cai: Any, what: str, dev: Optional[int]) -> Desc:
    typestr = cai["typestr"]
    dt = _TYPESTRS.get(typestr)
    if dt is None:
        raise _dtype_error(what + " object", typestr)
    shape = tuple(cai["shape"])
    strides = cai.get("strides")
    if strides is not None and _count(shape) > 1 and \
            tuple(strides) != _c_strides(shape, _abi.DTYPE_SIZES[dt]):
        raise _layout_error("%s object with strides %s" % (what, strides))
    return cai["data"][0], _count(shape), dt, dev


def _cai_desc(x: Any) -> Desc:
    return _interface_desc(x.__cuda_array_interface__, "__cuda_array_interface__", None)


def _host_interface_desc(x: Any) -> Desc:
    return _interface_desc(x.__array_interface__, "__array_interface__", -1)


# ---- DLPack ----

_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13
_DL_DTYPES = {(2, 32): _abi.FLOAT32, (2, 16): _abi.FLOAT16, (4, 16): _abi.BFLOAT16,
              (0, 32): _abi.INT32}


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32),
                ("device_id", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _dlpack_desc(x: Any, stream: Optional[int] = None) -> Desc:
    dev_type, dev_id = x.__dlpack_device__()
    if dev_type == _KDL_CUDA:
        # Producer orders its work before `stream` (DLPack: 1 is the legacy default stream).
        cap = x.__dlpack__(stream=stream or 1)
    else:
        cap = x.__dlpack__()
    # The capsule is not consumed: it keeps x's memory alive only as long as x does, and its
    # destructor releases what the producer allocated for it.
    t = _DLTensor.from_address(_capsule_pointer(cap, b"dltensor"))
    dt = _DL_DTYPES.get((t.code, t.bits)) if t.lanes == 1 else None
    if dt is None:
        raise _dtype_error("DLPack object", "(code %d, bits %d, lanes %d)"
                           % (t.code, t.bits, t.lanes))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides and _count(shape) > 1:
        strides = tuple(t.strides[i] * _abi.DTYPE_SIZES[dt] for i in range(t.ndim))
        if strides != _c_strides(shape, _abi.DTYPE_SIZES[dt]):
            raise _layout_error("DLPack object with strides %s" % (strides,))
    if dev_type in (_KDL_CPU, _KDL_CUDA_HOST):
        dev: Optional[int] = -1
    elif dev_type in (_KDL_CUDA, _KDL_CUDA_MANAGED):
        dev = dev_id
    else:
        raise ValueError("moecomm: DLPack device type %d is neither CPU nor CUDA" % dev_type)
    return (t.data or 0) + t.byte_offset, _count(shape), dt, dev


# ---- the buffer protocol (array.array, bytearray-backed memoryviews, ctypes arrays) ----

_FORMATS = {"f": _abi.FLOAT32, "e": _abi.FLOAT16, "i": _abi.INT32, "<f": _abi.FLOAT32,
            "<e": _abi.FLOAT16, "<i": _abi.INT32, "=f": _abi.FLOAT32, "=e": _abi.FLOAT16,
            "=i": _abi.INT32}


def _buffer_desc(x: Any) -> Desc:
    m = memoryview(x)
    dt = _FORMATS.get(m.format)
    if dt is None and m.format in ("l", "<l", "=l") and m.itemsize == 4:
        dt = _abi.INT32
    if dt is None or m.itemsize != _abi.DTYPE_SIZES[dt]:
        raise _dtype_error("buffer of format %r" % m.format, m.format)
    if not m.c_contiguous:
        raise _layout_error("buffer")
    if m.readonly:
        raise ValueError("moecomm: read-only buffers (bytes, ...) are not accepted; use a "
                         "writable one (array.array, bytearray)")
    n = m.nbytes // m.itemsize
    addr = ctypes.addressof((ctypes.c_char * max(m.nbytes, 1)).from_buffer(m)) if m.nbytes else 0
    return addr, n, dt, -1


# ---- dispatch ----

_adapters: Dict[type, Callable[[Any], Desc]] = {}


def _resolve(x: Any) -> Callable[[Any], Desc]:
    tp = type(x)
    mod = tp.__module__ or ""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if torch is not None and isinstance(x, torch.Tensor):  # subclasses of any module too
        f = _torch_adapter(torch)
    elif numpy is not None and isinstance(x, numpy.ndarray):
        f = _numpy_desc
    elif isinstance(x, array.array):
        f = _array_desc
    elif hasattr(x, "__cuda_array_interface__"):
        f = _cai_desc
    elif hasattr(x, "__array_interface__"):
        f = _host_interface_desc
    elif hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        f = _dlpack_desc
    elif _has_buffer(x):
        f = _buffer_desc
    else:
        raise TypeError("moecomm: %s.%s is not a buffer moecomm takes: pass a torch tensor, a "
                        "numpy array, an object with __cuda_array_interface__ or __dlpack__, or a "
                        "writable host buffer (array.array)"
                        % (mod, tp.__name__))
    _adapters[tp] = f
    return f


def _has_buffer(x: Any) -> bool:
    try:
        memoryview(x)
    except TypeError:
        return False
    return True


def describe(x: Any) -> Desc:
    """(address, elements, moecomm dtype, device) of x; TypeError / ValueError when unusable."""
    f = _adapters.get(type(x))
    if f is None:
        f = _resolve(x)
    return f(x)


def is_torch(x: Any) -> bool:
    return _adapters.get(type(x)) is _torch_desc


def writable(x: Any) -> bool:
    """False for read-only numpy arrays and read-only CUDA array interfaces."""
    flags = getattr(x, "flags", None)
    if flags is not None and hasattr(flags, "writeable"):
        return bool(flags.writeable)
    for name in ("__cuda_array_interface__", "__array_interface__"):
        cai = getattr(x, name, None)
        if cai is not None:
            return not cai["data"][1]
    return True


def shape_of(x: Any) -> Tuple[int, ...]:
    """The shape of a torch tensor, numpy array, CAI or DLPack object."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return tuple(shape)
    for name in ("__cuda_array_interface__", "__array_interface__"):
        cai = getattr(x, name, None)
        if cai is not None:
            return tuple(cai["shape"])
    if _has_buffer(x):
        return tuple(memoryview(x).shape or ())
    raise TypeError("moecomm: cannot tell the shape of %s; pass out= explicitly" % type(x))


def empty_like(x: Any, shape: Tuple[int, ...]) -> Any:
    """A new buffer of x's kind, dtype and device with `shape` (torch tensors, numpy arrays)."""
    if is_torch(x):
        return x.new_empty(shape)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(x, numpy.ndarray):
        return numpy.empty(shape, dtype=x.dtype)
    if isinstance(x, array.array):
        return array.array(x.typecode, bytes(x.itemsize * _count(shape)))
    raise TypeError("moecomm: cannot allocate an output like %s.%s; pass out= (outputs are "
                    "allocated only for torch tensors and numpy arrays)"
                    % (type(x).__module__, type(x).__name__))


# ---- float8 e4m3 buffers (ABI 1.2: dispatch payloads, the fused norm's fp8 copy) ----

_FP8_NAMES = ("float8_e4m3fn", "uint8")  # uint8: raw e4m3 bytes


def describe_fp8(x: Any) -> Tuple[int, int, Optional[int]]:
    """(address, elements, device) of a buffer of float8 e4m3 values: a torch or numpy
    (ml_dtypes) float8_e4m3fn or uint8 array, array.array('B'), a CAI or DLPack object of
    1-byte unsigned integers."""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    name = str(getattr(x, "dtype", "")).replace("torch.", "")
    if (torch is not None and isinstance(x, torch.Tensor)) or \
            (numpy is not None and isinstance(x, numpy.ndarray)):
        if name not in _FP8_NAMES:
            raise TypeError("moecomm: a float8 e4m3 buffer must be float8_e4m3fn or uint8 (raw "
                            "bytes); got %s" % name)
        if torch is not None and isinstance(x, torch.Tensor):
            if not x.is_contiguous():
                raise _layout_error("torch tensor")
            return x.data_ptr(), x.numel(), x.get_device()
        if not x.flags.c_contiguous:
            raise _layout_error("numpy array")
        return x.__array_interface__["data"][0], x.size, -1
    if isinstance(x, array.array) and x.typecode == "B":
        return x.buffer_info()[0], len(x), -1
    for attr, dev in (("__cuda_array_interface__", None), ("__array_interface__", -1)):
        cai = getattr(x, attr, None)
        if cai is not None:
            if cai["typestr"] not in ("|u1", "<u1", "=u1"):
                raise TypeError("moecomm: a float8 e4m3 buffer must hold 1-byte values; got "
                                "typestr %s" % cai["typestr"])
            return cai["data"][0], _count(tuple(cai["shape"])), dev
    raise TypeError("moecomm: %s is not a float8 e4m3 buffer moecomm takes (torch or numpy "
                    "float8_e4m3fn or uint8, array.array('B'))" % type(x).__name__)


def empty_as(x: Any, shape: Tuple[int, ...], kind: str) -> Any:
    """A new buffer of x's framework and device with `shape` and element `kind`: "int32",
    "float32" or "fp8" (float8_e4m3fn where the framework has it, else uint8)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        dt = {"int32": torch.int32, "float32": torch.float32,
              "fp8": getattr(torch, "float8_e4m3fn", torch.uint8)}[kind]
        return x.new_empty(shape, dtype=dt)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(x, numpy.ndarray):
        ml = sys.modules.get("ml_dtypes")
        dt = {"int32": numpy.int32, "float32": numpy.float32,
              "fp8": ml.float8_e4m3fn if ml is not None else numpy.uint8}[kind]
        return numpy.empty(shape, dtype=dt)
    if isinstance(x, array.array):
        code = {"int32": "i", "float32": "f", "fp8": "B"}[kind]
        return array.array(code, bytes(array.array(code).itemsize * _count(shape)))
    raise TypeError("moecomm: cannot allocate an output like %s.%s; pass it explicitly"
                    % (type(x).__module__, type(x).__name__))


# ---- CUDA pointers that do not say their device ----

_cuda_driver: Any = None


def pointer_device(address: int) -> Optional[int]:
    """CUDA ordinal of a device pointer, -1 for host memory, None when no driver is loadable."""
    global _cuda_driver
    if _cuda_driver is None:
        try:
            _cuda_driver = ctypes.CDLL("libcuda.so.1")
            _cuda_driver.cuPointerGetAttribute.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                                           ctypes.c_uint64]
            _cuda_driver.cuPointerGetAttribute.restype = ctypes.c_int
        except OSError:
            _cuda_driver = False
    if not _cuda_driver:
        return None
    ordinal = ctypes.c_int(-1)
    # CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL = 9; fails for memory CUDA does not know: host memory.
    rc = _cuda_driver.cuPointerGetAttribute(ctypes.byref(ordinal), 9, address)
    return ordinal.value if rc == 0 else -1
