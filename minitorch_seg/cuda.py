"""``mts.cuda``: the GPU, real or emulated, answered without needing CuPy installed.

``"cuda"`` is a real GPU through CuPy, or, with ``MTS_CUDA=emulate`` or :func:`emulate`,
the emulated GPU that runs the same CUDA C kernels on the CPU (``kernels/cuda/emulator``).
"""
from kernels import device as _device

emulate = _device.emulate              # before the first CUDA tensor: "cuda" is the emulated GPU
is_emulated = _device.is_emulated      # True when "cuda" is the emulated GPU
is_available = _device.available       # the emulator, or CuPy with a visible GPU
unavailable_reason = _device.unavailable_reason  # why not, and how to get it (None when available)
synchronize = _device.synchronize      # wait for every queued kernel (for timing); no-op without a GPU
pinned_empty = _device.pinned_empty    # a host array the GPU's copy engine reads directly


def default_device():
    """``"cuda"`` when a real GPU is usable, else ``"cpu"``: the device a run picks when none is named.

    The emulated GPU is never picked by default (it is for learning and testing, and slow):
    name ``"cuda"`` to use it.
    """
    return "cuda" if not is_emulated() and _device.gpu_present() else "cpu"
