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

from ..checks import check_batchnorm_relu_output, check_channel_vectors, check_float, check_shape

__all__ = [
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward_train",
    "batchnorm_backward_eval",
]


@njit(cache=True)
def _gated(gy, y, relu, n, c, i):
    """The gradient reaching the batch norm: ``gy``, zero where a following ReLU's output is not > 0."""
    return 0.0 if relu and not y[n, c, i] > 0 else gy[n, c, i]


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _forward_train_kernel(x, weight, bias, eps, y, mean, invstd, update, running_mean, running_var,
                          momentum, relu):
    """Batch statistics per channel (two float64 passes), then ``y = x*scale + shift`` (and the
    ReLU); with ``update``, the running statistics move ``momentum`` of the way to the batch's."""
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
        if update:  # PyTorch's rule: the running variance is the unbiased one
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mu
            running_var[c] = (1 - momentum) * running_var[c] + momentum * ss / max(M - 1, 1)
        _apply(x, c, x.dtype.type(weight[c] * istd), x.dtype.type(bias[c] - mu * weight[c] * istd), relu, y)


@njit(cache=True)
def _apply(x, c, scale, shift, relu, y):
    """``y = x*scale + shift`` on channel ``c``, clipped at 0 with ``relu`` (a NaN stays NaN)."""
    N, _, HW = x.shape
    zero = x.dtype.type(0)
    for n in range(N):
        for i in range(HW):
            v = x[n, c, i] * scale + shift
            y[n, c, i] = zero if relu and v < 0 else v


@njit(parallel=True, cache=True)
def _forward_eval_kernel(x, mean, var, weight, bias, eps, relu, y):
    """``y = x*scale + shift`` (and the ReLU) with the fixed (running) statistics."""
    N, C, HW = x.shape
    for c in prange(C):
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        scale = x.dtype.type(weight[c] * istd)
        shift = x.dtype.type(bias[c] - np.float64(mean[c]) * weight[c] * istd)
        _apply(x, c, scale, shift, relu, y)


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _backward_train_kernel(gy, x, mean, invstd, weight, y, relu, gx, gweight, gbias):
    """Sums of ``g`` and ``g*xhat`` per channel, then ``gx`` through the batch statistics;
    ``g`` is ``gy`` gated by the ReLU output ``y`` when ``relu``."""
    N, C, HW = x.shape
    M = N * HW
    for c in prange(C):
        mu = mean[c]
        sg = 0.0
        sgd = 0.0
        for n in range(N):
            for i in range(HW):
                g = _gated(gy, y, relu, n, c, i)
                sg += g
                sgd += g * (x[n, c, i] - mu)
        istd = np.float64(invstd[c])
        gbias[c] = sg
        gweight[c] = sgd * istd
        # gx = w*istd*(g - sg/M - (x - mu)*istd*istd*sgd/M), split into per-channel constants.
        k = x.dtype.type(sgd * istd * istd / M)
        gmean = x.dtype.type(sg / M)
        a = x.dtype.type(weight[c] * istd)
        for n in range(N):
            for i in range(HW):
                gx[n, c, i] = (_gated(gy, y, relu, n, c, i) - gmean - (x[n, c, i] - mu) * k) * a


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _backward_eval_kernel(gy, x, mean, var, weight, eps, y, relu, gx, gweight, gbias):
    """``gx = g*weight*invstd``; ``gweight``/``gbias`` as in training (the stats are constants)."""
    N, C, HW = x.shape
    for c in prange(C):
        mu = mean[c]
        istd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        a = x.dtype.type(weight[c] * istd)
        sg = 0.0
        sgd = 0.0
        for n in range(N):
            for i in range(HW):
                g = _gated(gy, y, relu, n, c, i)
                sg += g
                sgd += g * (x[n, c, i] - mu)
                gx[n, c, i] = g * a
        gbias[c] = sg
        gweight[c] = sgd * istd


def batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu):
    """Normalize ``x`` (N, C, H, W) with its own per-channel batch statistics (then ReLU).

    Returns ``(y, mean, invstd)``: ``y`` like ``x``; ``mean`` and ``invstd = 1/sqrt(var + eps)``
    of shape (C,) in x's dtype, with the biased variance (what ``backward_train`` needs).
    ``running_mean``/``running_var`` (C,), unless None, are updated in place by ``momentum``.
    """
    check_float("x", x, ndim=4)
    check_channel_vectors(x, weight=weight, bias=bias)
    update = running_mean is not None
    if update:
        check_channel_vectors(x, running_mean=running_mean, running_var=running_var)
    N, C, H, W = x.shape
    y = np.empty_like(x)
    mean = np.empty(C, dtype=x.dtype)
    invstd = np.empty(C, dtype=x.dtype)
    _forward_train_kernel(x.reshape(N, C, H * W), weight, bias, float(eps), y.reshape(N, C, H * W),
                          mean, invstd, update, running_mean if update else mean,
                          running_var if update else invstd, float(momentum), bool(relu))
    return y, mean, invstd


def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu):
    """Normalize ``x`` (N, C, H, W) with fixed statistics ``mean``/``var`` (C,) (then ReLU); returns ``y``."""
    check_float("x", x, ndim=4)
    check_channel_vectors(x, mean=mean, var=var, weight=weight, bias=bias)
    N, C, H, W = x.shape
    y = np.empty_like(x)
    _forward_eval_kernel(x.reshape(N, C, H * W), mean, var, weight, bias, float(eps), bool(relu),
                         y.reshape(N, C, H * W))
    return y


def batchnorm_backward_train(gy, x, mean, invstd, weight, y):
    """Gradients of training-mode batch norm, through the batch statistics.

    ``mean``/``invstd`` are the values ``batchnorm_forward_train`` returned; ``y`` is its
    output when it applied the ReLU (whose backward this then includes), else None.
    Returns ``(gx, gweight, gbias)`` shaped like ``x``, ``weight`` and ``weight``.
    """
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, invstd=invstd, weight=weight)
    check_batchnorm_relu_output(y, x)
    N, C, H, W = x.shape
    gx = np.empty_like(x)
    gweight = np.empty(C, dtype=x.dtype)
    gbias = np.empty(C, dtype=x.dtype)
    flat = lambda a: a.reshape(N, C, H * W)  # noqa: E731
    _backward_train_kernel(flat(gy), flat(x), mean, invstd, weight, flat(gy if y is None else y),
                           y is not None, flat(gx), gweight, gbias)
    return gx, gweight, gbias


def batchnorm_backward_eval(gy, x, mean, var, weight, eps, y):
    """Gradients of eval-mode batch norm (``mean``/``var`` are constants); ``y`` as in
    ``batchnorm_backward_train``. Returns ``(gx, gweight, gbias)``."""
    check_float("x", x, ndim=4)
    check_float("gy", gy, ndim=4, dtype=x.dtype)
    check_shape("gy", gy, x.shape)
    check_channel_vectors(x, mean=mean, var=var, weight=weight)
    check_batchnorm_relu_output(y, x)
    N, C, H, W = x.shape
    gx = np.empty_like(x)
    gweight = np.empty(C, dtype=x.dtype)
    gbias = np.empty(C, dtype=x.dtype)
    flat = lambda a: a.reshape(N, C, H * W)  # noqa: E731
    _backward_eval_kernel(flat(gy), flat(x), mean, var, weight, float(eps), flat(gy if y is None else y),
                          y is not None, flat(gx), gweight, gbias)
    return gx, gweight, gbias
