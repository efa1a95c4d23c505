"""The convolution ops (dense conv2d and depthwise) on the CPU against PyTorch, plus their checks
(which live in ``minitorch_seg.functional``)."""
import itertools

import numpy as np
import pytest

import minitorch_seg as mts
from kernels.ops import (conv2d_backward_input, conv2d_backward_weight, conv2d_forward, depthwise_backward_input,
                         depthwise_backward_weight, depthwise_forward)

torch = pytest.importorskip("torch")

TOL = {np.float64: 1e-10, np.float32: 1e-4}

# (kernel, stride, padding, dilation): every combination on a 9x11 input (odd, non-square),
# so each fits, plus asymmetric ones where the two axes differ.
GEOMETRIES = [
    ((kh, kw), (s, s), (p, p), (d, d))
    for (kh, kw), s, p, d in itertools.product([(1, 1), (3, 3), (2, 3)], [1, 2], [0, 1, 2], [1, 2, 4])
] + [
    ((3, 2), (2, 1), (1, 0), (1, 2)),
    ((1, 3), (1, 2), (0, 2), (4, 1)),
    ((3, 3), (1, 2), (2, 1), (2, 1)),
]
GEOMETRIES = [pytest.param(g, id="k{}x{}-s{}{}-p{}{}-d{}{}".format(*sum(g, ()))) for g in GEOMETRIES]

OPS = {
    "conv2d": (conv2d_forward, conv2d_backward_input,
               lambda gy, col, w_shape, *geometry: conv2d_backward_weight(gy, col, w_shape)),
    "depthwise": (depthwise_forward, depthwise_backward_input, depthwise_backward_weight),
}


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    """The oracle's convolutions are tiny: torch's thread pool would only contend with Numba's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _case(op, n, c, h, w, kernel, dtype, seed=0):
    """Random x, w and an upstream gradient gy of the right shape for ``op``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    w_shape = (c, 1, *kernel) if op == "depthwise" else (c + 1, c, *kernel)
    weight = rng.standard_normal(w_shape).astype(dtype)
    return rng, x, weight


def _torch_reference(op, x, w, rng, stride, padding, dilation):
    """A random upstream gradient gy, and y, dL/dx, dL/dw for it from torch autograd in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    groups = x.shape[1] if op == "depthwise" else 1
    y = torch.nn.functional.conv2d(xt, wt, None, stride, padding, dilation, groups)
    gy = rng.standard_normal(tuple(y.shape)).astype(x.dtype)
    y.backward(torch.tensor(gy, dtype=torch.float64))
    return gy, y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


def _assert_close(ours, ref, dtype):
    assert ours.dtype == dtype
    assert ours.shape == ref.shape
    tol = TOL[dtype]
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


def _check_op(op, n, c, h, w, geometry, dtype):
    kernel, stride, padding, dilation = geometry
    forward, backward_input, backward_weight = OPS[op]
    rng, x, weight = _case(op, n, c, h, w, kernel, dtype)
    gy, y_ref, gx_ref, gw_ref = _torch_reference(op, x, weight, rng, stride, padding, dilation)
    x_before, w_before, gy_before = x.copy(), weight.copy(), gy.copy()

    y = forward(x, weight, stride, padding, dilation)
    y, col = y if op == "conv2d" else (y, x)  # conv2d's weight gradient reads the columns it kept
    _assert_close(y, y_ref, dtype)
    _assert_close(backward_input(gy, weight, x.shape, stride, padding, dilation), gx_ref, dtype)
    _assert_close(backward_weight(gy, col, weight.shape, stride, padding, dilation), gw_ref, dtype)
    for before, after in [(x_before, x), (w_before, weight), (gy_before, gy)]:
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("op", sorted(OPS))
def test_matches_torch_float64(op, geometry):
    """Forward, backward-input and backward-weight on a 2x3x9x11 input, every geometry."""
    _check_op(op, 2, 3, 9, 11, geometry, np.float64)


@pytest.mark.parametrize("geometry", GEOMETRIES[:-3:7] + GEOMETRIES[-3:])
@pytest.mark.parametrize("op", sorted(OPS))
def test_matches_torch_float32(op, geometry):
    """The float32 specializations on a spread of geometries (the float64 test covers them all)."""
    _check_op(op, 2, 3, 9, 11, geometry, np.float32)


@pytest.mark.parametrize("geometry", [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (2, 2)),
                                      ((1, 1), (1, 1), (0, 0), (1, 1)), ((5, 3), (2, 1), (2, 1), (1, 3))])
@pytest.mark.parametrize("op", sorted(OPS))
def test_matches_torch_wide_rows_float32(op, geometry):
    """Rows long enough for the vectorized inner loops (and their remainders) to run."""
    _check_op(op, 2, 5, 20, 37, geometry, np.float32)


@pytest.mark.parametrize("op", sorted(OPS))
def test_single_image_single_channel(op):
    _check_op(op, 1, 1, 7, 9, ((3, 3), (2, 2), (1, 1), (1, 1)), np.float64)


# ----------------------------------------------------------------------------- checks

def test_conv2d_rejects_what_the_kernels_cannot_take():
    F = mts.functional
    x, w = mts.Tensor(np.zeros((2, 3, 8, 8), np.float32)), mts.Tensor(np.zeros((4, 3, 3, 3), np.float32))
    with pytest.raises(TypeError, match="conv2d: input: expected a float32 or float64 tensor, got int64"):
        F.conv2d(mts.Tensor(np.zeros((2, 3, 8, 8), np.int64)), w)
    with pytest.raises(ValueError, match="conv2d: input: height 8 .padded 8. is smaller than the dilated kernel 11"):
        F.conv2d(x, w, dilation=5)
    with pytest.raises(ValueError, match="conv2d: dilation: expected an int or a pair of ints"):
        F.conv2d(x, w, dilation=(1, 1, 1))


@pytest.mark.parametrize("groups", [1, 3])
def test_conv2d_of_views_equals_conv2d_of_copies(groups):
    """The functional layer hands the kernels contiguous arrays, whatever the tensors hold."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 16))[..., ::2]
    w = rng.standard_normal((3, 3 // groups, 3, 6))[..., ::2]
    F = mts.functional
    got = F.conv2d(mts.Tensor(x), mts.Tensor(w), padding=1, groups=groups).data
    want = F.conv2d(mts.Tensor(x.copy()), mts.Tensor(w.copy()), padding=1, groups=groups).data
    np.testing.assert_array_equal(got, want)
