"""The emulated GPU's array module: CuPy's names over arrays that live in host memory.

``kernels/cuda``, ``minitorch_seg`` and ``fastscnn`` hold this module where they would hold
``cupy`` (``kernels.device.array_module()`` hands out one or the other), so the same code
runs on both. An :class:`ndarray` here wraps a NumPy array that only this module touches,
and behaves as a CuPy array does where a GPU would object:

- it reports the device ``cuda``;
- mixing it with a NumPy array (``device + host``) is a TypeError, as in CuPy;
- NumPy cannot read it implicitly (``np.asarray(device)`` raises); ``.get()`` copies it
  to the host, and so do ``float()``, ``int()``, ``bool()``, ``.item()``: each counts as
  a device-to-host read, the operation that makes a real GPU wait;
- fresh memory (``empty``, ``empty_like``) is filled with 0xFF bytes, NaN for floats, so
  a kernel that forgets to write an element shows it;
- a NumPy function or array method that CuPy does not have is an AttributeError, as on a
  GPU (checked against the installed CuPy, which imports without a GPU; unchecked without it).

It also counts, for ``minitorch_seg.benchmark.counters()``: the kernels CuPy itself would launch for
array arithmetic, reductions, copies and fills (``kernels/cuda/launch.py`` counts ours),
device-to-host reads, and the bytes of live device arrays and their peak.
"""
import functools
import operator
import time
import types
import weakref

import numpy as np

from . import trace

POISON = 0xFF


def _cupy_names():
    """``{"cupy": its names, "cupy.ndarray": its names}`` of the installed CuPy, or None without one."""
    try:
        import cupy
    except ImportError:
        return None
    return {"cupy": set(dir(cupy)), "cupy.ndarray": set(dir(cupy.ndarray))}


_CUPY = _cupy_names()


def _check_cupy_has(name, where):
    """Raise AttributeError unless CuPy's ``where`` ("cupy" or "cupy.ndarray") has ``name``."""
    if _CUPY is not None and name not in _CUPY[where]:
        raise AttributeError(f"{where} has no {name!r}: the emulated GPU offers only what CuPy does, "
                             f"so this would fail on a real GPU")


class Stats:
    """Running totals; ``minitorch_seg.benchmark.counters()`` reads their change over a block of code."""

    library_launches = 0    # what CuPy would launch for arithmetic, reductions, copies, fills
    syncs = 0               # device-to-host reads
    live_bytes = 0
    watchers = []           # counters currently open: each tracks its own peak


_live = {}  # id of a NumPy array owning device memory -> (a weak reference to it, its Memory)


def _release(key):
    Stats.live_bytes -= _live.pop(key)[1].size


def live_arrays():
    """Every NumPy array that owns device memory now (for the race check's snapshots)."""
    return [a for a in (ref() for ref, _ in list(_live.values())) if a is not None]


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _track(a):
    """Count the memory behind ``a`` as device memory while any array still uses it."""
    root = _root(a)
    key = id(root)
    if key not in _live:
        _live[key] = (weakref.ref(root), Memory(root.nbytes))
        Stats.live_bytes += root.nbytes
        for w in Stats.watchers:
            w.peak_bytes = max(w.peak_bytes, Stats.live_bytes)
        weakref.finalize(root, _release, key)


def _launched(name, inputs, outputs, tf32=False):
    """Count the launches of one call of CuPy's (a matmul: several, ``trace.matmul_kernels``);
    traced, also record the arrays it reads and writes."""
    launch = trace.LibraryLaunch(name, [trace.describe(a) for a in inputs],
                                 [trace.describe(a) for a in outputs], tf32)
    Stats.library_launches += launch.launches
    if trace.enabled():
        trace.keep(launch)


def _read_back():
    Stats.syncs += 1


