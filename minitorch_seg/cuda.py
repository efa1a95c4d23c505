"""``mts.cuda``: the GPU, real or emulated, answered without needing CuPy installed.

``"cuda"`` is a real GPU through CuPy, or, with ``MTS_CUDA=emulate`` or :func:`emulate`,
the emulated GPU that runs the same CUDA C kernels on the CPU (``kernels/cuda/emulator``).
"""
from kernels import device as _device

counters = _device.counters
Uploader = _device.Uploader


def emulate():
    """Make device ``"cuda"`` the emulated GPU; call it before the first CUDA tensor."""
    _device.emulate()


def is_emulated():
    """True when device ``"cuda"`` is the emulated GPU."""
    return _device.is_emulated()


def is_available():
    """True when device ``"cuda"`` can be used: the emulator, or CuPy with a visible GPU."""
    return _device.available()


def default_device():
    """``"cuda"`` when a real GPU is usable, else ``"cpu"``: the device a run picks when none is named.

    The emulated GPU is never picked by default (it is for learning and testing, and slow):
    name ``"cuda"`` to use it.
    """
    return "cuda" if not is_emulated() and _device.gpu_present() else "cpu"


def synchronize():
    """Wait for every queued GPU kernel to finish (for timing); a no-op without a GPU."""
    _device.synchronize()
