"""Per-pixel cross-entropy on the GPU: the launchers of ``loss.cu``.

The lesson is the header of ``loss.cu``; ``kernels/cpu/loss.py`` computes the same numbers
row by row. The kernels also check every target value (the launcher checks the rest with
the same messages as the CPU): a bad pixel leaves its index in a one-int buffer, which the
launcher reads back once per call (a small synchronizing copy) and turns into a ValueError.
"""
import numpy as np

from ..checks import bad_target_message, check_cross_entropy_args, check_float, check_shape
from ._module import cp, Module, ints, on_gpu

__all__ = ["cross_entropy_forward", "cross_entropy_backward"]

KERNELS = ("cross_entropy_forward", "cross_entropy_backward")
_module = Module("loss.cu", KERNELS)


def _check_inputs(logits, target, weight, ignore_index):
    """Validate the arguments both directions share (the target values are checked on the GPU)."""
    on_gpu(logits=logits, target=target, weight=weight)
    check_cross_entropy_args(logits, target, weight, ignore_index)


def _raise_on_bad_target(first_bad, target, C, ignore_index):
    """Read the kernel's first bad pixel back; raise if there is one."""
    p = int(first_bad.get()[0])
    if p < target.size:
        raise ValueError(bad_target_message(int(target.ravel()[p]), C, ignore_index))


def cross_entropy_forward(logits, target, weight, ignore_index):
    """Per-pixel weighted cross-entropy of ``logits`` (N, C, H, W) against ``target`` (N, H, W).

    Returns ``(loss, lse)``, both (N, H, W): ``loss = weight[t]*(lse - logits[t])`` (0 where
    ``target == ignore_index``) and the log-sum-exp over classes, kept for the backward.
    """
    _check_inputs(logits, target, weight, ignore_index)
    N, C, H, W = logits.shape
    loss = cp.empty((N, H, W), dtype=logits.dtype)
    lse = cp.empty((N, H, W), dtype=logits.dtype)
    first_bad = cp.full(1, target.size, dtype=cp.int32)
    _module.launch("cross_entropy_forward", logits.dtype, target.size,
                   (logits, target, weight, np.int64(ignore_index), *ints(N, C, H * W),
                    loss, lse, first_bad))
    _raise_on_bad_target(first_bad, target, C, ignore_index)
    return loss, lse


def cross_entropy_backward(gloss, logits, target, weight, ignore_index, lse):
    """Gradient of ``cross_entropy_forward``'s per-pixel loss w.r.t. ``logits``.

    ``gloss`` (N, H, W) is the gradient of the loss map, ``lse`` what the forward returned.
    Returns ``glogits`` shaped like ``logits`` (0 at ignored pixels).
    """
    _check_inputs(logits, target, weight, ignore_index)
    on_gpu(gloss=gloss, lse=lse)
    N, C, H, W = logits.shape
    for name, a in (("gloss", gloss), ("lse", lse)):
        check_float(name, a, ndim=3, dtype=logits.dtype)
        check_shape(name, a, (N, H, W))
    glogits = cp.empty_like(logits)
    first_bad = cp.full(1, target.size, dtype=cp.int32)
    _module.launch("cross_entropy_backward", logits.dtype, glogits.size,
                   (gloss, logits, target, weight, np.int64(ignore_index), lse,
                    *ints(N, C, H * W), glogits, first_bad))
    _raise_on_bad_target(first_bad, target, C, ignore_index)
    return glogits
