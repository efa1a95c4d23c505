"""Devices: the names ``"cpu"`` and ``"cuda"``, and the array module behind each.

A Tensor never stores a device flag: its device is where its array lives. NumPy arrays are
on ``"cpu"``; arrays of ``kernels.device.array_module()`` (CuPy's, or the emulated GPU's,
which ``kernels.device`` chooses) are on ``"cuda"``. Nothing is imported for ``"cuda"``
until it is asked for, so the package works on machines without CuPy.

Two words kept apart: a *device* is where an array lives (this module); a *backend* is a
module of kernels, ``kernels.cpu`` or ``kernels.cuda``, that ``kernels.backend_for(array)``
picks for an array. The modules of this package import the functions they use by name
(``from .device import xp_of``): ``device`` is also what every argument holding a device
name is called, so the module itself is never a local name here. From outside, the module
is ``mts.device`` (``mts.device.xp_of(array)``).
"""
import numpy as np

from kernels import device as _cuda

DEVICES = ("cpu", "cuda")


def is_cuda_array(array):
    """True when ``array`` lives on device ``"cuda"`` (checked without importing CuPy)."""
    return _cuda.is_device_array(array)


def device_of(array):
    """The device name of ``array``: ``"cuda"`` or ``"cpu"``."""
    return "cuda" if is_cuda_array(array) else "cpu"


def xp_of(array):
    """The array module (``numpy``, or the ``"cuda"`` one) that owns ``array``."""
    return _cuda.array_module() if is_cuda_array(array) else np


def xp_for(device):
    """The array module for a device name."""
    return _cuda.array_module() if check_device(device) == "cuda" else np


def contiguous(array):
    """``array`` itself when C-contiguous (as kernels read memory), else a C-contiguous copy.

    The engine passes every forward and backward its arrays through this, so no operation
    sees a strided view or a broadcast (stride 0) gradient.
    """
    return array if array.flags.c_contiguous else xp_of(array).ascontiguousarray(array)


def check_device(device):
    """Return ``device`` as ``"cpu"`` or ``"cuda"``; raise a ValueError for anything else."""
    name = str(device)
    if name.startswith("cuda"):
        name = "cuda"
    if name not in DEVICES:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    return name


def allocation_of(array):
    """``(id, bytes)`` of the allocation that holds ``array``'s memory: arrays of different
    allocations never share memory."""
    if is_cuda_array(array):
        return id(array.data.mem), array.data.mem.size
    owner = array  # a NumPy view's base chain ends at the array that owns the memory
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    return id(owner), owner.nbytes


def to_host(array):
    """``array`` as a NumPy array: itself on the CPU, a copy from the device on ``"cuda"``.

    Every read from the device goes through here (``Tensor.numpy``, ``item``, ``to("cpu")``):
    it makes the host wait for the GPU, and raises the errors kernels recorded meanwhile.
    """
    return _cuda.to_host(array) if is_cuda_array(array) else array


def to_device(array, device):
    """Return ``array`` on ``device``, copying only when it lives elsewhere."""
    device = check_device(device)
    if device_of(array) == device:
        return array
    if device == "cuda":
        return _cuda.array_module().asarray(array)
    return to_host(array)
