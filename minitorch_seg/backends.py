"""Switches with PyTorch's names, meanings and defaults: ``minitorch_seg.backends.cudnn.allow_tf32``.

TF32 (TensorFloat-32) keeps float32's 8-bit exponent and rounds the mantissa to 10 bits
before a tensor core multiplies; products are summed in float32. On an H100 that runs a GEMM
at up to 7x the FP32 peak, at a relative error near 2**-11 per operand instead of 2**-24.
PyTorch lets convolutions use it by default (``torch.backends.cudnn.allow_tf32 = True``) and
not other matrix products (``torch.backends.cuda.matmul.allow_tf32 = False``); ours are the same:

    minitorch_seg.backends.cudnn.allow_tf32 = False    # full float32 convolutions on the GPU

It governs the GEMMs of dense convolutions on device ``"cuda"`` in float32, read when the
forward runs (its backward follows the same setting). Never the CPU, never float64: the
gradient checks run in float64, and tests that compare the GPU with the CPU turn it off.
Where CuPy honours it: 2-D products only (``kernels/ops.py`` makes the convolutions' products
2-D, except a 1x1 convolution's forward and backward-input over several images, which stay
batched, in float32).
"""


class cudnn:
    """Convolutions (cuDNN's in PyTorch; im2col + cuBLAS here)."""

    allow_tf32 = True
