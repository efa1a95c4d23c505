"""2-D convolution (groups == 1) as im2col + matrix products: the driver both backends share.

Math (PyTorch's ``F.conv2d``, zero padding, cross-correlation)::

    y[n, o, oh, ow] = sum_{c, kh, kw} w[o, c, kh, kw] * x[n, c, ih, iw]
        ih = oh * sh - ph + kh * dh,   iw = ow * sw - pw + kw * dw   (x is 0 outside the image)

Shapes: x (N, C, H, W), w (O, C, KH, KW), y (N, O, OH, OW), OH = (H + 2*ph - dh*(KH-1) - 1)
// sh + 1 (and OW alike). Write K = C*KH*KW and L = OH*OW.

im2col turns the sum into matrix products. ``col[n, (c, kh, kw), (oh, ow)] = x[n, c, ih, iw]``
is an (N, K, L) array (0 where the window leaves the image), and with W = w.reshape(O, K)::

    forward          y[n]   = W @ col[n]                  one batched product over n
    backward-input   gcol[n] = W.T @ gy[n];  gx = col2im(gcol)   (col2im: the reverse gather)
    backward-weight  gW     = sum_n gy[n] @ col[n].T      a batched product, then a sum over n

A 1x1 convolution at stride 1 without padding needs no im2col: ``col`` is ``x`` itself.

The driver is written once over the array module ``xp`` (NumPy or CuPy): the products are
``xp.matmul`` (BLAS, cuBLAS) on the whole batch at once, a few calls per convolution whatever
N is. Each backend supplies only the two data-movement kernels (``kernels/cpu/conv2d.py``,
``kernels/cuda/conv2d.cu``), called as ``im2col(x, kernel, stride, padding, dilation, col)``
and ``col2im(gcol, kernel, stride, padding, dilation, gx)`` with col, gcol (N, K, OH, OW).
The price of batching: ``col`` holds N images' windows at once (K*L values each).
The sum over n runs in a fixed order, so the weight gradient is deterministic.
"""
from .checks import is_pointwise


def forward(xp, im2col, x, w, stride, padding, dilation, y):
    """``y = conv2d(x, w)`` into ``y`` (N, O, OH, OW)."""
    N, C = x.shape[:2]
    O, _, KH, KW = w.shape
    OH, OW = y.shape[2:]
    w2d = w.reshape(O, C * KH * KW)
    if is_pointwise((KH, KW), stride, padding):
        xp.matmul(w2d, x.reshape(N, C, OH * OW), out=y.reshape(N, O, OH * OW))
        return
    col = xp.empty((N, C * KH * KW, OH, OW), x.dtype)
    im2col(x, (KH, KW), stride, padding, dilation, col)
    xp.matmul(w2d, col.reshape(N, C * KH * KW, OH * OW), out=y.reshape(N, O, OH * OW))


def backward_input(xp, col2im, gy, w, stride, padding, dilation, gx):
    """``gx = conv2d_transpose(gy, w)`` into ``gx`` (N, C, H, W)."""
    N, C, H, W = gx.shape
    O, _, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    w2d_t = w.reshape(O, C * KH * KW).T
    if is_pointwise((KH, KW), stride, padding):
        xp.matmul(w2d_t, gy.reshape(N, O, OH * OW), out=gx.reshape(N, C, H * W))
        return
    gcol = xp.matmul(w2d_t, gy.reshape(N, O, OH * OW))
    col2im(gcol.reshape(N, C * KH * KW, OH, OW), (KH, KW), stride, padding, dilation, gx)


def backward_weight(xp, im2col, gy, x, stride, padding, dilation, gw):
    """``gw = sum_n gy[n] @ col(x[n]).T`` into ``gw`` (O, C, KH, KW)."""
    N, C, H, W = x.shape
    O, _, KH, KW = gw.shape
    OH, OW = gy.shape[2:]
    if is_pointwise((KH, KW), stride, padding):
        col = x.reshape(N, C, H * W)
    else:
        col = xp.empty((N, C * KH * KW, OH, OW), x.dtype)
        im2col(x, (KH, KW), stride, padding, dilation, col)
        col = col.reshape(N, C * KH * KW, OH * OW)
    per_image = xp.matmul(gy.reshape(N, O, OH * OW), col.transpose(0, 2, 1))
    xp.sum(per_image, axis=0, out=gw.reshape(O, C * KH * KW))
