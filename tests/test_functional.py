"""Every functional op: float64 finite-difference gradient checks, parity with torch, bad input.

Gradient checks run in float64 on tiny shapes, perturb every element of every input, and keep
the inputs away from ReLU kinks and pooling ties by construction (continuous random values).
They run on both devices (``device_name``): the CPU kernels and the CUDA ones, on a GPU or
emulated.
"""
import numpy as np
import pytest

import minitorch_seg as mts
import minitorch_seg.functional as F


def rand(*shape, seed=0, grad=True, dtype=np.float64, device="cpu"):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return mts.tensor(data, requires_grad=grad, device=device)


# --- gradient checks ------------------------------------------------------------------------
CONV_CASES = [  # (N, C, O, H, W, kh, kw, stride, padding, dilation)
    (1, 3, 4, 5, 5, 3, 3, 1, 0, 1),
    (2, 2, 3, 7, 6, 3, 3, 2, 1, 1),
    (1, 3, 2, 9, 8, 3, 2, 1, 2, 2),
    (1, 2, 2, 9, 9, 3, 3, 1, 4, 4),
    (2, 4, 3, 5, 7, 1, 1, 1, 0, 1),
    (1, 4, 2, 6, 5, 1, 1, 2, 0, 1),
    (1, 2, 3, 8, 7, 2, 3, (2, 1), (1, 0), (1, 2)),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_gradcheck(case, bias, device_name):
    n, c, o, h, w, kh, kw, s, p, d = case
    x, wt = rand(n, c, h, w, seed=1, device=device_name), rand(o, c, kh, kw, seed=2, device=device_name)
    b = rand(o, seed=3, device=device_name) if bias else None
    assert mts.gradcheck(lambda x, wt, b: F.conv2d(x, wt, b, s, p, d), [x, wt, b])


DW_CASES = [  # (N, C, H, W, k, stride, padding, dilation)
    (1, 3, 5, 5, 3, 1, 1, 1), (2, 2, 7, 6, 3, 2, 1, 1), (1, 2, 9, 9, 3, 1, 4, 4),
    (1, 3, 8, 7, 3, 2, 2, 2), (2, 2, 6, 9, 5, 1, 0, 1), (1, 4, 9, 8, 3, 2, 0, 3),
]


@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_conv2d_gradcheck(case, device_name):
    n, c, h, w, k, s, p, d = case
    x, wt, b = (rand(n, c, h, w, seed=1, device=device_name), rand(c, 1, k, k, seed=2, device=device_name),
                rand(c, seed=3, device=device_name))
    assert mts.gradcheck(lambda x, wt, b: F.conv2d(x, wt, b, s, p, d, groups=c), [x, wt, b])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 3, 3), (2, 4, 1, 7)])
def test_batch_norm_gradcheck(training, shape, device_name):
    x, w, b = (rand(*shape, seed=i, device=device_name) for i, shape in enumerate([shape, shape[1:2], shape[1:2]], 1))
    rm = mts.tensor(np.random.default_rng(4).standard_normal(shape[1]), device=device_name)
    rv = mts.tensor(np.random.default_rng(5).uniform(0.5, 2.0, shape[1]), device=device_name)
    assert mts.gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training), [x, w, b])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_gradcheck_and_equals_relu_of_batch_norm(training, device_name):
    shape = (2, 3, 4, 5)
    x, w, b = (rand(*s, seed=i, device=device_name) for i, s in enumerate([shape, shape[1:2], shape[1:2]], 1))
    stats = [mts.tensor(np.random.default_rng(4).standard_normal(3), device=device_name),
             mts.tensor(np.random.default_rng(5).uniform(0.5, 2.0, 3), device=device_name)]
    assert mts.gradcheck(lambda x, w, b: F.batch_norm_relu(x, *stats, w, b, training), [x, w, b])
    fused = F.batch_norm_relu(x, *stats, w, b, training)
    separate = F.relu(F.batch_norm(x, *stats, w, b, training))
    np.testing.assert_allclose(fused.numpy(), separate.numpy(), rtol=1e-12, atol=1e-12)
    assert (fused.numpy() == 0).mean() > 0.2


