"""Batch normalization (BatchNorm2d), optionally followed by a ReLU, on the CPU.

Math. For every channel ``c`` the statistics run over the ``M = N*H*W`` values of that
channel (biased variance, as PyTorch uses for normalizing)::

    mean[c]   = 1/M * sum_{n,h,w} x[n,c,h,w]
    var[c]    = 1/M * sum_{n,h,w} (x[n,c,h,w] - mean[c])**2
    invstd[c] = 1 / sqrt(var[c] + eps)
    xhat      = (x - mean[c]) * invstd[c]
    y         = xhat * weight[c] + bias[c]
    y         = max(y, 0)                              (with relu: batch norm + ReLU fused)

In training the running statistics also move toward the batch's, in the same pass
(``running = (1 - momentum)*running + momentum*batch``, with the unbiased variance
``var*M/(M-1)``). In eval mode ``mean``/``var`` are the running statistics, fixed numbers,
so ``y`` is an affine map of ``x`` and its gradient is ``gx = gy * weight * invstd``. In training the
statistics depend on ``x`` too; differentiating through them gives::

    gbias[c]   = sum gy
    gweight[c] = sum gy * xhat
    gx         = weight[c] * invstd[c] * (gy - gbias[c]/M - xhat * gweight[c]/M)

With relu, ``gy`` is first replaced by ``gy * (y > 0)`` (``y`` the op's output): the ReLU's
backward, done where ``gy`` is read.

Shapes. ``x, y, gy, gx``: (N, C, H, W); ``weight, bias, mean, var, invstd, gweight, gbias``:
(C,), all in the dtype of ``x``.

Loop mapping. The kernels view ``x`` as (N, C, H*W), so one channel is N contiguous runs
of H*W values. The outer ``prange`` is over channels: each thread owns whole channels, so
each reduction is a private scalar and no two threads write the same element::

    for c in prange(C):                      # one channel per iteration, in parallel
        K = x[0, c, 0]                       # any value of the channel (see below)
        s = ss = 0.0                         # float64
        for n in range(N):
            for i in range(H*W):
                d = x[n, c, i] - K
                s += d;  ss += d * d
        mean = K + s/M;  var = (ss - s*s/M) / M
        ...then one pass that writes y = x*scale + shift...

Why one pass is accurate here. The textbook one-pass formula ``E[x**2] - E[x]**2`` subtracts
two nearly equal numbers when ``|mean| >> std`` and can lose every digit (even go negative).
Shifting the data by a value of the channel first (``K``, any one of them will do) makes the
two terms about var-sized instead of mean**2-sized, and the sums run in float64: the relative
error of the variance is about ``1e-16 * (mean - K)**2 / var``, far below float32's last digit
(6e-8), for one read of ``x`` instead of two ("computing shifted data", Chan, Golub and
LeVeque 1983). The CUDA twin, ``kernels/cuda/batchnorm.cu``, computes the same sums, split
into chunks.

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

__all__ = ["batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward_train",
           "batchnorm_backward_eval"]


@njit(cache=True)
def _gated(gy, y, relu, n, c, i):
    """The gradient reaching the batch norm: ``gy``, zero where a following ReLU's output is not > 0."""
    return 0.0 if relu and not y[n, c, i] > 0 else gy[n, c, i]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def batchnorm_forward_train(x, weight, bias, eps, update, running_mean, running_var, momentum, relu,
                            y, mean, invstd):
    """Batch statistics per channel (one pass of shifted float64 sums), then ``y = x*scale + shift``
    (and the ReLU); with ``update``, the running statistics move ``momentum`` of the way to the batch's."""
    N, C, H, W = x.shape
    x, y, M = x.reshape((N, C, H * W)), y.reshape((N, C, H * W)), N * H * W
    for c in prange(C):
        K = np.float64(x[0, c, 0])
        s = 0.0
        ss = 0.0
        for n in range(N):
            for i in range(H * W):
                d = x[n, c, i] - K
                s += d
                ss += d * d
        mu = K + s / M
        var = max((ss - s * s / M) / M, 0.0)
        istd = 1.0 / math.sqrt(var + eps)
        mean[c] = mu
        invstd[c] = istd
        if update:  # PyTorch's rule: the running variance is the unbiased one
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            running_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / max(M - 1, 1)
        _apply(x, c, x.dtype.type(weight[c] * istd), x.dtype.type(bias[c] - mu * weight[c] * istd), relu, y)


