"""Hand-written kernels, and the ops written once above them.

Three floors, each importing only the one below::

    kernels.ops       each op once, over the array module xp: shapes, outputs, the driver
    kernels.cpu       Numba kernels on NumPy arrays          } the same names and arguments,
    kernels.cuda      CUDA C kernels (.cu) on CuPy arrays    } the outputs passed in

``kernels.device`` decides what device ``"cuda"`` is (a GPU through CuPy, or the emulated
GPU) and counts what runs there. ``kernels`` imports nothing of ``minitorch_seg``: the
autograd engine calls the ops; the ops call :func:`backend_for` of their input and the
function of the same name there.

The ops (``kernels.ops``, re-exported here) trust their arguments: ``minitorch_seg.functional`` checks them.
They take C-contiguous float32 or float64 arrays of one dtype (targets: uint8 or int64),
geometry as pairs of Python ints ``(h, w)``, allocate and return their outputs, and never
modify their inputs, except the running statistics of ``batchnorm_forward_train`` and the
arrays ``sgd_step`` updates::

    conv2d_forward(x, w, stride, padding, dilation, tf32) -> (y, col)     # groups == 1, no bias
    conv2d_backward_input(gy, w, x_shape, stride, padding, dilation, tf32) -> gx
    conv2d_backward_weight(gy, col, w_shape, tf32) -> gw                  # col: the forward's
    depthwise_forward(x, w, stride, padding, dilation) -> y                # w: (C, 1, KH, KW)
    depthwise_backward_input(gy, w, x_shape, stride, padding, dilation) -> gx
    depthwise_backward_weight(gy, x, w_shape, stride, padding, dilation) -> gw
    batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu)
        -> (y, stats)          # relu: BN + ReLU fused; stats (4, C): mean, invstd, scale, shift
    batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu) -> (y, stats)
    batchnorm_backward(gy, x, stats, relu, training) -> (gx, gweight, gbias)
    add_relu(a, b) -> max(a + b, 0)
    relu_backward(g, y) -> g * (y > 0)                                    # one kernel
    avg_pool2d_forward(x, kernel_size, stride, padding) -> y              # count_include_pad
    avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding) -> gx
    adaptive_avg_pool2d_forward(x, output_size) -> y
    adaptive_avg_pool2d_backward(gy, x_shape) -> gx
    bilinear_forward(x, size, ratio, align_corners) -> y                  # ratio: source px per output px
    bilinear_backward(gy, x_shape, ratio, align_corners) -> gx
    cross_entropy_forward(logits, target, weight, ignore_index) -> (loss, prob)   # prob: softmax
    cross_entropy_backward(gloss, prob, target, weight, ignore_index) -> glogits
    upsample_cross_entropy_forward(x, target, weight, ignore_index, ratio, align_corners)
        -> (loss, lse)                         # x resized to the target's size, fused: lse per pixel
    upsample_cross_entropy_backward(gloss, x, lse, target, weight, ignore_index, ratio, align_corners) -> gx
    dropout(x, p, seed, offset) -> x * mask          # counter-based random; backward: dropout(gy, ...)
    sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov) -> None  # in place

A backend (``kernels.cpu``, ``kernels.cuda``) supplies the loops, with the outputs passed in::

    im2col(x, kernel, stride, padding, dilation, col)
    col2im(gcol, kernel, stride, padding, dilation, gx)
    depthwise_forward(x, w, stride, padding, dilation, y)
    depthwise_backward_input(gy, w, stride, padding, dilation, gx)
    depthwise_backward_weight(gy, x, stride, padding, dilation, gw)
    batchnorm_forward_train(x, weight, bias, eps, update, running_mean, running_var, momentum, relu, y, stats)
    batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y, stats)
    batchnorm_backward(gy, x, stats, relu, training, gx, gweight, gbias)
    add_relu(a, b, y)
    relu_backward(g, y, gx)
    avg_pool2d_forward(x, kernel, stride, padding, y)
    avg_pool2d_backward(gy, kernel, stride, padding, gx)
    adaptive_avg_pool2d_forward(x, y)
    adaptive_avg_pool2d_backward(gy, gx)
    bilinear_forward(x, ratio, align_corners, y)
    bilinear_backward(gy, ratio, align_corners, gx)
    cross_entropy_forward(logits, target, weight, weighted, ignore_index, loss, prob)
    cross_entropy_backward(gloss, prob, target, weight, weighted, ignore_index, glogits)
    upsample_cross_entropy_forward(x, target, weight, weighted, ignore_index, ratio, align_corners, loss, lse)
    upsample_cross_entropy_backward(gloss, x, lse, target, weight, weighted, ignore_index, ratio, align_corners, gx)
    dropout(x, p, seed, offset, y)
    sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov)
"""
import os

# Set before NumPy's first import, when OpenBLAS reads it: its threads sleep as soon as a
# matrix product ends instead of spinning on the cores the next Numba kernel needs (see
# kernels/cpu/__init__.py). So ``minitorch_seg`` and ``fastscnn`` import this package first.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import device, ops  # noqa: E402,F401
from .ops import *  # noqa: E402,F401,F403
from .ops import backend_for  # noqa: E402,F401
