"""2-D convolution (groups == 1, no bias) on the GPU: the launchers of ``conv2d.cu``.

The math and the driver are ``kernels/conv2d_gemm.py``, shared with the CPU: batched
products in ``cupy.matmul`` (cuBLAS) around the im2col and col2im kernels of ``conv2d.cu``.
The argument checks are the CPU launchers' (same messages), after a check that every array
is on the GPU.
"""
from .. import conv2d_gemm
from ..checks import check_conv_weight, check_float, check_shape, check_shape_arg, conv_geometry, conv_output_hw
from ._module import cp, Module, ints, on_gpu

__all__ = ["conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight"]

KERNELS = ("im2col", "col2im")
_module = Module("conv2d.cu", KERNELS)


def im2col(x, kernel, stride, padding, dilation, col):
    """Fill ``col`` (N, C*KH*KW, OH, OW) from ``x`` (N, C, H, W): the shared driver's im2col."""
    N, C, H, W = x.shape
    _module.launch("im2col", x.dtype, col.size,
                   (x, *ints(N, C, H, W, *kernel, *stride, *padding, *dilation, *col.shape[2:]), col))


def col2im(gcol, kernel, stride, padding, dilation, gx):
    """Gather ``gcol`` (N, C*KH*KW, OH, OW) into ``gx`` (N, C, H, W): the shared driver's col2im."""
    N, C, H, W = gx.shape
    _module.launch("col2im", gcol.dtype, gx.size,
                   (gcol, *ints(N, C, H, W, *kernel, *stride, *padding, *dilation, *gcol.shape[2:]), gx))


# ----------------------------------------------------------------------------- launchers

def conv2d_forward(x, w, stride, padding, dilation):
    """Return ``y = F.conv2d(x, w, None, stride, padding, dilation)``, shape (N, O, OH, OW)."""
    on_gpu(x=x, w=w)
    check_float("x", x, ndim=4)
    check_conv_weight(w, x.shape[1], x.dtype)
    stride, padding, dilation = conv_geometry(stride, padding, dilation)
    OH, OW = conv_output_hw(x.shape, w.shape, stride, padding, dilation)
    y = cp.empty((x.shape[0], w.shape[0], OH, OW), x.dtype)
    conv2d_gemm.forward(cp, im2col, x, w, stride, padding, dilation, y)
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
    conv2d_gemm.backward_input(cp, col2im, gy, w, stride, padding, dilation, gx)
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
    conv2d_gemm.backward_weight(cp, im2col, gy, x, stride, padding, dilation, gw)
    return gw