class Device:
    """The one emulated device, ``cuda:0``."""

    id = 0

    def synchronize(self):
        """Nothing to wait for: every launch has finished when it returns."""

    def use(self):
        """Make it current (it always is)."""

    def __repr__(self):
        return "<CUDA Device 0 (emulated)>"


_DEVICE = Device()


class MemoryPointer:
    """``ndarray.data``, as in CuPy: ``.ptr`` is the address of the first element, ``.mem`` the
    allocation it lies in (the same object for every array that views it)."""

    def __init__(self, ptr, mem):
        self.ptr, self.mem = ptr, mem


class Memory:
    """One allocation of device memory, as CuPy's: its ``size`` in bytes."""

    def __init__(self, size):
        self.size = size


class ndarray:
    """An array in the emulated device's memory (see the module docstring)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = np.empty(shape, dtype, order)
        self._a.view(np.uint8)[...] = POISON
        _track(self._a)

    @classmethod
    def _of(cls, a):
        """Wrap a NumPy array that already holds device data (no copy)."""
        out = object.__new__(cls)
        out._a = a
        _track(a)
        return out

    # --- what it is ---------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: _DEVICE)
    data = property(lambda self: MemoryPointer(self._a.ctypes.data, _live[id(_root(self._a))][1]))
    T = property(lambda self: _wrap(self._a.T))

    def __len__(self):
        return len(self._a)

    # --- leaving the device: each of these is a device-to-host read ----------------------
    def get(self, stream=None, order="C", out=None):
        """A NumPy copy of the array in host memory."""
        _read_back()
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, array, stream=None):
        """Copy the host array ``array`` (same shape and dtype) into this device array."""
        if not isinstance(array, np.ndarray) or array.shape != self.shape or array.dtype != self.dtype:
            raise ValueError(f"set: expected a NumPy array of shape {self.shape} and dtype {self.dtype}")
        self._a[...] = array

    def item(self, *args):
        """One element as a Python number."""
        _read_back()
        return self._a.item(*args)

    def tolist(self):
        """The elements as nested Python lists."""
        _read_back()
        return self._a.tolist()

    def __float__(self):
        _read_back()
        return float(self._a)

    def __int__(self):
        _read_back()
        return int(self._a)

    def __index__(self):
        _read_back()
        return operator.index(self._a)

    def __bool__(self):
        _read_back()
        return bool(self._a)

    def __repr__(self):
        _read_back()
        return repr(self._a)

    __str__ = __repr__

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # --- on the device ----------------------------------------------------------------------
    def __getitem__(self, key):
        result = self._a[_unwrap(key, allow_host=True)]
        if not isinstance(result, np.ndarray) or _root(result) is not _root(self._a):
            _launched("take", [self._a], [result])  # advanced indexing gathers into new memory
        return _wrap(result)

    def __setitem__(self, key, value):
        key, value = _unwrap(key, allow_host=True), _unwrap(value)
        written = [self._a[key]] if trace.enabled() else []  # (a gather copies: only when traced)
        _launched("setitem", [value] if isinstance(value, np.ndarray) else [], written)
        self._a[key] = value

    def copy(self, order="C"):
        """A copy on the device."""
        result = self._a.copy(order)
        _launched("copy", [self._a], [result])
        return _wrap(result)

    def astype(self, dtype, order="K", casting="unsafe", copy=True):
        """The elements converted to ``dtype`` (no copy when ``copy=False`` and it matches)."""
        result = self._a.astype(dtype, order=order, casting=casting, copy=copy)
        if result is not self._a:
            _launched("astype", [self._a], [result])
        return _wrap(result)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _run(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return _run(func, args, kwargs)

    def __getattr__(self, name):
        # Every other NumPy method (reshape, sum, max, transpose, ...), on the device; but no
        # __array_interface__ and the like, through which NumPy would read host memory.
        if name.startswith("__"):
            raise AttributeError(name)
        _check_cupy_has(name, "cupy.ndarray")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _run(attr, args, kwargs, self)


_BINARY = ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_",
           "xor", "lshift", "rshift"]
_COMPARE = ["lt", "le", "eq", "ne", "gt", "ge"]


def _install_operators():
    for name in _BINARY + _COMPARE:
        op = getattr(operator, name)
        dunder = name.rstrip("_")
        setattr(ndarray, f"__{dunder}__", lambda self, other, op=op: _run(op, (self, other), {}))
        if name in _BINARY:
            setattr(ndarray, f"__r{dunder}__", lambda self, other, op=op: _run(op, (other, self), {}))
            iop = getattr(operator, f"i{dunder}")
            setattr(ndarray, f"__i{dunder}__", lambda self, other, iop=iop: _run(iop, (self, other), {}))
    for name in ("neg", "pos", "abs", "invert"):
        op = getattr(operator, name)
        setattr(ndarray, f"__{name}__", lambda self, op=op: _run(op, (self,), {}))


_install_operators()


# ----------------------------------------------------------------------------- plumbing

def _unwrap(x, allow_host=False):
    """The NumPy arrays inside ``x`` (an argument); a host array is an error, as in CuPy."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray) and not allow_host:
        raise TypeError(f"Unsupported type {type(x)}: a NumPy array lives in host memory; copy it "
                        f"to the device first (cupy.asarray)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, allow_host) for k, v in x.items()}
    return x


def _wrap(x, inputs=()):
    """Results as device arrays: NumPy arrays and scalars become ``ndarray`` (0-d for scalars)."""
    if isinstance(x, np.ndarray):
        for i in inputs:
            if isinstance(i, ndarray) and i._a is x:
                return i  # an in-place operation returns its target
        return ndarray._of(x)
    if isinstance(x, np.generic):
        return ndarray._of(np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v, inputs) for v in x)
    return x


