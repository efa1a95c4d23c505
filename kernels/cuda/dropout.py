"""Dropout on the GPU: the launch of ``dropout.cu`` (the lesson: ``kernels/cpu/dropout.py``)."""
import numpy as np

from .launch import CudaFile, ints

__all__ = ["dropout"]

CUDA = CudaFile("dropout.cu", __all__)


def dropout(x, p, seed, offset, y):
    """``y = x * mask``, the mask drawn from numbers ``offset+1, ...`` of stream ``seed``; one thread per element."""
    CUDA.launch("dropout", x.dtype, x.size, (x, np.uint64(seed), np.uint64(offset), np.float64(p),
                                             x.dtype.type(1.0 / (1.0 - p)), *ints(x.size), y))