def test_eval_batch_norm_backward_uses_the_statistics_of_its_forward(device_name):
    """The eval forward keeps a snapshot of the running statistics: a training forward that
    moves them in place before the backward (fine-tuning with frozen layers) changes no gradient."""
    x, w, b, gy = (rand(*s, seed=i, device=device_name) for i, s in enumerate([(2, 3, 4, 5), (3,), (3,), (2, 3, 4, 5)]))
    stats = [mts.tensor(np.zeros(3), device=device_name), mts.tensor(np.ones(3), device=device_name)]
    grads = []
    for move in (False, True):
        x.grad = w.grad = b.grad = None
        y = F.batch_norm_relu(x, *stats, w, b, training=False)
        if move:
            F.batch_norm(x * 3 + 1, *stats, w, b, training=True)
        y.backward(gy.data)
        grads.append([t.grad for t in (x, w, b)])
    assert not np.allclose(stats[0].numpy(), 0)  # the training forward did move them
    for before, after in zip(*grads):
        np.testing.assert_array_equal(after.numpy(), before.numpy())


def test_add_relu_gradcheck_and_equals_relu_of_sum(device_name):
    a, b = rand(2, 3, 4, 5, seed=1, device=device_name), rand(2, 3, 4, 5, seed=2, device=device_name)
    total = (a + b).data
    a.data += mts.device.xp_of(total).sign(total) * 0.1  # no sum within eps of the kink
    assert mts.gradcheck(F.add_relu, [a, b])
    fused, separate = F.add_relu(a, b), F.relu(a + b)
    np.testing.assert_array_equal(fused.numpy(), separate.numpy())
    assert (fused.numpy() == 0).mean() > 0.2


def test_relu_softmax_log_softmax_dropout_cat_gradcheck(device_name):
    x = rand(2, 3, 4, 5, device=device_name)
    x.data += mts.device.xp_of(x.data).sign(x.data) * 0.1  # no element within eps of the kink
    assert mts.gradcheck(F.relu, [x])
    for dim in (0, 1, -1):
        assert mts.gradcheck(lambda t: F.softmax(t, dim), [x])
        assert mts.gradcheck(lambda t: F.log_softmax(t, dim), [x])
    state = mts.get_rng_state()

    def drop(t):
        mts.set_rng_state(state)  # the same mask on every call
        return F.dropout(t, 0.3, True)
    assert mts.gradcheck(drop, [x])
    y = rand(2, 2, 4, 5, seed=7, device=device_name)
    assert mts.gradcheck(lambda a, b: F.cat([a, b, a], dim=1), [x, y])


POOL_CASES = [  # (N, C, H, W, kernel, stride, padding)
    (1, 2, 5, 5, 2, 2, 0), (2, 1, 7, 6, 3, 2, 1), (1, 2, 6, 9, 3, 1, 1), (1, 1, 9, 7, (3, 2), (1, 2), (1, 0)),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool2d_gradcheck(case, device_name):
    n, c, h, w, k, s, p = case
    assert mts.gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [rand(n, c, h, w, device=device_name)])


