"""The differentiable operations, with PyTorch's names, argument orders and semantics.

Each public function checks its arguments (a clear error names the argument, what was
expected and what was given): this is the one layer that checks. It then calls a
:class:`Function` whose ``forward`` and ``backward`` hand their arrays (C-contiguous: the
engine sees to that) to the ops of ``kernels`` (``kernels/ops.py``), which trust them and
run the kernels of the device where the arrays live. Small elementwise pieces (ReLU,
softmax, cat, the bias) are array expressions that run unchanged on NumPy and CuPy. The
Functions are named ``<Op>Function`` (``Conv2dFunction``), apart from the layers of
:mod:`minitorch_seg.nn` (``nn.Conv2d``) that hold parameters and call the functions below.
"""
import numbers

import numpy as np

from kernels import ops

from . import backends
from . import random as mrandom
from .device import contiguous, device_of, xp_of
from .tensor import Function, Tensor


# --- argument checks ------------------------------------------------------------------------
def _pair(op, name, value, minimum):
    if isinstance(value, numbers.Integral):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, numbers.Integral) for v in value):
        raise ValueError(f"{op}: {name}: expected an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        raise ValueError(f"{op}: {name}: expected values >= {minimum}, got {value}")
    return int(value[0]), int(value[1])


def _check_input(op, name, t, ndim=None, shape_doc=""):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name}: expected a Tensor, got {type(t).__name__}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{op}: {name}: expected a {ndim}-D tensor {shape_doc}, got shape {t.shape}")
    if t.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name}: expected a float32 or float64 tensor, got {t.dtype}")


