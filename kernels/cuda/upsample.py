"""Bilinear resizing on the GPU: the launches of ``upsample.cu``.

One thread per element written; the arrays go in as P = N*C planes, and ``ratio`` as two
scalars of the arrays' dtype (rounded to it first, as PyTorch does). The CPU twins:
``kernels/cpu/upsample.py``.
"""
from .launch import CudaFile, ints

__all__ = ["bilinear_forward", "bilinear_backward"]

CUDA = CudaFile("upsample.cu", __all__)


def _args(x, y, ratio, align_corners):
    """``P, H, W, OH, OW, rh, rw, align_corners`` for input side ``x`` and output side ``y``."""
    N, C, H, W = x.shape
    T = x.dtype.type
    return (*ints(N * C, H, W, *y.shape[2:]), T(ratio[0]), T(ratio[1]), *ints(align_corners))


def bilinear_forward(x, ratio, align_corners, y):
    """``y``: ``x`` resized bilinearly; ``ratio`` (rh, rw): source pixels per output pixel."""
    CUDA.launch("bilinear_forward", x.dtype, y.size, (x, *_args(x, y, ratio, align_corners), y))


def bilinear_backward(gy, ratio, align_corners, gx):
    """``gx`` = dL/dx: each element gathers the outputs that read it, with their weights."""
    CUDA.launch("bilinear_backward", gy.dtype, gx.size, (gy, *_args(gx, gy, ratio, align_corners), gx))
