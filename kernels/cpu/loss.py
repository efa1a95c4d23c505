"""Per-pixel cross-entropy (softmax + negative log-likelihood) on the CPU.

Math. For pixel ``(n, h, w)`` with logits ``z_c = logits[n, c, h, w]`` and class
``t = target[n, h, w]``::

    m       = max_c z_c                                (subtracted so exp never overflows)
    s       = sum_c exp(z_c - m)
    lse     = m + log(s)                               (log of the softmax denominator)
    prob_c  = exp(z_c - m) / s                         (softmax)
    loss    = weight[t] * (lse - z_t)                  (= -weight[t] * log prob_t)

and ``loss = 0`` where ``t == ignore_index``. Differentiating::

    glogits[n, c, h, w] = gloss[n, h, w] * weight[t] * (prob_c - [c == t])

(0 where ignored). The forward returns the probabilities, which is all the backward needs:
it takes no exponential at all, and the logits can be freed after the forward (PyTorch
keeps an array of the same size, log_softmax's output).

Shapes. ``logits, prob, glogits``: (N, C, H, W); ``target``: (N, H, W) uint8 or int64;
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
        for c in 0..C-1:  for w: prob[n, c, h, w] = exp(logits[n, c, h, w] - m[w]); s[w] += it
        for c in 0..C-1:  for w: prob[n, c, h, w] /= s[w]
        for w: loss[n, h, w] = weight[t] * (m[w] + log(s[w]) - logits[n, t, h, w])

The backward has the same shape: a per-row coefficient ``gloss*weight[t]`` (0 if ignored),
then one class-major sweep writing ``coef * prob``, then ``-coef`` at the target.

Optimizations:
    - Rows, not pixels, per iteration: every inner loop walks contiguous memory, so the
      max and the sums vectorize and each cache line is used fully.
    - One exponential per logit, in the forward; the backward reuses the probabilities
      (exponentials are most of this op's time on a CPU).

The fused heads (``upsample_cross_entropy_*``, ``F.upsample_cross_entropy``): the loss of
the logits ``x`` (N, C, H, W) resized bilinearly to the target's (OH, OW), with the same
row loop. Each iteration interpolates its output row's C logits into a scratch ``z`` (C, OW)
as ``kernels/cpu/upsample.py`` does (mix two source rows, then along the width), so no
full-resolution C-channel array exists. The forward keeps ``lse = m + log(s)`` per pixel
(one value, not C). The backward recomputes ``z`` from ``x``, turns it into the softmax
gradient in place, and scatters it along the width into ``rows`` (N, C, OH, W), a thread's
own row; the height pass is ``bilinear_backward`` on ``rows`` (see ``kernels/cuda/loss.cu``)::

    for r in prange(N*OH):                          # one output row (n, oh) per iteration
        z[c, :] = the row oh of x[n, c] resized     (for every c)
        z[c, ow] = coef[ow] * (exp(z[c, ow] - lse[n, oh, ow]) - [c == t])     (class by class)
        rows[n, c, oh, :] = 0;  rows[n, c, oh, w0[ow]] += lw0[ow] * z[c, ow];  (w1 likewise)

Every loop runs class by class with the pixel innermost, as in the plain cross-entropy: the
exponentials over a contiguous row (about twice as fast here as a pixel at a time, C classes
apart in memory).
"""
import numpy as np
from numba import njit, prange

from .upsample import _axis, bilinear_backward

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "upsample_cross_entropy_forward",
           "upsample_cross_entropy_backward"]


@njit(parallel=True, cache=True)
def _cross_entropy_forward(logits, target, weight, weighted, ignore_index, loss, prob):
    """Stable softmax per pixel, then the weighted negative log-likelihood of the target."""
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
                e = np.exp(logits[n, c, h, w] - m[w])
                prob[n, c, h, w] = e
                s[w] += e
        inv = 1 / s
        for c in range(C):
            for w in range(W):
                prob[n, c, h, w] *= inv[w]
        for w in range(W):
            t = target[n, h, w]
            if t == ignore_index:
                loss[n, h, w] = 0
            else:
                loss[n, h, w] = (weight[t] if weighted else 1) * (m[w] + np.log(s[w]) - logits[n, t, h, w])