def _check_like(op, name, t, ref, shape=None):
    """Check ``t`` against the input ``ref``: a Tensor of the same dtype and device, and ``shape``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name}: expected a Tensor, got {type(t).__name__}")
    if t.device != ref.device:
        raise RuntimeError(f"{op}: {name}: expected a tensor on {ref.device} (like input), got {t.device}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name}: expected dtype {ref.dtype} (like input), got {t.dtype}")
    if shape is not None and t.shape != tuple(shape):
        raise ValueError(f"{op}: {name}: expected shape {tuple(shape)}, got {t.shape}")


# --- convolution ----------------------------------------------------------------------------
class Conv2dFunction(Function):
    """Convolution through the conv2d (groups=1) or depthwise (groups=C) kernels."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, depthwise):
        tf32 = backends.cudnn.allow_tf32
        if depthwise:
            y, saved = ops.depthwise_forward(x, w, stride, padding, dilation), x
        else:  # the backward reads x's columns (x itself for a 1x1 conv), kept from the forward
            y, saved = ops.conv2d_forward(x, w, stride, padding, dilation, tf32)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        ctx.save_for_backward(saved, w)
        ctx.x_shape, ctx.geometry, ctx.depthwise, ctx.tf32 = x.shape, (stride, padding, dilation), depthwise, tf32
        return y

    @staticmethod
    def backward(ctx, gy):
        saved, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.depthwise:
            gx = ops.depthwise_backward_input(gy, w, ctx.x_shape, *ctx.geometry) if need_x else None
            gw = ops.depthwise_backward_weight(gy, saved, w.shape, *ctx.geometry) if need_w else None
        else:
            gx = ops.conv2d_backward_input(gy, w, ctx.x_shape, *ctx.geometry, ctx.tf32) if need_x else None
            gw = ops.conv2d_backward_weight(gy, saved, w.shape, ctx.tf32) if need_w else None
        gb = gy.sum(axis=(0, 2, 3)) if need_b else None
        return gx, gw, gb, None, None, None, None


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    input (N, C, H, W), weight (O, C // groups, KH, KW), bias (O,) or None.
    Supported: ``groups == 1`` and depthwise ``groups == C == O``.
    """
    op = "conv2d"
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    _check_input(op, "weight", weight, 4, "(out_channels, in_channels // groups, kH, kW)")
    _check_like(op, "weight", weight, input)
    stride = _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups: expected a positive int, got {groups!r}")
    depthwise = groups > 1
    if depthwise and not (groups == c and o == c):
        raise NotImplementedError(f"{op}: groups: only groups=1 and depthwise (groups == in_channels "
                                  f"== out_channels) are implemented, got groups={groups} with "
                                  f"{c} input and {o} output channels")
    if cg * groups != c:
        raise ValueError(f"{op}: weight: expected {c // groups} input channels per group "
                         f"(input has {c} channels, groups={groups}), got weight shape {weight.shape}")
    if bias is not None:
        _check_like(op, "bias", bias, input, (o,))
    for i, (axis, size, k) in enumerate((("height", h, kh), ("width", w, kw))):
        if size + 2 * padding[i] < dilation[i] * (k - 1) + 1:
            raise ValueError(f"{op}: input: {axis} {size} (padded {size + 2 * padding[i]}) is smaller "
                             f"than the dilated kernel {dilation[i] * (k - 1) + 1}")
    return Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, depthwise)


# --- batch norm -----------------------------------------------------------------------------
class BatchNormFunction(Function):
    """Batch norm over (N, H, W) per channel (then a ReLU, when ``relu``: one fused op); in
    training it also updates the running stats.

    It saves ``x`` and the per-channel constants the forward used (``stats``: mean, invstd,
    scale, shift), not its output: the backward recomputes the ReLU's gate from ``x``. In eval
    mode ``stats`` is a snapshot of the running statistics, written by the forward's own
    launch, so a training forward that moves them before this backward changes nothing here.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps, relu):
        xp = xp_of(x)
        c = x.shape[1]
        weight = xp.ones(c, x.dtype) if weight is None else weight
        bias = xp.zeros(c, x.dtype) if bias is None else bias
        ctx.training, ctx.relu = training, relu
        if training:
            y, stats = ops.batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu)
        else:
            y, stats = ops.batchnorm_forward_eval(x, running_mean, running_var, weight, bias, eps, relu)
        ctx.save_for_backward(x, stats)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, stats = ctx.saved_tensors
        gx, gw, gb = ops.batchnorm_backward(gy, x, stats, ctx.relu, ctx.training)
        return gx, gw, gb, None, None, None, None, None, None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization as ``torch.nn.functional.batch_norm`` for (N, C, H, W) input.

    In training the batch statistics normalize and the running stats (when given) move by
    ``momentum`` toward them, the variance unbiased; in eval the running stats normalize.
    """
    return _batch_norm("batch_norm", input, running_mean, running_var, weight, bias, training,
                       momentum, eps, relu=False)


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.1, eps=1e-5):
    """``relu(batch_norm(...))`` as one op (not in PyTorch): the same numbers in fewer kernel
    launches, the ReLU applied where batch norm writes its output and its backward where
    batch norm reads the gradient."""
    return _batch_norm("batch_norm_relu", input, running_mean, running_var, weight, bias, training,
                       momentum, eps, relu=True)


def _batch_norm(op, input, running_mean, running_var, weight, bias, training, momentum, eps, relu):
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None:
            _check_like(op, name, t, input, (c,))
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and not t.data.flags.c_contiguous:  # updated in place: no copy will do
            raise ValueError(f"{op}: {name}: expected a contiguous tensor (it is updated in place)")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean/running_var: required when training=False")
    if training and input.numel() // c < 2:
        raise ValueError(f"{op}: input: expected more than 1 value per channel when training, "
                         f"got shape {input.shape}")
    rm = None if running_mean is None else running_mean.data
    rv = None if running_var is None else running_var.data
    return BatchNormFunction.apply(input, weight, bias, rm, rv, bool(training), float(momentum), float(eps), relu)


# --- activations, dropout -------------------------------------------------------------------
class ReLUFunction(Function):
    @staticmethod
    def forward(ctx, x):
        y = xp_of(x).maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return ops.relu_backward(g, y)


def relu(input):
    """max(input, 0) elementwise."""
    _check_input("relu", "input", input)
    return ReLUFunction.apply(input)


class AddReLUFunction(Function):
    @staticmethod
    def forward(ctx, a, b):
        y = ops.add_relu(a, b)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        g = ops.relu_backward(g, ctx.saved_tensors[0])
        return g, g  # one array for both: gradients are added out of place (autograd._accumulate)


def add_relu(input, other):
    """``relu(input + other)`` as one op (not in PyTorch), for tensors of one shape: one kernel
    forward and one backward instead of two each."""
    _check_input("add_relu", "input", input)
    _check_like("add_relu", "other", other, input, input.shape)
    return AddReLUFunction.apply(input, other)


class DropoutFunction(Function):
    """Dropout with masks from the counter-based stream: backward draws the same mask again
    from the stream position the forward used, so no mask is kept."""

    @staticmethod
    def forward(ctx, x, p):
        ctx.p, ctx.stream = p, mrandom.take(x.size)
        return ops.dropout(x, p, *ctx.stream)

    @staticmethod
    def backward(ctx, g):
        return ops.dropout(g, ctx.p, *ctx.stream), None


def dropout(input, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity in eval)."""
    _check_input("dropout", "input", input)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p: expected 0 <= p < 1, got {p}")
    if not training or p == 0.0:
        return input
    return DropoutFunction.apply(input, float(p))


