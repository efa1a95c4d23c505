"""Devices: the names ``"cpu"`` and ``"cuda"``, and the array module (numpy or cupy) behind each.

A Tensor never stores a device flag: its device is where its array lives. NumPy arrays are on
``"cpu"``, CuPy arrays on ``"cuda"``. CuPy is imported only when it is asked for, so the
package works on machines without it.
"""
import numpy as np

DEVICES = ("cpu", "cuda")


def _cupy():
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("device 'cuda' needs CuPy: pip install 'minitorch-seg[cuda12]' "
                           "or 'minitorch-seg[cuda13]'") from e
    return cupy


def is_cupy(array):
    """True when ``array`` is a CuPy array (checked without importing CuPy)."""
    return type(array).__module__.startswith("cupy")


def device_of(array):
    """The device name of ``array``: ``"cuda"`` for CuPy arrays, else ``"cpu"``."""
    return "cuda" if is_cupy(array) else "cpu"


def xp_of(array):
    """The array module (``numpy`` or ``cupy``) that owns ``array``."""
    return _cupy() if is_cupy(array) else np


def xp_for(device):
    """The array module for a device name."""
    return _cupy() if check_device(device) == "cuda" else np


def check_device(device):
    """Return ``device`` as ``"cpu"`` or ``"cuda"``; raise a ValueError for anything else."""
    name = str(device)
    if name.startswith("cuda"):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    return name


def to_device(array, device):
    """Return ``array`` on ``device``, copying only when it lives elsewhere."""
    device = check_device(device)
    if device_of(array) == device:
        return array
    if device == "cuda":
        return _cupy().asarray(array)
    return array.get()


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
