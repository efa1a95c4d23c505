"""The ops: each written once, over the array module ``xp`` of its inputs, around a backend's kernels.

An op works out the output shapes, allocates the outputs (``xp.empty``), and calls the
kernels of the backend where its inputs live (``kernels.cpu`` for NumPy arrays,
``kernels.cuda`` for device arrays), which fill them. Nothing here depends on the device
but the convolution's matrix products (below: NumPy's matmul and CuPy's copy different
things): a reader sees what an op does here, and how its loops run on each device side by
side in ``kernels/cpu/<family>.py`` and ``kernels/cuda/<family>.cu``.

The ops trust their arguments: ``minitorch_seg.functional`` checks every one (and names it
in the error) before it calls them. They take C-contiguous float32 or float64 arrays of one
dtype (targets: uint8 or int64) and geometry as pairs of ints. Convolution is
im2col + matrix products (BLAS or cuBLAS through ``xp.matmul``), the whole batch at once,
with the batch *inside* the columns, ``col[(c, kh, kw), (n, oh, ow)] = x[n, c, oh*sh - ph +
kh*dh, ow*sw - pw + kw*dw]`` (0 outside the image), K = C*KH*KW rows of N*OH*OW:

    forward          y'  = W @ col                     (O, N*OH*OW);  y = y' reordered to NCHW
    backward-input   gcol = W.T @ gy'                  gy' = gy reordered to (O, N*OH*OW);  gx = col2im(gcol)
    backward-weight  gW  = gy' @ col.T                 one GEMM, its inner dimension N*OH*OW

Each is ONE 2-D GEMM: the weight gradient sums over the batch inside the product (cuBLAS
splits that long inner dimension over the SMs, in a fixed order), ``W.T`` and ``col.T`` are
views that cuBLAS reads with a transpose flag (no copy), and 2-D products are the ones whose
compute type CuPy sets to TF32 (``tf32``: see ``minitorch_seg.backends``). The forward keeps
``col`` for the backward instead of building it again: memory (K*N*OH*OW values per dense
convolution; 849 MB for Fast-SCNN's three at batch 12 of 1024x1024, less the 151 MB image
that the first one no longer keeps) traded for an im2col. The reorders of y and gy move
whole rows of OH*OW values (coalesced copies); the NCHW layout of everything else needs them.

On the CPU the same buffers serve per-image products instead (``y[n] = W @ col[:, n]``, a
sum over n for the weight gradient): NumPy's matmul reads such strided stacks of matrices in
place (BLAS with a leading dimension), so there no reorder is needed; CuPy's copies every
stack that is not C-contiguous, hence the 2-D products above on the GPU.

A 1x1 convolution at stride 1 without padding needs no columns: col is x. Its forward and
backward-input are batched products over the images (``y[n] = W @ x[n]``: no reorder of x or y),
with W repeated per image, because CuPy hands a 2-D W broadcast over a batch to cuBLAS
through pointer arrays (3 more launches) and a stack of matrices as one strided-batched GEMM.
(One image: a 2-D product.) Its weight gradient reorders x and gy and takes the one GEMM above.
"""
import numpy as np

from . import cpu, device

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
    "depthwise_forward", "depthwise_backward_input", "depthwise_backward_weight",
    "batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward", "add_relu", "relu_backward",
    "avg_pool2d_forward", "avg_pool2d_backward", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "bilinear_forward", "bilinear_backward", "cross_entropy_forward", "cross_entropy_backward",
    "upsample_cross_entropy_forward", "upsample_cross_entropy_backward",
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


def _into(op, like, shape, *args):
    """Backend op ``op`` of ``args`` into a new array ``shape`` of ``like``'s dtype and device,
    returned: the pattern of the ops below that fill one output."""
    K, xp = _on(like)
    out = xp.empty(shape, like.dtype)
    getattr(K, op)(*args, out)
    return out


