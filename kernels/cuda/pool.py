"""Average pooling (fixed window and adaptive) on the GPU: the launches of ``pool.cu``.

One thread per element written; the arrays go in as P = N*C planes. The CPU twins:
``kernels/cpu/pool.py``.
"""
from .launch import CudaFile, ints

__all__ = ["avg_pool2d_forward", "avg_pool2d_backward", "adaptive_avg_pool2d_forward",
           "adaptive_avg_pool2d_backward"]

CUDA = CudaFile("pool.cu", __all__)


def _planes(x, y):
    """``(P, H, W, OH, OW)`` of the (N, C, H, W) input side ``x`` and output side ``y``."""
    N, C, H, W = x.shape
    return ints(N * C, H, W, *y.shape[2:])


def avg_pool2d_forward(x, kernel, stride, padding, y):
    """``y``: the window averages of ``x`` (padding counts as zeros)."""
    P, H, W, OH, OW = _planes(x, y)
    CUDA.launch("avg_pool2d_forward", x.dtype, y.size, (x, P, H, W, *ints(*kernel, *stride, *padding), OH, OW, y))


def avg_pool2d_backward(gy, kernel, stride, padding, gx):
    """``gx`` = dL/dx, each element gathering the outputs whose windows contain it."""
    P, H, W, OH, OW = _planes(gx, gy)
    CUDA.launch("avg_pool2d_backward", gy.dtype, gx.size, (gy, P, H, W, *ints(*kernel, *stride, *padding), OH, OW, gx))


def adaptive_avg_pool2d_forward(x, y):
    """``y``: the mean of each output's bin of ``x``."""
    CUDA.launch("adaptive_avg_pool2d_forward", x.dtype, y.size, (x, *_planes(x, y), y))


def adaptive_avg_pool2d_backward(gy, gx):
    """``gx`` = dL/dx, each element gathering from the bins that contain it."""
    CUDA.launch("adaptive_avg_pool2d_backward", gy.dtype, gx.size, (gy, *_planes(gx, gy), gx))
