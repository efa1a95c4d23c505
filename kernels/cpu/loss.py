"""Per-pixel cross-entropy (softmax + negative log-likelihood) on the CPU.

Math. For pixel ``(n, h, w)`` with logits ``z_c = logits[n, c, h, w]`` and class
``t = target[n, h, w]``::

    m       = max_c z_c                                (subtracted so exp never overflows)
    lse     = m + log(sum_c exp(z_c - m))              (log of the softmax denominator)
    logp_c  = z_c - lse                                (log softmax)
    loss    = -weight[t] * logp_t

and ``loss = 0`` where ``t == ignore_index``. Differentiating, with ``softmax_c = exp(logp_c)``::

    glogits[n, c, h, w] = gloss[n, h, w] * weight[t] * (softmax_c - [c == t])

(0 where ignored). The forward returns the log-probabilities ``logp``, which the backward
needs, and the logits can be freed: the same memory as PyTorch keeps (log_softmax's
output) for its cross-entropy.

Shapes. ``logits, logp, glogits``: (N, C, H, W); ``target``: (N, H, W) uint8 or int64;
``loss``: (N, H, W); ``gloss``: (N, H, W), or a 0-d array every pixel shares (the
gradient of a mean or a sum, not copied out to every pixel); ``weight``: (C,), or None for
1 everywhere. Floats share the dtype of ``logits``.

Loop mapping. The C logits of one pixel are H*W apart in memory, so a pixel-at-a-time
loop would jump across the array C times per pixel. Instead ``prange`` runs over image rows
``(n, h)`` and each thread sweeps whole rows, class by class, with the pixel index ``w``
innermost (contiguous) and per-row scratch vectors ``m`` and ``s`` of length W::

    for r in prange(N*H):                     # one image row per iteration
        n, h = divmod(r, H)
        m[:] = logits[n, 0, h, :]
        for c in 1..C-1:  for w: m[w] = max(m[w], logits[n, c, h, w])
        s[:] = 0
        for c in 0..C-1:  for w: s[w] += exp(logits[n, c, h, w] - m[w])
        for c in 0..C-1:  for w: logp[n, c, h, w] = logits[n, c, h, w] - (m[w] + log(s[w]))
        for w: loss[n, h, w] = -weight[t] * logp[n, t, h, w]

The backward has the same shape: a per-row coefficient ``gloss*weight[t]`` (0 if ignored),
then one class-major sweep writing ``coef * exp(logp)``, then ``-coef`` at the target.

Optimizations:
    - Rows, not pixels, per iteration: every inner loop walks contiguous memory, so the
      max and the sums vectorize and each cache line is used fully.
    - Ignored pixels skip the exponential in the backward.
"""
import numpy as np
from numba import njit, prange

from ..checks import bad_target_message, check_cross_entropy_args, check_loss_gradient

__all__ = ["cross_entropy_forward", "cross_entropy_backward"]


@njit(parallel=True, cache=True)
def _forward_kernel(logits, target, weight, weighted, ignore_index, loss, logp):
    """Stable log-softmax per pixel, then the weighted negative log-likelihood of the target."""
    N, C, H, W = logits.shape
    for r in prange(N * H):
        n, h = r // H, r % H
        m = logits[n, 0, h, :].copy()
        for c in range(1, C):
            for w in range(W):
                m[w] = max(m[w], logits[n, c, h, w])
        s = np.zeros(W, dtype=logits.dtype)
        for c in range(C):
            for w in range(W):
                s[w] += np.exp(logits[n, c, h, w] - m[w])
        lse = m + np.log(s)
        for c in range(C):
            for w in range(W):
                logp[n, c, h, w] = logits[n, c, h, w] - lse[w]
        for w in range(W):
            t = target[n, h, w]
            if t == ignore_index:
                loss[n, h, w] = 0
            else:
                loss[n, h, w] = -(weight[t] if weighted else 1) * logp[n, t, h, w]


@njit(parallel=True, cache=True)
def _backward_kernel(gloss, gloss_step, logp, target, weight, weighted, ignore_index, glogits):
    """``coef * (softmax - onehot)`` per pixel with ``coef = gloss*weight[t]`` (0 if ignored);
    pixel p's ``gloss`` is ``gloss[p * gloss_step]`` (a step of 0: one value for all)."""
    N, C, H, W = logp.shape
    for r in prange(N * H):
        n, h = r // H, r % H
        coef = np.zeros(W, dtype=logp.dtype)
        for w in range(W):
            t = target[n, h, w]
            if t != ignore_index:
                coef[w] = gloss[(r * W + w) * gloss_step] * (weight[t] if weighted else 1)
        for c in range(C):
            for w in range(W):
                if coef[w] != 0:
                    glogits[n, c, h, w] = coef[w] * np.exp(logp[n, c, h, w])
                else:
                    glogits[n, c, h, w] = 0
        for w in range(W):
            t = target[n, h, w]
            if t != ignore_index:
                glogits[n, t, h, w] -= coef[w]


def _check_inputs(logits, target, weight, ignore_index):
    """Validate the arguments both directions share, including every target value."""
    check_cross_entropy_args(logits, target, weight, ignore_index)
    C = logits.shape[1]
    bad = ((target < 0) | (target >= C)) & (target != ignore_index)
    if bad.any():
        raise ValueError(bad_target_message(int(target[bad][0]), C, ignore_index))


def cross_entropy_forward(logits, target, weight, ignore_index):
    """Per-pixel weighted cross-entropy of ``logits`` (N, C, H, W) against ``target`` (N, H, W).

    Returns ``(loss, logp)``: ``loss`` (N, H, W) is ``-weight[t]*logp[t]`` (0 where ``target ==
    ignore_index``; ``weight`` None weighs every class 1) and ``logp`` (N, C, H, W) the log
    softmax over classes, kept for the backward.
    """
    _check_inputs(logits, target, weight, ignore_index)
    N, C, H, W = logits.shape
    loss = np.empty((N, H, W), dtype=logits.dtype)
    logp = np.empty_like(logits)
    _forward_kernel(logits, target, logits[0, :, 0, 0] if weight is None else weight, weight is not None,
                    int(ignore_index), loss, logp)
    return loss, logp


def cross_entropy_backward(gloss, logp, target, weight, ignore_index):
    """Gradient of ``cross_entropy_forward``'s per-pixel loss w.r.t. the logits.

    ``gloss`` is the gradient of the loss map: (N, H, W), or 0-d when every pixel has the same
    one (a mean's or a sum's); ``logp`` what the forward returned. Returns ``glogits`` shaped
    like ``logp`` (0 at ignored pixels).
    """
    _check_inputs(logp, target, weight, ignore_index)
    check_loss_gradient(gloss, logp)
    glogits = np.empty_like(logp)
    _backward_kernel(gloss.reshape(-1), int(gloss.ndim > 0), logp, target,
                     logp[0, :, 0, 0] if weight is None else weight, weight is not None,
                     int(ignore_index), glogits)
    return glogits
