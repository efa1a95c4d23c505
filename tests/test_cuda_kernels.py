"""The CUDA kernels against the CPU kernels (the oracle) on the same inputs.

Each comparison calls an op of ``kernels.ops`` on NumPy arrays (so it runs ``kernels.cpu``)
and the same op on CuPy copies of them (so it runs ``kernels.cuda``): float64 must agree to rtol 1e-10, float32
to rtol 1e-4 (atol is the same fraction of the largest reference value, as gradients sum
terms of both signs). The cases follow the CPU tests: every convolution geometry on odd
sizes, pooling windows with padding, bilinear with and without align_corners, cross-entropy
with ignored pixels and class weights, plus inputs large enough that the GPU reductions
split a row into several chunks. All tests need device cuda (``gpu`` marker): a GPU, or the
emulated one (``MTS_CUDA=emulate``), where ``cupy`` below is the emulator's stand-in for CuPy.
"""
import itertools

import numpy as np
import pytest

import kernels
import kernels.cpu as cpu
import minitorch_seg as mts
from kernels import device, ops

if not device.available():
    pytest.skip("needs device cuda: CuPy and a GPU, or MTS_CUDA=emulate", allow_module_level=True)

cupy = device.array_module()
import kernels.cuda as cuda  # noqa: E402

pytestmark = pytest.mark.gpu

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 1e-4}
EPS = 1e-5


def randn(shape, dtype, seed=0, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def check(name, *args):
    """Run ``name`` on both backends with the same arguments; compare every output.

    NumPy arrays among ``args`` are copied to the GPU for ``kernels.cuda``; the rest (shapes,
    geometry, scalars) are passed as they are. The GPU inputs must come back unchanged.
    """
    want = getattr(ops, name)(*args)
    gpu_args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    got = getattr(ops, name)(*gpu_args)
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g, cupy.ndarray), f"{name} returned {type(g)}"
        g = cupy.asnumpy(g)
        assert (g.dtype, g.shape) == (w.dtype, w.shape), name
        rtol = RTOL[w.dtype.type]
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * max(1.0, np.abs(w).max()), err_msg=name)
    for before, after in zip(args, gpu_args):
        if isinstance(before, np.ndarray):
            np.testing.assert_array_equal(cupy.asnumpy(after), before,
                                          err_msg=f"{name} changed an input")


# ----------------------------------------------------------------------------- convolutions

# (kernel, stride, padding, dilation): every combination that fits a 9x11 input, plus
# asymmetric ones where the two axes differ (the same set as the CPU tests).
GEOMETRIES = [
    ((kh, kw), (s, s), (p, p), (d, d))
    for (kh, kw), s, p, d in itertools.product([(1, 1), (3, 3), (2, 3)], [1, 2], [0, 1, 2], [1, 2, 4])
] + [
    ((3, 2), (2, 1), (1, 0), (1, 2)),
    ((1, 3), (1, 2), (0, 2), (4, 1)),
    ((3, 3), (1, 2), (2, 1), (2, 1)),
]
GEOMETRIES = [pytest.param(g, id="k{}x{}-s{}{}-p{}{}-d{}{}".format(*g[0], *g[1], *g[2], *g[3]))
              for g in GEOMETRIES]


def check_conv(op, shape, geometry, dtype):
    """Forward, backward-input and backward-weight of ``op`` ("conv2d" or "depthwise")."""
    kernel, stride, padding, dilation = geometry
    N, C, H, W = shape
    x = randn(shape, dtype, seed=1)
    w = randn((C, 1, *kernel) if op == "depthwise" else (C + 1, C, *kernel), dtype, seed=2)
    out = getattr(ops, f"{op}_forward")(x, w, stride, padding, dilation)
    y, col = out if op == "conv2d" else (out, x)
    gy = randn(y.shape, dtype, seed=3)
    check(f"{op}_forward", x, w, stride, padding, dilation)
    check(f"{op}_backward_input", gy, w, x.shape, stride, padding, dilation)
    if op == "conv2d":  # its weight gradient reads the columns the forward kept
        check("conv2d_backward_weight", gy, col, w.shape)
    else:
        check("depthwise_backward_weight", gy, x, w.shape, stride, padding, dilation)


