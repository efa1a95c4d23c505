"""Batch normalization (BatchNorm2d) on the CPU.

Math. For every channel ``c`` the statistics run over the ``M = N*H*W`` values of that
channel (biased variance, as PyTorch uses for normalizing)::

    mean[c]   = 1/M * sum_{n,h,w} x[n,c,h,w]
    var[c]    = 1/M * sum_{n,h,w} (x[n,c,h,w] - mean[c])**2
    invstd[c] = 1 / sqrt(var[c] + eps)
    xhat      = (x - mean[c]) * invstd[c]
    y         = xhat * weight[c] + bias[c]

In eval mode ``mean``/``var`` are the running statistics, fixed numbers, so ``y`` is an
affine map of ``x`` and its gradient is ``gx = gy * weight * invstd``. In training the
statistics depend on ``x`` too; differentiating through them gives::

    gbias[c]   = sum gy
    gweight[c] = sum gy * xhat
    gx         = weight[c] * invstd[c] * (gy - gbias[c]/M - xhat * gweight[c]/M)

Shapes. ``x, y, gy, gx``: (N, C, H, W); ``weight, bias, mean, var, invstd, gweight, gbias``:
(C,), all in the dtype of ``x``.

Loop mapping. The launchers view ``x`` as (N, C, H*W), so one channel is N contiguous runs
of H*W values. The outer ``prange`` is over channels: each thread owns whole channels, so
each reduction is a private scalar and no two threads write the same element::

    for c in prange(C):                      # one channel per iteration, in parallel
        s = 0.0                              # float64
        for n in range(N):
            for i in range(H*W):
                s += x[n, c, i]
        mean = s / M
        ...second pass for sum (x - mean)**2, then a third that writes y...

Why two passes in float64: the one-pass formula ``E[x**2] - E[x]**2`` subtracts two nearly
equal numbers when ``|mean| >> std`` and can lose every digit (even go negative), and a
float32 running sum over the 262144 values of one channel of a (2, 32, 256, 512) batch
drifts by ~1e-5 relative. Summing ``x`` first and then ``(x - mean)**2``, both in a float64
accumulator, costs one extra read of the channel and is accurate to the last float32 digit.

Optimizations:
    - ``fastmath={"reassoc"}`` lets LLVM split each float64 sum into SIMD lanes (about 5x
      faster than the strictly sequential sum; the rounding stays float64-level).
    - The output pass folds the per-channel constants into ``y = x*scale + shift`` and the
      backward into two per-channel coefficients, so the element loops are one fused
      multiply-add or two, in the input dtype (8 float32 lanes per AVX register).
    - Channels are independent, so the parallel loop needs no atomics or partial buffers.
"""
import math

import numpy as np
from numba import njit, prange

from ..checks import check_channel_vectors, check_float, check_shape

__all__ = [
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward_train",
    "batchnorm_backward_eval",
]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _forward_train_kernel(x, weight, bias, eps, y, mean, invstd):
    """Batch statistics per channel (two float64 passes), then ``y = x*scale + shift``."""
    N, C, HW = x.shape
    M = N * HW
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for i in range(HW):
                s += x[n, c, i]
        mu = s / M
        ss = 0.0
        for n in range(N):
            for i in range(HW):
                d = x[n, c, i] - mu
                ss += d * d
        istd = 1.0 / math.sqrt(ss / M + eps)
        mean[c] = mu
        invstd[c] = istd
        scale = x.dtype.type(weight[c] * istd)
        shift = x.dtype.type(bias[c] - mu * weight[c] * istd)
        for n in range(N):
            for i in range(HW):
                y[n, c, i] = x[n, c, i] * scale + shift


