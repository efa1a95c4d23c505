"""2-D convolution (groups == 1) on the GPU: the launches of ``conv2d.cu``'s im2col and col2im.

The driver (batched matrix products, ``cupy.matmul`` = cuBLAS) is ``kernels.ops.conv2d_*``,
shared with the CPU, whose twins of these two kernels are in ``kernels/cpu/conv2d.py``.
"""
from .launch import CudaFile, ints

__all__ = ["im2col", "col2im"]

CUDA = CudaFile("conv2d.cu", ("im2col", "col2im"))


def im2col(x, kernel, stride, padding, dilation, col):
    """Fill ``col`` (C*KH*KW, N, OH, OW) from ``x`` (N, C, H, W); one thread per element of col."""
    CUDA.launch("im2col", x.dtype, col.size,
                (x, *ints(*x.shape, *kernel, *stride, *padding, *dilation, *col.shape[2:]), col))


def col2im(gcol, kernel, stride, padding, dilation, gx):
    """Gather ``gcol`` (C*KH*KW, N, OH, OW) into ``gx`` (N, C, H, W); one thread per element of gx."""
    CUDA.launch("col2im", gcol.dtype, gx.size,
                (gcol, *ints(*gx.shape, *kernel, *stride, *padding, *dilation, *gcol.shape[2:]), gx))
