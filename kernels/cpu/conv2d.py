"""2-D convolution (groups == 1, no bias) on the CPU: im2col + one matrix product per image.

Math (PyTorch's ``F.conv2d``, zero padding, cross-correlation)::

    y[n, o, oh, ow] = sum_{c, kh, kw} w[o, c, kh, kw] * x[n, c, ih, iw]
        ih = oh * sh - ph + kh * dh,   iw = ow * sw - pw + kw * dw   (x is 0 outside the image)

Shapes: x (N, C, H, W), w (O, C, KH, KW), y (N, O, OH, OW) with
``OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1`` (same for OW).

im2col turns the sum into a matrix product. For one image, build
``col[(c, kh, kw), (oh, ow)] = x[c, ih, iw]``, a (C*KH*KW, OH*OW) matrix; then::

    forward          y[n]  = W @ col              W = w.reshape(O, C*KH*KW)
    backward-input   gcol  = W.T @ gy[n]          then col2im: gx[n] gathers gcol back
    backward-weight  gW   += gy[n] @ col.T        summed over the batch

A 1x1, stride-1, padding-0 convolution needs no im2col: ``col`` would be ``x[n]`` itself.

Parallel loop mapping (Numba ``prange``):

- im2col: one iteration per row of ``col`` viewed as (C*KH*KW*OH, OW), i.e. per
  (c, kh, kw, oh); it writes one contiguous row of OW values.
- col2im: one iteration per input row (c, ih) of ``gx[n]``; it gathers every ``gcol``
  value that lands in that row, so no two iterations write the same memory.
- the matrix products run in NumPy's BLAS.

Pseudo-loop (im2col of one image)::

    for c, kh, kw, oh in prange(...):        # one row of col
        ih = oh*sh - ph + kh*dh
        for ow in range(OW):
            iw = ow*sw - pw + kw*dw
            col[c, kh, kw, oh, ow] = x[c, ih, iw] if inside else 0

Pseudo-loop (col2im of one image, the reverse gather)::

    for c, ih in prange(C * H):
        for kh:  oh = (ih + ph - kh*dh) / sh    # skip unless an integer in [0, OH)
            for kw, ow:  gx[c, ih, ow*sw - pw + kw*dw] += gcol[c, kh, kw, oh, ow]

Optimizations:

- The batch is processed one image at a time with one reused ``col`` buffer, so memory
  is C*KH*KW*OH*OW values, not N times that, while each product is still a large GEMM.
- The range of ``ow`` whose input column lies inside the image is computed once per row
  (:func:`_valid_range`), so the inner loops carry no bounds test and, at stride 1,
  are plain contiguous copies / adds that LLVM vectorizes.
- Index arithmetic is done per row, never per element (no stride decoding in the loop).
- Inner-loop indices are cast to ``uintp``: for a signed index Numba inserts a
  negative-index wraparound test on every access, which keeps LLVM from vectorizing
  (measured 2-3x slower). The ranges above guarantee the indices are never negative.
- The 1x1 / stride 1 / padding 0 case skips im2col and col2im and is pure GEMM.
- Products write into views of the preallocated output (``out=``), no temporaries.
"""
import numpy as np
from numba import njit, prange, uintp

from ..checks import (check_conv_weight, check_float, check_shape, check_shape_arg, conv_geometry, conv_output_hw,
                      is_pointwise)

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"]


