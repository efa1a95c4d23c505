"""2-D convolution (groups == 1, no bias) on the GPU: the launchers of ``conv2d.cu``.

The lesson (math, shapes, thread mapping, pseudo-loops) is the header of ``conv2d.cu``. This
file drives it exactly as ``kernels/cpu/conv2d.py`` drives its Numba kernels, image by image
with one reused ``col`` buffer, the matrix products in ``cp.matmul`` (cuBLAS)::

    forward          im2col(x[n]) -> col;   y[n] = W @ col
    backward-input   gcol = W.T @ gy[n];    col2im(gcol) -> gx[n]
    backward-weight  im2col(x[n]) -> col;   gW += gy[n] @ col.T

The argument checks are the CPU launchers' (same messages), after a check that every array
is a CuPy array.
"""
from ..checks import (check_conv_weight, check_float, check_shape, check_shape_arg, conv_geometry, conv_output_hw,
                      is_pointwise)
from ._module import cp, Module, ints, on_gpu

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"]

KERNELS = ("im2col", "col2im")
_module = Module("conv2d.cu", KERNELS)


def _im2col(x_n, KH, KW, stride, padding, dilation, col):
    """Fill ``col`` (C*KH*KW, OH, OW) from one image ``x_n`` (C, H, W)."""
    C, H, W = x_n.shape
    OH, OW = col.shape[1:]
    _module.launch("im2col", x_n.dtype, col.size,
                   (x_n, *ints(C, H, W, KH, KW, *stride, *padding, *dilation, OH, OW), col))


def _col2im(gcol, KH, KW, stride, padding, dilation, gx_n):
    """Gather ``gcol`` (C*KH*KW, OH, OW) back into one image gradient ``gx_n`` (C, H, W)."""
    C, H, W = gx_n.shape
    OH, OW = gcol.shape[1:]
    _module.launch("col2im", gcol.dtype, gx_n.size,
                   (gcol, *ints(C, H, W, KH, KW, *stride, *padding, *dilation, OH, OW), gx_n))


def _forward(x, w, stride, padding, dilation, y):
    """y = conv2d(x, w): per image, im2col then ``W @ col``."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    OH, OW = y.shape[2:]
    w2d = w.reshape(O, C * KH * KW)
    if is_pointwise((KH, KW), stride, padding):
        cp.matmul(w2d, x.reshape(N, C, H * W), out=y.reshape(N, O, OH * OW))
        return
    col = cp.empty((C * KH * KW, OH, OW), x.dtype)
    for n in range(N):
        _im2col(x[n], KH, KW, stride, padding, dilation, col)
        cp.matmul(w2d, col.reshape(C * KH * KW, OH * OW), out=y[n].reshape(O, OH * OW))


def _backward_input(gy, w, stride, padding, dilation, gx):
    """gx = conv2d_transpose(gy, w): per image, ``gcol = W.T @ gy[n]`` then col2im."""
    N, C, H, W = gx.shape
    O, _, KH, KW = w.shape
    OH, OW = gy.shape[2:]
    w2d_t = w.reshape(O, C * KH * KW).T
    if is_pointwise((KH, KW), stride, padding):
        cp.matmul(w2d_t, gy.reshape(N, O, OH * OW), out=gx.reshape(N, C, H * W))
        return
    gcol = cp.empty((C * KH * KW, OH, OW), gy.dtype)
    for n in range(N):
        cp.matmul(w2d_t, gy[n].reshape(O, OH * OW), out=gcol.reshape(C * KH * KW, OH * OW))
        _col2im(gcol, KH, KW, stride, padding, dilation, gx[n])


def _backward_weight(gy, x, stride, padding, dilation, gw):
    """gw = sum_n gy[n] @ col(x[n]).T, accumulated image by image (a fixed order: deterministic)."""
    N, C, H, W = x.shape
    O, _, KH, KW = gw.shape
    OH, OW = gy.shape[2:]
    gw2d = gw.reshape(O, C * KH * KW)
    gw2d[...] = 0
    pointwise = is_pointwise((KH, KW), stride, padding)
    col = None if pointwise else cp.empty((C * KH * KW, OH, OW), x.dtype)
    for n in range(N):
        if pointwise:
            col2d = x[n].reshape(C, H * W)
        else:
            _im2col(x[n], KH, KW, stride, padding, dilation, col)
            col2d = col.reshape(C * KH * KW, OH * OW)
        gw2d += gy[n].reshape(O, OH * OW) @ col2d.T


# ----------------------------------------------------------------------------- launchers

def conv2d_forward(x, w, stride, padding, dilation):
    """Return ``y = F.conv2d(x, w, None, stride, padding, dilation)``, shape (N, O, OH, OW)."""
    on_gpu(x=x, w=w)
    check_float("x", x, ndim=4)
    check_conv_weight(w, x.shape[1], x.dtype)
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w.shape, stride, padding, dilation)
    y = cp.empty((x.shape[0], w.shape[0], OH, OW), x.dtype)
    _forward(x, w, stride, padding, dilation, y)
    return y


def conv2d_backward_input(gy, w, x_shape, stride, padding, dilation):
    """Return ``gx = dL/dx`` (shape ``x_shape``) given ``gy = dL/dy`` and the weight ``w``."""
    on_gpu(gy=gy, w=w)
    check_float("gy", gy, ndim=4)
    x_shape = check_shape_arg("x_shape", x_shape)
    check_conv_weight(w, x_shape[1], gy.dtype)
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x_shape, w.shape, stride, padding, dilation)
    check_shape("gy", gy, (x_shape[0], w.shape[0], OH, OW))
    gx = cp.empty(x_shape, gy.dtype)
    _backward_input(gy, w, stride, padding, dilation, gx)
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """Return ``gw = dL/dw`` (shape ``w_shape``) given ``gy = dL/dy`` and the input ``x``."""
    on_gpu(gy=gy, x=x)
    check_float("gy", gy, ndim=4)
    check_float("x", x, ndim=4, dtype=gy.dtype)
    w_shape = check_shape_arg("w_shape", w_shape)
    if w_shape[1] != x.shape[1]:
        raise ValueError(f"w_shape: expected {x.shape[1]} input channels, got {w_shape}")
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w_shape, stride, padding, dilation)
    check_shape("gy", gy, (x.shape[0], w_shape[0], OH, OW))
    gw = cp.empty(w_shape, gy.dtype)
    _backward_weight(gy, x, stride, padding, dilation, gw)
    return gw
