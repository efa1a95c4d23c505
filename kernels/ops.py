"""The ops: each written once, over the array module ``xp`` of its inputs, around a backend's kernels.

An op works out the output shapes, allocates the outputs (``xp.empty``), and calls the
kernels of the backend where its inputs live (``kernels.cpu`` for NumPy arrays,
``kernels.cuda`` for device arrays), which fill them. Nothing here depends on the device:
a reader sees what an op does here, and how its loops run on each device side by side in
``kernels/cpu/<family>.py`` and ``kernels/cuda/<family>.cu``.

The ops trust their arguments: ``minitorch_seg.functional`` checks every one (and names it
in the error) before it calls them. They take C-contiguous float32 or float64 arrays of one
dtype (targets: uint8 or int64) and geometry as pairs of ints. Convolution is
im2col + matrix products (BLAS or cuBLAS through ``xp.matmul``), the whole batch at once:

    forward          y[n]    = W @ col[n]                  W = w.reshape(O, C*KH*KW)
    backward-input   gcol[n] = W.T @ gy[n];  gx = col2im(gcol)
    backward-weight  gW      = sum_n gy[n] @ col[n].T      (a fixed order: deterministic)

with ``col[n, (c, kh, kw), (oh, ow)] = x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw]``
(0 outside the image). A 1x1 convolution at stride 1 without padding needs no im2col: col
is x itself. The price of batching: col holds N images' windows at once.
"""
import numpy as np

from . import cpu, device

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
    "depthwise_forward", "depthwise_backward_input", "depthwise_backward_weight",
    "batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward", "add_relu", "relu_backward",
    "avg_pool2d_forward", "avg_pool2d_backward", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "bilinear_forward", "bilinear_backward", "cross_entropy_forward", "cross_entropy_backward",
    "dropout", "sgd_step",
]


def backend_for(array):
    """The kernels (``kernels.cpu`` or ``kernels.cuda``) for the device where ``array`` lives."""
    if device.is_device_array(array):
        from . import cuda
        return cuda
    return cpu


def _on(array):
    """``(kernels of the backend, array module)`` where ``array`` lives."""
    return backend_for(array), device.array_module() if device.is_device_array(array) else np


def _conv_hw(hw, kernel, stride, padding, dilation):
    """(OH, OW) of a convolution or pooling window over ``hw`` (PyTorch's formula)."""
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def _pointwise(kernel, stride, padding):
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


# ----------------------------------------------------------------------------- convolution

def _columns(K, xp, x, kernel, stride, padding, dilation, out_hw):
    """im2col of ``x`` as (N, C*KH*KW, OH*OW); a 1x1 convolution at stride 1 reads x itself."""
    N, C, H, W = x.shape
    if _pointwise(kernel, stride, padding):
        return x.reshape(N, C, H * W)
    col = xp.empty((N, C * kernel[0] * kernel[1], *out_hw), x.dtype)
    K.im2col(x, kernel, stride, padding, dilation, col)
    return col.reshape(N, col.shape[1], -1)


def conv2d_forward(x, w, stride, padding, dilation):
    """``F.conv2d(x, w, None, stride, padding, dilation)`` (groups 1): y (N, O, OH, OW)."""
    K, xp = _on(x)
    (N, C, H, W), (O, _, KH, KW) = x.shape, w.shape
    OH, OW = _conv_hw((H, W), (KH, KW), stride, padding, dilation)
    y = xp.empty((N, O, OH, OW), x.dtype)
    col = _columns(K, xp, x, (KH, KW), stride, padding, dilation, (OH, OW))
    xp.matmul(w.reshape(O, C * KH * KW), col, out=y.reshape(N, O, OH * OW))
    return y


