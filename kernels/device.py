"""What device ``"cuda"`` is in this process: a real GPU through CuPy, or the emulated GPU.

The one place that decides. ``MTS_CUDA=emulate`` in the environment, or :func:`emulate`
called before the first CUDA array or kernel, selects the emulator
(``kernels/cuda/emulator``); otherwise (or with ``MTS_CUDA=gpu``) ``"cuda"`` is CuPy and a GPU. The choice is made
once, on first use, and holds for the life of the process. Everything above asks this
module for the array module (:func:`array_module`: ``cupy`` or the emulator's stand-in),
and never imports CuPy itself.

:func:`counters` measures a block of code on either device: kernel launches, device-to-host
reads and the peak bytes of live device arrays.
"""
import os

import numpy as np

_mode = None          # "gpu" or "emulate", once decided
_requested = False


def emulate():
    """Use the emulated GPU for device ``"cuda"``; call it before any CUDA array is made."""
    global _requested
    if _mode == "gpu":
        raise RuntimeError("emulate: this process already uses the real GPU for 'cuda'; call "
                           "emulate() (or set MTS_CUDA=emulate) before the first CUDA array")
    _requested = True


def is_emulated():
    """True when device ``"cuda"`` is the emulator (decides the device if not yet decided)."""
    global _mode
    if _mode is None:
        setting = os.environ.get("MTS_CUDA", "").lower()
        if setting not in ("", "gpu", "emulate"):
            raise ValueError(f"MTS_CUDA: expected 'gpu' or 'emulate', got {setting!r}")
        _mode = "emulate" if _requested or setting == "emulate" else "gpu"
    return _mode == "emulate"


def array_module():
    """The array module of device ``"cuda"``: ``cupy``, or ``kernels.cuda.emulator.xp``."""
    if is_emulated():
        from .cuda.emulator import xp
        return xp
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("device 'cuda' needs CuPy and a GPU (pip install 'minitorch-seg[cuda13]'), "
                           "or the emulated GPU: MTS_CUDA=emulate") from e
    return cupy


def raw_module(code, options, name_expressions):
    """``cupy.RawModule(code=..., options=..., name_expressions=...)`` on device ``"cuda"``: compiled
    by NVRTC for the GPU, or by the system C++ compiler for the emulator."""
    if is_emulated():
        from .cuda.emulator.compiler import RawModule
    else:
        from cupy import RawModule
    return RawModule(code=code, options=options, name_expressions=name_expressions)


def is_device_array(array):
    """True for an array on device ``"cuda"`` (CuPy's or the emulator's), checked without importing."""
    module = type(array).__module__
    return module.startswith("cupy") or module == "kernels.cuda.emulator.xp"


def can_emulate():
    """True when the emulated GPU can compile kernels (a C++ compiler is installed)."""
    from .cuda.emulator.compiler import compiler
    try:
        compiler()
    except RuntimeError:
        return False
    return True