@pytest.mark.skipif(not device.is_emulated(), reason="the emulator's TF32 rounding (a GPU's may differ in the last bit)")
@pytest.mark.parametrize("kernel", [(3, 3), (1, 1)])
def test_conv2d_tf32_rounds_the_operands_of_its_2d_products(kernel):
    """tf32=True on the GPU equals the CPU's float32 conv of TF32-rounded operands where CuPy
    uses TF32 (the 2-D products: not a 1x1 conv's forward and backward-input); float64 ignores it."""
    from kernels.cuda.emulator.xp import to_tf32
    g = ((1, 1), (0, 0) if kernel == (1, 1) else (1, 1), (1, 1))
    x, w = randn((2, 3, 9, 11), np.float32, seed=1), randn((4, 3, *kernel), np.float32, seed=2)
    gy = randn((2, 4, 9, 11), np.float32, seed=3)
    _, col = ops.conv2d_forward(x, w, *g)
    on_gpu = [cupy.asarray(a) for a in (x, w, gy, col)]
    pointwise = kernel == (1, 1)
    pairs = [(ops.conv2d_forward(*on_gpu[:2], *g, tf32=True)[0], ops.conv2d_forward(to_tf32(x), to_tf32(w), *g)[0]),
             (ops.conv2d_backward_input(on_gpu[2], on_gpu[1], x.shape, *g, tf32=True),
              ops.conv2d_backward_input(to_tf32(gy), to_tf32(w), x.shape, *g)),
             (ops.conv2d_backward_weight(on_gpu[2], on_gpu[3], w.shape, tf32=True),
              ops.conv2d_backward_weight(to_tf32(gy), to_tf32(col), w.shape))]
    full = [ops.conv2d_forward(x, w, *g)[0], ops.conv2d_backward_input(gy, w, x.shape, *g),
            ops.conv2d_backward_weight(gy, col, w.shape)]
    for i, ((got, want), exact) in enumerate(zip(pairs, full)):
        got = cupy.asnumpy(got)
        if pointwise and i < 2:  # batched products: CuPy keeps them in float32
            np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            assert np.abs(got - exact).max() > 1e-4  # TF32's error shows at this size
    x64, w64 = cupy.asarray(x.astype(np.float64)), cupy.asarray(w.astype(np.float64))
    np.testing.assert_array_equal(cupy.asnumpy(ops.conv2d_forward(x64, w64, *g, tf32=True)[0]),
                                  cupy.asnumpy(ops.conv2d_forward(x64, w64, *g)[0]))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("op", ["conv2d", "depthwise"])
def test_conv_float64(op, geometry):
    check_conv(op, (2, 3, 9, 11), geometry, np.float64)


@pytest.mark.parametrize("geometry", GEOMETRIES[::5] + GEOMETRIES[-3:])
@pytest.mark.parametrize("op", ["conv2d", "depthwise"])
def test_conv_float32(op, geometry):
    check_conv(op, (2, 3, 9, 11), geometry, np.float32)


@pytest.mark.parametrize("geometry", GEOMETRIES[::9])
def test_conv2d_of_one_image(geometry):
    """One image: the batch-inside order is NCHW's, and the GPU skips its reorders."""
    check_conv("conv2d", (1, 3, 9, 11), geometry, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["conv2d", "depthwise"])
def test_conv_large_enough_for_several_reduction_chunks(op, dtype):
    # N*OH*OW = 2*70*90 = 12600 products per depthwise weight: 4 chunks of the reduction.
    check_conv(op, (2, 4, 70, 90), ((3, 3), (1, 1), (1, 1), (1, 1)), dtype)


@pytest.mark.parametrize("geometry", [((3, 3), (2, 2), (1, 1), (1, 1)), ((3, 3), (1, 1), (24, 24), (24, 24)),
                                      ((3, 3), (3, 3), (1, 1), (1, 1)), ((5, 4), (1, 1), (2, 1), (1, 1))],
                         ids=["stride2", "window-too-large-to-stage", "stride3", "taps-in-three-passes"])
def test_depthwise_across_tiles(geometry):
    # 70x90 spans 2x3 of backward-input's 64x32 tiles and 3x3 of the forward's and backward-weight's
    # 32x32 ones (18 tiles per channel: 3 blocks of up to 8). Dilation 24 makes a tile's window (gy's
    # in backward-input, up to 64 + 48 rows by 32 + 48 columns; x's in the other two, 80 x 80)
    # too large for shared memory, so the kernels read it in place; stride 3 has no
    # specialized build and reads the stride at run time; backward-weight sums a 5x4 filter's
    # 20 taps in passes of 9.
    check_conv("depthwise", (2, 2, 70, 90), geometry, np.float64)