def conv2d_backward_input(gy, w, x_shape, stride, padding, dilation):
    """dL/dx of :func:`conv2d_forward` (shape ``x_shape``) from ``gy`` = dL/dy."""
    K, xp = _on(gy)
    (N, C, H, W), (O, _, KH, KW), (OH, OW) = x_shape, w.shape, gy.shape[2:]
    gx = xp.empty(x_shape, gy.dtype)
    w_t, gy = w.reshape(O, C * KH * KW).T, gy.reshape(N, O, OH * OW)
    if _pointwise((KH, KW), stride, padding):  # gcol is gx itself
        xp.matmul(w_t, gy, out=gx.reshape(N, C, H * W))
    else:
        K.col2im(xp.matmul(w_t, gy).reshape(N, C * KH * KW, OH, OW), (KH, KW), stride, padding, dilation, gx)
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """dL/dw of :func:`conv2d_forward` (shape ``w_shape``) from ``gy`` = dL/dy."""
    K, xp = _on(gy)
    (N, O, OH, OW), (_, C, KH, KW) = gy.shape, w_shape
    col = _columns(K, xp, x, (KH, KW), stride, padding, dilation, (OH, OW))
    per_image = xp.matmul(gy.reshape(N, O, OH * OW), col.transpose(0, 2, 1))
    gw = xp.empty(w_shape, gy.dtype)
    xp.sum(per_image, axis=0, out=gw.reshape(O, C * KH * KW))
    return gw


def depthwise_forward(x, w, stride, padding, dilation):
    """``F.conv2d(x, w, None, stride, padding, dilation, groups=C)``, w (C, 1, KH, KW)."""
    K, xp = _on(x)
    y = xp.empty(x.shape[:2] + _conv_hw(x.shape[2:], w.shape[2:], stride, padding, dilation), x.dtype)
    K.depthwise_forward(x, w, stride, padding, dilation, y)
    return y


def depthwise_backward_input(gy, w, x_shape, stride, padding, dilation):
    """dL/dx of :func:`depthwise_forward` (shape ``x_shape``)."""
    K, xp = _on(gy)
    gx = xp.empty(x_shape, gy.dtype)
    K.depthwise_backward_input(gy, w, stride, padding, dilation, gx)
    return gx


def depthwise_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """dL/dw of :func:`depthwise_forward` (shape ``w_shape``)."""
    K, xp = _on(gy)
    gw = xp.empty(w_shape, gy.dtype)
    K.depthwise_backward_weight(gy, x, stride, padding, dilation, gw)
    return gw


# ----------------------------------------------------------------------------- batch norm

def batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu):
    """Batch norm of ``x`` with its own statistics (then ReLU, with ``relu``); ``(y, stats)``.

    ``stats`` (4, C): the rows mean, invstd (of the biased variance), scale and shift, what the
    backward needs; the running statistics, unless None, move ``momentum`` toward the batch's,
    in place.
    """
    K, xp = _on(x)
    y, stats = xp.empty_like(x), xp.empty((4, x.shape[1]), x.dtype)
    update = running_mean is not None
    K.batchnorm_forward_train(x, weight, bias, eps, update, running_mean if update else stats[0],
                              running_var if update else stats[1], momentum, relu, y, stats)
    return y, stats


def batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu):
    """Batch norm of ``x`` with the fixed statistics ``mean``/``var`` (then ReLU, with ``relu``);
    ``(y, stats)``, ``stats`` as above, its mean a copy of ``mean`` made by the same launch."""
    K, xp = _on(x)
    y, stats = xp.empty_like(x), xp.empty((4, x.shape[1]), x.dtype)
    K.batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu, y, stats)
    return y, stats


def batchnorm_backward(gy, x, stats, relu, training):
    """``(gx, gweight, gbias)`` of batch norm (with the ReLU's backward, with ``relu``), through
    the batch statistics when ``training``; ``stats`` from the forward."""
    K, xp = _on(gy)
    C = x.shape[1]
    gx, gweight, gbias = xp.empty_like(x), xp.empty(C, x.dtype), xp.empty(C, x.dtype)
    K.batchnorm_backward(gy, x, stats, relu, training, gx, gweight, gbias)
    return gx, gweight, gbias


def add_relu(a, b):
    """``max(a + b, 0)`` for ``a``, ``b`` of one shape, in one kernel."""
    K, xp = _on(a)
    y = xp.empty_like(a)
    K.add_relu(a, b, y)
    return y


def relu_backward(g, y):
    """The gradient of a ReLU whose output was ``y``: ``g`` where ``y > 0``, else 0, in one kernel."""
    K, xp = _on(g)
    gx = xp.empty_like(g)
    K.relu_backward(g, y, gx)
    return gx


