"""Bilinear resizing (``F.interpolate(mode="bilinear")``) on the CPU.

Math. Along one axis, output index ``d`` reads the source coordinate ``src`` (``r`` is the
ratio of source pixels per output pixel the caller computed with PyTorch's rule)::

    align_corners=True:   src = d * r
    align_corners=False:  src = max((d + 0.5) * r - 0.5, 0)
    i0 = min(int(src), in - 1);   i1 = i0 + 1 if i0 < in - 1 else i0
    l1 = clip(src - i0, 0, 1);    l0 = 1 - l1          (the clip only guards rounding)

(when ``out == in`` PyTorch copies: ``i0 = i1 = d``, ``l0 = 1``, ``l1 = 0``). In 2-D the
weights multiply::

    y[oh, ow] = lh0*(lw0*x[h0, w0] + lw1*x[h0, w1]) + lh1*(lw0*x[h1, w0] + lw1*x[h1, w1])

The map is linear in ``x``, so the gradient is its transpose: each ``gy[oh, ow]`` is
spread back onto the same four source pixels with the same four weights.

Shapes. ``x, gx``: (N, C, H, W); ``y, gy``: (N, C, OH, OW). The per-axis tables
``h0, h1, lh0, lh1`` (length OH) and ``w0, w1, lw0, lw1`` (length OW) are computed once
per call in the dtype of ``x``, with the same float operations as PyTorch.

Loop mapping. The launchers view the arrays as (N*C, H, W) planes; ``prange`` runs over
planes. The 2-D interpolation is done as two 1-D passes: mix the two source rows of an
output row into a scratch row ``t`` (length W), then interpolate ``t`` along the width::

    for p in prange(N*C):                         # one (n, c) plane per iteration
        for oh in range(OH):
            for w in range(W):   t[w] = lh0[oh]*x[p, h0[oh], w] + lh1[oh]*x[p, h1[oh], w]
            for ow in range(OW): y[p, oh, ow] = lw0[ow]*t[w0[ow]] + lw1[ow]*t[w1[ow]]

The backward runs the same passes transposed: scatter a row of ``gy`` into ``t`` along the
width, then add ``lh0*t`` and ``lh1*t`` into source rows ``h0`` and ``h1``. The scatter is
race-free because one thread owns the whole plane it writes.

Optimizations:
    - Separable passes: 2*W + 2*OW multiply-adds per output row instead of 4*OW, and the
      row mix is a contiguous loop LLVM vectorizes.
    - The index/weight tables are built once per call, not once per element or per plane.
    - Backward scatters stay inside a thread's own plane: no atomics, deterministic sums.
"""
import numpy as np
from numba import njit, prange

from ..checks import check_float, check_pair

__all__ = ["bilinear_forward", "bilinear_backward"]


@njit(parallel=True, cache=True)
def _forward_kernel(x, h0, h1, lh0, lh1, w0, w1, lw0, lw1, y):
    """Per plane and output row: mix two source rows, then interpolate along the width."""
    P, H, W = x.shape
    _, OH, OW = y.shape
    for p in prange(P):
        t = np.empty(W, dtype=x.dtype)
        for oh in range(OH):
            a, b = h0[oh], h1[oh]
            la, lb = lh0[oh], lh1[oh]
            for w in range(W):
                t[w] = la * x[p, a, w] + lb * x[p, b, w]
            for ow in range(OW):
                y[p, oh, ow] = lw0[ow] * t[w0[ow]] + lw1[ow] * t[w1[ow]]


@njit(parallel=True, cache=True)
def _backward_kernel(gy, h0, h1, lh0, lh1, w0, w1, lw0, lw1, gx):
    """Transpose of the forward: scatter each ``gy`` row along the width, then into two rows."""
    P, OH, OW = gy.shape
    _, H, W = gx.shape
    for p in prange(P):
        t = np.empty(W, dtype=gy.dtype)
        for oh in range(OH):
            t[:] = 0
            for ow in range(OW):
                g = gy[p, oh, ow]
                t[w0[ow]] += lw0[ow] * g
                t[w1[ow]] += lw1[ow] * g
            a, b = h0[oh], h1[oh]
            la, lb = lh0[oh], lh1[oh]
            for w in range(W):
                gx[p, a, w] += la * t[w]
                gx[p, b, w] += lb * t[w]


def _source_index(in_size, out_size, ratio, align_corners, dtype):
    """Per-axis tables ``(i0, i1, l0, l1)`` of PyTorch's ``upsample_bilinear2d``.

    Computed in ``dtype`` with ``ratio`` rounded to it first, as PyTorch does, so float32
    weights follow PyTorch's rounding rather than a more exact float64 version of them.
    """
    d = np.arange(out_size, dtype=dtype)
    if out_size == in_size:
        i = np.arange(out_size, dtype=np.int64)
        return i, i, np.ones_like(d), np.zeros_like(d)
    r = dtype.type(ratio)
    if align_corners:
        src = d * r
    else:
        src = np.maximum((d + dtype.type(0.5)) * r - dtype.type(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = np.clip(src - i0.astype(dtype), 0, 1)
    return i0, i1, 1 - l1, l1


def _tables(in_hw, out_hw, ratio, align_corners, dtype):
    """Validate ``ratio`` and build the tables of both axes."""
    if len(ratio) != 2 or any(not np.isfinite(r) or r < 0 for r in ratio):
        raise ValueError(f"ratio: expected a pair of finite floats >= 0, got {ratio}")
    return (_source_index(in_hw[0], out_hw[0], float(ratio[0]), align_corners, dtype)
            + _source_index(in_hw[1], out_hw[1], float(ratio[1]), align_corners, dtype))


def bilinear_forward(x, size, ratio, align_corners):
    """Resize ``x`` (N, C, H, W) to ``size`` (OH, OW) bilinearly; returns ``y``.

    ``ratio`` (rh, rw): source pixels per output pixel, as PyTorch computes them.
    """
    check_float("x", x, ndim=4)
    OH, OW = check_pair("size", size, 1)
    N, C, H, W = x.shape
    tables = _tables((H, W), (OH, OW), ratio, bool(align_corners), x.dtype)
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    _forward_kernel(x.reshape(N * C, H, W), *tables, y.reshape(N * C, OH, OW))
    return y


def bilinear_backward(gy, x_shape, ratio, align_corners):
    """Gradient of ``bilinear_forward`` w.r.t. its input of shape ``x_shape``; returns ``gx``."""
    check_float("gy", gy, ndim=4)
    if len(x_shape) != 4 or any(int(s) != s or s < 1 for s in x_shape):
        raise ValueError(f"x_shape: expected 4 positive integers, got {tuple(x_shape)}")
    N, C, H, W = (int(s) for s in x_shape)
    if tuple(gy.shape[:2]) != (N, C):
        raise ValueError(f"gy: expected shape ({N}, {C}, OH, OW), got {tuple(gy.shape)}")
    OH, OW = gy.shape[2:]
    tables = _tables((H, W), (OH, OW), ratio, bool(align_corners), gy.dtype)
    gx = np.zeros((N, C, H, W), dtype=gy.dtype)
    _backward_kernel(gy.reshape(N * C, OH, OW), *tables, gx.reshape(N * C, H, W))
    return gx
