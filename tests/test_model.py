"""Fast-SCNN: parameter count, shapes at any input size, and a float64 gradient check."""
import numpy as np
import pytest

import minitorch_seg as mts
from fastscnn.losses import SegmentationLoss, ohem_targets
from fastscnn.model import FastSCNN


def test_parameter_count_is_the_papers():
    model = FastSCNN(19, aux=False)
    count = sum(p.numel() for p in model.parameters())
    assert 1.0e6 <= count <= 1.2e6, count


@pytest.mark.parametrize("size", [(64, 128), (50, 77), (33, 40)])
def test_any_input_size_gives_logits_at_that_size(size):
    mts.manual_seed(0)
    model = FastSCNN(5)
    x = mts.tensor(np.random.default_rng(0).standard_normal((2, 3, *size)).astype(np.float32))
    main, aux_ltd, aux_gfe = model(x)
    assert main.shape == aux_ltd.shape == aux_gfe.shape == (2, 5, *size)
    model.eval()
    with mts.no_grad():
        assert model(x).shape == (2, 5, *size)


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


@pytest.mark.parametrize("variant, outputs", [("paper", 3), ("mmseg", 3), ("tramac", 2)])
def test_variants_run_at_any_size(variant, outputs):
    """Each published variant (their parity with PyTorch: tests/test_import_weights.py) runs
    at an odd size; Tramac's has one auxiliary head, the others two."""
    model = FastSCNN(5, variant=variant)
    x = mts.tensor(np.random.default_rng(0).standard_normal((2, 3, 50, 77)).astype(np.float32))
    train_out = model(x)
    assert len(train_out) == outputs and all(t.shape == (2, 5, 50, 77) for t in train_out)
    with mts.no_grad():
        assert model.eval()(x).shape == (2, 5, 50, 77)


def test_torch_twin_refuses_the_other_variants():
    from fastscnn.torch_reference import torch_fastscnn
    with pytest.raises(ValueError, match="only the 'paper' variant has a torch twin, got variant='tramac'"):
        torch_fastscnn(FastSCNN(5, variant="tramac"))
