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

With relu, ``gy`` is first replaced by ``gy * (v > 0)``, ``v = x*scale + shift`` the output before
the ReLU: the ReLU's backward, done where ``gy`` is read, with its gate recomputed from ``x``
(which the backward reads anyway) instead of read from a saved ``y``: a full read less per
pass, and ``y`` need not be kept. The recomputation is the forward's own arithmetic on the
forward's own ``scale``/``shift`` (kept in ``stats``), so the gate is bit for bit the forward's.

Shapes. ``x, y, gy, gx``: (N, C, H, W); ``weight, bias, mean, var, gweight, gbias``: (C,);
``stats``: (4, C), the rows ``mean, invstd, scale, shift`` that the forward used and the
backward needs; all in the dtype of ``x``.

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
    - The ReLU's gate recomputed from ``x``: the backward reads ``gy`` and ``x`` twice, not
      ``gy``, ``y`` and ``x``. Measured on our shared 2-core machine, ``batch_norm_relu``
      forward + backward at 2x32x256x512, median of 7: 28.2 -> 25.4 ms in training,
      24.0 -> 21.3 ms in eval (which also lost two copies of the running statistics).
    - Channels are independent, so the parallel loop needs no atomics or partial buffers.
"""
import math

import numpy as np
from numba import njit, prange

__all__ = ["batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward", "add_relu", "relu_backward"]


@njit(cache=True)
def _normalized(x, scale, shift):
    """Batch norm's output before the ReLU, in the dtype of ``x``: the backward recomputes it
    (no fastmath here, so it rounds the same way in both)."""
    return x * scale + shift


@njit(cache=True)
def _gated(gy, x, relu, scale, shift, n, c, i):
    """The gradient reaching the batch norm: ``gy``, zero where the ReLU after it was off."""
    return 0.0 if relu and not _normalized(x[n, c, i], scale, shift) > 0 else gy[n, c, i]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def batchnorm_forward_train(x, weight, bias, eps, update, running_mean, running_var, momentum, relu,
                            y, stats):
    """Batch statistics per channel (one pass of shifted float64 sums), then ``y = x*scale + shift``
    (and the ReLU) and ``stats``; with ``update``, the running statistics move ``momentum`` of the
    way to the batch's."""
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
        if update:  # PyTorch's rule: the running variance is the unbiased one
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            running_var[c] = (1 - momentum) * running_var[c] + momentum * var * M / max(M - 1, 1)
        _apply(x, c, mu, istd, weight[c], bias[c], relu, y, stats)


@njit(cache=True)
def _apply(x, c, mu, istd, weight, bias, relu, y, stats):
    """``y = x*scale + shift`` on channel ``c`` of (N, C, HW) views, clipped at 0 with ``relu``
    (a NaN stays NaN); ``stats[:, c]`` = mean, invstd, scale, shift."""
    N, _, HW = x.shape
    scale, shift = x.dtype.type(weight * istd), x.dtype.type(bias - mu * weight * istd)
    stats[0, c], stats[1, c], stats[2, c], stats[3, c] = mu, istd, scale, shift
    zero = x.dtype.type(0)
    for n in range(N):
        for i in range(HW):
            v = _normalized(x[n, c, i], scale, shift)
            y[n, c, i] = zero if relu and v < 0 else v


@njit(parallel=True, cache=True)
def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y, stats):
    """``y = x*scale + shift`` (and the ReLU) with the fixed (running) statistics, and ``stats``:
    a copy of what they were, for the backward, made in the pass that runs anyway."""
    N, C, H, W = x.shape
    x, y = x.reshape((N, C, H * W)), y.reshape((N, C, H * W))
    for c in prange(C):
        _apply(x, c, np.float64(mean[c]), 1.0 / math.sqrt(np.float64(var[c]) + eps), weight[c], bias[c], relu, y, stats)


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def batchnorm_backward(gy, x, stats, relu, training, gx, gweight, gbias):
    """Sums of ``g`` and ``g*xhat`` per channel, then ``gx``: through the batch statistics when
    ``training``, else ``g*scale``; ``g`` is ``gy`` gated by the recomputed ReLU when ``relu``."""
    N, C, H, W = x.shape
    M = N * H * W
    shape = (N, C, H * W)
    gy, x, gx = gy.reshape(shape), x.reshape(shape), gx.reshape(shape)
    for c in prange(C):
        mu, scale, shift = stats[0, c], stats[2, c], stats[3, c]
        sg = 0.0
        sgd = 0.0
        for n in range(N):
            for i in range(H * W):
                g = _gated(gy, x, relu, scale, shift, n, c, i)
                sg += g
                sgd += g * (x[n, c, i] - np.float64(mu))
        istd = np.float64(stats[1, c])
        gbias[c] = sg
        gweight[c] = sgd * istd
        # gx = scale*(g - sg/M - (x - mu)*istd*istd*sgd/M) in training, split into per-channel constants.
        k = x.dtype.type(sgd * istd * istd / M)
        gmean = x.dtype.type(sg / M)
        for n in range(N):
            for i in range(H * W):
                g = _gated(gy, x, relu, scale, shift, n, c, i)
                gx[n, c, i] = (g - gmean - (x[n, c, i] - mu) * k) * scale if training else g * scale


@njit(parallel=True, cache=True)
def add_relu(a, b, y):
    """``y = max(a + b, 0)`` in one pass (a NaN stays NaN)."""
    a, b, y = a.reshape(-1), b.reshape(-1), y.reshape(-1)
    zero = y.dtype.type(0)
    for i in prange(y.size):
        v = a[i] + b[i]
        y[i] = zero if v < 0 else v


@njit(parallel=True, cache=True)
def relu_backward(g, y, gx):
    """``gx = g`` where the ReLU's output ``y > 0``, else 0: one pass instead of ``g * (y > 0)``'s two."""
    g, y, gx = g.reshape(-1), y.reshape(-1), gx.reshape(-1)
    zero = gx.dtype.type(0)
    for i in prange(gx.size):
        gx[i] = g[i] if y[i] > 0 else zero
