"""Parity of the batch-norm, pooling, bilinear and cross-entropy ops on the CPU with PyTorch.

The ops of ``kernels.ops`` run here on NumPy arrays, i.e. on the Numba kernels of
``kernels.cpu``. Every forward and every gradient is compared with ``torch.nn.functional``
+ autograd, in float64 (rtol 1e-10) and float32 (rtol 1e-4), on tiny odd-sized inputs.
The argument checks live one layer up, in ``minitorch_seg.functional``: tested at the end.
"""
import numpy as np
import pytest

import minitorch_seg as mts
from kernels.cpu.dropout import splitmix64
from kernels.ops import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward, avg_pool2d_backward,
                         avg_pool2d_forward, add_relu, batchnorm_backward, batchnorm_forward_eval,
                         batchnorm_forward_train, relu_backward, bilinear_backward, bilinear_forward,
                         cross_entropy_backward, cross_entropy_forward, dropout)

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}
EPS = 1e-5


def randn(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def close(ours, ref, dtype):
    """Assert ``ours`` has ``dtype`` and matches ``ref`` (array or tensor) at its tolerance."""
    if isinstance(ref, torch.Tensor):
        ref = ref.detach().numpy()
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, **TOL[dtype])


def torch_forward_backward(fn, arrays, gy):
    """Run ``fn`` on leaf tensors made from ``arrays``; return its output and their gradients."""
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    out.backward(torch.tensor(gy))
    return out, [t.grad for t in leaves]


# ---------------------------------------------------------------------------- batch norm

@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_train_matches_torch(dtype):
    rng = np.random.default_rng(0)
    x = randn(rng, (2, 3, 5, 7), dtype, scale=2.0, shift=3.0)
    weight, bias = randn(rng, 3, dtype), randn(rng, 3, dtype)
    gy = randn(rng, x.shape, dtype)

    y, stats = batchnorm_forward_train(x, weight, bias, EPS, None, None, 0.1, False)
    gx, gweight, gbias = batchnorm_backward(gy, x, stats, False, True)
    mean, invstd = stats[:2]

    ref_y, (ref_gx, ref_gw, ref_gb) = torch_forward_backward(
        lambda x_, w_, b_: F.batch_norm(x_, None, None, w_, b_, training=True, eps=EPS),
        (x, weight, bias), gy)
    var, ref_mean = torch.var_mean(torch.tensor(x), dim=(0, 2, 3), unbiased=False)
    close(y, ref_y, dtype)
    close(mean, ref_mean, dtype)
    close(invstd, 1 / torch.sqrt(var + EPS), dtype)
    close(gx, ref_gx, dtype)
    close(gweight, ref_gw, dtype)
    close(gbias, ref_gb, dtype)