@pytest.mark.parametrize("size,out", [((7, 9), 1), ((7, 9), 2), ((8, 8), 3), ((5, 13), 6), ((6, 7), (4, 3))])
def test_adaptive_avg_pool2d_gradcheck(size, out, device_name):
    assert mts.gradcheck(lambda t: F.adaptive_avg_pool2d(t, out), [rand(2, 2, *size, device=device_name)])


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size,target", [((3, 4), (7, 9)), ((5, 5), (3, 2)), ((4, 3), (4, 3)), ((2, 5), (8, 1))])
def test_interpolate_gradcheck(align_corners, size, target, device_name):
    x = rand(2, 2, *size, device=device_name)
    assert mts.gradcheck(lambda t: F.interpolate(t, size=target, align_corners=align_corners), [x])
    assert mts.gradcheck(lambda t: F.interpolate(t, scale_factor=2.5, align_corners=align_corners), [x])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(weighted, reduction, device_name):
    rng = np.random.default_rng(0)
    logits = rand(2, 4, 3, 5, seed=1, device=device_name)
    target = rng.integers(0, 4, (2, 3, 5))
    target[0, 1, :3] = 255  # ignored pixels present
    target = mts.tensor(target, device=device_name)
    w = mts.tensor(rng.uniform(0.5, 2.0, 4), device=device_name) if weighted else None
    assert mts.gradcheck(lambda t: F.cross_entropy(t, target, w, reduction=reduction), [logits])
    flat, flat_target = rand(5, 4, seed=2, device=device_name), mts.tensor(rng.integers(0, 4, 5), device=device_name)
    assert mts.gradcheck(lambda t: F.cross_entropy(t, flat_target, w), [flat])


HEAD_CASES = [((5, 7), (33, 50)), ((3, 4), (9, 8)), ((4, 3), (4, 3)), ((5, 6), (2, 3))]  # up, odd, same, down


