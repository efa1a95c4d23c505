"""Evaluation modes: multi-scale + flip against a direct NumPy computation, sliding windows
against whole-image inference, mmseg's window grid, and the ``evaluate`` flags."""
import numpy as np
import pytest

import minitorch_seg as mts
import minitorch_seg.functional as F
from fastscnn import cli
from fastscnn import evaluate as evaluate_module
from fastscnn.data.cityscapes import CityscapesDataset
from fastscnn.data.synthetic import generate_synthcity
from fastscnn.evaluate import evaluate, predict_train_ids
from fastscnn.inference import Inference
from fastscnn.model import FastSCNN
from minitorch_seg import nn


class TinyNet(nn.Module):
    """One conv to ``classes`` channels: a model small enough to recompute in NumPy."""

    def __init__(self, kernel, classes=4, align_corners=False):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, kernel, padding=kernel // 2).double()
        self.align_corners = align_corners

    def forward(self, x):
        return self.conv(x)


def np_conv(x, net):
    """``net.conv`` (stride 1, same padding) in NumPy."""
    w, b = net.conv.weight.numpy(), net.conv.bias.numpy()
    k = w.shape[-1]
    h, wd = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = sum(np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
              for i in range(k) for j in range(k))
    return out + b[None, :, None, None]


def np_resize(x, size, align_corners):
    """Bilinear resize of (N, C, H, W) to ``size``, PyTorch's convention, as two matrices."""
    def matrix(n_in, n_out):
        if align_corners:
            src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), i0), 1 - (src - i0))
        np.add.at(m, (np.arange(n_out), i1), src - i0)
        return m
    return np.einsum("ph,nchw,qw->ncpq", matrix(x.shape[2], size[0]), x, matrix(x.shape[3], size[1]))


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("align_corners", [False, True])
def test_multiscale_flip_is_the_average_of_softmax_probabilities(align_corners):
    rng = np.random.default_rng(0)
    net = TinyNet(3, align_corners=align_corners)
    x = rng.standard_normal((2, 3, 21, 30))
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    # batch 3: the 4 views of a scale (2 images, 2 mirrors) split across forward passes
    ours = Inference(scales=scales, flip=True, batch_size=3).probabilities(net, mts.tensor(x)).numpy()

    expected = np.zeros((2, 4, 21, 30))
    for s in scales:
        xs = np_resize(x, (int(21 * s + 0.5), int(30 * s + 0.5)), align_corners=False)
        for mirror in (False, True):
            logits = np_conv(xs[..., ::-1] if mirror else xs, net)
            logits = logits[..., ::-1] if mirror else logits
            expected += np_softmax(np_resize(logits, (21, 30), align_corners))
    expected /= 2 * len(scales)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_sliding_windows_stitch_to_the_whole_image():
    """A model that looks at one pixel at a time gives every window the whole image's logits
    there, so overlapping windows (2/3 stride) averaged must equal whole-image inference."""
    net = TinyNet(1)
    x = mts.tensor(np.random.default_rng(1).standard_normal((2, 3, 37, 53)))
    modes = dict(scales=(0.75, 1.0, 1.5), flip=True, batch_size=5)
    sliding = Inference(crop=(16, 24), **modes)
    assert len(sliding.windows(37, 53)) == 3 * 3
    np.testing.assert_allclose(sliding.probabilities(net, x).numpy(), Inference(**modes).probabilities(net, x).numpy(),
                               rtol=1e-12, atol=1e-14)


def test_a_window_covering_the_image_is_whole_image_inference():
    model = FastSCNN(5).double().eval()
    rng = np.random.default_rng(2)
    for name, b in model.named_buffers():  # running statistics that make the logits differ by class
        b.data[...] = rng.uniform(0.5, 1.5, b.shape) if name.endswith("var") else rng.normal(0, 0.5, b.shape)
    x = mts.tensor(rng.standard_normal((1, 3, 40, 56)))
    whole = Inference().probabilities(model, x).numpy()
    np.testing.assert_array_equal(Inference(crop=(64, 64)).probabilities(model, x).numpy(), whole)
    np.testing.assert_allclose(whole, F.softmax(model(x), dim=1).numpy(), rtol=1e-12)
    # and smaller windows do change what a model with spatial context sees
    assert np.abs(Inference(crop=(24, 32)).probabilities(model, x).numpy() - whole).max() > 1e-3