def test_batchnorm_float32_statistics_survive_a_large_mean():
    # E[x^2] - E[x]^2 or a float32 running sum would lose most digits of this variance.
    rng = np.random.default_rng(1)
    x = randn(rng, (2, 2, 64, 64), np.float32, scale=0.1, shift=1000.0)
    ones = np.ones(2, np.float32)
    mean, invstd = batchnorm_forward_train(x, ones, ones, EPS, None, None, 0.1, False)[1][:2]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + EPS), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_eval_matches_torch(dtype):
    rng = np.random.default_rng(2)
    x = randn(rng, (2, 3, 5, 7), dtype, scale=2.0, shift=1.0)
    mean, var = randn(rng, 3, dtype), rng.uniform(0.5, 2.0, 3).astype(dtype)
    weight, bias = randn(rng, 3, dtype), randn(rng, 3, dtype)
    gy = randn(rng, x.shape, dtype)

    y, stats = batchnorm_forward_eval(x, mean, var, weight, bias, EPS, False)
    gx, gweight, gbias = batchnorm_backward(gy, x, stats, False, False)

    ref_y, (ref_gx, ref_gw, ref_gb) = torch_forward_backward(
        lambda x_, w_, b_: F.batch_norm(x_, torch.tensor(mean), torch.tensor(var), w_, b_,
                                        training=False, eps=EPS),
        (x, weight, bias), gy)
    close(y, ref_y, dtype)
    close(gx, ref_gx, dtype)
    close(gweight, ref_gw, dtype)
    close(gbias, ref_gb, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_relu_and_relu_backward_match_torch(dtype):
    rng = np.random.default_rng(3)
    a, b, gy = (randn(rng, (2, 3, 5, 7), dtype) for _ in range(3))
    y = add_relu(a, b)
    ref_y, (ref_ga, ref_gb) = torch_forward_backward(lambda a_, b_: F.relu(a_ + b_), (a, b), gy)
    assert (y == 0).mean() > 0.2
    close(y, ref_y, dtype)
    close(relu_backward(gy, y), ref_ga, dtype)


# ---------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding", [
    ((2, 2), (2, 2), (0, 0)), ((2, 2), (1, 1), (1, 1)), ((3, 3), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (0, 0)), ((2, 3), (1, 2), (1, 0)),
])
def test_avg_pool2d_matches_torch(dtype, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = randn(rng, (2, 3, 7, 9), dtype)
    y = avg_pool2d_forward(x, kernel, stride, padding)
    gy = randn(rng, y.shape, dtype)
    gx = avg_pool2d_backward(gy, x.shape, kernel, stride, padding)

    ref_y, (ref_gx,) = torch_forward_backward(
        lambda x_: F.avg_pool2d(x_, kernel, stride, padding), (x,), gy)
    close(y, ref_y, dtype)
    close(gx, ref_gx, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (5, 13)])
@pytest.mark.parametrize("out", [1, 2, 3, 6])
def test_adaptive_avg_pool2d_matches_torch(dtype, hw, out):
    rng = np.random.default_rng(4)
    x = randn(rng, (2, 3) + hw, dtype)
    y = adaptive_avg_pool2d_forward(x, (out, out))
    gy = randn(rng, y.shape, dtype)
    gx = adaptive_avg_pool2d_backward(gy, x.shape)

    ref_y, (ref_gx,) = torch_forward_backward(lambda x_: F.adaptive_avg_pool2d(x_, out), (x,), gy)
    close(y, ref_y, dtype)
    close(gx, ref_gx, dtype)


# ---------------------------------------------------------------------------- bilinear

def torch_ratio(in_hw, out_hw, align_corners, scale_factor=None):
    """Source pixels per output pixel, by PyTorch's ``area_pixel_compute_scale``."""
    if align_corners:
        return tuple((i - 1) / (o - 1) if o > 1 else 0.0 for i, o in zip(in_hw, out_hw))
    if scale_factor is not None:
        return tuple(1.0 / s for s in scale_factor)
    return tuple(i / o for i, o in zip(in_hw, out_hw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw, size, scale_factor", [
    ((5, 7), (9, 13), None),          # up, odd, non-square
    ((9, 13), (4, 6), None),          # down
    ((6, 5), (6, 11), None),          # one axis unchanged (PyTorch copies it)
    ((5, 7), (1, 4), None),           # a single output row
    ((5, 7), None, (1.7, 2.3)),       # ratio from a scale factor: 1/scale, not in/out
    ((4, 5), None, (2.5, 1.1)),       # scale 1.1 keeps width 5: copied despite ratio 1/1.1
])
def test_bilinear_matches_torch(dtype, align_corners, in_hw, size, scale_factor):
    rng = np.random.default_rng(5)
    x = randn(rng, (2, 3) + in_hw, dtype)
    kwargs = dict(mode="bilinear", align_corners=align_corners)
    if scale_factor is None:
        kwargs["size"] = size
    else:
        kwargs["scale_factor"] = scale_factor
    ref = F.interpolate(torch.tensor(x), **kwargs)
    out_hw = tuple(ref.shape[2:])
    ratio = torch_ratio(in_hw, out_hw, align_corners, scale_factor)

    y = bilinear_forward(x, out_hw, ratio, align_corners)
    gy = randn(rng, y.shape, dtype)
    gx = bilinear_backward(gy, x.shape, ratio, align_corners)

    ref_y, (ref_gx,) = torch_forward_backward(lambda x_: F.interpolate(x_, **kwargs), (x,), gy)
    close(y, ref_y, dtype)
    close(gx, ref_gx, dtype)