@njit(parallel=True, cache=True)
def _forward_eval_kernel(x, mean, var, weight, bias, eps, y):
    """``y = x*scale + shift`` with the fixed (running) statistics."""
    N, C, HW = x.shape
    for c in prange(C):
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        scale = x.dtype.type(weight[c] * istd)
        shift = x.dtype.type(bias[c] - np.float64(mean[c]) * weight[c] * istd)
        for n in range(N):
            for i in range(HW):
                y[n, c, i] = x[n, c, i] * scale + shift


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _backward_train_kernel(gy, x, mean, invstd, weight, gx, gweight, gbias):
    """Sums of ``gy`` and ``gy*xhat`` per channel, then ``gx`` through the batch statistics."""
    N, C, HW = x.shape
    M = N * HW
    for c in prange(C):
        mu = mean[c]
        sg = 0.0
        sgd = 0.0
        for n in range(N):
            for i in range(HW):
                g = gy[n, c, i]
                sg += g
                sgd += g * (x[n, c, i] - mu)
        istd = np.float64(invstd[c])
        gbias[c] = sg
        gweight[c] = sgd * istd
        # gx = w*istd*(gy - sg/M - (x - mu)*istd*istd*sgd/M), split into per-channel constants.
        k = x.dtype.type(sgd * istd * istd / M)
        gmean = x.dtype.type(sg / M)
        a = x.dtype.type(weight[c] * istd)
        for n in range(N):
            for i in range(HW):
                gx[n, c, i] = (gy[n, c, i] - gmean - (x[n, c, i] - mu) * k) * a


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _backward_eval_kernel(gy, x, mean, var, weight, eps, gx, gweight, gbias):
    """``gx = gy*weight*invstd``; ``gweight``/``gbias`` as in training (the stats are constants)."""
    N, C, HW = x.shape
    for c in prange(C):
        mu = mean[c]
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        a = x.dtype.type(weight[c] * istd)
        sg = 0.0
        sgd = 0.0
        for n in range(N):
            for i in range(HW):
                g = gy[n, c, i]
                sg += g
                sgd += g * (x[n, c, i] - mu)
                gx[n, c, i] = g * a
        gbias[c] = sg
        gweight[c] = sgd * istd


def batchnorm_forward_train(x, weight, bias, eps):
    """Normalize ``x`` (N, C, H, W) with its own per-channel batch statistics.

    Returns ``(y, mean, invstd)``: ``y`` like ``x``; ``mean`` and ``invstd = 1/sqrt(var + eps)``
    of shape (C,) in x's dtype, with the biased variance (what ``backward_train`` needs).
    """
    check_float("x", x, ndim=4)
    check_channel_vectors(x, weight=weight, bias=bias)
    N, C, H, W = x.shape
    y = np.empty_like(x)
    mean = np.empty(C, dtype=x.dtype)
    invstd = np.empty(C, dtype=x.dtype)
    _forward_train_kernel(x.reshape(N, C, H * W), weight, bias, float(eps),
                          y.reshape(N, C, H * W), mean, invstd)
    return y, mean, invstd


def batchnorm_forward_eval(x, mean, var, weight, bias, eps):
    """Normalize ``x`` (N, C, H, W) with fixed statistics ``mean``/``var`` (C,); returns ``y``."""
    check_float("x", x, ndim=4)
    check_channel_vectors(x, mean=mean, var=var, weight=weight, bias=bias)
    N, C, H, W = x.shape
    y = np.empty_like(x)
    _forward_eval_kernel(x.reshape(N, C, H * W), mean, var, weight, bias, float(eps),
                         y.reshape(N, C, H * W))
    return y


def batchnorm_backward_train(gy, x, mean, invstd, weight):
    """Gradients of training-mode batch norm, through the batch statistics.

    ``mean``/``invstd`` are the values ``batchnorm_forward_train`` returned.
    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, invstd=invstd, weight=weight)
    N, C, H, W = x.shape
    gx = np.empty_like(x)
    gweight = np.empty(C, dtype=x.dtype)
    gbias = np.empty(C, dtype=x.dtype)
    _backward_train_kernel(gy.reshape(N, C, H * W), x.reshape(N, C, H * W), mean, invstd,
                           weight, gx.reshape(N, C, H * W), gweight, gbias)
    return gx, gweight, gbias


def batchnorm_backward_eval(gy, x, mean, var, weight, eps):
    """Gradients of eval-mode batch norm (``mean``/``var`` are constants).

    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, var=var, weight=weight)
    N, C, H, W = x.shape
    gx = np.empty_like(x)
    gweight = np.empty(C, dtype=x.dtype)
    gbias = np.empty(C, dtype=x.dtype)
    _backward_eval_kernel(gy.reshape(N, C, H * W), x.reshape(N, C, H * W), mean, var, weight,
                          float(eps), gx.reshape(N, C, H * W), gweight, gbias)
    return gx, gweight, gbias
