"""Depthwise 2-D convolution (groups == C) on the GPU: the launchers of ``depthwise.cu``.

The lesson is the header of ``depthwise.cu``; ``kernels/cpu/depthwise.py`` is the same
computation as Numba loops. Forward and backward-input are one kernel each, one thread per
output value. Backward-weight is a deterministic two-step reduction: a block per
(weight, chunk) writes a float64 partial sum, then one thread per weight adds its chunks.
The argument checks are the CPU launchers', after a check that every array is on the GPU.
"""
from ..checks import (check_depthwise_weight_shape, check_float, check_shape, check_shape_arg, conv_geometry,
                      conv_output_hw)
from ._module import cp, Module, chunks_for, ints, on_gpu

__all__ = ["depthwise_forward", "depthwise_backward_input", "depthwise_backward_weight"]

KERNELS = ("depthwise_forward", "depthwise_backward_input", "depthwise_weight_partials",
           "sum_chunks")
_module = Module("depthwise.cu", KERNELS)


def depthwise_forward(x, w, stride, padding, dilation):
    """Return ``y = F.conv2d(x, w, None, stride, padding, dilation, groups=C)``, shape (N, C, OH, OW)."""
    on_gpu(x=x, w=w)
    check_float("x", x, ndim=4)
    check_float("w", w, ndim=4, dtype=x.dtype)
    check_depthwise_weight_shape("w", w.shape, x.shape[1])
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w.shape, stride, padding, dilation)
    N, C, H, W = x.shape
    y = cp.empty((N, C, OH, OW), x.dtype)
    _module.launch("depthwise_forward", x.dtype, y.size,
                   (x, w, *ints(N, C, H, W, *w.shape[2:], *stride, *padding, *dilation, OH, OW), y))
    return y


def depthwise_backward_input(gy, w, x_shape, stride, padding, dilation):
    """Return ``gx = dL/dx`` (shape ``x_shape``) given ``gy = dL/dy`` and the weight ``w``."""
    on_gpu(gy=gy, w=w)
    check_float("gy", gy, ndim=4)
    x_shape = check_shape_arg("x_shape", x_shape)
    check_float("w", w, ndim=4, dtype=gy.dtype)
    check_depthwise_weight_shape("w", w.shape, x_shape[1])
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x_shape, w.shape, stride, padding, dilation)
    check_shape("gy", gy, (x_shape[0], x_shape[1], OH, OW))
    gx = cp.empty(x_shape, gy.dtype)
    _module.launch("depthwise_backward_input", gy.dtype, gx.size,
                   (gy, w, *ints(*x_shape, *w.shape[2:], *stride, *padding, *dilation, OH, OW), gx))
    return gx


def depthwise_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """Return ``gw = dL/dw`` (shape ``w_shape`` = (C, 1, KH, KW)) given ``gy = dL/dy`` and ``x``."""
    on_gpu(gy=gy, x=x)
    check_float("gy", gy, ndim=4)
    check_float("x", x, ndim=4, dtype=gy.dtype)
    w_shape = check_depthwise_weight_shape("w_shape", check_shape_arg("w_shape", w_shape), x.shape[1])
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w_shape, stride, padding, dilation)
    check_shape("gy", gy, x.shape[:2] + (OH, OW))
    N, C, H, W = x.shape
    rows = C * w_shape[2] * w_shape[3]
    chunks, chunk = chunks_for(N * OH * OW)
    partial = cp.empty((rows, chunks), cp.float64)
    _module.launch_rows("depthwise_weight_partials", gy.dtype, rows, chunks,
                        (gy, x, *ints(N, C, H, W, *w_shape[2:], *stride, *padding, *dilation,
                                      OH, OW, chunk), partial))
    gw = cp.empty(w_shape, gy.dtype)
    _module.launch("sum_chunks", gy.dtype, rows, (partial, *ints(rows, chunks), gw))
    return gw