@njit(cache=True)
def _valid_range(k, stride, pad, dilation, in_size, out_size):
    """Return ``[lo, hi)``: the outputs ``o`` with ``0 <= o*stride - pad + k*dilation < in_size``.

    Shared with the depthwise kernels; it is what lets inner loops run without bounds tests.
    """
    shift = k * dilation - pad
    lo = max(0, -(shift // stride))             # ceil(-shift / stride)
    hi = min(out_size, (in_size - 1 - shift) // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True)
def _im2col(x, kh_size, kw_size, sh, sw, ph, pw, dh, dw, col):
    """Fill ``col`` (C*KH*KW, OH, OW) from one image ``x`` (C, H, W)."""
    C, H, W = x.shape
    _, OH, OW = col.shape
    for row in prange(C * kh_size * kw_size * OH):
        r = row // OH
        oh = row % OH
        c = r // (kh_size * kw_size)
        kh = (r // kw_size) % kh_size
        kw = r % kw_size
        out = col[r, oh]
        ih = oh * sh - ph + kh * dh
        if ih < 0 or ih >= H:
            out[:] = 0
            continue
        lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
        src = x[c, ih]
        shift = kw * dw - pw
        out[:lo] = 0
        for ow in range(lo, hi):                # uintp: see "Optimizations" above
            out[uintp(ow)] = src[uintp(ow * sw + shift)]
        out[hi:] = 0


@njit(parallel=True, cache=True)
def _col2im(gcol, kh_size, kw_size, sh, sw, ph, pw, dh, dw, gx):
    """Sum ``gcol`` (C*KH*KW, OH, OW) back into one image gradient ``gx`` (C, H, W)."""
    C, H, W = gx.shape
    _, OH, OW = gcol.shape
    for row in prange(C * H):
        c = row // H
        ih = row % H
        dst = gx[c, ih]
        dst[:] = 0
        for kh in range(kh_size):
            t = ih + ph - kh * dh
            if t % sh != 0:
                continue
            oh = t // sh
            if oh < 0 or oh >= OH:
                continue
            for kw in range(kw_size):
                lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
                src = gcol[(c * kh_size + kh) * kw_size + kw, oh]
                shift = kw * dw - pw
                for ow in range(lo, hi):
                    dst[uintp(ow * sw + shift)] += src[uintp(ow)]


def _forward(x, w, stride, padding, dilation, y):
    """y = conv2d(x, w): per image, im2col then ``W @ col``."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = y.shape[2:]
    w2d = w.reshape(O, C * KH * KW)
    if is_pointwise((KH, KW), stride, padding):
        np.matmul(w2d, x.reshape(N, C, H * W), out=y.reshape(N, O, OH * OW))
        return
    col = np.empty((C * KH * KW, OH, OW), x.dtype)
    for n in range(N):
        _im2col(x[n], KH, KW, *stride, *padding, *dilation, col)
        np.matmul(w2d, col.reshape(C * KH * KW, OH * OW), out=y[n].reshape(O, OH * OW))


def _backward_input(gy, w, stride, padding, dilation, gx):
    """gx = conv2d_transpose(gy, w): per image, ``gcol = W.T @ gy[n]`` then col2im."""
    N, C, H, W = gx.shape
    O, _, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    w2d_t = w.reshape(O, C * KH * KW).T
    if is_pointwise((KH, KW), stride, padding):
        np.matmul(w2d_t, gy.reshape(N, O, OH * OW), out=gx.reshape(N, C, H * W))
        return
    gcol = np.empty((C * KH * KW, OH, OW), gy.dtype)
    for n in range(N):
        np.matmul(w2d_t, gy[n].reshape(O, OH * OW), out=gcol.reshape(C * KH * KW, OH * OW))
        _col2im(gcol, KH, KW, *stride, *padding, *dilation, gx[n])


def _backward_weight(gy, x, stride, padding, dilation, gw):
    """gw = sum_n gy[n] @ col(x[n]).T, accumulated image by image (a fixed order: deterministic)."""
    N, C, H, W = x.shape
    O, _, KH, KW = gw.shape
    OH, OW = gy.shape[2:]
    gw2d = gw.reshape(O, C * KH * KW)
    gw2d[:] = 0
    pointwise = is_pointwise((KH, KW), stride, padding)
    col = None if pointwise else np.empty((C * KH * KW, OH, OW), x.dtype)
    for n in range(N):
        if pointwise:
            col2d = x[n].reshape(C, H * W)
        else:
            _im2col(x[n], KH, KW, *stride, *padding, *dilation, col)
            col2d = col.reshape(C * KH * KW, OH * OW)
        gw2d += gy[n].reshape(O, OH * OW) @ col2d.T


# ----------------------------------------------------------------------------- launchers

def conv2d_forward(x, w, stride, padding, dilation):
    """Return ``y = F.conv2d(x, w, None, stride, padding, dilation)``, shape (N, O, OH, OW)."""
    check_float("x", x, ndim=4)
    check_conv_weight(w, x.shape[1], x.dtype)
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w.shape, stride, padding, dilation)
    y = np.empty((x.shape[0], w.shape[0], OH, OW), x.dtype)
    _forward(x, w, stride, padding, dilation, y)
    return y


def conv2d_backward_input(gy, w, x_shape, stride, padding, dilation):
    """Return ``gx = dL/dx`` (shape ``x_shape``) given ``gy = dL/dy`` and the weight ``w``."""
    check_float("gy", gy, ndim=4)
    x_shape = check_shape_arg("x_shape", x_shape)
    check_conv_weight(w, x_shape[1], gy.dtype)
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x_shape, w.shape, stride, padding, dilation)
    check_shape("gy", gy, (x_shape[0], w.shape[0], OH, OW))
    gx = np.empty(x_shape, gy.dtype)
    _backward_input(gy, w, stride, padding, dilation, gx)
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """Return ``gw = dL/dw`` (shape ``w_shape``) given ``gy = dL/dy`` and the input ``x``."""
    check_float("gy", gy, ndim=4)
    check_float("x", x, ndim=4, dtype=gy.dtype)
    w_shape = check_shape_arg("w_shape", w_shape)
    if w_shape[1] != x.shape[1]:
        raise ValueError(f"w_shape: expected {x.shape[1]} input channels, got {w_shape}")
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w_shape, stride, padding, dilation)
    check_shape("gy", gy, (x.shape[0], w_shape[0], OH, OW))
    gw = np.empty(w_shape, gy.dtype)
    _backward_weight(gy, x, stride, padding, dilation, gw)
    return gw
