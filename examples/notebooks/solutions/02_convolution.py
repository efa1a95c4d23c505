"""Solutions to the exercises of lecture 2 (02_convolution.ipynb), one section per exercise.

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``mts``, ``np``, ``F``, ``im2col``, ``out_size``) come from the notebook's
earlier cells.
"""
# EXERCISE 2.1: grouped convolution from slices and standard convolutions
class Slice(mts.Function):
    """t[..., start:stop, ...] along axis."""

    @staticmethod
    def forward(ctx, t, axis, start, stop):
        ctx.args = t.shape, axis, start, stop
        return np.take(t, np.arange(start, stop), axis=axis)    # a copy: contiguous

    @staticmethod
    def backward(ctx, g):
        shape, axis, start, stop = ctx.args
        gt = np.zeros(shape, g.dtype)           # the elements not taken get no gradient
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, stop)
        gt[tuple(index)] = g
        return gt, None, None, None


def grouped_conv2d(x, w, groups, padding=0):
    """F.conv2d(x, w, padding=padding, groups=groups), as one standard convolution per group."""
    cg, og = x.shape[1] // groups, w.shape[0] // groups
    return F.cat([F.conv2d(Slice.apply(x, 1, g * cg, (g + 1) * cg), Slice.apply(w, 0, g * og, (g + 1) * og),
                           padding=padding)
                  for g in range(groups)], dim=1)


# EXERCISE 2.2: the weight gradient as one matrix product per image
def conv2d_weight_grad(x, gy, KH, KW, s=1, p=0, d=1):
    """dL/dw, shape (O, C, KH, KW), of y = conv2d(x, w) from gy = dL/dy, using im2col."""
    N, O = gy.shape[:2]
    gw = sum(gy[n].reshape(O, -1) @ im2col(x[n], KH, KW, s, p, d)[0].T for n in range(N))
    return gw.reshape(O, x.shape[1], KH, KW)


# EXERCISE 2.3: col2im, the transpose of im2col
def col2im(col, C, H, W, KH, KW, s=1, p=0, d=1):
    """Add each entry of col (C*KH*KW, OH*OW) back into the pixel of the (C, H, W) image it came from."""
    OH, OW = out_size(H, KH, s, p, d), out_size(W, KW, s, p, d)
    col = col.reshape(C, KH, KW, OH, OW)
    padded = np.zeros((C, H + 2 * p, W + 2 * p))
    for kh in range(KH):
        for kw in range(KW):   # the slice im2col read this tap from; += because windows overlap
            padded[:, kh * d: kh * d + s * (OH - 1) + 1: s, kw * d: kw * d + s * (OW - 1) + 1: s] += col[:, kh, kw]
    return padded[:, p: p + H, p: p + W]       # what landed in the padding is dropped