def _arrays(x):
    if isinstance(x, ndarray):
        yield x._a
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _arrays(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _arrays(v)


def _run(fn, args, kwargs, owner=None, tf32=False):
    """Call a NumPy function (or ``owner``'s method) on device arrays: one launch, unless it only views."""
    inputs = list(_arrays((owner, args, kwargs)))
    result = fn(*_unwrap(args), **_unwrap(kwargs))
    outputs = result if isinstance(result, (list, tuple)) else [result]
    roots = {id(_root(a)) for a in inputs}
    views = all(isinstance(r, np.ndarray) and id(_root(r)) in roots for r in outputs)
    in_place = "out" in kwargs or any(r is a for r in outputs for a in inputs)
    if in_place or not views:
        read = list(_arrays((owner, args, {k: v for k, v in kwargs.items() if k != "out"})))
        _launched(getattr(fn, "__name__", type(fn).__name__), read,
                  [r for r in outputs if isinstance(r, np.ndarray)], tf32)
    return _wrap(result, [a for a in [owner, *args, *kwargs.values()] if isinstance(a, ndarray)])


# ----------------------------------------------------------------------------- the namespace

def empty(shape, dtype=float, order="C"):
    """Uninitialised device memory (filled with 0xFF bytes: NaN for floats)."""
    return ndarray(shape, dtype, order)


def empty_like(a, dtype=None, order="K", shape=None):
    """Uninitialised device memory shaped like ``a``."""
    return ndarray(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def asarray(a, dtype=None, order=None):
    """``a`` on the device: a host array (or list) is copied; a device array is returned as is."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return ndarray._of(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K"):
    """A new device array with the values of ``a`` (host or device)."""
    if isinstance(a, ndarray):
        return a.astype(a.dtype if dtype is None else dtype, order=order, copy=copy)
    return asarray(a, dtype, order)


def ascontiguousarray(a, dtype=None):
    """``a`` as a C-contiguous device array (copied only when it is not one)."""
    a = asarray(a, dtype)
    return a if a.flags.c_contiguous else a.copy()


def asnumpy(a, stream=None, order="C", out=None):
    """``a`` in host memory: ``a.get()`` for a device array, a NumPy array otherwise."""
    return a.get(order=order, out=out) if isinstance(a, ndarray) else np.asarray(a, order=order)


def matmul(a, b, out=None):
    """``cupy.matmul``. Where CuPy would compute in TF32 (float32 2-D operands under the compute
    type TF32: ``trace.matmul_kernels``) the operands are rounded to TF32 first, so that the
    emulated GPU's results carry TF32's error, as a GPU's would."""
    tf32 = (_core.get_compute_type(np.float32) == _core.COMPUTE_TYPE_TF32 and a.ndim <= 2 and b.ndim <= 2
            and a.dtype == b.dtype == np.float32)
    return _run(_tf32_matmul if tf32 else np.matmul, (a, b), {} if out is None else {"out": out}, tf32=tf32)


def to_tf32(a):
    """float32 ``a`` rounded to TF32 (8-bit exponent, 10-bit mantissa): to nearest, ties away from
    zero, as the tensor cores' conversion (PTX ``cvt.rna.tf32.f32``), kept in float32."""
    return ((a.view(np.uint32) + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _tf32_matmul(a, b, out=None):
    return np.matmul(to_tf32(a), to_tf32(b), out=out)


_tf32_matmul.__name__ = "matmul"


class _Core:
    """``cupy._core``: the compute type of CuPy's GEMMs per dtype (its TF32 switch)."""

    COMPUTE_TYPE_DEFAULT = 1
    COMPUTE_TYPE_TF32 = 7   # the values of cupy/_core/_routines_linalg.pxd
    _types = {}

    def get_compute_type(self, dtype):
        """The compute type of ``dtype``'s matrix products (default unless set)."""
        return self._types.get(np.dtype(dtype), self.COMPUTE_TYPE_DEFAULT)

    def set_compute_type(self, dtype, compute_type):
        """Set the compute type of ``dtype``'s matrix products (TF32 applies to float32)."""
        self._types[np.dtype(dtype)] = compute_type


_core = _Core()


def get_array_module(*args):
    """This module if any argument is a device array, else NumPy (as ``cupy.get_array_module``)."""
    import sys
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def __getattr__(name):
    # Every other NumPy function (zeros, matmul, exp, where, concatenate...) on device arrays.
    obj = getattr(np, name)
    _check_cupy_has(name, "cupy")
    if isinstance(obj, types.ModuleType):
        raise AttributeError(f"the emulated device has no {name!r} module")
    if isinstance(obj, type) or not callable(obj):
        return obj  # dtypes and constants: numpy.float32 is cupy.float32
    wrapped = functools.wraps(obj)(lambda *args, **kwargs: _run(obj, args, kwargs))
    globals()[name] = wrapped
    return wrapped


class _Stream:
    def synchronize(self):
        """Nothing to wait for: launches finish before they return."""


class _Event:
    """``cupy.cuda.Event``: recorded after work that, here, has already finished, so it keeps
    the host's clock: times between events are the emulator's wall time, not a GPU's."""

    time = None

    def record(self, stream=None):
        """Mark this point of the stream."""
        self.time = time.perf_counter()

    def synchronize(self):
        """Wait for the work before the mark: it is done."""


class _Runtime:
    @staticmethod
    def getDeviceCount():
        """One emulated device."""
        return 1


class _Cuda:
    """``cupy.cuda``: the parts the project uses."""

    runtime = _Runtime()
    Device = staticmethod(lambda device=0: _DEVICE)
    Event = _Event

    @staticmethod
    def get_elapsed_time(start, end):
        """Milliseconds between two recorded events (``cupy.cuda.get_elapsed_time``)."""
        return 1e3 * (end.time - start.time)

    @staticmethod
    def get_current_stream():
        """The one stream (launches run in order, each to its end)."""
        return _Stream()


cuda = _Cuda()
