"""Argument checks shared by the launchers of both backends.

Each check raises a ``ValueError``/``TypeError`` whose message names the argument and
states what was expected and what was given. They read only ``.shape``, ``.dtype``,
``.ndim`` and ``.flags``, so they work on NumPy and CuPy arrays alike.
"""
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float(name, a, ndim=None, dtype=None):
    """Check ``a`` is a C-contiguous float32/float64 array of ``ndim`` dims (and ``dtype`` if given)."""
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (same as the input), got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")


def check_shape(name, a, shape):
    """Check ``a.shape == shape``."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(a.shape)}")


def check_pair(name, value, minimum):
    """Check ``value`` is a pair of ints, each ``>= minimum``; return it as a tuple."""
    if len(value) != 2 or any(int(v) != v or v < minimum for v in value):
        raise ValueError(f"{name}: expected a pair of integers >= {minimum}, got {value}")
    return (int(value[0]), int(value[1]))


def conv_output_size(in_size, kernel, stride, padding, dilation):
    """Output length of a convolution or pooling window along one axis (PyTorch's formula)."""
    return (in_size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def is_pointwise(kernel, stride, padding):
    """True for a 1x1 kernel at stride 1 and padding 0: a convolution that is a plain matrix product."""
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


def conv_geometry(stride, padding, dilation):
    """Validate stride (>= 1), padding (>= 0) and dilation (>= 1) pairs; return them as int tuples."""
    return (check_pair("stride", stride, 1), check_pair("padding", padding, 0),
            check_pair("dilation", dilation, 1))


def conv_output_hw(x_shape, w_shape, stride, padding, dilation):
    """(OH, OW) for an input of shape ``x_shape`` and a weight of shape ``w_shape``; raises if empty."""
    out = tuple(conv_output_size(x_shape[2 + i], w_shape[2 + i], stride[i], padding[i], dilation[i])
                for i in range(2))
    if min(out) < 1:
        raise ValueError(f"w: kernel {tuple(w_shape[2:])} with dilation {dilation} does not fit "
                         f"input {tuple(x_shape[2:])} padded by {padding}")
    return out


def check_conv_weight(w, x_channels, dtype):
    """Check ``w`` is a float (O, C, KH, KW) weight of ``dtype`` whose C matches the input's channels."""
    check_float("w", w, ndim=4, dtype=dtype)
    if w.shape[1] != x_channels:
        raise ValueError(f"w: expected {x_channels} input channels (shape (O, {x_channels}, KH, KW)), "
                         f"got shape {tuple(w.shape)}")


def check_shape_arg(name, shape):
    """Check a shape argument (e.g. ``x_shape``) is 4 positive ints; return it as a tuple."""
    if len(shape) != 4 or any(int(s) != s or s < 1 for s in shape):
        raise ValueError(f"{name}: expected 4 positive ints, got {shape}")
    return tuple(int(s) for s in shape)


def check_depthwise_weight_shape(name, shape, channels):
    """Check a depthwise weight shape is (C, 1, KH, KW); return it as a tuple of ints."""
    if len(shape) != 4 or shape[0] != channels or shape[1] != 1 or shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"{name}: expected shape ({channels}, 1, KH, KW), got {tuple(shape)}")
    return tuple(int(s) for s in shape)


def pool_geometry(x_shape, kernel_size, stride, padding):
    """Validate the pooling geometry against ``x_shape``; return it and the output size."""
    kernel_size = check_pair("kernel_size", kernel_size, 1)
    stride = check_pair("stride", stride, 1)
    padding = check_pair("padding", padding, 0)
    if any(p > k // 2 for p, k in zip(padding, kernel_size)):
        raise ValueError(f"padding: expected at most half of kernel_size {kernel_size}, "
                         f"got {padding}")
    out = tuple(conv_output_size(s, k, st, p, 1)
                for s, k, st, p in zip(x_shape[2:], kernel_size, stride, padding))
    if min(out) < 1:
        raise ValueError(f"kernel_size: window {kernel_size} with padding {padding} does not "
                         f"fit the input of spatial size {tuple(x_shape[2:])}")
    return kernel_size, stride, padding, out


def check_channel_vectors(x, **vectors):
    """Check each named vector is a contiguous (C,) array in the dtype of ``x``."""
    for name, v in vectors.items():
        check_float(name, v, ndim=1, dtype=x.dtype)
        check_shape(name, v, (x.shape[1],))


def check_cross_entropy_args(logits, target, weight, ignore_index):
    """Check the arguments of both cross-entropy directions (not the target values: each backend
    scans those where they live)."""
    check_float("logits", logits, ndim=4)
    N, C, H, W = logits.shape
    if target.dtype not in (np.uint8, np.int64):
        raise TypeError(f"target: expected uint8 or int64 class indices, got {target.dtype}")
    check_shape("target", target, (N, H, W))
    if not target.flags.c_contiguous:
        raise ValueError("target: expected a C-contiguous array")
    if weight is not None:
        check_float("weight", weight, ndim=1, dtype=logits.dtype)
        check_shape("weight", weight, (C,))
    if int(ignore_index) != ignore_index:
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}")


def check_loss_gradient(gloss, logp):
    """Check the cross-entropy backward's ``gloss``: (N, H, W) for ``logp`` (N, C, H, W), or 0-d."""
    N, C, H, W = logp.shape
    check_float("gloss", gloss, dtype=logp.dtype)
    if gloss.ndim != 0:
        check_shape("gloss", gloss, (N, H, W))


def bad_target_message(value, classes, ignore_index):
    """The error for a target value that is neither a class in [0, classes) nor ignore_index."""
    return (f"target: value {value} is outside [0, {classes}) (C = {classes} classes) "
            f"and is not ignore_index={ignore_index}")


def check_dropout_args(x, p):
    """Check the input of dropout (a contiguous float array) and its probability 0 <= p < 1."""
    check_float("x", x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected 0 <= p < 1, got {p}")


def check_sgd_args(params, grads, buffers, momentum):
    """Check the lists of an SGD step: same lengths, shapes and one float dtype; return the dtype."""
    params, grads, buffers = list(params), list(grads), list(buffers)
    if not params:
        raise ValueError("params: expected at least one array")
    dtype = params[0].dtype
    lists = [("params", params), ("grads", grads)] + ([("buffers", buffers)] if momentum else [])
    for name, arrays in lists:
        if len(arrays) != len(params):
            raise ValueError(f"{name}: expected {len(params)} arrays (one per parameter), got {len(arrays)}")
        for k, (a, p) in enumerate(zip(arrays, params)):
            check_float(f"{name}[{k}]", a, dtype=dtype)
            check_shape(f"{name}[{k}]", a, p.shape)
    return dtype


def check_batchnorm_relu_output(y, x):
    """Check ``y`` (the output of a batch norm + ReLU, or None) is shaped like its input ``x``."""
    if y is not None:
        check_float("y", y, ndim=4, dtype=x.dtype)
        check_shape("y", y, x.shape)