@njit(parallel=True, cache=True)
def _cross_entropy_backward(gloss, gloss_step, prob, target, weight, weighted, ignore_index, glogits):
    """``coef * (prob - onehot)`` per pixel with ``coef = gloss*weight[t]`` (0 if ignored);
    pixel p's ``gloss`` is ``gloss[p * gloss_step]`` (a step of 0: one value for all)."""
    N, C, H, W = prob.shape
    for r in prange(N * H):
        n, h = r // H, r % H
        coef = np.zeros(W, dtype=prob.dtype)
        for w in range(W):
            t = target[n, h, w]
            if t != ignore_index:
                coef[w] = gloss[(r * W + w) * gloss_step] * (weight[t] if weighted else 1)
        for c in range(C):
            for w in range(W):
                glogits[n, c, h, w] = coef[w] * prob[n, c, h, w]
        for w in range(W):
            t = target[n, h, w]
            if t != ignore_index:
                glogits[n, t, h, w] -= coef[w]


def _check_targets(target, classes, ignore_index):
    """Raise if a target value is neither a class in [0, classes) nor ``ignore_index``.

    On the CPU reading the targets costs nothing, so they are checked before the kernel runs
    (it would index out of bounds); the GPU kernels flag a bad pixel instead, see loss.cu.
    """
    bad = ((target < 0) | (target >= classes)) & (target != ignore_index)
    if bad.any():
        pixel = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"target: pixel {pixel} holds {int(target[pixel])}, a value outside [0, {classes}) "
                         f"(C = {classes} classes) that is not ignore_index={ignore_index}")


def cross_entropy_forward(logits, target, weight, weighted, ignore_index, loss, prob):
    """``loss`` (N, H, W): ``-weight[t]*log prob[t]`` per pixel (0 where ``target == ignore_index``;
    every class weighs 1 unless ``weighted``); ``prob`` (N, C, H, W): the softmax over classes."""
    _check_targets(target, logits.shape[1], ignore_index)
    _cross_entropy_forward(logits, target, weight, weighted, ignore_index, loss, prob)


def cross_entropy_backward(gloss, prob, target, weight, weighted, ignore_index, glogits):
    """``glogits`` = dL/dlogits from ``gloss``, the gradient of the loss map: (N, H, W), or 0-d
    when every pixel has the same one (a mean's); 0 at ignored pixels."""
    _check_targets(target, prob.shape[1], ignore_index)
    _cross_entropy_backward(gloss.reshape(-1), int(gloss.ndim > 0), prob, target, weight, weighted,
                            ignore_index, glogits)


@njit(cache=True)
def _resized_row(x, n, a, b, la, lb, w0, w1, lw0, lw1, t, z):
    """``z`` (C, OW): row ``la*x[n, :, a] + lb*x[n, :, b]`` of every class, resized along the width."""
    for c in range(x.shape[1]):
        for w in range(x.shape[3]):
            t[w] = la * x[n, c, a, w] + lb * x[n, c, b, w]
        for ow in range(z.shape[1]):
            z[c, ow] = lw0[ow] * t[w0[ow]] + lw1[ow] * t[w1[ow]]


@njit(cache=True)
def _resized_logits(x, r, OH, OW, h, w):
    """``(n, oh, z)``: output row ``r``'s image and row, and ``z`` (C, OW) its logits resized
    (``h``, ``w``: the two axes' taps and weights from ``_axis``)."""
    n, oh = r // OH, r % OH
    z, t = np.empty((x.shape[1], OW), x.dtype), np.empty(x.shape[3], x.dtype)
    _resized_row(x, n, h[0][oh], h[1][oh], h[2][oh], h[3][oh], w[0], w[1], w[2], w[3], t, z)
    return n, oh, z


