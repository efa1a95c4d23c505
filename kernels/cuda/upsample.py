"""Bilinear resizing on the GPU: the launchers of ``upsample.cu``.

The lesson is the header of ``upsample.cu``; ``kernels/cpu/upsample.py`` computes the same
numbers with per-axis tables and two separable passes. Here one thread per output (forward)
or per input pixel (backward, a gather) computes its source indices itself, in the input's
dtype like the CPU tables, so ``ratio`` is passed in that dtype.
"""
import numpy as np

from ..checks import check_float, check_pair
from ._module import cp, Module, ints, on_gpu

__all__ = ["bilinear_forward", "bilinear_backward"]

KERNELS = ("bilinear_forward", "bilinear_backward")
_module = Module("upsample.cu", KERNELS)


def _check_ratio(ratio, dtype):
    """Validate ``ratio`` (rh, rw) and return it as two scalars of ``dtype``."""
    if len(ratio) != 2 or any(not np.isfinite(r) or r < 0 for r in ratio):
        raise ValueError(f"ratio: expected a pair of finite floats >= 0, got {ratio}")
    return dtype.type(ratio[0]), dtype.type(ratio[1])


def bilinear_forward(x, size, ratio, align_corners):
    """Resize ``x`` (N, C, H, W) to ``size`` (OH, OW) bilinearly; returns ``y``.

    ``ratio`` (rh, rw): source pixels per output pixel, as PyTorch computes them.
    """
    on_gpu(x=x)
    check_float("x", x, ndim=4)
    OH, OW = check_pair("size", size, 1)
    rh, rw = _check_ratio(ratio, x.dtype)
    N, C, H, W = x.shape
    y = cp.empty((N, C, OH, OW), dtype=x.dtype)
    _module.launch("bilinear_forward", x.dtype, y.size,
                   (x, *ints(N * C, H, W, OH, OW), rh, rw, *ints(bool(align_corners)), y))
    return y


def bilinear_backward(gy, x_shape, ratio, align_corners):
    """Gradient of ``bilinear_forward`` w.r.t. its input of shape ``x_shape``; returns ``gx``."""
    on_gpu(gy=gy)
    check_float("gy", gy, ndim=4)
    if len(x_shape) != 4 or any(int(s) != s or s < 1 for s in x_shape):
        raise ValueError(f"x_shape: expected 4 positive integers, got {tuple(x_shape)}")
    N, C, H, W = (int(s) for s in x_shape)
    if tuple(gy.shape[:2]) != (N, C):
        raise ValueError(f"gy: expected shape ({N}, {C}, OH, OW), got {tuple(gy.shape)}")
    OH, OW = gy.shape[2:]
    rh, rw = _check_ratio(ratio, gy.dtype)
    gx = cp.empty((N, C, H, W), dtype=gy.dtype)
    _module.launch("bilinear_backward", gy.dtype, gx.size,
                   (gy, *ints(N * C, H, W, OH, OW), rh, rw, *ints(bool(align_corners)), gx))
    return gx