# ----------------------------------------------------------------------------- batch norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 1, 2), (3, 2, 50, 61)])  # last: 3 chunks
def test_batchnorm(dtype, shape):
    C = shape[1]
    x = randn(shape, dtype, seed=1, scale=2.0, shift=3.0)
    weight, bias, gy = randn(C, dtype, seed=2), randn(C, dtype, seed=3), randn(shape, dtype, seed=4)
    mean, var = randn(C, dtype, seed=5), np.random.default_rng(6).uniform(0.5, 2.0, C).astype(dtype)
    check("batchnorm_forward_train", x, weight, bias, EPS, None, None, 0.1, False)
    running = [mean.copy(), var.copy()]
    on_device = [cupy.asarray(r) for r in running]
    ops.batchnorm_forward_train(x, weight, bias, EPS, *running, 0.1, False)
    ops.batchnorm_forward_train(cupy.asarray(x), cupy.asarray(weight), cupy.asarray(bias), EPS, *on_device, 0.1, False)
    for want, got in zip(running, on_device):  # updated in place, the same way
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=RTOL[dtype])
    _, stats = ops.batchnorm_forward_train(x, weight, bias, EPS, None, None, 0.1, False)
    check("batchnorm_backward", gy, x, stats, False, True)
    check("batchnorm_forward_eval", x, mean, var, weight, bias, EPS, False)
    check("batchnorm_backward", gy, x, ops.batchnorm_forward_eval(x, mean, var, weight, bias, EPS, False)[1],
          False, False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_relu(dtype):
    shape = (3, 2, 50, 61)  # 3 chunks per channel
    C = shape[1]
    x = randn(shape, dtype, seed=1, scale=2.0, shift=0.5)
    weight, bias, gy = randn(C, dtype, seed=2), randn(C, dtype, seed=3), randn(shape, dtype, seed=4)
    mean, var = randn(C, dtype, seed=5), np.random.default_rng(6).uniform(0.5, 2.0, C).astype(dtype)
    check("batchnorm_forward_train", x, weight, bias, EPS, None, None, 0.1, True)
    y, stats = ops.batchnorm_forward_train(x, weight, bias, EPS, None, None, 0.1, True)
    assert (y == 0).mean() > 0.2 and y.min() == 0  # the ReLU did clip
    check("batchnorm_backward", gy, x, stats, True, True)
    check("batchnorm_forward_eval", x, mean, var, weight, bias, EPS, True)
    check("batchnorm_backward", gy, x, ops.batchnorm_forward_eval(x, mean, var, weight, bias, EPS, True)[1],
          True, False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_relu_and_relu_backward(dtype):
    a, b, g = (randn((3, 2, 50, 61), dtype, seed=i) for i in (1, 2, 3))
    check("add_relu", a, b)
    check("relu_backward", g, a)


def test_batchnorm_float32_statistics_survive_a_large_mean():
    # E[x^2] - E[x]^2 or a float32 running sum would lose most digits of this variance.
    x = randn((2, 2, 64, 64), np.float32, scale=0.1, shift=1000.0)
    ones = cupy.ones(2, np.float32)
    mean, invstd = ops.batchnorm_forward_train(cupy.asarray(x), ones, ones, EPS, None, None, 0.1, False)[1][:2]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(cupy.asnumpy(mean), x64.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(invstd), 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + EPS),
                               rtol=1e-5)


def test_reductions_are_deterministic():
    x = cupy.asarray(randn((3, 4, 50, 61), np.float32, seed=1))
    gy = cupy.asarray(randn((3, 4, 50, 61), np.float32, seed=2))
    w = cupy.asarray(randn((4, 1, 3, 3), np.float32, seed=3))
    ones = cupy.ones(4, np.float32)
    runs = [(ops.depthwise_backward_weight(gy, x, w.shape, (1, 1), (1, 1), (1, 1)),
             ops.batchnorm_forward_train(x, ones, ones, EPS, None, None, 0.1, False)[1],
             *ops.batchnorm_backward(gy, x, cupy.ones((4, 4), np.float32), True, True)[1:]) for _ in range(2)]
    for a, b in zip(*runs):
        assert cupy.array_equal(a, b)


# ----------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding", [
    ((2, 2), (2, 2), (0, 0)), ((2, 2), (1, 1), (1, 1)), ((3, 3), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1)), ((3, 3), (2, 2), (0, 0)), ((2, 3), (1, 2), (1, 0)),
])
def test_avg_pool2d(dtype, kernel, stride, padding):
    x = randn((2, 3, 7, 9), dtype)
    y = ops.avg_pool2d_forward(x, kernel, stride, padding)
    check("avg_pool2d_forward", x, kernel, stride, padding)
    check("avg_pool2d_backward", randn(y.shape, dtype, seed=1), x.shape, kernel, stride, padding)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (5, 13), (2, 3)])
