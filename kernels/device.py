"""What device ``"cuda"`` is in this process: a real GPU through CuPy, or the emulated GPU.

The one place that decides. ``MTS_CUDA=emulate`` in the environment, or :func:`emulate`
called before the first CUDA array or kernel, selects the emulator
(``kernels/cuda/emulator``); otherwise (or with ``MTS_CUDA=gpu``) ``"cuda"`` is CuPy and a GPU. The choice is made
once, on first use, and holds for the life of the process. Everything above asks this
module for the array module (:func:`array_module`: ``cupy`` or the emulator's stand-in),
and never imports CuPy itself.

:class:`Stats` tallies the launches of our kernels (``minitorch_seg.benchmark.counters``
reads it, with the emulator's own tallies and CuPy's memory pool, to measure a block of code).
"""
import contextlib
import os

import numpy as np

COMPUTE_TYPE_TF32 = 7  # CuPy's (cupy/_core/_routines_linalg.pxd, line 27)
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
        raise RuntimeError(f"device 'cuda': {unavailable_reason()}") from e
    return cupy


@contextlib.contextmanager
def tf32():
    """Inside: CuPy's float32 GEMMs may round their operands to TF32 (10-bit mantissa) on tensor
    cores. It sets CuPy's compute type (``cupy._core.set_compute_type``; ``CUPY_TF32=1`` sets it for
    the whole process), which CuPy applies to 2-D products only (``tensordot_core_v11``)."""
    core = array_module()._core
    before = core.get_compute_type(np.float32)
    core.set_compute_type(np.float32, COMPUTE_TYPE_TF32)
    try:
        yield
    finally:
        core.set_compute_type(np.float32, before)


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


def unavailable_reason():
    """Why device ``"cuda"`` cannot be used here, and how to get it, in one line; None if it can."""
    try:
        import cupy  # noqa: F401
        missing = "CuPy sees no GPU"
    except ImportError:
        missing = "CuPy is not installed (pip install 'minitorch-seg[cuda13]', or [cuda12], to match your CUDA)"
    return None if available() else f"{missing}; without a GPU, run the CUDA code on the emulated GPU: MTS_CUDA=emulate"


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
    """Launches of our kernels so far (``kernels/cuda/launch.py`` counts them), on either device.

    ``launch(name, kernel, *args)`` runs ``kernel(*args)``; ``counters(measure=True)`` swaps
    in one that times each launch with CUDA events (``minitorch_seg.benchmark``).
    """

    our_launches = 0
    launch = staticmethod(lambda name, kernel, *args: kernel(*args))


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


def pinned_empty(shape, dtype):
    """A NumPy array in pinned (page-locked) host memory, which the GPU's copy engine reads
    while the host goes on; plain host memory for the emulated GPU."""
    if is_emulated():
        return np.empty(shape, dtype)
    import cupyx
    return cupyx.empty_pinned(shape, dtype)


def synchronize():
    """Wait until every queued kernel has finished (a no-op without a GPU)."""
    if available():
        array_module().cuda.get_current_stream().synchronize()