@njit(parallel=True, cache=True)
def _upsample_cross_entropy_forward(x, target, weight, weighted, ignore_index, ratio, align_corners, loss, lse):
    """Per output row: the resized logits in a scratch row, then the loss as above."""
    N, C, H, W = x.shape
    OH, OW = target.shape[1], target.shape[2]
    h, w = _axis(H, OH, ratio[0], align_corners, x), _axis(W, OW, ratio[1], align_corners, x)
    for r in prange(N * OH):
        n, oh, z = _resized_logits(x, r, OH, OW, h, w)
        m = z[0].copy()
        for c in range(1, C):
            for ow in range(OW):
                m[ow] = max(m[ow], z[c, ow])
        s = np.zeros(OW, x.dtype)
        for c in range(C):
            for ow in range(OW):
                s[ow] += np.exp(z[c, ow] - m[ow])
        for ow in range(OW):
            lse[n, oh, ow] = m[ow] + np.log(s[ow])
            k = target[n, oh, ow]
            loss[n, oh, ow] = 0 if k == ignore_index else (weight[k] if weighted else 1) * (lse[n, oh, ow] - z[k, ow])


@njit(parallel=True, cache=True)
def _upsample_cross_entropy_backward_width(gloss, gloss_step, x, lse, target, weight, weighted, ignore_index,
                                           ratio, align_corners, rows):
    """Per output row: the softmax gradient in a scratch row, scattered along the width into ``rows``."""
    N, C, H, W = x.shape
    OH, OW = target.shape[1], target.shape[2]
    h, w = _axis(H, OH, ratio[0], align_corners, x), _axis(W, OW, ratio[1], align_corners, x)
    for r in prange(N * OH):
        n, oh, z = _resized_logits(x, r, OH, OW, h, w)
        coef = np.zeros(OW, x.dtype)
        for ow in range(OW):
            k = target[n, oh, ow]
            if k != ignore_index:
                coef[ow] = gloss[(r * OW + ow) * gloss_step] * (weight[k] if weighted else 1)
        for c in range(C):
            for ow in range(OW):
                z[c, ow] = coef[ow] * np.exp(z[c, ow] - lse[n, oh, ow])
        for ow in range(OW):
            k = target[n, oh, ow]
            if k != ignore_index:
                z[k, ow] -= coef[ow]
        rows[n, :, oh, :] = 0
        for c in range(C):
            for ow in range(OW):
                rows[n, c, oh, w[0][ow]] += w[2][ow] * z[c, ow]
                rows[n, c, oh, w[1][ow]] += w[3][ow] * z[c, ow]


def upsample_cross_entropy_forward(x, target, weight, weighted, ignore_index, ratio, align_corners, loss, lse):
    """``loss`` (N, OH, OW) of the logits ``x`` resized bilinearly to the target's size (``ratio``
    (rh, rw): source pixels per output pixel), and ``lse``, the log of each pixel's softmax denominator."""
    _check_targets(target, x.shape[1], ignore_index)
    _upsample_cross_entropy_forward(x, target, weight, weighted, ignore_index, ratio,
                                    align_corners, loss, lse)


def upsample_cross_entropy_backward(gloss, x, lse, target, weight, weighted, ignore_index, ratio, align_corners, gx):
    """``gx`` = dL/dx of the fused head (``gloss`` (N, OH, OW), or 0-d when every pixel shares it):
    the softmax gradient summed along the width into ``rows`` (N, C, OH, W), then
    :func:`bilinear_backward` of ``rows`` with its width left as it is."""
    _check_targets(target, x.shape[1], ignore_index)
    rows = np.empty((*x.shape[:2], target.shape[1], x.shape[3]), x.dtype)
    _upsample_cross_entropy_backward_width(gloss.reshape(-1), int(gloss.ndim > 0), x, lse, target, weight, weighted,
                                           ignore_index, ratio, align_corners, rows)
    bilinear_backward(rows, (ratio[0], 1.0), align_corners, gx)
