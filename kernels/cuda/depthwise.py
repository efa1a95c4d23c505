"""Depthwise 2-D convolution (groups == C) on the GPU: the launches of ``depthwise.cu``.

Forward: a block per 32 x 32 tile of ``y``, x's window staged in shared memory, 4 rows per
thread, compiled per stride. Backward-input: a block per 64 x 32 tile of ``gx``,
8 rows per thread, compiled per stride (the steps that made it so are told in
``depthwise.cu``). Backward-weight: a deterministic two-step reduction, a block per (channel,
run of 32 x 32 output tiles) writing a float64 partial sum per tap, then one thread per weight
adding its runs in order; compiled per stride too.
The CPU twins: ``kernels/cpu/depthwise.py``.
"""
import numpy as np

from .launch import THREADS, CudaFile, empty, ints

__all__ = ["depthwise_forward", "depthwise_backward_input", "depthwise_backward_weight"]

# All three kernels but sum_chunks are compiled per stride: Fast-SCNN's (1, 1) and (2, 2),
# and (0, 0) for any other stride, which the kernel then reads at run time.
STRIDES = ((1, 1), (2, 2), (0, 0))
TILE_H, TILE_W = 64, 32  # a block's tile of gx: TILE_H and TILE_W in depthwise.cu
WTILE_H = 32             # forward's and backward-weight's tiles are WTILE_H x TILE_W outputs (depthwise.cu)
# Tiles per backward-weight block: enough work to pay for the block's final sum, while even
# Fast-SCNN's layers with the fewest tiles get hundreds of blocks.
TILES_PER_BLOCK = 8
CUDA = CudaFile("depthwise.cu", ("depthwise_forward", "depthwise_backward_input",
                                 "depthwise_weight_partials", "sum_chunks"),
                variants={k: STRIDES for k in ("depthwise_forward", "depthwise_backward_input",
                                               "depthwise_weight_partials")})


def _specialized(stride):
    """The compiled stride variant that runs ``stride``."""
    return tuple(map(int, stride)) if tuple(stride) in STRIDES else (0, 0)


def depthwise_forward(x, w, stride, padding, dilation, y):
    """``y`` (N, C, OH, OW) = ``x`` (N, C, H, W) correlated channel by channel with ``w`` (C, 1, KH, KW),
    a block per tile of ``y``."""
    (N, C, OH, OW) = y.shape
    blocks = N * C * -(-OH // WTILE_H) * -(-OW // TILE_W)
    CUDA.launch("depthwise_forward", (x.dtype, *_specialized(stride)), blocks * THREADS,
                (x, w, *ints(*x.shape, *w.shape[2:], *stride, *padding, *dilation, OH, OW), y))


def depthwise_backward_input(gy, w, stride, padding, dilation, gx):
    """``gx`` = dL/dx from ``gy`` = dL/dy: the gather that reverses the forward, a block per tile."""
    N, C, H, W = gx.shape
    blocks = N * C * -(-H // TILE_H) * -(-W // TILE_W)
    CUDA.launch("depthwise_backward_input", (gy.dtype, *_specialized(stride)), blocks * THREADS,
                (gy, w, *ints(*gx.shape, *w.shape[2:], *stride, *padding, *dilation, *gy.shape[2:]), gx))


def depthwise_backward_weight(gy, x, stride, padding, dilation, gw):
    """``gw`` (C, 1, KH, KW) = dL/dw: a block per (channel, run of tiles) sums every tap of its
    tiles, then each weight's partial sums are added in order."""
    (N, C, H, W), (OH, OW) = x.shape, gy.shape[2:]
    tiles = N * -(-OH // WTILE_H) * -(-OW // TILE_W)
    chunks = -(-tiles // TILES_PER_BLOCK)
    partial = empty((gw.size, chunks), np.float64)
    CUDA.launch_rows("depthwise_weight_partials", (gy.dtype, *_specialized(stride)), C, chunks,
                     (gy, x, *ints(N, C, H, W, *gw.shape[2:], *stride, *padding, *dilation, OH, OW,
                                   TILES_PER_BLOCK), partial))
    CUDA.launch("sum_chunks", gy.dtype, gw.size, (partial, *ints(gw.size, chunks), gw))