# ---------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore_index", [255, -100])
@pytest.mark.parametrize("logit_scale", [1.0, 60.0])  # 60: exp overflows without the max shift
def test_cross_entropy_matches_torch(dtype, ignore_index, logit_scale):
    rng = np.random.default_rng(6)
    N, C, H, W = 2, 5, 3, 7
    logits = randn(rng, (N, C, H, W), dtype, scale=logit_scale)
    target = rng.integers(0, C, (N, H, W))
    target[rng.random((N, H, W)) < 0.25] = ignore_index
    assert (target == ignore_index).any() and (target != ignore_index).any()
    weight = rng.uniform(0.5, 2.0, C).astype(dtype)
    gloss = randn(rng, (N, H, W), dtype)

    loss, prob = cross_entropy_forward(logits, target, weight, ignore_index)
    glogits = cross_entropy_backward(gloss, prob, target, weight, ignore_index)

    ref_loss, (ref_g,) = torch_forward_backward(
        lambda z: F.cross_entropy(z, torch.tensor(target), weight=torch.tensor(weight),
                                  ignore_index=ignore_index, reduction="none"),
        (logits,), gloss)
    kept = target != ignore_index
    close(loss, ref_loss, dtype)
    close(prob, F.softmax(torch.tensor(logits), dim=1), dtype)
    close(glogits, ref_g, dtype)
    assert not glogits.transpose(0, 2, 3, 1)[~kept].any()
    # No weight is weight 1; a 0-d gloss is that gradient at every pixel.
    np.testing.assert_array_equal(cross_entropy_forward(logits, target, None, ignore_index)[0],
                                  cross_entropy_forward(logits, target, np.ones(C, dtype), ignore_index)[0])
    np.testing.assert_array_equal(
        cross_entropy_backward(np.asarray(0.3, dtype), prob, target, weight, ignore_index),
        cross_entropy_backward(np.full((N, H, W), 0.3, dtype), prob, target, weight, ignore_index))


# ---------------------------------------------------------------------------- validation

def _t(*shape, dtype=np.float32):
    return mts.Tensor(np.zeros(shape, dtype))


X = _t(2, 3, 5, 7)
LOGITS = _t(2, 5, 3, 4)
TARGET = np.zeros((2, 3, 4), np.int64)


def _target_with(value):
    t = TARGET.copy()
    t[1, 2, 3] = value
    return t


mF = mts.functional


@pytest.mark.parametrize("call, error, match", [
    (lambda: mF.batch_norm(_t(2, 3, 5, 7, dtype=np.int32), None, None, training=True), TypeError,
     r"batch_norm: input: expected a float32 or float64 tensor, got int32"),
    (lambda: mF.batch_norm(X, None, None, _t(4), _t(3), training=True), ValueError,
     r"batch_norm: weight: expected shape \(3,\), got \(4,\)"),
    (lambda: mF.batch_norm(X, _t(3), _t(3, dtype=np.float64)), TypeError,
     r"batch_norm: running_var: expected dtype float32 \(like input\), got float64"),
    (lambda: mF.batch_norm(X, mts.Tensor(np.zeros(6, np.float32)[::2]), _t(3), training=True), ValueError,
     r"batch_norm: running_mean: expected a contiguous tensor"),
    (lambda: mF.avg_pool2d(_t(3, 5, 7), 2), ValueError,
     r"avg_pool2d: input: expected a 4-D tensor \(N, C, H, W\), got shape \(3, 5, 7\)"),
    (lambda: mF.avg_pool2d(X, 2, 2, (2, 0)), ValueError, r"avg_pool2d: padding: expected at most half"),
    (lambda: mF.adaptive_avg_pool2d(X, (0, 2)), ValueError, r"adaptive_avg_pool2d: output_size: expected values >= 1"),
    (lambda: mF.interpolate(_t(2, 3, 5, 7, dtype=np.float16), size=9), TypeError,
     r"interpolate: input: expected a float32 or float64 tensor, got float16"),
    (lambda: mF.cross_entropy(LOGITS, _target_with(5)), ValueError,
     r"target: pixel \(1, 2, 3\) holds 5, a value outside \[0, 5\).*C = 5.*ignore_index=255"),
    (lambda: mF.cross_entropy(LOGITS, _target_with(-1)), ValueError, r"target: pixel \(1, 2, 3\) holds -1"),
    (lambda: mF.cross_entropy(LOGITS, TARGET[:, :2]), ValueError,
     r"cross_entropy: target: expected shape \(2, 3, 4\) for input \(2, 5, 3, 4\), got \(2, 2, 4\)"),
    (lambda: mF.cross_entropy(LOGITS, TARGET, weight=_t(4)), ValueError,
     r"cross_entropy: weight: expected shape \(5,\), got \(4,\)"),
    (lambda: mF.dropout(X, 1.0), ValueError, r"dropout: p: expected 0 <= p < 1, got 1.0"),
])
def test_functional_rejects_bad_arguments(call, error, match):
    """minitorch_seg.functional is the one layer that checks: each error names the op and the argument."""
    with pytest.raises(error, match=match):
        call()


