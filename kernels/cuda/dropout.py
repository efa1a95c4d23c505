"""Dropout on the GPU: the launcher of ``dropout.cu`` (the lesson: ``kernels/cpu/dropout.py``)."""
import numpy as np

from ..checks import check_dropout_args
from ._module import cp, Module, ints, on_gpu

__all__ = ["dropout"]

KERNELS = ("dropout",)
_module = Module("dropout.cu", KERNELS)


def dropout(x, p, seed, offset):
    """``x * mask``: each element kept, times ``1/(1-p)``, where number ``offset+i+1`` of stream
    ``seed`` is >= p; zeroed elsewhere. The backward of dropout is this same call on the gradient."""
    on_gpu(x=x)
    check_dropout_args(x, p)
    y = cp.empty_like(x)
    _module.launch("dropout", x.dtype, x.size,
                   (x, np.uint64(seed), np.uint64(offset), np.float64(p), x.dtype.type(1.0 / (1.0 - p)),
                    *ints(x.size), y))
    return y
