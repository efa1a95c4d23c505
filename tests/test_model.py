"""Fast-SCNN: parameter count, shapes at any input size, and a float64 gradient check."""
import numpy as np
import pytest

import minitorch_seg as mts
import minitorch_seg.functional as F
from fastscnn.losses import SegmentationLoss, ohem_targets
from fastscnn.model import FastSCNN


def test_parameter_count_is_the_papers():
    model = FastSCNN(19, aux=False)
    count = sum(p.numel() for p in model.parameters())
    assert 1.0e6 <= count <= 1.2e6, count


@pytest.mark.parametrize("size", [(64, 128), (50, 77), (33, 40)])
def test_any_input_size_gives_logits_at_that_size(size):
    """Eval: full-resolution logits. Training: the heads at their own resolution (1/8, 1/8,
    1/32), which the loss upsamples to the labels' size."""
    mts.manual_seed(0)
    model = FastSCNN(5)
    x = mts.tensor(np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32))
    main, aux_ltd, aux_gfe = model(x)
    eighth = model.learning_to_downsample(x).shape[2:]
    assert main.shape == aux_ltd.shape == (2, 5, *eighth)
    assert aux_gfe.shape == (2, 5, *model.global_feature_extractor(model.learning_to_downsample(x)).shape[2:])
    assert eighth == tuple(-(-s // 8) for s in size)
    model.eval()
    with mts.no_grad():
        assert model(x).shape == (2, 5, *size)


@pytest.mark.parametrize("ohem", [False, True])
def test_the_loss_of_the_training_heads_is_upsample_then_cross_entropy(ohem):
    """SegmentationLoss on the low-resolution heads (fused) equals the loss of the heads first
    upsampled to the labels' size, as the model returned them before, loss and gradients."""
    mts.manual_seed(0)
    model = FastSCNN(4).double()
    rng = np.random.default_rng(0)
    x = mts.tensor(rng.standard_normal((2, 3, 40, 56)))
    y = rng.integers(0, 4, (2, 40, 56))
    y[:, :3] = 255
    state = mts.get_rng_state()
    criterion = SegmentationLoss(0.4, ohem=ohem, min_kept=500)
    grads = []
    for fused in (True, False):
        mts.set_rng_state(state)  # the same dropout masks
        heads = model(x)
        if not fused:
            heads = tuple(F.interpolate(h, size=(40, 56)) for h in heads)
        loss = criterion(heads, y)
        model.zero_grad()
        loss.backward()
        grads.append((loss.item(), {k: p.grad.numpy() for k, p in model.named_parameters()}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    for k, g in grads[1][1].items():
        np.testing.assert_allclose(grads[0][1][k], g, rtol=1e-8, atol=1e-10 * np.abs(g).max(), err_msg=k)


def test_whole_model_gradient_check_float64():
    """Gradient of the full training loss (three heads, BN in training mode, dropout with a
    fixed mask) w.r.t. the input and a sample of parameters of every stage."""
    mts.manual_seed(0)
    model = FastSCNN(4).double()
    rng = np.random.default_rng(0)
    x = mts.tensor(rng.standard_normal((2, 3, 40, 48)), requires_grad=True)
    y = rng.integers(0, 4, (2, 40, 48))
    y[:, :5] = 255
    criterion = SegmentationLoss(aux_weight=0.4)
    state = mts.get_rng_state()
    params = dict(model.named_parameters())
    checked = [params[k] for k in ("learning_to_downsample.0.0.weight",
                                   "global_feature_extractor.3.block.1.0.weight",
                                   "global_feature_extractor.9.project.1.weight",
                                   "feature_fusion.low_dw.0.weight",
                                   "classifier.logits.bias", "aux_gfe.logits.weight")]

    def loss(x, *_):
        mts.set_rng_state(state)  # the same dropout masks on every call
        return criterion(model(x), y)

    # eps 1e-8: a net this deep has ReLU kinks everywhere (BN in training mixes every pixel),
    # and only a step this small stays clear of them; float64 leaves ~1e-8 of headroom.
    assert mts.gradcheck(loss, [x, *checked], eps=1e-8, samples=12, atol=1e-6, rtol=1e-4)


def test_ohem_keeps_hard_pixels_and_at_least_min_kept():
    rng = np.random.default_rng(0)
    logits = mts.tensor(rng.standard_normal((1, 3, 8, 8)) * 3)
    target = rng.integers(0, 3, (1, 8, 8))
    target[0, 0] = 255
    prob = np.exp(logits.numpy() - logits.numpy().max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    p_true = np.take_along_axis(prob, np.where(target == 255, 0, target)[:, None], 1)[:, 0]
    hard = ohem_targets(logits, target, thresh=0.7, min_kept=1)
    expected = np.where((target != 255) & (p_true <= 0.7), target, 255)
    np.testing.assert_array_equal(hard, expected)
    at_least = ohem_targets(logits, target, thresh=0.0, min_kept=20)
    assert (at_least != 255).sum() == 20
    everything = ohem_targets(logits, target, thresh=0.0, min_kept=1000)
    np.testing.assert_array_equal(everything, target)
    # Low-resolution logits: the probabilities of the logits upsampled to the target's size.
    small = mts.tensor(rng.standard_normal((1, 3, 3, 3)) * 3)
    np.testing.assert_array_equal(ohem_targets(small, target, thresh=0.7, min_kept=10, align_corners=True),
                                  ohem_targets(F.interpolate(small, size=(8, 8), align_corners=True), target,
                                               thresh=0.7, min_kept=10))


@pytest.mark.parametrize("variant, outputs", [("paper", 3), ("mmseg", 3), ("tramac", 2)])
def test_variants_run_at_any_size(variant, outputs):
    """Each published variant (their parity with PyTorch: tests/test_import_weights.py) runs
    at an odd size; Tramac's has one auxiliary head, the others two."""
    model = FastSCNN(5, variant=variant)
    x = mts.tensor(np.random.default_rng(0).standard_normal((2, 3, 50, 77)).astype(np.float32))
    train_out = model(x)
    assert len(train_out) == outputs and train_out[0].shape == train_out[1].shape  # 1/8 (tramac's stem: less)
    assert train_out[0].shape[:2] == (2, 5) and train_out[0].shape[2] <= 7
    y = np.random.default_rng(1).integers(0, 5, (2, 50, 77))
    assert np.isfinite(SegmentationLoss(align_corners=model.align_corners)(train_out, y).item())
    with mts.no_grad():
        assert model.eval()(x).shape == (2, 5, 50, 77)


def test_torch_twin_refuses_the_other_variants():
    from fastscnn.torch_reference import torch_fastscnn
    with pytest.raises(ValueError, match="only the 'paper' variant has a torch twin, got variant='tramac'"):
        torch_fastscnn(FastSCNN(5, variant="tramac"))