def head_case(size, target_size, weighted, device_name, seed=0):
    """Low-resolution logits (2, 4, *size), an int64 target (2, *target_size) with ignored
    pixels, and class weights or None, on ``device_name``."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 4, (2, *target_size))
    target[0, :2] = 255
    w = mts.tensor(rng.uniform(0.5, 2.0, 4), device=device_name) if weighted else None
    return rand(2, 4, *size, seed=seed + 1, device=device_name), mts.tensor(target, device=device_name), w


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size,target_size", HEAD_CASES)
@pytest.mark.parametrize("weighted, reduction", [(False, "mean"), (True, "mean"), (True, "sum"), (True, "none")])
def test_upsample_cross_entropy_gradcheck(align_corners, size, target_size, weighted, reduction, device_name):
    x, target, w = head_case(size, target_size, weighted, device_name)
    assert mts.gradcheck(lambda t: F.upsample_cross_entropy(t, target, align_corners, w, reduction=reduction), [x])


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size,target_size", HEAD_CASES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_upsample_cross_entropy_is_interpolate_then_cross_entropy(align_corners, size, target_size, reduction,
                                                                  device_name):
    """The fused op against the composition it replaces, loss and gradient, in float64."""
    x, target, w = head_case(size, target_size, True, device_name)
    x2 = mts.tensor(x.numpy(), requires_grad=True, device=device_name)
    fused = F.upsample_cross_entropy(x, target, align_corners, w, reduction=reduction)
    plain = F.cross_entropy(F.interpolate(x2, size=target_size, align_corners=align_corners), target, w,
                            reduction=reduction)
    np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    g = mts.tensor(np.random.default_rng(5).standard_normal(fused.shape), device=device_name)
    (fused * g).sum().backward()
    (plain * g).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-10, atol=1e-12)


# --- parity with torch (float64) ------------------------------------------------------------
def _torch_pair(t):
    torch = pytest.importorskip("torch")
    return torch.tensor(t.numpy(), requires_grad=True)


def _assert_close(ours, theirs, rtol=1e-6):
    theirs = theirs.detach().numpy()
    scale = max(np.abs(theirs).max(), 1e-12)
    assert np.abs(ours - theirs).max() <= rtol * scale


def _check_parity(our_fn, torch_fn, inputs):
    torch = pytest.importorskip("torch")
    tins = [_torch_pair(t) for t in inputs]
    y, ty = our_fn(*inputs), torch_fn(*tins)
    _assert_close(y.numpy(), ty)
    g = np.random.default_rng(9).standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.tensor(g))
    for t, tt in zip(inputs, tins):
        _assert_close(t.grad.numpy(), tt.grad)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch(case):
    tF = pytest.importorskip("torch.nn.functional")
    n, c, o, h, w, kh, kw, s, p, d = case
    ins = [rand(n, c, h + 4, w + 5, seed=1), rand(o, c, kh, kw, seed=2), rand(o, seed=3)]
    _check_parity(lambda *a: F.conv2d(*a, s, p, d), lambda *a: tF.conv2d(*a, s, p, d), ins)


@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_matches_torch(case):
    tF = pytest.importorskip("torch.nn.functional")
    n, c, h, w, k, s, p, d = case
    ins = [rand(n, c, h + 3, w + 6, seed=1), rand(c, 1, k, k, seed=2), rand(c, seed=3)]
    _check_parity(lambda *a: F.conv2d(*a, s, p, d, c), lambda *a: tF.conv2d(*a, s, p, d, c), ins)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_and_running_stats_match_torch(training):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    rm0, rv0 = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    rm, rv = mts.tensor(rm0), mts.tensor(rv0)
    trm, trv = torch.tensor(rm0), torch.tensor(rv0)
    ins = [rand(4, 3, 5, 6, seed=1), rand(3, seed=2), rand(3, seed=3)]
    _check_parity(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5),
                  lambda x, w, b: tF.batch_norm(x, trm, trv, w, b, training, 0.1, 1e-5), ins)
    _assert_close(rm.numpy(), trm, 1e-12)
    _assert_close(rv.numpy(), trv, 1e-12)


@pytest.mark.parametrize("name", ["relu", "softmax", "log_softmax", "avg_pool2d", "avg_pool2d_pad",
                                  "adaptive", "bilinear", "bilinear_ac", "bilinear_scale", "cat"])
def test_small_ops_match_torch(name):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    pairs = {
        "relu": (F.relu, tF.relu),
        "softmax": (lambda t: F.softmax(t, 1), lambda t: tF.softmax(t, 1)),
        "log_softmax": (lambda t: F.log_softmax(t, 1), lambda t: tF.log_softmax(t, 1)),
        "avg_pool2d": (lambda t: F.avg_pool2d(t, 3, 2), lambda t: tF.avg_pool2d(t, 3, 2)),
        "avg_pool2d_pad": (lambda t: F.avg_pool2d(t, 3, 1, 1), lambda t: tF.avg_pool2d(t, 3, 1, 1)),
        "adaptive": (lambda t: F.adaptive_avg_pool2d(t, 6), lambda t: tF.adaptive_avg_pool2d(t, 6)),
        "bilinear": (lambda t: F.interpolate(t, size=(17, 40)),
                     lambda t: tF.interpolate(t, size=(17, 40), mode="bilinear", align_corners=False)),
        "bilinear_ac": (lambda t: F.interpolate(t, size=(5, 31), align_corners=True),
                        lambda t: tF.interpolate(t, size=(5, 31), mode="bilinear", align_corners=True)),
        "bilinear_scale": (lambda t: F.interpolate(t, scale_factor=1.7),
                           lambda t: tF.interpolate(t, scale_factor=1.7, mode="bilinear")),
        "cat": (lambda t: F.cat([t, t * 2], 2), lambda t: torch.cat([t, t * 2], 2)),
    }
    ours, theirs = pairs[name]
    _check_parity(ours, theirs, [rand(2, 3, 11, 13)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, (2, 6, 7))
    target[rng.random(target.shape) < 0.2] = 255
    w0 = rng.uniform(0.5, 2, 5)
    _check_parity(
        lambda t: F.cross_entropy(t, target, mts.tensor(w0), reduction=reduction),
        lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(target), torch.tensor(w0),
                                                    ignore_index=255, reduction=reduction),
        [rand(2, 5, 6, 7)])


@pytest.mark.parametrize("align_corners", [False, True])
def test_upsample_cross_entropy_matches_torch(align_corners):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x, target, w = head_case((5, 7), (33, 50), True, "cpu")
    target = target.numpy()
    _check_parity(
        lambda t: F.upsample_cross_entropy(t, target, align_corners, w),
        lambda t: tF.cross_entropy(tF.interpolate(t, size=(33, 50), mode="bilinear", align_corners=align_corners),
                                   torch.tensor(target), torch.tensor(w.numpy()), ignore_index=255),
        [x])


# --- bad input ------------------------------------------------------------------------------
def test_conv2d_bad_input_messages():
    x, w = rand(1, 3, 8, 8, grad=False), rand(4, 3, 3, 3, grad=False)
    with pytest.raises(ValueError, match=r"conv2d: input: expected a 4-D tensor .* got shape \(3, 8, 8\)"):
        F.conv2d(rand(3, 8, 8), w)
    with pytest.raises(ValueError, match=r"conv2d: weight: expected 3 input channels .* got weight shape \(4, 2, 3, 3\)"):
        F.conv2d(x, rand(4, 2, 3, 3))
    with pytest.raises(TypeError, match="conv2d: weight: expected dtype float64 .* got float32"):
        F.conv2d(x, rand(4, 3, 3, 3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"conv2d: padding: expected values >= 0, got \(-1, -1\)"):
        F.conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match="conv2d: stride: expected values >= 1"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(NotImplementedError, match="groups"):
        F.conv2d(rand(1, 4, 8, 8), rand(4, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        F.conv2d(rand(1, 3, 2, 2), w)
    with pytest.raises(ValueError, match=r"conv2d: bias: expected shape \(4,\), got \(3,\)"):
        F.conv2d(x, w, rand(3))


def test_other_ops_bad_input_messages():
    x = rand(2, 3, 4, 4, grad=False)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean: expected shape \(3,\), got \(2,\)"):
        F.batch_norm(x, rand(2), rand(3), training=True)
    with pytest.raises(ValueError, match="avg_pool2d: padding: expected at most half"):
        F.avg_pool2d(x, 2, 1, 2)
    with pytest.raises(ValueError, match="interpolate: size/scale_factor: expected exactly one"):
        F.interpolate(x)
    with pytest.raises(ValueError, match=r"cross_entropy: target: expected shape \(2, 4, 4\)"):
        F.cross_entropy(x, np.zeros((2, 4, 5), np.int64))
    with pytest.raises(ValueError, match=r"target.*7.*3"):
        F.cross_entropy(x, np.full((2, 4, 4), 7))
    with pytest.raises(TypeError, match="cross_entropy: target: expected an integer tensor"):
        F.cross_entropy(x, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"upsample_cross_entropy: target: expected shape \(2, OH, OW\)"):
        F.upsample_cross_entropy(x, np.zeros((3, 8, 8), np.int64))
    with pytest.raises(ValueError, match=r"upsample_cross_entropy: input: expected a 4-D tensor"):
        F.upsample_cross_entropy(rand(2, 3, 4, grad=False), np.zeros((2, 8, 8), np.int64))
    with pytest.raises(ValueError, match=r"target.*7.*3"):
        F.upsample_cross_entropy(x, np.full((2, 8, 8), 7))
    with pytest.raises(ValueError, match="dropout: p: expected 0 <= p < 1"):
        F.dropout(x, 1.5)
    with pytest.raises(ValueError, match=r"cat: tensors\[1\]: expected shape"):
        F.cat([x, rand(2, 2, 5, 4, grad=False)], 1)


class _GpuLike(np.ndarray):
    """A NumPy array that reports itself as a CuPy one, so device checks run without a GPU."""


_GpuLike.__module__ = "cupy._stand_in"


def test_tensors_on_different_devices_are_refused():
    x = rand(1, 3, 8, 8, grad=False)
    w = mts.Tensor(np.zeros((4, 3, 3, 3)).view(_GpuLike))
    assert w.device == "cuda"
    with pytest.raises(RuntimeError, match="conv2d: weight: expected a tensor on cpu .like input., got cuda"):
        F.conv2d(x, w)
    with pytest.raises(RuntimeError, match="expected all tensors on the same device"):
        x + mts.Tensor(np.zeros((1, 3, 8, 8)).view(_GpuLike))