@pytest.mark.parametrize("out", [(1, 1), (2, 2), (3, 3), (6, 6), (6, 4)])
def test_adaptive_avg_pool2d(dtype, hw, out):
    x = randn((2, 3) + hw, dtype)
    check("adaptive_avg_pool2d_forward", x, out)
    check("adaptive_avg_pool2d_backward", randn((2, 3) + out, dtype, seed=1), x.shape)


# ----------------------------------------------------------------------------- bilinear

def ratio_of(in_hw, out_hw, align_corners, scale_factor=None):
    """Source pixels per output pixel, as ``minitorch_seg.functional.interpolate`` computes it."""
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
    ((4, 8), (32, 64), None),         # up by 8, the Fast-SCNN head
    ((1, 1), (3, 5), None),           # a single input pixel
    ((5, 7), None, (1.7, 2.3)),       # ratio from a scale factor: 1/scale, not in/out
    ((4, 5), None, (2.5, 1.1)),       # scale 1.1 keeps width 5: copied despite ratio 1/1.1
])
def test_bilinear(dtype, align_corners, in_hw, size, scale_factor):
    if size is None:
        size = tuple(int(np.floor(i * s)) for i, s in zip(in_hw, scale_factor))
    ratio = ratio_of(in_hw, size, align_corners, scale_factor)
    x = randn((2, 3) + in_hw, dtype)
    check("bilinear_forward", x, size, ratio, align_corners)
    check("bilinear_backward", randn((2, 3) + size, dtype, seed=1), x.shape, ratio, align_corners)


# ----------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore_index, labels", [(255, np.int64), (-100, np.int64), (2, np.int64),  # 2: a class
                                                  (255, np.uint8)])                # uint8: loader labels
@pytest.mark.parametrize("logit_scale", [1.0, 60.0])  # 60: exp overflows without the max shift
def test_cross_entropy(dtype, ignore_index, labels, logit_scale):
    rng = np.random.default_rng(0)
    N, C, H, W = 2, 5, 3, 7
    logits = randn((N, C, H, W), dtype, scale=logit_scale)
    target = rng.integers(0, C, (N, H, W)).astype(labels)
    target[rng.random((N, H, W)) < 0.25] = ignore_index
    assert (target == ignore_index).any() and (target != ignore_index).any()
    for weight in (rng.uniform(0.5, 2.0, C).astype(dtype), None):  # None: every class weighs 1
        _, prob = ops.cross_entropy_forward(logits, target, weight, ignore_index)
        check("cross_entropy_forward", logits, target, weight, ignore_index)
        check("cross_entropy_backward", randn((N, H, W), dtype, seed=1), prob, target, weight, ignore_index)
        check("cross_entropy_backward", np.asarray(0.7, dtype), prob, target, weight, ignore_index)


def test_cross_entropy_every_pixel_ignored():
    logits = randn((1, 3, 2, 2), np.float32)
    target = np.full((1, 2, 2), 255, np.int64)
    weight = np.ones(3, np.float32)
    _, prob = ops.cross_entropy_forward(logits, target, weight, 255)
    check("cross_entropy_forward", logits, target, weight, 255)
    check("cross_entropy_backward", np.ones((1, 2, 2), np.float32), prob, target, weight, 255)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw, size", [((5, 7), (33, 50)),   # non-integer scale
                                         ((4, 8), (32, 64)),   # up by 8, the Fast-SCNN head
                                         ((6, 5), (6, 11)),    # one axis unchanged
                                         ((9, 13), (4, 6))])   # down