class LogSoftmaxFunction(Function):
    @staticmethod
    def forward(ctx, x, dim):
        xp = xp_of(x)
        shifted = x - x.max(axis=dim, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = xp_of(y)
        return g - xp.exp(y) * g.sum(axis=ctx.dim, keepdims=True), None


def log_softmax(input, dim):
    """log(softmax(input)) along ``dim``, computed stably."""
    _check_input("log_softmax", "input", input)
    return LogSoftmaxFunction.apply(input, int(dim))


def softmax(input, dim):
    """exp(x) / sum(exp(x)) along ``dim``, computed stably."""
    _check_input("softmax", "input", input)
    return LogSoftmaxFunction.apply(input, int(dim)).exp()  # exp of the stable log: no second kernel of its own


class CatFunction(Function):
    @staticmethod
    def forward(ctx, dim, *xs):
        ctx.dim = dim
        ctx.sizes = [x.shape[dim] for x in xs]
        return xp_of(xs[0]).concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        xp = xp_of(g)
        bounds = np.cumsum(ctx.sizes)[:-1].tolist()
        return (None, *[part.copy() for part in xp.split(g, bounds, axis=ctx.dim)])


def cat(tensors, dim=0):
    """Concatenate tensors of equal shape except along ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: tensors: expected at least one tensor")
    ref = tensors[0]
    _check_input("cat", "tensors[0]", ref)
    dim = dim % ref.ndim
    for i, t in enumerate(tensors[1:], 1):
        _check_like("cat", f"tensors[{i}]", t, ref)
        if t.ndim != ref.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, ref.shape)) if k != dim):
            raise ValueError(f"cat: tensors[{i}]: expected shape {ref.shape} except along dim {dim}, "
                             f"got {t.shape}")
    return CatFunction.apply(dim, *tensors)


# --- pooling --------------------------------------------------------------------------------
class AvgPool2dFunction(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        ctx.args = x.shape, kernel_size, stride, padding
        return ops.avg_pool2d_forward(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx, g):
        return ops.avg_pool2d_backward(g, *ctx.args), None, None, None


def avg_pool2d(input, kernel_size, stride=None, padding=0):
    """Average pooling as ``torch.nn.functional.avg_pool2d`` (count_include_pad=True, floor mode)."""
    op = "avg_pool2d"
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    kernel_size = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel_size if stride is None else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    if any(2 * p > k for p, k in zip(padding, kernel_size)):
        raise ValueError(f"{op}: padding: expected at most half the kernel size {kernel_size}, got {padding}")
    if any(s + 2 * p < k for s, p, k in zip(input.shape[2:], padding, kernel_size)):
        raise ValueError(f"{op}: input: spatial size {input.shape[2:]} is smaller than kernel_size {kernel_size}")
    return AvgPool2dFunction.apply(input, kernel_size, stride, padding)


class AdaptiveAvgPool2dFunction(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.shape = x.shape
        return ops.adaptive_avg_pool2d_forward(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return ops.adaptive_avg_pool2d_backward(g, ctx.shape), None


def adaptive_avg_pool2d(input, output_size):
    """Average over the bins ``floor(i*H/o) .. ceil((i+1)*H/o)``, as in PyTorch."""
    op = "adaptive_avg_pool2d"
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    return AdaptiveAvgPool2dFunction.apply(input, _pair(op, "output_size", output_size, 1))


# --- bilinear interpolation -----------------------------------------------------------------
class BilinearFunction(Function):
    @staticmethod
    def forward(ctx, x, size, ratio, align_corners):
        ctx.args = x.shape, ratio, align_corners
        return ops.bilinear_forward(x, size, ratio, align_corners)

    @staticmethod
    def backward(ctx, g):
        return ops.bilinear_backward(g, *ctx.args), None, None, None


def interpolate(input, size=None, scale_factor=None, mode="bilinear", align_corners=False):
    """Resize (N, C, H, W) input bilinearly, as ``torch.nn.functional.interpolate``.

    Give exactly one of ``size`` (an int or (H, W)) and ``scale_factor`` (a number or a pair).
    With ``scale_factor`` the source coordinates use 1/scale_factor, as PyTorch does.
    """
    op = "interpolate"
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    if mode != "bilinear":
        raise NotImplementedError(f"{op}: mode: only 'bilinear' is implemented, got {mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: size/scale_factor: expected exactly one of them, got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    in_h, in_w = input.shape[2:]
    if size is not None:
        size = _pair(op, "size", size, 1)
        scales = (None, None)
    else:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        if len(scales) != 2 or any(not isinstance(s, numbers.Real) or s <= 0 for s in scales):
            raise ValueError(f"{op}: scale_factor: expected a positive number or pair, got {scale_factor!r}")
        size = (int(np.floor(in_h * scales[0])), int(np.floor(in_w * scales[1])))
        if min(size) < 1:
            raise ValueError(f"{op}: scale_factor: {scale_factor!r} gives an empty output {size}")

    r = (_ratio(in_h, size[0], scales[0], align_corners), _ratio(in_w, size[1], scales[1], align_corners))
    return BilinearFunction.apply(input, size, r, bool(align_corners))


def _ratio(n_in, n_out, scale, align_corners):
    """Source pixels per output pixel along one axis, PyTorch's rule (``scale``: the scale_factor or None)."""
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale if scale is not None else n_in / n_out


# --- the loss -------------------------------------------------------------------------------
def _reduce(ctx, loss, target, weight, ignore_index, reduction):
    """The per-pixel ``loss`` reduced; a mean divides by the summed weight of counted pixels,
    kept in ``ctx.denominator`` for the backward."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    valid = target != ignore_index
    if weight is not None:
        valid = weight[xp_of(target).where(valid, target, 0)] * valid
    ctx.denominator = valid.sum().astype(loss.dtype)
    return loss.sum() / ctx.denominator


class CrossEntropyFunction(Function):
    """Softmax cross-entropy per pixel, then the reduction."""

    @staticmethod
    def forward(ctx, logits, target, weight, ignore_index, reduction):
        loss, prob = ops.cross_entropy_forward(logits, target, weight, ignore_index)
        ctx.save_for_backward(prob, target, weight)
        ctx.ignore_index, ctx.reduction = ignore_index, reduction
        return _reduce(ctx, loss, target, weight, ignore_index, reduction)

    @staticmethod
    def backward(ctx, g):
        prob, target, weight = ctx.saved_tensors
        if ctx.reduction == "mean":
            g = g / ctx.denominator
        # A reduced loss hands every pixel the same gradient: the kernel reads that one value.
        glogits = ops.cross_entropy_backward(g, prob, target, weight, ctx.ignore_index)
        return glogits, None, None, None, None


def _check_loss_args(op, input, target, weight, reduction, expected):
    """Check a loss's arguments, the target's shape against ``expected`` (a name, such as "OH",
    stands for any size); return ``(target as a contiguous uint8 or int64 array, weight's array)``."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    t = target.data if isinstance(target, Tensor) else target
    if not hasattr(t, "dtype") or t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target: expected an integer tensor of class indices, "
                        f"got {getattr(t, 'dtype', type(t).__name__)}")
    if device_of(t) != input.device:
        raise RuntimeError(f"{op}: target: expected a tensor on {input.device} (like input), "
                           f"got {device_of(t)}")
    if len(t.shape) != len(expected) or any(e != s for e, s in zip(expected, t.shape) if isinstance(e, int)):
        shape = ", ".join(map(str, expected)) + ("," if len(expected) == 1 else "")  # as a tuple prints
        raise ValueError(f"{op}: target: expected shape ({shape}) for input {input.shape}, got {tuple(t.shape)}")
    if weight is not None:
        _check_like(op, "weight", weight, input, (input.shape[1],))
    if t.dtype not in (np.uint8, np.int64):  # the kernels read uint8 labels or int64 indices
        t = t.astype(np.int64)
    return xp_of(input.data).ascontiguousarray(t), None if weight is None else contiguous(weight.data)


def cross_entropy(input, target, weight=None, ignore_index=255, reduction="mean"):
    """Softmax cross-entropy as ``torch.nn.functional.cross_entropy``.

    input: logits (N, C, H, W) or (N, C); target: class indices (N, H, W) or (N,), an int
    Tensor or array; pixels equal to ``ignore_index`` contribute nothing. ``weight`` (C,)
    scales each class; ``reduction='mean'`` divides by the summed weight of counted pixels.
    """
    op = "cross_entropy"
    _check_input(op, "input", input)
    if input.ndim not in (2, 4):
        raise ValueError(f"{op}: input: expected logits (N, C, H, W) or (N, C), got shape {input.shape}")
    n, c = input.shape[:2]
    expected = (n,) + input.shape[2:]
    t, w = _check_loss_args(op, input, target, weight, reduction, expected)
    logits = input if input.ndim == 4 else input.reshape(n, c, 1, 1)
    out = CrossEntropyFunction.apply(logits, t.reshape((n,) + logits.shape[2:]), w, int(ignore_index), reduction)
    return out.reshape(expected) if reduction == "none" else out


class UpsampleCrossEntropyFunction(Function):
    """Bilinear upsampling to the target's size and softmax cross-entropy, fused (then the reduction)."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction, ratio, align_corners):
        loss, lse = ops.upsample_cross_entropy_forward(x, target, weight, ignore_index, ratio, align_corners)
        ctx.save_for_backward(x, lse, target, weight)
        ctx.args, ctx.reduction = (ignore_index, ratio, align_corners), reduction
        return _reduce(ctx, loss, target, weight, ignore_index, reduction)

    @staticmethod
    def backward(ctx, g):
        x, lse, target, weight = ctx.saved_tensors
        if ctx.reduction == "mean":
            g = g / ctx.denominator
        gx = ops.upsample_cross_entropy_backward(g, x, lse, target, weight, *ctx.args)
        return gx, None, None, None, None, None, None


def upsample_cross_entropy(input, target, align_corners=False, weight=None, ignore_index=255, reduction="mean"):
    """``cross_entropy(interpolate(input, size=target.shape[-2:], mode="bilinear",
    align_corners=align_corners), target, weight, ignore_index, reduction)`` as one op (not in
    PyTorch): the same numbers, without the full-resolution logits, probabilities or their
    gradient in memory (the output heads of a segmentation net at 1/8 resolution).

    input: logits (N, C, H, W) at any resolution; target: class indices (N, OH, OW).
    """
    op = "upsample_cross_entropy"
    _check_input(op, "input", input, 4, "(N, C, H, W)")
    t, w = _check_loss_args(op, input, target, weight, reduction, (input.shape[0], "OH", "OW"))
    (h, w_in), (oh, ow) = input.shape[2:], t.shape[1:]
    ratio = (_ratio(h, oh, None, align_corners), _ratio(w_in, ow, None, align_corners))
    return UpsampleCrossEntropyFunction.apply(input, t, w, int(ignore_index), reduction, ratio, bool(align_corners))