def test_window_grid_is_mmsegs():
    inference = Inference(crop=(512, 1024))
    assert inference.stride == (341, 683)  # mmseg's Cityscapes slide setting
    boxes = inference.windows(1024, 2048)
    assert sorted({b[0] for b in boxes}) == [0, 341, 512] and sorted({b[2] for b in boxes}) == [0, 683, 1024]
    assert all((y1 - y0, x1 - x0) == (512, 1024) for y0, y1, x0, x1 in boxes) and len(boxes) == 9
    assert Inference(crop=512).windows(300, 400) == [(0, 300, 0, 400)]
    assert Inference(crop=(4, 6), stride=(4, 5)).windows(6, 11) == [(0, 4, 0, 6), (0, 4, 5, 11),
                                                                  (2, 6, 0, 6), (2, 6, 5, 11)]


def test_single_scale_predicts_what_evaluate_predicts():
    model = FastSCNN(5)
    image = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Inference().predict_train_ids(model, image, "cpu"),
                                  predict_train_ids(model, image, "cpu"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(scales=()), "scales: expected positive numbers"),
    (dict(scales=(1.0, -0.5)), "scales: expected positive numbers"),
    (dict(crop=0), "crop: expected a positive int or"),
    (dict(crop=(32, 32), stride=(40, 16)), r"stride: expected at most the crop \(32, 32\)"),
    (dict(stride=8), "stride: only meaningful with a crop"),
    (dict(batch_size=0), "batch_size: expected a positive int"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Inference(**kwargs)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"x: expected normalized images \(N, 3, H, W\), got shape \(3, 8, 8\)"):
        Inference().probabilities(TinyNet(1), mts.tensor(np.zeros((3, 8, 8))))


@pytest.fixture(scope="module")
def synth_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    root = generate_synthcity(folder / "sc", 1, 2, (48, 96), seed=5)
    mts.save({"model": FastSCNN(19).state_dict()}, folder / "model.pkl")
    return root, folder / "model.pkl"


def test_evaluate_flags_build_the_modes(synth_checkpoint, monkeypatch):
    root, checkpoint = synth_checkpoint
    seen = {}

    def fake_evaluate(model, dataset, device, num_classes, inference=None, progress=False):
        seen["inference"] = inference
        return evaluate(model, dataset, device, num_classes, inference)

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    base = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(root), "--device", "cpu"]
    assert cli.main(base) == 0 and seen["inference"] is None
    assert cli.main(base + ["--flip", "--scales", "0.5,1.0,1.5", "--sliding", "32x48"]) == 0
    assert seen["inference"] == Inference(scales=(0.5, 1.0, 1.5), flip=True, crop=(32, 48), progress=True)


def test_evaluate_with_the_modes_scores_their_predictions(synth_checkpoint, capsys):
    root, checkpoint = synth_checkpoint
    assert cli.main(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(root), "--device", "cpu",
                     "--flip", "--scales", "0.75,1.25", "--sliding", "32"]) == 0
    from fastscnn.predict import load_model
    direct = evaluate(load_model(checkpoint), CityscapesDataset(root, "val"), "cpu",
                      inference=Inference(scales=(0.75, 1.25), flip=True, crop=32))
    assert capsys.readouterr().out.strip() == direct.format_table().strip()


@pytest.mark.parametrize("text", ["0,1", "a,1", "", "1,,2"])
def test_bad_scales_flag_is_named(text, capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--checkpoint", "c", "--data-root", "d", "--scales", text])
    assert "argument --scales: expected comma-separated positive numbers" in capsys.readouterr().err


@pytest.mark.gpu
def test_modes_on_the_gpu_equal_the_cpu():
    model = FastSCNN(5).eval()
    x = np.random.default_rng(4).standard_normal((2, 3, 40, 56)).astype(np.float32)
    inference = Inference(scales=(0.5, 1.0, 1.5), flip=True, crop=(32, 32), batch_size=3)
    cpu = inference.probabilities(model, mts.tensor(x)).numpy()
    gpu = inference.probabilities(model.to("cuda"), mts.tensor(x, device="cuda"))
    assert gpu.device == "cuda"
    np.testing.assert_allclose(gpu.numpy(), cpu, rtol=1e-4, atol=1e-6)
