"""Average pooling (fixed window and adaptive) on the GPU: the launchers of ``pool.cu``.

The lesson is the header of ``pool.cu``; ``kernels/cpu/pool.py`` computes the same numbers
one (n, c) plane per Numba thread. Here every kernel is one thread per element written,
both backwards gathers. The argument checks are the CPU launchers', after a check that
every array is on the GPU.
"""
from ..checks import check_float, check_pair, check_shape, pool_geometry
from ._module import cp, Module, ints, on_gpu

__all__ = [
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward",
]

KERNELS = ("avg_pool_forward", "avg_pool_backward", "adaptive_forward", "adaptive_backward")
_module = Module("pool.cu", KERNELS)


def avg_pool2d_forward(x, kernel_size, stride, padding):
    """Average pooling of ``x`` (N, C, H, W) as ``F.avg_pool2d`` with its defaults; returns ``y``."""
    on_gpu(x=x)
    check_float("x", x, ndim=4)
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = pool_geometry(x.shape, kernel_size, stride, padding)
    N, C, H, W = x.shape
    y = cp.empty((N, C, OH, OW), dtype=x.dtype)
    _module.launch("avg_pool_forward", x.dtype, y.size,
                   (x, *ints(N * C, H, W, KH, KW, SH, SW, PH, PW, OH, OW), y))
    return y


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding):
    """Gradient of ``avg_pool2d_forward`` w.r.t. its input of shape ``x_shape``; returns ``gx``."""
    on_gpu(gy=gy)
    check_float("gy", gy, ndim=4)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape: expected 4 dimensions, got {tuple(x_shape)}")
    (KH, KW), (SH, SW), (PH, PW), (OH, OW) = pool_geometry(x_shape, kernel_size, stride, padding)
    N, C, H, W = x_shape
    check_shape("gy", gy, (N, C, OH, OW))
    gx = cp.empty((N, C, H, W), dtype=gy.dtype)
    _module.launch("avg_pool_backward", gy.dtype, gx.size,
                   (gy, *ints(N * C, H, W, KH, KW, SH, SW, PH, PW, OH, OW), gx))
    return gx


def adaptive_avg_pool2d_forward(x, output_size):
    """Adaptive average pooling of ``x`` (N, C, H, W) to ``output_size`` (OH, OW); returns ``y``."""
    on_gpu(x=x)
    check_float("x", x, ndim=4)
    OH, OW = check_pair("output_size", output_size, 1)
    N, C, H, W = x.shape
    y = cp.empty((N, C, OH, OW), dtype=x.dtype)
    _module.launch("adaptive_forward", x.dtype, y.size, (x, *ints(N * C, H, W, OH, OW), y))
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """Gradient of ``adaptive_avg_pool2d_forward`` w.r.t. its input of shape ``x_shape``."""
    on_gpu(gy=gy)
    check_float("gy", gy, ndim=4)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape: expected 4 dimensions, got {tuple(x_shape)}")
    N, C, H, W = x_shape
    check_shape("gy", gy, (N, C) + tuple(gy.shape[2:]))
    OH, OW = gy.shape[2:]
    gx = cp.empty((N, C, H, W), dtype=gy.dtype)
    _module.launch("adaptive_backward", gy.dtype, gx.size, (gy, *ints(N * C, H, W, OH, OW), gx))
    return gx
