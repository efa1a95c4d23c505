"""Average pooling (fixed window and adaptive) on the CPU.

Math, ``avg_pool2d`` (PyTorch's defaults: ``count_include_pad=True``, ``ceil_mode=False``).
The window of output ``(oh, ow)`` starts at ``(oh*SH - PH, ow*SW - PW)`` and is KH x KW;
padded positions count as zeros, so the divisor is always ``KH*KW``::

    OH = (H + 2*PH - KH) // SH + 1                           (and OW alike)
    y[n,c,oh,ow] = 1/(KH*KW) * sum_{kh,kw} x[n,c, oh*SH-PH+kh, ow*SW-PW+kw]   (in-bounds only)

The gradient sends ``gy/(KH*KW)`` back to every input of the window. As a gather: input
``h`` lies in the windows ``oh`` with ``oh*SH - PH <= h < oh*SH - PH + KH``, i.e.
``(h+PH-KH)//SH + 1 <= oh <= (h+PH)//SH`` (clipped to ``[0, OH)``), so each ``gx`` element
sums the ``gy`` of a small rectangle of outputs and no two iterations write the same place.

Math, ``adaptive_avg_pool2d``: output ``i`` of ``O`` averages the bin
``[floor(i*H/O), ceil((i+1)*H/O))`` (bins may overlap or, when O > H, repeat)::

    y[n,c,i,j] = mean(x[n,c, h0(i):h1(i), w0(j):w1(j)])

Its gradient adds ``gy[i,j] / bin_area`` to every element of the bin. Bins of different
sizes overlap irregularly, so here the backward is a scatter; it stays race-free because
one iteration owns one whole (n, c) plane.

Shapes. ``x, gx``: (N, C, H, W); ``y, gy``: (N, C, OH, OW).

Loop mapping. The kernels view the arrays as (N*C, H, W) planes; ``prange`` runs over
planes, the rows and columns of a plane run in order inside one thread::

    for p in prange(N*C):                        # one (n, c) plane per iteration
        for oh in range(OH):
            for ow in range(OW):
                s = 0
                for h in window rows: for w in window columns: s += x[p, h, w]
                y[p, oh, ow] = s / area

Optimizations:
    - The window is clipped to the plane once per output (``max``/``min`` on its corners),
      so the inner loops carry no bounds tests.
    - The fixed-window backward is a gather (each thread writes only what it owns), and
      the adaptive backward scatters within the plane its thread owns: no atomics.
    - Parallel over the N*C planes (256 in Fast-SCNN's pyramid pooling): enough work for
      every core, and plain 3-D indexing of contiguous planes, no per-element index decoding.
"""
from numba import njit, prange

__all__ = ["avg_pool2d_forward", "avg_pool2d_backward", "adaptive_avg_pool2d_forward",
           "adaptive_avg_pool2d_backward"]


@njit(cache=True)
def _planes(a):
    """``a`` (N, C, H, W) as its N*C planes (P, H, W)."""
    N, C, H, W = a.shape
    return a.reshape((N * C, H, W))


@njit(parallel=True, cache=True)
def avg_pool2d_forward(x, kernel, stride, padding, y):
    """Each output is the window sum divided by ``KH*KW`` (padding counts as zeros)."""
    KH, KW, SH, SW, PH, PW = kernel + stride + padding
    x, y = _planes(x), _planes(y)
    P, H, W = x.shape
    _, OH, OW = y.shape
    inv_area = 1.0 / (KH * KW)
    for p in prange(P):
        for oh in range(OH):
            h0 = max(oh * SH - PH, 0)
            h1 = min(oh * SH - PH + KH, H)
            for ow in range(OW):
                w0 = max(ow * SW - PW, 0)
                w1 = min(ow * SW - PW + KW, W)
                s = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        s += x[p, h, w]
                y[p, oh, ow] = s * inv_area


@njit(parallel=True, cache=True)
def avg_pool2d_backward(gy, kernel, stride, padding, gx):
    """Gather: ``gx[h, w]`` sums ``gy`` over the outputs whose windows contain ``(h, w)``."""
    KH, KW, SH, SW, PH, PW = kernel + stride + padding
    gy, gx = _planes(gy), _planes(gx)
    P, OH, OW = gy.shape
    _, H, W = gx.shape
    inv_area = 1.0 / (KH * KW)
    for p in prange(P):
        for h in range(H):
            oh0 = max((h + PH - KH) // SH + 1, 0)
            oh1 = min((h + PH) // SH + 1, OH)
            for w in range(W):
                ow0 = max((w + PW - KW) // SW + 1, 0)
                ow1 = min((w + PW) // SW + 1, OW)
                s = 0.0
                for oh in range(oh0, oh1):
                    for ow in range(ow0, ow1):
                        s += gy[p, oh, ow]
                gx[p, h, w] = s * inv_area


@njit(parallel=True, cache=True)
def adaptive_avg_pool2d_forward(x, y):
    """Each output averages its bin ``[floor(i*H/OH), ceil((i+1)*H/OH))`` in both axes."""
    x, y = _planes(x), _planes(y)
    P, H, W = x.shape
    _, OH, OW = y.shape
    for p in prange(P):
        for oh in range(OH):
            h0 = (oh * H) // OH
            h1 = ((oh + 1) * H + OH - 1) // OH
            for ow in range(OW):
                w0 = (ow * W) // OW
                w1 = ((ow + 1) * W + OW - 1) // OW
                s = 0.0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        s += x[p, h, w]
                y[p, oh, ow] = s / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True)
def adaptive_avg_pool2d_backward(gy, gx):
    """Zero the plane, then scatter ``gy/bin_area`` over each bin; one plane per iteration, so no races."""
    gy, gx = _planes(gy), _planes(gx)
    P, OH, OW = gy.shape
    _, H, W = gx.shape
    for p in prange(P):
        gx[p] = 0
        for oh in range(OH):
            h0 = (oh * H) // OH
            h1 = ((oh + 1) * H + OH - 1) // OH
            for ow in range(OW):
                w0 = (ow * W) // OW
                w1 = ((ow + 1) * W + OW - 1) // OW
                g = gy[p, oh, ow] / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        gx[p, h, w] += g
