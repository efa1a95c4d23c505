"""Depthwise 2-D convolution (groups == C, one KHxKW filter per channel) on the CPU.

Math (PyTorch's ``F.conv2d(x, w, None, stride, padding, dilation, groups=C)``)::

    y[n, c, oh, ow] = sum_{kh, kw} w[c, 0, kh, kw] * x[n, c, ih, iw]
        ih = oh * sh - ph + kh * dh,   iw = ow * sw - pw + kw * dw   (x is 0 outside the image)

    gx[n, c, ih, iw] = sum of w[c, 0, kh, kw] * gy[n, c, oh, ow]
                       over the (oh, ow, kh, kw) whose tap reads x[n, c, ih, iw]
    gw[c, 0, kh, kw] = sum_{n, oh, ow} gy[n, c, oh, ow] * x[n, c, ih, iw]

Shapes: x (N, C, H, W), w (C, 1, KH, KW), y (N, C, OH, OW) with
``OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1`` (same for OW).

Each channel is an independent small convolution, far too little work per output for a
matrix product, so these are direct loops.

Parallel loop mapping (Numba ``prange``):

- forward and backward-input: one iteration per (n, c) plane; an iteration writes only
  its own plane of ``y`` / ``gx``.
- backward-weight: one iteration per channel c; it sums over n, oh, ow on its own, in a
  fixed order, so the result is deterministic without atomics.

Pseudo-loop (forward)::

    for n, c in prange(N * C):
        for oh, kh:  ih = oh*sh - ph + kh*dh          # skip rows outside the image
            for kw, ow:  y[n, c, oh, ow] += w[c, 0, kh, kw] * x[n, c, ih, ow*sw - pw + kw*dw]

Backward-input is the gather that reverses it: input row ``ih`` receives from output row
``oh = (ih + ph - kh*dh) / sh`` when that is an integer in [0, OH) (``on_grid``)::

    for n, c in prange(N * C):
        for ih, kh:  oh = on_grid(ih + ph - kh*dh, sh, OH)   # skip if -1
            for kw, ow:  gx[n, c, ih, ow*sw - pw + kw*dw] += w[c, 0, kh, kw] * gy[n, c, oh, ow]

The GPU kernel adds the same taps in the same (kh, kw) order, but a thread owns 8 rows of one
column and a block stages its window of ``gy`` in shared memory; here an iteration owns a
whole plane, which the caches hold, and the loop over a row's columns is what vectorizes.

Optimizations:

- Loops run output row by output row (forward) or input row by input row (backward-input),
  so the row being accumulated stays in L1 cache while all KH*KW taps are added into it.
- The ``ow`` range whose input lies inside the image is computed once per tap
  (``_valid_range``, shared with conv2d), so inner loops carry no bounds test; at stride 1
  they are contiguous multiply-adds that LLVM vectorizes.
- Backward-weight accumulates into a (KH, KW, OW) buffer, one partial sum per ``ow``,
  instead of one scalar: the inner loop is then an element-wise multiply-add that
  vectorizes without fastmath's reassociation; the buffer is summed once at the end.
- Backward-weight first splits each plane's columns by their residue mod ``sw`` (as the GPU
  kernel splits its window by parity at stride 2): every tap then reads a contiguous run,
  which vectorizes, where a strided read would not.
- Rows are taken as 1-D views once, so the inner loops index a single contiguous axis,
  with ``uintp`` indices so that Numba adds no negative-index test (as in conv2d).
"""
import numpy as np
from numba import njit, prange, uintp

from .conv2d import _valid_range

__all__ = ["depthwise_forward", "depthwise_backward_input", "depthwise_backward_weight"]


@njit(parallel=True, cache=True)
def depthwise_forward(x, w, stride, padding, dilation, y):
    """y[n, c] = x[n, c] correlated with w[c, 0], for every plane in parallel."""
    sh, sw, ph, pw, dh, dw = stride + padding + dilation
    N, C, H, W = x.shape
    _, _, OH, OW = y.shape
    KH, KW = w.shape[2], w.shape[3]
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        for oh in range(OH):
            dst = y[n, c, oh]
            dst[:] = 0
            for kh in range(KH):
                ih = oh * sh - ph + kh * dh
                if ih < 0 or ih >= H:
                    continue
                src = x[n, c, ih]
                for kw in range(KW):
                    lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
                    wv = w[c, 0, kh, kw]
                    shift = kw * dw - pw
                    for ow in range(lo, hi):
                        dst[uintp(ow)] += wv * src[uintp(ow * sw + shift)]


@njit(cache=True)
def on_grid(t, stride, n):
    """``t / stride`` if ``t`` is a multiple of ``stride`` in [0, stride*n), else -1: the output
    row that reached input row ``ih`` through a tap, ``t = ih + ph - kh*dh`` (as in depthwise.cu)."""
    if t < 0 or t % stride != 0:
        return -1
    q = t // stride
    return q if q < n else -1


@njit(parallel=True, cache=True)
def depthwise_backward_input(gy, w, stride, padding, dilation, gx):
    """gx[n, c, ih] gathers w * gy from every output row that read input row ih."""
    sh, sw, ph, pw, dh, dw = stride + padding + dilation
    N, C, H, W = gx.shape
    _, _, OH, OW = gy.shape
    KH, KW = w.shape[2], w.shape[3]
    for plane in prange(N * C):
        n = plane // C
        c = plane % C
        for ih in range(H):
            dst = gx[n, c, ih]
            dst[:] = 0
            for kh in range(KH):
                oh = on_grid(ih + ph - kh * dh, sh, OH)
                if oh < 0:
                    continue
                src = gy[n, c, oh]
                for kw in range(KW):
                    lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
                    wv = w[c, 0, kh, kw]
                    shift = kw * dw - pw
                    for ow in range(lo, hi):
                        dst[uintp(ow * sw + shift)] += wv * src[uintp(ow)]


@njit(parallel=True, cache=True)
def depthwise_backward_weight(gy, x, stride, padding, dilation, gw):
    """gw[c, 0, kh, kw] = sum over n, oh, ow of gy * x, one channel per iteration."""
    sh, sw, ph, pw, dh, dw = stride + padding + dilation
    N, C, H, W = x.shape
    _, _, OH, OW = gy.shape
    KH, KW = gw.shape[2], gw.shape[3]
    for c in prange(C):
        acc = np.zeros((KH, KW, OW), gw.dtype)
        split = np.empty((H, sw, -(-W // sw)), x.dtype)  # x's columns by their residue mod sw
        for n in range(N):
            for r in range(sw if sw > 1 else 0):  # at stride 1, x's rows are contiguous already
                split[:, r, :(W - r + sw - 1) // sw] = x[n, c, :, r::sw]
            for oh in range(OH):
                g = gy[n, c, oh]
                for kh in range(KH):
                    ih = oh * sh - ph + kh * dh
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(KW):
                        lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
                        a = acc[kh, kw]
                        shift = kw * dw - pw  # column ow*sw + shift = (ow + q)*sw + shift % sw
                        src, q = split[ih, shift % sw] if sw > 1 else x[n, c, ih], shift // sw
                        for ow in range(lo, hi):
                            a[uintp(ow)] += g[uintp(ow)] * src[uintp(ow + q)]
        for kh in range(KH):
            for kw in range(KW):
                gw[c, 0, kh, kw] = acc[kh, kw].sum()