def gpu_present():
    """True when CuPy imports and sees a real GPU (whatever device ``"cuda"`` is)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: CuPy raises several kinds
        return False


def available():
    """True when device ``"cuda"`` can be used: the emulator, or CuPy with a visible GPU."""
    return is_emulated() or gpu_present()


def to_host(array):
    """A NumPy copy of the device array ``array``; then raise any error a kernel has recorded.

    The one door for reads from the device: it waits for the GPU, so it is also where the
    errors that kernels recorded since the last read (a bad class index in a target, say)
    are raised, as a GPU reports a device-side assert at the next synchronization.
    """
    host = array.get()
    run_deferred()
    return host


class Stats:
    """Launches of our kernels so far (``kernels/cuda/launch.py`` counts them), on either device."""

    our_launches = 0


_deferred = []  # checks to run at the next read from the device


def defer(check):
    """Run ``check()`` (which may raise) at the next read from the device, ``kernels.device.to_host``.

    A kernel that finds bad input cannot raise: it records what it found in device memory.
    Reading that back at once would make the host wait for the GPU; a GPU program learns of
    such errors at its next read instead, and so does this package.
    """
    _deferred.append(check)


def run_deferred():
    """Run and forget the deferred checks (called after each read from the device)."""
    while _deferred:
        _deferred.pop(0)()


class Uploader:
    """Copies host arrays to device ``"cuda"`` through one pinned (page-locked) host buffer.

    A copy from ordinary host memory makes the driver stage it through a pinned buffer of its
    own, and the host waits for it. From pinned memory the GPU's copy engine reads directly
    while the host goes on. So each batch is written into this Uploader's pinned buffer
    (allocated once per shape and dtype) and copied from there on the current stream; before
    the buffer is written again, the host waits for the previous copy out of it (an event,
    not a read of device memory).
    """

    def __init__(self):
        self._buffer = self._copied = None

    def __call__(self, array):
        """``array`` (NumPy) on the device."""
        xp = array_module()
        if self._buffer is None or self._buffer.shape != array.shape or self._buffer.dtype != array.dtype:
            self._buffer = _pinned_empty(array.shape, array.dtype)
        elif self._copied is not None:
            self._copied.synchronize()
        self._buffer[...] = array
        out = xp.empty(array.shape, array.dtype)
        out.set(self._buffer, stream=xp.cuda.get_current_stream())
        self._copied = xp.cuda.Event()
        self._copied.record()
        return out


def _pinned_empty(shape, dtype):
    """A NumPy array in pinned host memory (plain host memory for the emulated GPU)."""
    if is_emulated():
        return np.empty(shape, dtype)
    import cupyx
    return cupyx.empty_pinned(shape, dtype)


def synchronize():
    """Wait until every queued kernel has finished (a no-op without a GPU)."""
    if available():
        array_module().cuda.get_current_stream().synchronize()


class Counters:
    """What ran on device ``"cuda"`` inside a ``with counters() as c:`` block.

    ``launches`` = ``our_launches`` (the ``.cu`` kernels) + ``library_launches`` (what CuPy
    launches for array arithmetic, reductions, copies and fills); ``syncs``: device-to-host
    reads, each of which makes the host wait for the GPU; ``peak_bytes``: the most bytes of
    device arrays alive at once, counting ``start_bytes``, those alive when the block began.
    """

    def __init__(self):
        self.our_launches = self.library_launches = self.syncs = self.peak_bytes = self.start_bytes = 0

    @property
    def launches(self):
        """All kernel launches: ours and CuPy's."""
        return self.our_launches + self.library_launches

    def __repr__(self):
        return (f"Counters(launches={self.launches} (ours {self.our_launches}, library "
                f"{self.library_launches}), syncs={self.syncs}, peak_bytes={self.peak_bytes})")


class counters:
    """Context manager: ``with kernels.device.counters() as c: ...`` then read ``c``.

    On the emulated device every number is exact. On a real GPU ``our_launches`` and
    ``peak_bytes`` (from CuPy's memory pool) are; CuPy's own launches and device-to-host
    reads cannot be seen from Python there, so ``library_launches`` and ``syncs`` are None.
    """

    def __enter__(self):
        self.result = Counters()
        self._ours = Stats.our_launches
        if is_emulated():
            from .cuda.emulator.xp import Stats as emulated
            self._stats = emulated
            self._start = (emulated.library_launches, emulated.syncs)
            self.result.peak_bytes = self.result.start_bytes = emulated.live_bytes
            emulated.watchers.append(self.result)
        else:
            self._hook = _peak_memory_hook(self.result)
            self._hook.__enter__()
        return self.result

    def __exit__(self, *exc):
        r = self.result
        r.our_launches = Stats.our_launches - self._ours
        if is_emulated():
            self._stats.watchers.remove(r)
            r.library_launches = self._stats.library_launches - self._start[0]
            r.syncs = self._stats.syncs - self._start[1]
        else:
            self._hook.__exit__(*exc)
            r.library_launches = r.syncs = None
        return False


def _peak_memory_hook(counters):
    """A CuPy memory hook that keeps ``counters.peak_bytes`` at the most bytes in use (real GPU)."""
    cp = array_module()

    class PeakMemory(cp.cuda.MemoryHook):
        name = "mts-peak-memory"

        def __init__(self):
            self.used = cp.get_default_memory_pool().used_bytes()
            counters.peak_bytes = counters.start_bytes = self.used

        def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
            self.used += mem_size
            counters.peak_bytes = max(counters.peak_bytes, self.used)

        def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
            self.used -= mem_size

    return PeakMemory()
