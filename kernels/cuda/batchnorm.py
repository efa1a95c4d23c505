"""Batch normalization (BatchNorm2d) on the GPU: the launchers of ``batchnorm.cu``.

The lesson is the header of ``batchnorm.cu``; ``kernels/cpu/batchnorm.py`` computes the same
numbers with one Numba thread per channel. Here each op is a short sequence of launches:
per-channel sums as (channel, chunk) blocks into float64 partial buffers, a one-thread-per-
channel finish that turns them into per-channel constants, and an element-wise kernel.
``eps`` goes in as a ``np.float64``: the finishing kernels compute in double.
The argument checks are the CPU launchers', after a check that every array is on the GPU.
"""
import numpy as np

from ..checks import check_channel_vectors, check_float, check_shape
from ._module import cp, Module, chunks_for, ints, on_gpu

__all__ = [
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward_train",
    "batchnorm_backward_eval",
]

KERNELS = ("sum_partials", "sqdev_partials", "grad_partials", "finish_mean",
           "finish_forward_train", "eval_coefficients", "finish_backward_train",
           "finish_backward_eval", "affine", "backward_train_input")
_module = Module("batchnorm.cu", KERNELS)


def _affine(a, scale, shift):
    """``a*scale[c] + shift[c]`` for ``a`` (N, C, H, W)."""
    N, C, H, W = a.shape
    out = cp.empty_like(a)
    _module.launch("affine", a.dtype, a.size, (a, scale, shift, *ints(C, H * W, a.size), out))
    return out


def _grad_sums(gy, x, mean):
    """Chunk partials (C, chunks) of ``sum gy`` and of ``sum gy*(x - mean)``, per channel."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_g, partial_gd = cp.empty((2, C, chunks), cp.float64)
    _module.launch_rows("grad_partials", x.dtype, C, chunks,
                        (gy, x, mean, *ints(C, H * W, N * H * W, chunk), partial_g, partial_gd))
    return partial_g, partial_gd


def batchnorm_forward_train(x, weight, bias, eps):
    """Normalize ``x`` (N, C, H, W) with its own per-channel batch statistics.

    Returns ``(y, mean, invstd)``: ``y`` like ``x``; ``mean`` and ``invstd = 1/sqrt(var + eps)``
    of shape (C,) in x's dtype, with the biased variance (what ``backward_train`` needs).
    """
    on_gpu(x=x, weight=weight, bias=bias)
    check_float("x", x, ndim=4)
    check_channel_vectors(x, weight=weight, bias=bias)
    N, C, H, W = x.shape
    M = N * H * W
    chunks, chunk = chunks_for(M)
    geometry = ints(C, H * W, M, chunk)
    partial = cp.empty((C, chunks), cp.float64)
    mean64 = cp.empty(C, cp.float64)
    mean, invstd = cp.empty(C, x.dtype), cp.empty(C, x.dtype)
    scale, shift = cp.empty((2, C), x.dtype)
    _module.launch_rows("sum_partials", x.dtype, C, chunks, (x, *geometry, partial))
    _module.launch("finish_mean", x.dtype, C, (partial, *ints(C, chunks, M), mean64, mean))
    _module.launch_rows("sqdev_partials", x.dtype, C, chunks, (x, mean64, *geometry, partial))
    _module.launch("finish_forward_train", x.dtype, C,
                   (partial, mean64, weight, bias, np.float64(eps), *ints(C, chunks, M),
                    invstd, scale, shift))
    return _affine(x, scale, shift), mean, invstd


def batchnorm_forward_eval(x, mean, var, weight, bias, eps):
    """Normalize ``x`` (N, C, H, W) with fixed statistics ``mean``/``var`` (C,); returns ``y``."""
    on_gpu(x=x, mean=mean, var=var, weight=weight, bias=bias)
    check_float("x", x, ndim=4)
    check_channel_vectors(x, mean=mean, var=var, weight=weight, bias=bias)
    C = x.shape[1]
    scale, shift = cp.empty((2, C), x.dtype)
    _module.launch("eval_coefficients", x.dtype, C,
                   (mean, var, weight, bias, np.float64(eps), *ints(C), scale, shift))
    return _affine(x, scale, shift)


def batchnorm_backward_train(gy, x, mean, invstd, weight):
    """Gradients of training-mode batch norm, through the batch statistics.

    ``mean``/``invstd`` are the values ``batchnorm_forward_train`` returned.
    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    on_gpu(gy=gy, x=x, mean=mean, invstd=invstd, weight=weight)
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, invstd=invstd, weight=weight)
    N, C, H, W = x.shape
    partial_g, partial_gd = _grad_sums(gy, x, mean)
    gweight, gbias = cp.empty(C, x.dtype), cp.empty(C, x.dtype)
    a, k, gmean = cp.empty((3, C), x.dtype)
    _module.launch("finish_backward_train", x.dtype, C,
                   (partial_g, partial_gd, invstd, weight, *ints(C, partial_g.shape[1], N * H * W),
                    gweight, gbias, a, k, gmean))
    gx = cp.empty_like(x)
    _module.launch("backward_train_input", x.dtype, x.size,
                   (gy, x, mean, a, k, gmean, *ints(C, H * W, x.size), gx))
    return gx, gweight, gbias


def batchnorm_backward_eval(gy, x, mean, var, weight, eps):
    """Gradients of eval-mode batch norm (``mean``/``var`` are constants).

    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    on_gpu(gy=gy, x=x, mean=mean, var=var, weight=weight)
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, var=var, weight=weight)
    C = x.shape[1]
    partial_g, partial_gd = _grad_sums(gy, x, mean)
    gweight, gbias = cp.empty(C, x.dtype), cp.empty(C, x.dtype)
    scale, shift = cp.empty((2, C), x.dtype)
    _module.launch("finish_backward_eval", x.dtype, C,
                   (partial_g, partial_gd, var, weight, np.float64(eps), *ints(C, partial_g.shape[1]),
                    gweight, gbias, scale, shift))
    return _affine(gy, scale, shift), gweight, gbias
