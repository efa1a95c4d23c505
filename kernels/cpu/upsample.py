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
per call (:func:`_axis`) in the dtype of ``x``, with the same float operations as PyTorch.

Loop mapping. The kernels view the arrays as (N*C, H, W) planes; ``prange`` runs over
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

__all__ = ["bilinear_forward", "bilinear_backward"]


@njit(cache=True)
def _axis(in_size, out_size, ratio, align_corners, like):
    """Per-axis tables ``(i0, i1, l0, l1)`` of PyTorch's ``upsample_bilinear2d``.

    Computed in the dtype of the array ``like``, with ``ratio`` rounded to it first, as
    PyTorch does, so float32 weights follow PyTorch's rounding rather than a more exact
    float64 version of them.
    """
    T = like.dtype.type
    i0, i1 = np.empty(out_size, np.int64), np.empty(out_size, np.int64)
    l0, l1 = np.empty(out_size, like.dtype), np.empty(out_size, like.dtype)
    r, zero, half, one = T(ratio), T(0), T(0.5), T(1)
    for d in range(out_size):
        if out_size == in_size:                      # PyTorch copies
            i0[d], i1[d], l0[d], l1[d] = d, d, one, zero
            continue
        src = T(d) * r if align_corners else max((T(d) + half) * r - half, zero)
        a = min(int(src), in_size - 1)
        lam = min(max(src - T(a), zero), one)
        i0[d], i1[d], l0[d], l1[d] = a, a + 1 if a < in_size - 1 else a, one - lam, lam
    return i0, i1, l0, l1


@njit(parallel=True, cache=True)
def bilinear_forward(x, ratio, align_corners, y):
    """Per plane and output row: mix two source rows, then interpolate along the width."""
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    h0, h1, lh0, lh1 = _axis(H, OH, ratio[0], align_corners, x)
    w0, w1, lw0, lw1 = _axis(W, OW, ratio[1], align_corners, x)
    x, y = x.reshape((N * C, H, W)), y.reshape((N * C, OH, OW))
    for p in prange(N * C):
        t = np.empty(W, dtype=x.dtype)
        for oh in range(OH):
            a, b = h0[oh], h1[oh]
            la, lb = lh0[oh], lh1[oh]
            for w in range(W):
                t[w] = la * x[p, a, w] + lb * x[p, b, w]
            for ow in range(OW):
                y[p, oh, ow] = lw0[ow] * t[w0[ow]] + lw1[ow] * t[w1[ow]]


@njit(parallel=True, cache=True)
def bilinear_backward(gy, ratio, align_corners, gx):
    """Transpose of the forward: scatter each ``gy`` row along the width, then into two rows."""
    N, C, H, W = gx.shape
    OH, OW = gy.shape[2], gy.shape[3]
    h0, h1, lh0, lh1 = _axis(H, OH, ratio[0], align_corners, gx)
    w0, w1, lw0, lw1 = _axis(W, OW, ratio[1], align_corners, gx)
    gy, gx = gy.reshape((N * C, OH, OW)), gx.reshape((N * C, H, W))
    for p in prange(N * C):
        gx[p] = 0
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