def test_non_contiguous_inputs_give_the_contiguous_results():
    """The ops read C-contiguous arrays; the functional layer makes a view contiguous first."""
    rng = np.random.default_rng(3)
    wide = randn(rng, (2, 3, 6, 14), np.float64)
    view, copy = mts.Tensor(wide[:, :, :, ::2]), mts.Tensor(np.ascontiguousarray(wide[:, :, :, ::2]))
    for op in (lambda t: mF.avg_pool2d(t, 2), lambda t: mF.interpolate(t, size=(9, 4)),
               lambda t: mF.batch_norm(t, None, None, training=True)):
        np.testing.assert_array_equal(op(view).data, op(copy).data)
    # The gradient of a sum reaches the op as a broadcast view (every stride 0).
    leaf = mts.Tensor(copy.data, requires_grad=True)
    mF.avg_pool2d(leaf, 2).sum().backward()
    np.testing.assert_allclose(leaf.grad.data[:, :, :6:, :6], 0.25)


def test_cross_entropy_accepts_ignore_index_outside_the_classes():
    loss, _ = cross_entropy_forward(LOGITS.data, _target_with(255), np.ones(5, np.float32), 255)
    assert loss[1, 2, 3] == 0 and loss[0, 0, 0] == pytest.approx(np.log(5), rel=1e-6)


def test_splitmix64_equals_the_reference_algorithm_in_python_integers():
    # Vigna's splitmix64.c, written with Python's unbounded ints and explicit mod 2**64.
    def reference(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        return z ^ (z >> 31)
    for z in (0, 1, 0x9E3779B97F4A7C15, 2**64 - 1, 1234567 * 0x9E3779B97F4A7C15 % 2**64):
        assert int(splitmix64(np.uint64(z))) == reference(z)


def test_dropout_is_a_counter_based_stream():
    p, scale = 0.3, np.float32(1 / 0.7)
    ones = np.ones((4, 50, 60), np.float32)
    whole = dropout(ones, p, seed=7, offset=1000)  # on ones: the mask itself
    assert set(np.unique(whole)) == {0.0, scale}
    assert abs((whole == 0).mean() - p) < 0.01
    # Element i is number offset+i+1 of the stream: a mask drawn in two parts equals one drawn whole.
    head = dropout(ones.reshape(-1)[:5000], p, seed=7, offset=1000)
    tail = dropout(ones.reshape(-1)[5000:], p, seed=7, offset=6000)
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole.reshape(-1))
    assert not np.array_equal(dropout(ones.reshape(-1)[:5000], p, seed=8, offset=1000), head)
    x = np.random.default_rng(0).standard_normal(ones.shape)  # float64 draws the same mask
    np.testing.assert_allclose(dropout(x, p, 7, 1000), x * whole, rtol=1e-6)
