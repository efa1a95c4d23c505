"""Batch normalization (optionally + ReLU) on the GPU: the launches of ``batchnorm.cu``.

Training runs two launches each way: per-channel sums as (channel, chunk) blocks into
float64 partial buffers, then an element-wise kernel on the same (channel, chunk) grid whose
every block first finishes its channel's constants from those partials. Eval forward is
that second launch alone. ``stats`` (4, C) holds what the backward needs: mean, invstd,
scale, shift. ``eps`` and ``momentum`` go in as ``np.float64``: the constants are computed
in double. The CPU twins, one Numba thread per channel: ``kernels/cpu/batchnorm.py``.
"""
import numpy as np

from .launch import CudaFile, chunks_for, empty, ints

__all__ = ["batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward", "add_relu", "relu_backward"]

CUDA = CudaFile("batchnorm.cu", ("stat_partials", "grad_partials", "forward_train", "forward_eval",
                                 "backward_input", "add_relu", "relu_backward"))


def batchnorm_forward_train(x, weight, bias, eps, update, running_mean, running_var, momentum, relu,
                            y, stats):
    """``y`` and ``stats`` from the batch statistics (then ReLU); with ``update``, the running
    statistics move ``momentum`` of the way to the batch's."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_s, partial_ss = empty((2, C, chunks), np.float64)
    CUDA.launch_rows("stat_partials", x.dtype, C, chunks, (x, *ints(C, H * W, N * H * W, chunk), partial_s, partial_ss))
    CUDA.launch_rows("forward_train", x.dtype, C, chunks,
                     (partial_s, partial_ss, x, weight, bias, np.float64(eps), *ints(C, H * W, N * H * W, chunk),
                      np.int32(update), running_mean, running_var, np.float64(momentum), np.int32(relu), y, stats))


def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y, stats):
    """``y``: ``x`` normalized with the fixed statistics ``mean``/``var`` (then ReLU); ``stats``."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    CUDA.launch_rows("forward_eval", x.dtype, C, chunks, (x, mean, var, weight, bias, np.float64(eps),
                                                          *ints(C, H * W, N * H * W, chunk, relu), y, stats))


def batchnorm_backward(gy, x, stats, relu, training, gx, gweight, gbias):
    """``gx``, ``gweight``, ``gbias``: through the batch statistics when ``training``."""
    N, C, H, W = x.shape
    chunks, chunk = chunks_for(N * H * W)
    partial_g, partial_gd = empty((2, C, chunks), np.float64)
    sizes = ints(C, H * W, N * H * W, chunk)
    CUDA.launch_rows("grad_partials", x.dtype, C, chunks, (gy, x, stats, np.int32(relu), *sizes, partial_g, partial_gd))
    CUDA.launch_rows("backward_input", x.dtype, C, chunks, (partial_g, partial_gd, gy, x, stats,
                                                            *ints(relu, training), *sizes, gx, gweight, gbias))


def add_relu(a, b, y):
    """``y = max(a + b, 0)``, one thread per element."""
    CUDA.launch("add_relu", a.dtype, a.size, (a, b, *ints(a.size), y))


def relu_backward(g, y, gx):
    """``gx = g`` where ``y > 0``, else 0, one thread per element."""
    CUDA.launch("relu_backward", g.dtype, g.size, (g, y, *ints(g.size), gx))
