"""Hand-written kernels, one module per op family, the same names on both backends.

``kernels.cpu`` holds Numba kernels on NumPy arrays, ``kernels.cuda`` CUDA C kernels on
CuPy arrays (or the emulated GPU's: ``kernels.device`` decides which). Code above this package never picks a backend by a flag: it asks
:func:`backend_for` with the array it holds and calls the function of the same name there.

Every function takes C-contiguous float32 or float64 arrays (targets: uint8 or int64),
allocates and returns its outputs, and never modifies its inputs, except the running
statistics of ``batchnorm_forward_train`` and the parameters and momentum buffers of
``sgd_step``, which they update in place. Geometry arguments are tuples of two
Python ints ``(h, w)``. The launcher of each function validates; the kernels trust.

The shared API (both backends)::

    conv2d_forward(x, w, stride, padding, dilation) -> y                   # groups == 1, no bias
    conv2d_backward_input(gy, w, x_shape, stride, padding, dilation) -> gx
    conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation) -> gw
    depthwise_forward(x, w, stride, padding, dilation) -> y                # w: (C, 1, KH, KW)
    depthwise_backward_input(gy, w, x_shape, stride, padding, dilation) -> gx
    depthwise_backward_weight(gy, x, w_shape, stride, padding, dilation) -> gw
    batchnorm_forward_train(x, weight, bias, eps, running_mean, running_var, momentum, relu)
        -> (y, mean, invstd)                   # biased batch stats; running stats in place
    batchnorm_forward_eval(x, mean, var, weight, bias, eps, relu) -> y    # relu: BN + ReLU fused
    batchnorm_backward_train(gy, x, mean, invstd, weight, y) -> (gx, gweight, gbias)  # y: ReLU's
    batchnorm_backward_eval(gy, x, mean, var, weight, eps, y) -> (gx, gweight, gbias)
    avg_pool2d_forward(x, kernel_size, stride, padding) -> y              # count_include_pad
    avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding) -> gx
    adaptive_avg_pool2d_forward(x, output_size) -> y
    adaptive_avg_pool2d_backward(gy, x_shape) -> gx
    bilinear_forward(x, size, ratio, align_corners) -> y                  # ratio: source px per output px
    bilinear_backward(gy, x_shape, ratio, align_corners) -> gx
    cross_entropy_forward(logits, target, weight, ignore_index) -> (loss, prob)   # prob: softmax
    cross_entropy_backward(gloss, prob, target, weight, ignore_index) -> glogits
    dropout(x, p, seed, offset) -> x * mask          # counter-based random; backward: dropout(gy, ...)
    sgd_step(params, grads, buffers, lr, momentum, weight_decay, nesterov) -> None  # in place
"""
from . import cpu, device


def backend_for(array):
    """Return the kernel module (``kernels.cpu`` or ``kernels.cuda``) for where ``array`` lives."""
    if device.is_device_array(array):
        from . import cuda
        return cuda
    return cpu
