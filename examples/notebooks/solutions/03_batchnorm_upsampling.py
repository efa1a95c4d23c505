"""Solutions to the exercises of lecture 3 (examples/notebooks/03_batchnorm_upsampling.ipynb).

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``np``, ``F``, ``source_coordinate``) come from the notebook's earlier cells.
"""
# EXERCISE 3.1: the batch-norm backward
def batch_norm_backward_numpy(gy, xhat, invstd, gamma):
    """(gx, ggamma, gbeta) of training-mode batch norm, from the boxed formula."""
    M = gy.size // gy.shape[1]                      # values per channel: N * H * W
    gbeta = gy.sum(axis=(0, 2, 3))
    ggamma = (gy * xhat).sum(axis=(0, 2, 3))
    per_channel = (slice(None), None, None)         # (C,) -> (C, 1, 1), broadcast over (N, C, H, W)
    gx = gamma[per_channel] * invstd * (gy - gbeta[per_channel] / M - xhat * ggamma[per_channel] / M)
    return gx, ggamma, gbeta


# EXERCISE 3.2: fold batch norm into the convolution
def fold_batch_norm(conv, bn):
    """(weight, bias) NumPy arrays of one convolution equal to bn(conv(x)) in evaluation mode."""
    scale = bn.weight.numpy().astype(np.float64) / np.sqrt(bn.running_var.numpy().astype(np.float64) + bn.eps)
    bias = conv.bias.numpy().astype(np.float64) if conv.bias is not None else 0.0
    weight = conv.weight.numpy() * scale[:, None, None, None]
    return weight, (bias - bn.running_mean.numpy()) * scale + bn.bias.numpy()


# EXERCISE 3.3: bilinear downsampling versus average pooling
def avg_pool_numpy(x, k):
    """k x k average pooling, stride k, of x (N, C, H, W) with H and W multiples of k."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).mean(axis=(3, 5))


# k = 1 reads every pixel itself, k = 2 reads halfway between two pixels (weights 1/2, 1/2 on
# both axes); from k = 3 on, the sample at kd + (k - 1)/2 mixes at most 2 of the k pixels.
same_as_pooling = {1, 2}


# EXERCISE 3.4: the bilinear backward as a scatter
def bilinear_backward_numpy(gy, in_hw, align_corners):
    """dL/dx (N, C, H, W) of F.interpolate(x, size=gy.shape[2:], align_corners=...), given gy = dL/dy."""
    def axis(n_in, n_out):
        """Per output index: the two input indices it reads and their weights."""
        if align_corners and n_out == 1:
            u = np.zeros(1)
        else:
            u = np.maximum(source_coordinate(n_in, n_out, align_corners), 0.0)
        i0 = np.minimum(np.floor(u).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        lam = u - i0
        return i0, i1, 1 - lam, lam

    n, c, oh, ow = gy.shape
    h0, h1, lh0, lh1 = axis(in_hw[0], oh)
    w0, w1, lw0, lw1 = axis(in_hw[1], ow)
    gx = np.zeros((n, c) + tuple(in_hw))
    for p in range(oh):
        for q in range(ow):
            g = gy[:, :, p, q]                      # every (n, c) plane at once
            gx[:, :, h0[p], w0[q]] += lh0[p] * lw0[q] * g
            gx[:, :, h0[p], w1[q]] += lh0[p] * lw1[q] * g
            gx[:, :, h1[p], w0[q]] += lh1[p] * lw0[q] * g
            gx[:, :, h1[p], w1[q]] += lh1[p] * lw1[q] * g
    return gx