@pytest.mark.parametrize("ignore_index, labels", [(255, np.int64), (255, np.uint8), (2, np.int64)])
def test_upsample_cross_entropy(dtype, align_corners, in_hw, size, ignore_index, labels):
    """The fused head on both backends: forward (loss, lse) and backward, with ignored pixels,
    class weights or none, a per-pixel gradient and a shared one (a mean's)."""
    rng = np.random.default_rng(0)
    N, C = 2, 5
    x = randn((N, C, *in_hw), dtype, scale=3.0)
    target = rng.integers(0, C, (N, *size)).astype(labels)
    target[rng.random(target.shape) < 0.25] = ignore_index
    ratio = ratio_of(in_hw, size, align_corners)
    for weight in (rng.uniform(0.5, 2.0, C).astype(dtype), None):
        _, lse = ops.upsample_cross_entropy_forward(x, target, weight, ignore_index, ratio, align_corners)
        check("upsample_cross_entropy_forward", x, target, weight, ignore_index, ratio, align_corners)
        for gloss in (randn((N, *size), dtype, seed=1), np.asarray(0.7, dtype)):
            check("upsample_cross_entropy_backward", gloss, x, lse, target, weight, ignore_index, ratio,
                  align_corners)


# ----------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p, offset", [(0.5, 0), (0.1, 123456789), (0.0, 2**63)])
def test_dropout_draws_the_cpu_numbers(dtype, p, offset):
    check("dropout", randn((3, 5, 7, 11), dtype), p, 2**40 + 3, offset)


# ----------------------------------------------------------------------------- SGD

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, weight_decay, nesterov", [(0.0, 0.0, False), (0.9, 1e-4, False),
                                                              (0.9, 4e-5, True)])
def test_sgd_step_updates_every_parameter_as_the_cpu_does(dtype, momentum, weight_decay, nesterov):
    shapes = [(3, 4), (5,), (2, 3, 3, 3), (1,), (300, 7)]  # 300*7: several blocks of threads
    params = [randn(s, dtype, seed=i) for i, s in enumerate(shapes)]
    buffers = [np.zeros(s, dtype) for s in shapes]
    on_gpu = [cupy.asarray(a) for a in params], [cupy.asarray(b) for b in buffers]
    for step in range(2):
        grads = [randn(s, dtype, seed=10 * step + i) for i, s in enumerate(shapes)]
        ops.sgd_step(params, grads, buffers, 0.1, momentum, weight_decay, nesterov)
        ops.sgd_step(*on_gpu[:1], [cupy.asarray(g) for g in grads], on_gpu[1], 0.1, momentum,
                     weight_decay, nesterov)
    for want, got in zip(params + buffers, on_gpu[0] + on_gpu[1]):
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=RTOL[dtype], atol=RTOL[dtype])


# ----------------------------------------------------------------------------- launchers

def z32(*shape):
    return cupy.zeros(shape, np.float32)


G = ((1, 1), (1, 1), (1, 1))


def _numpy_calls():
    """A valid argument list, in NumPy arrays, for every function of the API."""
    f32 = lambda *shape: np.ones(shape, np.float32)  # noqa: E731
    x, gy, v = f32(1, 2, 4, 4), f32(1, 2, 4, 4), f32(2)
    g = ((1, 1), (1, 1), (1, 1))
    t = np.zeros((1, 4, 4), np.int64)
    return {
        "conv2d_forward": (x, f32(2, 2, 3, 3), *g),
        "conv2d_backward_input": (gy, f32(2, 2, 3, 3), x.shape, *g),
        "conv2d_backward_weight": (gy, np.ones((2 * 9, 16), np.float32), (2, 2, 3, 3)),
        "depthwise_forward": (x, f32(2, 1, 3, 3), *g),
        "depthwise_backward_input": (gy, f32(2, 1, 3, 3), x.shape, *g),
        "depthwise_backward_weight": (gy, x, (2, 1, 3, 3), *g),
        "batchnorm_forward_train": (x, v, v, EPS, None, None, 0.1, False),
        "batchnorm_forward_eval": (x, v, v, v, v, EPS, True),
        "batchnorm_backward": (gy, x, f32(4, 2), True, True),
        "add_relu": (x, -0.5 * gy),
        "relu_backward": (gy, x),
        "avg_pool2d_forward": (x, (2, 2), (2, 2), (0, 0)),
        "avg_pool2d_backward": (f32(1, 2, 2, 2), x.shape, (2, 2), (2, 2), (0, 0)),
        "adaptive_avg_pool2d_forward": (x, (2, 2)),
        "adaptive_avg_pool2d_backward": (f32(1, 2, 2, 2), x.shape),
        "bilinear_forward": (x, (8, 8), (0.5, 0.5), False),
        "bilinear_backward": (f32(1, 2, 8, 8), x.shape, (0.5, 0.5), False),
        "cross_entropy_forward": (x, t, v, 255),
        "cross_entropy_backward": (f32(1, 4, 4), x, t, v, 255),
        "upsample_cross_entropy_forward": (x, t, v, 255, (1.0, 1.0), False),
        "upsample_cross_entropy_backward": (f32(1, 4, 4), x, f32(1, 4, 4), t, v, 255, (1.0, 1.0), False),
        "dropout": (x, 0.5, 0, 0),
        "sgd_step": ([x], [gy], [f32(1, 2, 4, 4)], 0.1, 0.9, 0.0, False),
    }


