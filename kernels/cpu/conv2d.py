"""2-D convolution (groups == 1, no bias) on the CPU: the im2col and col2im kernels.

The math and the driver (batched matrix products in NumPy's BLAS) are
``kernels.ops.conv2d_*``, shared with the GPU; this file holds the two data-movement
kernels, over the whole batch (their CUDA twins are in ``kernels/cuda/conv2d.cu``):

- im2col: ``col[(c, kh, kw), n, (oh, ow)] = x[n, c, ih, iw]`` (0 outside the image), with
  ``ih = oh*sh - ph + kh*dh`` and ``iw = ow*sw - pw + kw*dw``;
- col2im: its transpose, ``gx[n, c, ih, iw]`` = the sum of the ``gcol`` entries that im2col
  copied from ``x[n, c, ih, iw]``.

``col`` holds the batch inside each row, (C*KH*KW, N, OH, OW): one 2-D matrix product then
takes every image at once, in forward and in both backward products (``kernels/ops.py``).

Parallel loop mapping (Numba ``prange``):

- im2col: one iteration per row of ``col`` viewed as (C*KH*KW*N*OH, OW), i.e. per
  (c, kh, kw, n, oh); it writes one contiguous row of OW values.
- col2im: one iteration per input row (n, c, ih) of ``gx``; it gathers every ``gcol``
  value that lands in that row, so no two iterations write the same memory.

Pseudo-loop (im2col)::

    for c, kh, kw, n, oh in prange(...):     # one row of col
        ih = oh*sh - ph + kh*dh
        for ow in range(OW):
            iw = ow*sw - pw + kw*dw
            col[c, kh, kw, n, oh, ow] = x[n, c, ih, iw] if inside else 0

Pseudo-loop (col2im, the reverse gather)::

    for n, c, ih in prange(N * C * H):
        for kh:  oh = (ih + ph - kh*dh) / sh    # skip unless an integer in [0, OH)
            for kw, ow:  gx[n, c, ih, ow*sw - pw + kw*dw] += gcol[c, kh, kw, n, oh, ow]

Optimizations:

- The range of ``ow`` whose input column lies inside the image is computed once per row
  (:func:`_valid_range`), so the inner loops carry no bounds test and, at stride 1,
  are plain contiguous copies / adds that LLVM vectorizes.
- Index arithmetic is done per row, never per element (no stride decoding in the loop).
- Inner-loop indices are cast to ``uintp``: for a signed index Numba inserts a
  negative-index wraparound test on every access, which keeps LLVM from vectorizing
  (measured 2-3x slower). The ranges above guarantee the indices are never negative.
"""
from numba import njit, prange, uintp

__all__ = ["im2col", "col2im"]


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
def im2col(x, kernel, stride, padding, dilation, col):
    """Fill ``col`` (C*KH*KW, N, OH, OW) from the images ``x`` (N, C, H, W)."""
    kh_size, kw_size, sh, sw, ph, pw, dh, dw = kernel + stride + padding + dilation
    N, C, H, W = x.shape
    K, _, OH, OW = col.shape
    for row in prange(K * N * OH):
        oh = row % OH
        n = row // OH % N
        r = row // (OH * N)
        c = r // (kh_size * kw_size)
        kh = (r // kw_size) % kh_size
        kw = r % kw_size
        out = col[r, n, oh]
        ih = oh * sh - ph + kh * dh
        if ih < 0 or ih >= H:
            out[:] = 0
            continue
        lo, hi = _valid_range(kw, sw, pw, dw, W, OW)
        src = x[n, c, ih]
        shift = kw * dw - pw
        out[:lo] = 0
        for ow in range(lo, hi):                # uintp: see "Optimizations" above
            out[uintp(ow)] = src[uintp(ow * sw + shift)]
        out[hi:] = 0


@njit(parallel=True, cache=True)
def col2im(gcol, kernel, stride, padding, dilation, gx):
    """Sum ``gcol`` (C*KH*KW, N, OH, OW) back into the image gradients ``gx`` (N, C, H, W)."""
    kh_size, kw_size, sh, sw, ph, pw, dh, dw = kernel + stride + padding + dilation
    N, C, H, W = gx.shape
    _, _, OH, OW = gcol.shape
    for row in prange(N * C * H):
        ih = row % H
        c = row // H % C
        n = row // (H * C)
        dst = gx[n, c, ih]
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
                src = gcol[(c * kh_size + kh) * kw_size + kw, n, oh]
                shift = kw * dw - pw
                for ow in range(lo, hi):
                    dst[uintp(ow * sw + shift)] += src[uintp(ow)]