# ----------------------------------------------------------------------------- pooling, resizing

def avg_pool2d_forward(x, kernel_size, stride, padding):
    """``F.avg_pool2d`` with its defaults (count_include_pad, floor): y (N, C, OH, OW)."""
    K, xp = _on(x)
    y = xp.empty(x.shape[:2] + _conv_hw(x.shape[2:], kernel_size, stride, padding, (1, 1)), x.dtype)
    K.avg_pool2d_forward(x, kernel_size, stride, padding, y)
    return y


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding):
    """dL/dx of :func:`avg_pool2d_forward` (shape ``x_shape``)."""
    K, xp = _on(gy)
    gx = xp.empty(x_shape, gy.dtype)
    K.avg_pool2d_backward(gy, kernel_size, stride, padding, gx)
    return gx


def adaptive_avg_pool2d_forward(x, output_size):
    """``F.adaptive_avg_pool2d``: bins ``floor(i*H/O) .. ceil((i+1)*H/O)``; y (N, C, *output_size)."""
    K, xp = _on(x)
    y = xp.empty(x.shape[:2] + tuple(output_size), x.dtype)
    K.adaptive_avg_pool2d_forward(x, y)
    return y


def adaptive_avg_pool2d_backward(gy, x_shape):
    """dL/dx of :func:`adaptive_avg_pool2d_forward` (shape ``x_shape``)."""
    K, xp = _on(gy)
    gx = xp.empty(x_shape, gy.dtype)
    K.adaptive_avg_pool2d_backward(gy, gx)
    return gx


def bilinear_forward(x, size, ratio, align_corners):
    """Bilinear resize of ``x`` to ``size``; ``ratio`` (rh, rw): source pixels per output pixel."""
    K, xp = _on(x)
    y = xp.empty(x.shape[:2] + tuple(size), x.dtype)
    K.bilinear_forward(x, ratio, align_corners, y)
    return y


def bilinear_backward(gy, x_shape, ratio, align_corners):
    """dL/dx of :func:`bilinear_forward` (shape ``x_shape``)."""
    K, xp = _on(gy)
    gx = xp.empty(x_shape, gy.dtype)
    K.bilinear_backward(gy, ratio, align_corners, gx)
    return gx


# ----------------------------------------------------------------------------- loss, dropout, SGD

def cross_entropy_forward(logits, target, weight, ignore_index):
    """Per-pixel weighted cross-entropy: ``(loss (N, H, W), prob)``, prob the softmax over
    classes (what the backward needs); 0 where ``target == ignore_index``; ``weight`` None
    weighs every class 1."""
    K, xp = _on(logits)
    N, C, H, W = logits.shape
    loss, prob = xp.empty((N, H, W), logits.dtype), xp.empty_like(logits)
    K.cross_entropy_forward(logits, target, logits.reshape(-1) if weight is None else weight, weight is not None,
                            ignore_index, loss, prob)
    return loss, prob


def cross_entropy_backward(gloss, prob, target, weight, ignore_index):
    """dL/dlogits from ``gloss``: (N, H, W), or 0-d when every pixel has that gradient (a mean's)."""
    K, xp = _on(prob)
    glogits = xp.empty_like(prob)
    K.cross_entropy_backward(gloss, prob, target, prob.reshape(-1) if weight is None else weight, weight is not None,
                             ignore_index, glogits)
    return glogits


def dropout(x, p, seed, offset):
    """``x * mask``, the mask drawn from numbers ``offset+1, offset+2, ...`` of stream ``seed``.
    The backward of dropout is this same call on the gradient."""
    K, xp = _on(x)
    y = xp.empty_like(x)
    K.dropout(x, p, np.uint64(seed), np.uint64(offset), y)  # the stream's counters are 64-bit unsigned
    return y


def sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """One SGD step (PyTorch's rule) on the arrays ``params``, in place, in one kernel call;
    ``buffers``: the momentum buffers (updated in place; ignored when ``momentum`` is 0)."""
    K, _ = _on(params[0])
    K.sgd_step(params, grads, buffers if momentum else params, lr, momentum, weight_decay, nesterov)
