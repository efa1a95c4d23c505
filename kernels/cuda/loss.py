"""Per-pixel cross-entropy on the GPU: the launchers of ``loss.cu``.

The lesson is the header of ``loss.cu``; ``kernels/cpu/loss.py`` computes the same numbers
row by row. The launcher checks the arguments with the CPU's messages; the kernels check
every target value, and a bad one is reported at the next read from the device (see
``loss.cu``), so that a training step never waits for the GPU.
"""
import numpy as np

from ..checks import check_cross_entropy_args, check_loss_gradient
from ._module import cp, Module, defer, ints, on_gpu

__all__ = ["cross_entropy_forward", "cross_entropy_backward"]

KERNELS = ("cross_entropy_forward", "cross_entropy_backward")
_module = Module("loss.cu", KERNELS, types=[(f, label) for (f,) in ((np.float32,), (np.float64,))
                                            for label in (np.uint8, np.int64)])
_NONE = np.iinfo(np.int64).max
_flag = []     # [the device's int64 flag], made on first use
_checks = []   # (target shape, classes, ignore_index) of each launch since the last read


def _check_targets(target, classes, ignore_index):
    """The flag and this launch's number for the kernel; the flag is read at the next read."""
    if not _flag:
        _flag.append(cp.full(1, _NONE, np.int64))
    if not _checks:
        defer(_report_bad_target)
    _checks.append((target.shape, classes, ignore_index))
    return np.int64(len(_checks) - 1), _flag[0]


def _report_bad_target():
    first = int(_flag[0].get()[0])
    checks = list(_checks)
    _checks.clear()
    if first == _NONE:
        return
    _flag[0].fill(_NONE)
    shape, classes, ignore_index = checks[first >> 32]
    pixel = tuple(int(i) for i in np.unravel_index(first & 0xFFFFFFFF, shape))
    raise ValueError(f"target: pixel {pixel} holds a value outside [0, {classes}) (C = {classes} classes) "
                     f"that is not ignore_index={ignore_index} (found by a cross-entropy kernel; a GPU "
                     f"reports it at the next read from the device)")


def _check_inputs(logits, target, weight, ignore_index):
    """Validate the arguments both directions share (the target values are checked on the GPU)."""
    on_gpu(logits=logits, target=target, **({} if weight is None else {"weight": weight}))
    check_cross_entropy_args(logits, target, weight, ignore_index)


def cross_entropy_forward(logits, target, weight, ignore_index):
    """Per-pixel weighted cross-entropy of ``logits`` (N, C, H, W) against ``target`` (N, H, W).

    Returns ``(loss, prob)``: ``loss`` (N, H, W) is ``-weight[t]*log prob[t]`` (0 where ``target
    == ignore_index``; ``weight`` None weighs every class 1) and ``prob`` (N, C, H, W) the softmax
    over classes, kept for the backward.
    """
    _check_inputs(logits, target, weight, ignore_index)
    N, C, H, W = logits.shape
    loss = cp.empty((N, H, W), dtype=logits.dtype)
    prob = cp.empty_like(logits)
    _module.launch("cross_entropy_forward", (logits.dtype, target.dtype), target.size,
                   (logits, target, logits if weight is None else weight, np.int32(weight is not None),
                    np.int64(ignore_index), *ints(N, C, H * W),
                    loss, prob, *_check_targets(target, C, ignore_index)))
    return loss, prob


def cross_entropy_backward(gloss, prob, target, weight, ignore_index):
    """Gradient of ``cross_entropy_forward``'s per-pixel loss w.r.t. the logits.

    ``gloss`` is the gradient of the loss map: (N, H, W), or 0-d when every pixel has the same
    one (a mean's or a sum's); ``prob`` what the forward returned. Returns ``glogits`` shaped
    like ``prob`` (0 at ignored pixels).
    """
    _check_inputs(prob, target, weight, ignore_index)
    on_gpu(gloss=gloss)
    check_loss_gradient(gloss, prob)
    N, C, H, W = prob.shape
    glogits = cp.empty_like(prob)
    _module.launch("cross_entropy_backward", (prob.dtype, target.dtype), glogits.size,
                   (gloss, np.int32(gloss.ndim > 0), prob, target, prob if weight is None else weight,
                    np.int32(weight is not None), np.int64(ignore_index),
                    *ints(N, C, H * W), glogits, *_check_targets(target, C, ignore_index)))
    return glogits
