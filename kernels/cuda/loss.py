"""Softmax cross-entropy per pixel on the GPU: the launches of ``loss.cu``.

Forward: one thread per pixel; backward: one thread per logit. The fused heads
(``upsample_cross_entropy_*``): one thread per full-resolution pixel; the backward's width
pass one per (image, output row, input column), its height pass one per input element. A target value that is
neither a class nor ``ignore_index`` cannot raise inside a kernel: the kernel records the
first such pixel in a device flag (``atomicMin`` of ``launch << 32 | pixel``), and the flag
is read at the next read from the device (``kernels.device.defer``), where the error is
raised, as a GPU reports a device-side assert. The CPU twins: ``kernels/cpu/loss.py``.
"""
import numpy as np

from ..device import array_module, defer
from .launch import CudaFile, ints

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "upsample_cross_entropy_forward",
           "upsample_cross_entropy_backward"]

CUDA = CudaFile("loss.cu", __all__[:3] + [f"upsample_cross_entropy_backward_{p}" for p in ("width", "height")], types=[(f, label) for f in (np.float32, np.float64)
                                             for label in (np.uint8, np.int64)])
_NONE = np.iinfo(np.int64).max
_flag = []     # [the device's int64 flag], made on first use
_checks = []   # (target shape, classes, ignore_index) of each launch since the last read


def _check_targets(target, classes, ignore_index):
    """The launch's number and the flag, for the kernel; the flag is read at the next read."""
    if not _flag:
        _flag.append(array_module().full(1, _NONE, np.int64))
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


def cross_entropy_forward(logits, target, weight, weighted, ignore_index, loss, prob):
    """``loss`` (N, H, W) and ``prob`` (N, C, H, W), the softmax; one thread per pixel."""
    N, C, H, W = logits.shape
    CUDA.launch("cross_entropy_forward", (logits.dtype, target.dtype), target.size,
                (logits, target, weight, np.int32(weighted), np.int64(ignore_index), *ints(N, C, H * W),
                 loss, prob, *_check_targets(target, C, ignore_index)))


def cross_entropy_backward(gloss, prob, target, weight, weighted, ignore_index, glogits):
    """``glogits`` from ``gloss`` ((N, H, W), or 0-d: one value for every pixel); one thread per logit."""
    N, C, H, W = prob.shape
    CUDA.launch("cross_entropy_backward", (prob.dtype, target.dtype), glogits.size,
                (gloss, np.int32(gloss.ndim > 0), prob, target, weight, np.int32(weighted),
                 np.int64(ignore_index), *ints(N, C, H * W), glogits, *_check_targets(target, C, ignore_index)))


def _heads_args(x, target, ratio, align_corners):
    """``N, C, H, W, OH, OW, rh, rw, align_corners`` of a fused head."""
    T = x.dtype.type
    return (*ints(*x.shape, *target.shape[1:]), T(ratio[0]), T(ratio[1]), np.int32(align_corners))


def upsample_cross_entropy_forward(x, target, weight, weighted, ignore_index, ratio, align_corners, loss, lse):
    """``loss`` and ``lse`` (N, OH, OW) of the logits ``x`` resized to the target; a thread per pixel."""
    CUDA.launch("upsample_cross_entropy_forward", (x.dtype, target.dtype), target.size,
                (x, target, weight, np.int32(weighted), np.int64(ignore_index),
                 *_heads_args(x, target, ratio, align_corners), loss, lse,
                 *_check_targets(target, x.shape[1], ignore_index)))


def upsample_cross_entropy_backward(gloss, x, lse, target, weight, weighted, ignore_index, ratio, align_corners, gx):
    """``gx`` = dL/dx of the fused head in two launches: the width pass, a thread per (n, oh, w),
    sums each pixel's gradient at its left column into a pair of rows (N, C, OH, 2, W), one
    for that column and one for the next; the height pass, a thread per element of ``gx``,
    adds them up over the rows oh that read its row."""
    N, C, H, W = x.shape
    OH = target.shape[1]
    pair = array_module().empty((N, C, OH, 2, W), x.dtype)
    CUDA.launch("upsample_cross_entropy_backward_width", (x.dtype, target.dtype), N * OH * W,
                (gloss, np.int32(gloss.ndim > 0), x, lse, target, weight, np.int32(weighted),
                 np.int64(ignore_index), *_heads_args(x, target, ratio, align_corners), pair,
                 *_check_targets(target, C, ignore_index)))
    CUDA.launch("upsample_cross_entropy_backward_height", (x.dtype, target.dtype), gx.size,
                (pair, *ints(N * C, H, W, OH), x.dtype.type(ratio[0]), np.int32(align_corners), gx))
