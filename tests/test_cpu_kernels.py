"""Parity of the CPU batch-norm, pooling, bilinear and cross-entropy kernels with PyTorch.

Every forward and every gradient is compared with ``torch.nn.functional`` + autograd,
in float64 (rtol 1e-10) and float32 (rtol 1e-4), on tiny odd-sized inputs.
"""
import numpy as np
import pytest

from kernels.cpu.batchnorm import (batchnorm_backward_eval, batchnorm_backward_train,
                                   batchnorm_forward_eval, batchnorm_forward_train)
from kernels.cpu.dropout import dropout, splitmix64
from kernels.cpu.loss import cross_entropy_backward, cross_entropy_forward
from kernels.cpu.pool import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                              avg_pool2d_backward, avg_pool2d_forward)
from kernels.cpu.upsample import bilinear_backward, bilinear_forward

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

    y, mean, invstd = batchnorm_forward_train(x, weight, bias, EPS, None, None, 0.1, False)
    gx, gweight, gbias = batchnorm_backward_train(gy, x, mean, invstd, weight, None)

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
    _, mean, invstd = batchnorm_forward_train(x, ones, ones, EPS, None, None, 0.1, False)
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

    y = batchnorm_forward_eval(x, mean, var, weight, bias, EPS, False)
    gx, gweight, gbias = batchnorm_backward_eval(gy, x, mean, var, weight, EPS, None)

    ref_y, (ref_gx, ref_gw, ref_gb) = torch_forward_backward(
        lambda x_, w_, b_: F.batch_norm(x_, torch.tensor(mean), torch.tensor(var), w_, b_,
                                        training=False, eps=EPS),
        (x, weight, bias), gy)
    close(y, ref_y, dtype)
    close(gx, ref_gx, dtype)
    close(gweight, ref_gw, dtype)
    close(gbias, ref_gb, dtype)


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

def _f32(*shape):
    return np.zeros(shape, np.float32)


VEC = _f32(3)
X = _f32(2, 3, 5, 7)
LOGITS = _f32(2, 5, 3, 4)
TARGET = np.zeros((2, 3, 4), np.int64)


def _target_with(value):
    t = TARGET.copy()
    t[1, 2, 3] = value
    return t


@pytest.mark.parametrize("call, error, match", [
    (lambda: batchnorm_forward_train(X.astype(np.int32), VEC, VEC, EPS, None, None, 0.1, False), TypeError,
     r"x: expected float32 or float64, got int32"),
    (lambda: batchnorm_forward_train(X, _f32(4), VEC, EPS, None, None, 0.1, False), ValueError,
     r"weight: expected shape \(3,\), got \(4,\)"),
    (lambda: batchnorm_forward_eval(X, VEC, VEC.astype(np.float64), VEC, VEC, EPS, False), TypeError,
     r"var: expected dtype float32"),
    (lambda: batchnorm_backward_train(_f32(2, 3, 5, 6), X, VEC, VEC, VEC, None), ValueError,
     r"gy: expected shape \(2, 3, 5, 7\), got \(2, 3, 5, 6\)"),
    (lambda: batchnorm_forward_train(X[:, :, :, ::2], VEC, VEC, EPS, None, None, 0.1, False), ValueError,
     r"x: expected a C-contiguous array"),
    (lambda: avg_pool2d_forward(_f32(3, 5, 7), (2, 2), (2, 2), (0, 0)), ValueError,
     r"x: expected 4 dimensions, got shape \(3, 5, 7\)"),
    (lambda: avg_pool2d_forward(X, (2, 2), (2, 2), (2, 0)), ValueError,
     r"padding: expected at most half of kernel_size"),
    (lambda: avg_pool2d_backward(_f32(2, 3, 3, 3), X.shape, (2, 2), (2, 2), (0, 0)), ValueError,
     r"gy: expected shape \(2, 3, 2, 3\), got \(2, 3, 3, 3\)"),
    (lambda: adaptive_avg_pool2d_forward(X, (0, 2)), ValueError,
     r"output_size: expected a pair of integers >= 1"),
    (lambda: adaptive_avg_pool2d_backward(_f32(2, 4, 2, 2), X.shape), ValueError,
     r"gy: expected shape \(2, 3, OH, OW\), got \(2, 4, 2, 2\)"),
    (lambda: bilinear_forward(X.astype(np.float16), (9, 9), (0.5, 0.5), False), TypeError,
     r"x: expected float32 or float64, got float16"),
    (lambda: bilinear_backward(_f32(2, 3, 9, 9), (2, 3, 5), (0.5, 0.5), False), ValueError,
     r"x_shape: expected 4 positive integers"),
    (lambda: cross_entropy_forward(LOGITS, _target_with(5), _f32(5), 255), ValueError,
     r"target: value 5 is outside \[0, 5\).*C = 5.*ignore_index=255"),
    (lambda: cross_entropy_forward(LOGITS, _target_with(-1), _f32(5), 255), ValueError,
     r"target: value -1 is outside \[0, 5\)"),
    (lambda: cross_entropy_backward(_f32(2, 3, 4), LOGITS, _target_with(9), _f32(5), 255), ValueError,
     r"target: value 9"),
    (lambda: cross_entropy_forward(LOGITS, TARGET.astype(np.int32), _f32(5), 255), TypeError,
     r"target: expected uint8 or int64 class indices, got int32"),
    (lambda: cross_entropy_forward(LOGITS, TARGET[:, :2], _f32(5), 255), ValueError,
     r"target: expected shape \(2, 3, 4\), got \(2, 2, 4\)"),
    (lambda: cross_entropy_forward(LOGITS, TARGET, _f32(4), 255), ValueError,
     r"weight: expected shape \(5,\), got \(4,\)"),
])
def test_launchers_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cross_entropy_accepts_ignore_index_outside_the_classes():
    loss, _ = cross_entropy_forward(LOGITS, _target_with(255), np.ones(5, np.float32), 255)
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
    with pytest.raises(ValueError, match=r"p: expected 0 <= p < 1, got 1.0"):
        dropout(ones, 1.0, 0, 0)
