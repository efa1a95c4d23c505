"""Dropout masks on the GPU: the launcher of ``dropout.cu`` (the lesson: ``kernels/cpu/dropout.py``)."""
import numpy as np

from ..checks import check_dropout_args
from ._module import cp, Module, ints

__all__ = ["dropout_mask"]

KERNELS = ("dropout_mask",)
_module = Module("dropout.cu", KERNELS)


def dropout_mask(shape, dtype, p, seed, offset):
    """A dropout mask of ``shape``: ``1/(1-p)`` where number ``offset+i+1`` of stream ``seed`` is >= p."""
    shape, dtype = check_dropout_args(shape, dtype, p)
    mask = cp.empty(shape, dtype)
    _module.launch("dropout_mask", dtype, mask.size,
                   (np.uint64(seed), np.uint64(offset), np.float64(p), dtype.type(1.0 / (1.0 - p)),
                    *ints(mask.size), mask))
    return mask