def test_every_op_is_in_the_list_above():
    assert set(_numpy_calls()) == set(ops.__all__)


@pytest.mark.parametrize("name", sorted(set(_numpy_calls()) - {"sgd_step"}))
def test_every_op_returns_arrays_on_the_device_of_its_input(name):
    check(name, *_numpy_calls()[name])


def test_tensors_on_two_devices_are_refused_before_any_kernel():
    F = mts.functional
    x = mts.Tensor(z32(1, 2, 4, 4))
    with pytest.raises(RuntimeError, match=r"conv2d: weight: expected a tensor on cuda \(like input\), got cpu"):
        F.conv2d(x, mts.Tensor(np.ones((2, 2, 3, 3), np.float32)))
    with pytest.raises(RuntimeError, match=r"cross_entropy: target: expected a tensor on cuda"):
        F.cross_entropy(x, np.zeros((1, 4, 4), np.int64))


@pytest.mark.parametrize("bad", [5, -1, 254])
@pytest.mark.parametrize("direction", ["forward", "backward", "fused forward", "fused backward"])
def test_cross_entropy_reports_a_bad_target_at_the_next_read(direction, bad):
    logits, weight, pixels = z32(2, 5, 3, 4), cupy.ones(5, np.float32), z32(2, 3, 4)
    target = np.zeros((2, 3, 4), np.int64)
    target[1, 2, 3] = bad
    target = cupy.asarray(target)
    fused = ((2 / 3, 0.5), False)  # the fused head: logits (2, 5, 2, 2) upsampled to the target's 3x4
    # The launch returns at once (a GPU kernel cannot raise); the next read raises.
    if direction == "forward":
        result, _ = ops.cross_entropy_forward(logits, target, weight, 255)
    elif direction == "backward":
        result = ops.cross_entropy_backward(pixels, logits, target, weight, 255)
    elif direction == "fused forward":
        result, _ = ops.upsample_cross_entropy_forward(z32(2, 5, 2, 2), target, weight, 255, *fused)
    else:
        result = ops.upsample_cross_entropy_backward(pixels, z32(2, 5, 2, 2), pixels, target, weight, 255, *fused)
    with pytest.raises(ValueError, match=r"target: pixel \(1, 2, 3\) holds a value outside \[0, 5\) "
                                         r".*not ignore_index=255 \(found by a cross-entropy kernel"):
        device.to_host(result)
    device.to_host(result)  # reported once; the flag is clear again
    good, _ = ops.cross_entropy_forward(logits, cupy.zeros((2, 3, 4), np.uint8), weight, 255)
    assert device.to_host(good).shape == (2, 3, 4)


def test_backend_for_picks_cuda_for_cupy_arrays():
    assert kernels.backend_for(cupy.zeros(1)) is cuda
    assert kernels.backend_for(np.zeros(1)) is cpu


def test_debug_switch_prints_every_launch(monkeypatch, capsys):
    x = cupy.ones((1, 2, 5, 5), np.float32)
    monkeypatch.setenv("MTS_DEBUG", "1")
    ops.depthwise_backward_weight(x, x, (2, 1, 1, 1), (1, 1), (0, 0), (1, 1))
    lines = capsys.readouterr().err.splitlines()
    kernels_launched = [line.split(" grid=")[0].split(" ", 2)[2] for line in lines]
    assert kernels_launched == ["depthwise_weight_partials<float, 1, 1>", "sum_chunks<float>"]
    assert "grid=(2, 1) block=(256,) arrays: 1x2x5x5 1x2x5x5 2x1" in lines[0]
    monkeypatch.setenv("MTS_DEBUG", "0")
    ops.depthwise_backward_weight(x, x, (2, 1, 1, 1), (1, 1), (0, 0), (1, 1))
    assert capsys.readouterr().err == ""