@njit(cache=True)
def _apply(x, c, scale, shift, relu, y):
    """``y = x*scale + shift`` on channel ``c`` of (N, C, HW) views, clipped at 0 with ``relu``
    (a NaN stays NaN)."""
    N, _, HW = x.shape
    zero = x.dtype.type(0)
    for n in range(N):
        for i in range(HW):
            v = x[n, c, i] * scale + shift
            y[n, c, i] = zero if relu and v < 0 else v


@njit(parallel=True, cache=True)
def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y):
    """``y = x*scale + shift`` (and the ReLU) with the fixed (running) statistics."""
    N, C, H, W = x.shape
    x, y = x.reshape((N, C, H * W)), y.reshape((N, C, H * W))
    for c in prange(C):
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        scale = x.dtype.type(weight[c] * istd)
        shift = x.dtype.type(bias[c] - np.float64(mean[c]) * weight[c] * istd)
        _apply(x, c, scale, shift, relu, y)


@njit(cache=True, fastmath={"reassoc"})
def _grad_sums(gy, x, relu, y, c, mu):
    """``(sum g, sum g*(x - mu))`` over channel ``c`` in float64, g = ``gy`` gated by the ReLU's ``y``."""
    sg = 0.0
    sgd = 0.0
    for n in range(x.shape[0]):
        for i in range(x.shape[2]):
            g = _gated(gy, y, relu, n, c, i)
            sg += g
            sgd += g * (x[n, c, i] - mu)
    return sg, sgd


@njit(parallel=True, cache=True)
def batchnorm_backward_train(gy, x, mean, invstd, weight, relu, y, gx, gweight, gbias):
    """Sums of ``g`` and ``g*xhat`` per channel, then ``gx`` through the batch statistics;
    ``g`` is ``gy`` gated by the ReLU output ``y`` when ``relu``."""
    N, C, H, W = x.shape
    M = N * H * W
    shape = (N, C, H * W)
    gy, x, y, gx = gy.reshape(shape), x.reshape(shape), y.reshape(shape), gx.reshape(shape)
    for c in prange(C):
        mu = mean[c]
        sg, sgd = _grad_sums(gy, x, relu, y, c, mu)
        istd = np.float64(invstd[c])
        gbias[c] = sg
        gweight[c] = sgd * istd
        # gx = w*istd*(g - sg/M - (x - mu)*istd*istd*sgd/M), split into per-channel constants.
        k = x.dtype.type(sgd * istd * istd / M)
        gmean = x.dtype.type(sg / M)
        a = x.dtype.type(weight[c] * istd)
        for n in range(N):
            for i in range(H * W):
                gx[n, c, i] = (_gated(gy, y, relu, n, c, i) - gmean - (x[n, c, i] - mu) * k) * a


@njit(parallel=True, cache=True)
def batchnorm_backward_eval(gy, x, mean, var, weight, eps, relu, y, gx, gweight, gbias):
    """``gx = g*weight*invstd``; ``gweight``/``gbias`` as in training (the stats are constants)."""
    N, C, H, W = x.shape
    shape = (N, C, H * W)
    gy, x, y, gx = gy.reshape(shape), x.reshape(shape), y.reshape(shape), gx.reshape(shape)
    for c in prange(C):
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        gbias[c], sgd = _grad_sums(gy, x, relu, y, c, mean[c])
        gweight[c] = sgd * istd
        a = x.dtype.type(weight[c] * istd)
        for n in range(N):
            for i in range(H * W):
                gx[n, c, i] = _gated(gy, y, relu, n, c, i) * a
