"""Published PyTorch checkpoints (mmseg, Tramac) imported into our variants compute their logits.

The oracles are the two projects' architectures rebuilt in torch (tests/published_fastscnn.py)
with random weights and running statistics, saved the way each project saves them.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minitorch_seg as mts
from fastscnn import cli
from fastscnn.import_weights import convert, import_weights, state_dict_of
from fastscnn.model import FastSCNN
from fastscnn.palette import TRAIN_ID_TO_LABEL_ID
from fastscnn.predict import load_model

try:
    import torch
except ImportError:
    torch = None

ROOT = Path(__file__).resolve().parents[1]
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (the oracle and the .pth reader)")


def test_importing_the_importer_does_not_import_torch():
    code = "import sys, fastscnn.cli, fastscnn.import_weights, fastscnn.inference; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_missing_torch_is_named_with_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(RuntimeError, match=r"needs PyTorch.*minitorch-seg\[torch\]"):
        import_weights(path, tmp_path / "out.pkl", "mmseg")


def test_variant_names_are_checked():
    with pytest.raises(ValueError, match=r"variant: expected one of \['mmseg', 'paper', 'tramac'\], got 'mmseg2'"):
        FastSCNN(variant="mmseg2")


@pytest.fixture
def one_torch_thread():
    """torch on one thread: on a shared 2-core machine its barrier waits cost more than they give."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{format: (torch model, .pth path, imported .pkl path)}: one random model per format,
    saved as that project saves it and imported through the command line."""
    from published_fastscnn import mmseg_fastscnn, randomize, tramac_fastscnn

    folder = tmp_path_factory.mktemp("published")
    mmseg = randomize(mmseg_fastscnn(), seed=0)
    tramac = randomize(tramac_fastscnn(aux=True), seed=1)
    files = {}
    for fmt, model, checkpoint in (
            ("mmseg", mmseg, {"meta": {"mmseg_version": "0.17.0", "CLASSES": ["road"] * 19, "iter": 160000},
                              "state_dict": mmseg.state_dict()}),
            ("tramac", tramac, tramac.state_dict())):
        pth, pkl = folder / f"{fmt}.pth", folder / f"{fmt}.pkl"
        torch.save(checkpoint, pth)
        assert cli.main(["import-weights", "--format", fmt, str(pth), "--out", str(pkl)]) == 0
        files[fmt] = (model, pth, pkl)
    return files


# Tramac's own forward upsamples the context branch by a fixed x4, so it runs only where the
# 1/8 size is 4 x the 1/32 size (1024x2048, 512x1024; 481x700 is the odd size nearest 500x700
# where it does); mmseg's runs at any size.
@needs_torch
@pytest.mark.parametrize("fmt, size", [("mmseg", (512, 1024)), ("mmseg", (500, 700)),
                                       ("tramac", (512, 1024)), ("tramac", (481, 700))])
def test_imported_logits_equal_pytorch(saved, fmt, size, one_torch_thread):
    theirs_model, _, pkl = saved[fmt]
    ours_model = load_model(pkl)
    assert ours_model.variant == fmt and not ours_model.training
    x = np.random.default_rng(2).standard_normal((1, 3, *size)).astype(np.float32)
    with torch.no_grad():
        theirs = theirs_model(torch.from_numpy(x)).numpy()
    with mts.no_grad():
        ours = ours_model(mts.tensor(x)).numpy()
    assert ours.shape == theirs.shape == (1, 19, *size)
    scale = np.abs(theirs).max()
    assert 0.1 < scale < 100, "random weights should give logits of order 1"
    error = np.abs(ours - theirs).max() / scale
    print(f"{fmt} {size[0]}x{size[1]}: max |ours - torch| / max |torch| = {error:.2e}")
    assert error <= 1e-4


@needs_torch
def test_every_tensor_lands_where_it_belongs(saved):
    """Beyond the logits: BN buffers and both kinds of auxiliary head, key by key."""
    for fmt, pairs in (("mmseg", [("aux_gfe.logits.weight", "auxiliary_head.0.conv_seg.weight"),
                                  ("aux_ltd.body.0.1.running_var", "auxiliary_head.1.convs.0.bn.running_var"),
                                  ("global_feature_extractor.9.project.0.weight",
                                   "backbone.global_feature_extractor.out.conv.weight"),
                                  ("learning_to_downsample.1.0.1.running_mean",
                                   "backbone.learning_to_downsample.dsconv1.depthwise_conv.bn.running_mean")]),
                       ("tramac", [("aux_ltd.logits.bias", "auxlayer.4.bias"),
                                   ("global_feature_extractor.4.block.2.1.running_var",
                                    "global_feature_extractor.bottleneck2.1.block.3.running_var"),
                                   ("feature_fusion.low_project.0.bias", "feature_fusion.conv_lower_res.0.bias")])):
        torch_model, _, pkl = saved[fmt]
        ours, theirs = mts.load(pkl)["model"], torch_model.state_dict()
        for our_key, their_key in pairs:
            np.testing.assert_array_equal(ours[our_key], theirs[their_key].numpy(), err_msg=our_key)
    assert not hasattr(load_model(saved["tramac"][2]), "aux_gfe")  # Tramac has no head on the context


@needs_torch
def test_tramac_as_published_and_from_data_parallel(saved):
    """The published file has no auxiliary head (trained without --aux); a multi-GPU run
    saves every key under ``module.``. Both import, the same weights in the same places."""
    torch_model = saved["tramac"][0]
    bare = {k: v for k, v in torch_model.state_dict().items() if not k.startswith("auxlayer.")}
    plain = convert(state_dict_of(bare), "tramac")
    assert not hasattr(plain, "aux_ltd")
    parallel = convert(state_dict_of({f"module.{k}": v for k, v in bare.items()}), "tramac")
    for (k1, v1), (k2, v2) in zip(plain.state_dict().items(), parallel.state_dict().items()):
        assert k1 == k2
        np.testing.assert_array_equal(v1.numpy(), v2.numpy())


@needs_torch
def test_mismatches_are_named(saved):
    state = state_dict_of(saved["mmseg"][0].state_dict())
    del state["decode_head.conv_seg.bias"]
    state["decode_head.conv_extra.weight"] = np.zeros((19, 128, 1, 1), np.float32)
    state["backbone.feature_fusion.dwconv.conv.weight"] = np.zeros((128, 128, 1, 1), np.float32)  # before v0.16
    with pytest.raises(ValueError) as e:
        convert(state, "mmseg")
    message = str(e.value)
    assert "1 missing keys: decode_head.conv_seg.bias" in message
    assert "1 unexpected keys: decode_head.conv_extra.weight" in message
    assert ("1 mis-shaped keys: backbone.feature_fusion.dwconv.conv.weight (128, 128, 1, 1) "
            "(ours (128, 1, 3, 3))") in message


@needs_torch
def test_the_other_format_is_recognised(saved):
    with pytest.raises(ValueError, match=r"none of its keys is a tramac key: is it the other format\?"):
        import_weights(saved["mmseg"][1], saved["mmseg"][2].with_name("x.pkl"), "tramac")


@needs_torch
def test_unreadable_and_absent_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at"):
        import_weights(tmp_path / "absent.pth", tmp_path / "out.pkl", "mmseg")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"is not a PyTorch file that torch.load\(weights_only=True\) reads"):
        import_weights(junk, tmp_path / "out.pkl", "mmseg")
    assert not (tmp_path / "out.pkl").exists()


@needs_torch
def test_predict_accepts_the_imported_file(saved, tmp_path, one_torch_thread):
    """``fastscnn predict`` on an imported file writes the labels PyTorch's logits give."""
    torch_model, _, pkl = saved["tramac"]
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "frame_leftImg8bit.png")
    assert cli.main(["predict", "--checkpoint", str(pkl), "--input", str(tmp_path / "frame_leftImg8bit.png"),
                     "--output", str(tmp_path / "out"), "--device", "cpu"]) == 0
    x = (image / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    with torch.no_grad():
        logits = torch_model(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))).numpy()[0]
    top2 = np.sort(logits, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-3  # pixels whose argmax rounding cannot flip
    written = np.asarray(Image.open(tmp_path / "out" / "labelIds" / "frame_leftImg8bit.png"))
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(written[clear], TRAIN_ID_TO_LABEL_ID[logits.argmax(0)][clear])
