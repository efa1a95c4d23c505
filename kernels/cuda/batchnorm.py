"""Batch normalization (optionally + ReLU) on the GPU: the launches of ``batchnorm.cu``.

Each op is a short sequence of launches: per-channel sums as (channel, chunk) blocks into
float64 partial buffers, a one-thread-per-channel finish that turns them into per-channel
constants (and moves the running statistics), and an element-wise kernel. ``eps`` and
``momentum`` go in as ``np.float64``: the finishing kernels compute in double. The CPU twins,
one Numba thread per channel: ``kernels/cpu/batchnorm.py``.
"""
import numpy as np

from .launch import CudaFile, chunks_for, empty, ints

__all__ = ["batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
           "batchnorm_backward_eval"]

CUDA = CudaFile("batchnorm.cu", ("stat_partials", "grad_partials", "finish_forward_train", "eval_coefficients",
                                 "finish_backward_train", "finish_backward_eval", "affine",
                                 "backward_train_input"))


def _affine(a, scale, shift, relu, gate, out):
    """``out = a*scale[c] + shift[c]``, ``a`` zeroed where ``gate <= 0`` first (unless ``gate``
    is None), the result clipped at 0 with ``relu``."""
    N, C, H, W = a.shape
    CUDA.launch("affine", a.dtype, a.size, (a, a if gate is None else gate, np.int32(gate is not None), scale,
                                           shift, *ints(C, H * W, a.size, relu), out))


def _grad_sums(gy, relu, y, x, mean):
    """Chunk partials (C, chunks) of ``sum g`` and ``sum g*(x - mean)`` per channel, g = ``gy``
    gated by the ReLU output ``y`` when ``relu``."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_g, partial_gd = empty((2, C, chunks), np.float64)
    CUDA.launch_rows("grad_partials", x.dtype, C, chunks, (gy, y, np.int32(relu), x, mean,
                                                           *ints(C, H * W, N * H * W, chunk), partial_g, partial_gd))
    return partial_g, partial_gd


def batchnorm_forward_train(x, weight, bias, eps, update, running_mean, running_var, momentum, relu,
                            y, mean, invstd):
    """``y``, ``mean``, ``invstd``: the batch statistics, the normalized output (then ReLU);
    with ``update``, the running statistics move ``momentum`` of the way to the batch's."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_s, partial_ss = empty((2, C, chunks), np.float64)
    scale, shift = empty((2, C), x.dtype)
    CUDA.launch_rows("stat_partials", x.dtype, C, chunks, (x, *ints(C, H * W, N * H * W, chunk), partial_s, partial_ss))
    CUDA.launch("finish_forward_train", x.dtype, C,
                (partial_s, partial_ss, x, weight, bias, np.float64(eps), *ints(C, H * W, chunks, N * H * W),
                 mean, invstd, scale, shift, np.int32(update), running_mean, running_var, np.float64(momentum)))
    _affine(x, scale, shift, relu, None, y)


def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y):
    """``y``: ``x`` normalized with the fixed statistics ``mean``/``var`` (then ReLU)."""
    C = x.shape[1]
    scale, shift = empty((2, C), x.dtype)
    CUDA.launch("eval_coefficients", x.dtype, C, (mean, var, weight, bias, np.float64(eps), *ints(C), scale, shift))
    _affine(x, scale, shift, relu, None, y)


def batchnorm_backward_train(gy, x, mean, invstd, weight, relu, y, gx, gweight, gbias):
    """``gx``, ``gweight``, ``gbias`` of training batch norm, through the batch statistics."""
    N, C, H, W = x.shape
    partial_g, partial_gd = _grad_sums(gy, relu, y, x, mean)
    a, k, gmean = empty((3, C), x.dtype)
    CUDA.launch("finish_backward_train", x.dtype, C, (partial_g, partial_gd, invstd, weight,
                                                      *ints(C, partial_g.shape[1], N * H * W),
                                                      gweight, gbias, a, k, gmean))
    CUDA.launch("backward_train_input", x.dtype, x.size, (gy, y, np.int32(relu), x, mean, a, k, gmean,
                                                          *ints(C, H * W, x.size), gx))


def batchnorm_backward_eval(gy, x, mean, var, weight, eps, relu, y, gx, gweight, gbias):
    """``gx``, ``gweight``, ``gbias`` of eval batch norm (the statistics are constants)."""
    C = x.shape[1]
    partial_g, partial_gd = _grad_sums(gy, relu, y, x, mean)
    scale, shift = empty((2, C), x.dtype)
    CUDA.launch("finish_backward_eval", x.dtype, C, (partial_g, partial_gd, var, weight, np.float64(eps),
                                                     *ints(C, partial_g.shape[1]), gweight, gbias, scale, shift))
    _affine(gy, scale, shift, False, y if relu else None, gx)
