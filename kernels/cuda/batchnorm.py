"""Batch normalization (BatchNorm2d, optionally + ReLU) on the GPU: the launchers of ``batchnorm.cu``.

The lesson is the header of ``batchnorm.cu``; ``kernels/cpu/batchnorm.py`` computes the same
numbers with one Numba thread per channel. Here each op is a short sequence of launches:
per-channel sums as (channel, chunk) blocks into float64 partial buffers, a one-thread-per-
channel finish that turns them into per-channel constants (and moves the running
statistics), and an element-wise kernel. ``eps`` goes in as a ``np.float64``: the finishing
kernels compute in double. The argument checks are the CPU launchers', after a check that
every array is on the GPU.
"""
import numpy as np

from ..checks import check_batchnorm_relu_output, check_channel_vectors, check_float, check_shape
from ._module import cp, Module, chunks_for, ints, on_gpu

__all__ = [
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward_train",
    "batchnorm_backward_eval",
]

KERNELS = ("stat_partials", "grad_partials", "finish_forward_train", "eval_coefficients",
           "finish_backward_train", "finish_backward_eval", "affine", "backward_train_input")
_module = Module("batchnorm.cu", KERNELS)


def _affine(a, scale, shift, relu=False, gate=None):
    """``a*scale[c] + shift[c]`` for ``a`` (N, C, H, W); ``a`` zeroed where ``gate <= 0`` first
    (when given), the result clipped at 0 with ``relu``."""
    N, C, H, W = a.shape
    out = cp.empty_like(a)
    _module.launch("affine", a.dtype, a.size,
                   (a, a if gate is None else gate, np.int32(gate is not None), scale, shift,
                    *ints(C, H * W, a.size, relu), out))
    return out


def _grad_sums(gy, y, x, mean):
    """Chunk partials (C, chunks) of ``sum g`` and of ``sum g*(x - mean)`` per channel, where
    g is ``gy``, gated by the ReLU output ``y`` unless ``y`` is None."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_g, partial_gd = cp.empty((2, C, chunks), cp.float64)
    _module.launch_rows("grad_partials", x.dtype, C, chunks,
                        (gy, gy if y is None else y, np.int32(y is not None), x, mean,
                         *ints(C, H * W, N * H * W, chunk), partial_g, partial_gd))
    return partial_g, partial_gd


def batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu):
    """Normalize ``x`` (N, C, H, W) with its own per-channel batch statistics (then ReLU).

    Returns ``(y, mean, invstd)``: ``y`` like ``x``; ``mean`` and ``invstd = 1/sqrt(var + eps)``
    of shape (C,) in x's dtype, with the biased variance (what ``backward_train`` needs).
    ``running_mean``/``running_var`` (C,), unless None, are updated in place by ``momentum``.
    """
    on_gpu(x=x, weight=weight, bias=bias)
    check_float("x", x, ndim=4)
    check_channel_vectors(x, weight=weight, bias=bias)
    update = running_mean is not None
    if update:
        on_gpu(running_mean=running_mean, running_var=running_var)
        check_channel_vectors(x, running_mean=running_mean, running_var=running_var)
    N, C, H, W = x.shape
    M = N * H * W
    chunks, chunk = chunks_for(M)
    partial_s, partial_ss = cp.empty((2, C, chunks), cp.float64)
    mean, invstd, scale, shift = cp.empty((4, C), x.dtype)
    _module.launch_rows("stat_partials", x.dtype, C, chunks,
                        (x, *ints(C, H * W, M, chunk), partial_s, partial_ss))
    _module.launch("finish_forward_train", x.dtype, C,
                   (partial_s, partial_ss, x, weight, bias, np.float64(eps), *ints(C, H * W, chunks, M),
                    mean, invstd, scale, shift, np.int32(update), running_mean if update else mean,
                    running_var if update else invstd, np.float64(momentum)))
    return _affine(x, scale, shift, relu), mean, invstd


def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu):
    """Normalize ``x`` (N, C, H, W) with fixed statistics ``mean``/``var`` (C,) (then ReLU); returns ``y``."""
    on_gpu(x=x, mean=mean, var=var, weight=weight, bias=bias)
    check_float("x", x, ndim=4)
    check_channel_vectors(x, mean=mean, var=var, weight=weight, bias=bias)
    C = x.shape[1]
    scale, shift = cp.empty((2, C), x.dtype)
    _module.launch("eval_coefficients", x.dtype, C,
                   (mean, var, weight, bias, np.float64(eps), *ints(C), scale, shift))
    return _affine(x, scale, shift, relu)


def batchnorm_backward_train(gy, x, mean, invstd, weight, y):
    """Gradients of training-mode batch norm, through the batch statistics.

    ``mean``/``invstd`` are the values ``batchnorm_forward_train`` returned; ``y`` is its
    output when it applied the ReLU (whose backward this then includes), else None.
    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    on_gpu(gy=gy, x=x, mean=mean, invstd=invstd, weight=weight)
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, invstd=invstd, weight=weight)
    check_batchnorm_relu_output(y, x)
    if y is not None:
        on_gpu(y=y)
    N, C, H, W = x.shape
    partial_g, partial_gd = _grad_sums(gy, y, x, mean)
    gweight, gbias = cp.empty(C, x.dtype), cp.empty(C, x.dtype)  # their own memory: they outlive the step
    a, k, gmean = cp.empty((3, C), x.dtype)
    _module.launch("finish_backward_train", x.dtype, C,
                   (partial_g, partial_gd, invstd, weight, *ints(C, partial_g.shape[1], N * H * W),
                    gweight, gbias, a, k, gmean))
    gx = cp.empty_like(x)
    _module.launch("backward_train_input", x.dtype, x.size,
                   (gy, gy if y is None else y, np.int32(y is not None), x, mean, a, k, gmean,
                    *ints(C, H * W, x.size), gx))
    return gx, gweight, gbias


def batchnorm_backward_eval(gy, x, mean, var, weight, eps, y):
    """Gradients of eval-mode batch norm (``mean``/``var`` are constants); ``y`` as in
    ``batchnorm_backward_train``. Returns ``(gx, gweight, gbias)``."""
    on_gpu(gy=gy, x=x, mean=mean, var=var, weight=weight)
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, var=var, weight=weight)
    check_batchnorm_relu_output(y, x)
    if y is not None:
        on_gpu(y=y)
    C = x.shape[1]
    partial_g, partial_gd = _grad_sums(gy, y, x, mean)
    gweight, gbias = cp.empty(C, x.dtype), cp.empty(C, x.dtype)
    scale, shift = cp.empty((2, C), x.dtype)
    _module.launch("finish_backward_eval", x.dtype, C,
                   (partial_g, partial_gd, var, weight, np.float64(eps), *ints(C, partial_g.shape[1]),
                    gweight, gbias, scale, shift))
    return _affine(gy, scale, shift, gate=y), gweight, gbias