def _conv_hw(hw, kernel, stride, padding, dilation):
    """(OH, OW) of a convolution or pooling window over ``hw`` (PyTorch's formula)."""
    return tuple((hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def _pointwise(kernel, stride, padding):
    return kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


# ----------------------------------------------------------------------------- convolution

def _matmul(xp, a, b, out, tf32):
    """``out = a @ b``; on the GPU in TF32 when ``tf32`` (float32; CuPy heeds it in 2-D products)."""
    if tf32 and xp is not np and out.dtype == np.float32:
        with device.tf32():
            return xp.matmul(a, b, out=out)
    return xp.matmul(a, b, out=out)


def _batch_inside(xp, a):
    """``a`` (N, C, H, W) copied as (C, N*H*W): the images side by side in each channel's row."""
    if a.shape[0] == 1:  # one image: NCHW is that order already
        return a.reshape(a.shape[1], -1)
    out = xp.empty((a.shape[1], a.shape[0], a.shape[2] * a.shape[3]), a.dtype)
    xp.copyto(out, a.reshape(a.shape[0], a.shape[1], -1).transpose(1, 0, 2))
    return out.reshape(a.shape[1], -1)


def _images(col, n):
    """The columns (K, N*P) as a stack of N (K, P) views, one per image (no copy)."""
    return col.reshape(col.shape[0], n, -1).transpose(1, 0, 2)


def _each_image(xp, w2, a, out, tf32):
    """``out[n] = w2 @ a[n]`` for stacks ``a``, ``out`` (N, ., P): for one image a 2-D product, else
    one strided-batched GEMM with ``w2`` repeated per image (CuPy copies the broadcast view)."""
    if len(a) == 1:
        return _matmul(xp, w2, a[0], out[0], tf32)
    return _matmul(xp, xp.broadcast_to(w2, (len(a), *w2.shape)), a, out, tf32)


def conv2d_forward(x, w, stride, padding, dilation, tf32=False):
    """``F.conv2d(x, w, None, stride, padding, dilation)`` (groups 1): ``(y, col)``, y (N, O, OH, OW)
    and the columns (C*KH*KW, N*OH*OW) for the backward (x itself for a 1x1 conv)."""
    K, xp = _on(x)
    (N, C, H, W), (O, _, KH, KW) = x.shape, w.shape
    OH, OW = _conv_hw((H, W), (KH, KW), stride, padding, dilation)
    y = xp.empty((N, O, OH, OW), x.dtype)
    if _pointwise((KH, KW), stride, padding):
        _each_image(xp, w.reshape(O, C), x.reshape(N, C, -1), y.reshape(N, O, -1), tf32)
        return y, x
    col = xp.empty((C * KH * KW, N, OH, OW), x.dtype)
    K.im2col(x, (KH, KW), stride, padding, dilation, col)
    col = col.reshape(C * KH * KW, -1)
    if xp is np:
        np.matmul(w.reshape(O, -1), _images(col, N), out=y.reshape(N, O, -1))
        return y, col
    y_ = y if N == 1 else xp.empty((O, N, OH * OW), x.dtype)  # one image: written in place
    _matmul(xp, w.reshape(O, -1), col, y_.reshape(O, -1), tf32)
    if N > 1:
        xp.copyto(y.reshape(N, O, -1), y_.transpose(1, 0, 2))
    return y, col


def conv2d_backward_input(gy, w, x_shape, stride, padding, dilation, tf32=False):
    """dL/dx of :func:`conv2d_forward` (shape ``x_shape``) from ``gy`` = dL/dy."""
    K, xp = _on(gy)
    (N, C, H, W), (O, _, KH, KW), (OH, OW) = x_shape, w.shape, gy.shape[2:]
    gx = xp.empty(x_shape, gy.dtype)
    w_t = w.reshape(O, -1).T
    if _pointwise((KH, KW), stride, padding):
        _each_image(xp, w_t, gy.reshape(N, O, -1), gx.reshape(N, C, -1), tf32)
        return gx
    gcol = xp.empty((C * KH * KW, N, OH, OW), gy.dtype)
    if xp is np:
        np.matmul(w_t, gy.reshape(N, O, -1), out=_images(gcol.reshape(C * KH * KW, -1), N))
    else:
        _matmul(xp, w_t, _batch_inside(xp, gy), gcol.reshape(C * KH * KW, -1), tf32)
    K.col2im(gcol, (KH, KW), stride, padding, dilation, gx)
    return gx


def conv2d_backward_weight(gy, col, w_shape, tf32=False):
    """dL/dw of :func:`conv2d_forward` (shape ``w_shape``) from ``gy`` = dL/dy and the ``col`` it
    returned (a 1x1 conv's x, reordered here)."""
    _, xp = _on(gy)
    (N, O), gw = gy.shape[:2], xp.empty(w_shape, gy.dtype)
    if xp is np:  # per image, then summed over the images in a fixed order
        cols = col.reshape(N, col.shape[1], -1) if col.ndim == 4 else _images(col, N)
        np.sum(np.matmul(gy.reshape(N, O, -1), cols.transpose(0, 2, 1)), axis=0, out=gw.reshape(O, -1))
        return gw
    col = _batch_inside(xp, col) if col.ndim == 4 else col
    _matmul(xp, _batch_inside(xp, gy), col.T, gw.reshape(O, -1), tf32)
    return gw


def depthwise_forward(x, w, stride, padding, dilation):
    """``F.conv2d(x, w, None, stride, padding, dilation, groups=C)``, w (C, 1, KH, KW)."""
    size = x.shape[:2] + _conv_hw(x.shape[2:], w.shape[2:], stride, padding, dilation)
    return _into("depthwise_forward", x, size, x, w, stride, padding, dilation)


def depthwise_backward_input(gy, w, x_shape, stride, padding, dilation):
    """dL/dx of :func:`depthwise_forward` (shape ``x_shape``)."""
    return _into("depthwise_backward_input", gy, x_shape, gy, w, stride, padding, dilation)


def depthwise_backward_weight(gy, x, w_shape, stride, padding, dilation):
    """dL/dw of :func:`depthwise_forward` (shape ``w_shape``)."""
    return _into("depthwise_backward_weight", gy, w_shape, gy, x, stride, padding, dilation)


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
    return _into("add_relu", a, a.shape, a, b)


def relu_backward(g, y):
    """The gradient of a ReLU whose output was ``y``: ``g`` where ``y > 0``, else 0, in one kernel."""
    return _into("relu_backward", g, g.shape, g, y)


# ----------------------------------------------------------------------------- pooling, resizing

def avg_pool2d_forward(x, kernel_size, stride, padding):
    """``F.avg_pool2d`` with its defaults (count_include_pad, floor): y (N, C, OH, OW)."""
    size = x.shape[:2] + _conv_hw(x.shape[2:], kernel_size, stride, padding, (1, 1))
    return _into("avg_pool2d_forward", x, size, x, kernel_size, stride, padding)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding):
    """dL/dx of :func:`avg_pool2d_forward` (shape ``x_shape``)."""
    return _into("avg_pool2d_backward", gy, x_shape, gy, kernel_size, stride, padding)


def adaptive_avg_pool2d_forward(x, output_size):
    """``F.adaptive_avg_pool2d``: bins ``floor(i*H/O) .. ceil((i+1)*H/O)``; y (N, C, *output_size)."""
    return _into("adaptive_avg_pool2d_forward", x, x.shape[:2] + tuple(output_size), x)


def adaptive_avg_pool2d_backward(gy, x_shape):
    """dL/dx of :func:`adaptive_avg_pool2d_forward` (shape ``x_shape``)."""
    return _into("adaptive_avg_pool2d_backward", gy, x_shape, gy)


def bilinear_forward(x, size, ratio, align_corners):
    """Bilinear resize of ``x`` to ``size``; ``ratio`` (rh, rw): source pixels per output pixel."""
    return _into("bilinear_forward", x, x.shape[:2] + tuple(size), x, ratio, align_corners)


def bilinear_backward(gy, x_shape, ratio, align_corners):
    """dL/dx of :func:`bilinear_forward` (shape ``x_shape``)."""
    return _into("bilinear_backward", gy, x_shape, gy, ratio, align_corners)


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
    return _into("cross_entropy_backward", prob, prob.shape, gloss, prob, target,
                 prob.reshape(-1) if weight is None else weight, weight is not None, ignore_index)


def upsample_cross_entropy_forward(x, target, weight, ignore_index, ratio, align_corners):
    """:func:`cross_entropy_forward` of the logits ``x`` resized bilinearly to the target's size,
    fused: ``(loss (N, OH, OW), lse)``, lse the log of each pixel's softmax denominator (what
    the backward needs besides ``x``); no full-resolution logits are ever stored."""
    K, xp = _on(x)
    loss, lse = xp.empty(target.shape, x.dtype), xp.empty(target.shape, x.dtype)
    K.upsample_cross_entropy_forward(x, target, x.reshape(-1) if weight is None else weight, weight is not None,
                                     ignore_index, ratio, align_corners, loss, lse)
    return loss, lse


def upsample_cross_entropy_backward(gloss, x, lse, target, weight, ignore_index, ratio, align_corners):
    """dL/dx of :func:`upsample_cross_entropy_forward`, a transposed bilinear in two separable
    passes (along the width, then the height; each backend keeps its own partial sums)."""
    return _into("upsample_cross_entropy_backward", x, x.shape, gloss, x, lse, target,
                 x.reshape(-1) if weight is None else weight, weight is not None, ignore_index, ratio, align_corners)


def dropout(x, p, seed, offset):
    """``x * mask``, the mask drawn from numbers ``offset+1, offset+2, ...`` of stream ``seed``.
    The backward of dropout is this same call on the gradient."""
    return _into("dropout", x, x.shape, x, p, np.uint64(seed), np.uint64(offset))  # the counters are 64-bit unsigned


def sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov):
    """One SGD step (PyTorch's rule) on the arrays ``params``, in place, in one kernel call;
    ``buffers``: the momentum buffers (updated in place; ignored when ``momentum`` is 0)."""
    K, _ = _on(params[0])
    K.sgd_step(params, grads, buffers if momentum else params, lr, momentum, weight_decay, nesterov)
