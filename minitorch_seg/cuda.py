"""``mts.cuda``: questions about the GPU, answered without needing CuPy installed."""
from .backend import cuda_is_available


def is_available():
    """True when CuPy is installed and a CUDA device is visible."""
    return cuda_is_available()


def default_device():
    """``"cuda"`` when a GPU is usable, else ``"cpu"``: the device a run picks when none is named."""
    return "cuda" if cuda_is_available() else "cpu"


def synchronize():
    """Wait for every queued GPU kernel to finish (for timing); a no-op without a GPU."""
    if cuda_is_available():
        import cupy
        cupy.cuda.get_current_stream().synchronize()
