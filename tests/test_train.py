"""Training: exact resume, the files a run writes, predict and evaluate, and bad arguments."""
import json

import numpy as np
import pytest
from PIL import Image

import minitorch_seg as mts
from fastscnn import cli
from fastscnn.train import TrainConfig, train


def tiny(tmp_path, out, **kw):
    cfg = dict(out=str(tmp_path / out), synth_root=str(tmp_path / "data"), synth_train=6, synth_val=2,
               synth_size=(48, 96), crop_size=(48, 48), batch_size=2, iters=6, eval_every=3,
               checkpoint_every=3, log_every=1, device="cpu", seed=3)
    cfg.update(kw)
    return TrainConfig(**cfg)


def test_resume_is_bit_exact(tmp_path, monkeypatch):
    """3 + 3 iterations with an interruption and --resume between equal 6 straight, bit for bit."""
    straight = train(tiny(tmp_path, "straight"), progress=False)
    original_step, calls = mts.optim.SGD.step, {"n": 0}

    def crashing_step(self):
        calls["n"] += 1
        if calls["n"] == 5:  # mid-way between the checkpoints at 3 and 6
            raise KeyboardInterrupt
        original_step(self)

    monkeypatch.setattr(mts.optim.SGD, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, "resumed"), progress=False)
    monkeypatch.setattr(mts.optim.SGD, "step", original_step)
    assert mts.load(tmp_path / "resumed" / "checkpoint.pkl")["iter"] == 3
    resumed = train(tiny(tmp_path, "resumed", resume=True), progress=False)

    a = mts.load(tmp_path / "straight" / "checkpoint.pkl")
    b = mts.load(tmp_path / "resumed" / "checkpoint.pkl")
    assert a["iter"] == b["iter"] == 6
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=key)
    for i, buf in a["optimizer"]["momentum_buffers"].items():
        np.testing.assert_array_equal(buf, b["optimizer"]["momentum_buffers"][i])
    assert straight["miou"] == resumed["miou"]
    log = lambda run: [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
                       for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
    assert log("straight") == log("resumed")


def test_a_run_writes_its_files_and_predict_evaluate_work(tmp_path, capsys):
    metrics = train(tiny(tmp_path, "run", iters=2, eval_every=2), progress=False)
    out = tmp_path / "run"
    for name in ("log.jsonl", "checkpoint.pkl", "curves.png", "metrics.json", "predictions.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) >= {"miou", "pixel_accuracy", "category_miou", "iou_per_class", "iterations", "seconds"}
    assert saved["iterations"] == 2 and saved["miou"] == metrics["miou"]
    assert len(saved["iou_per_class"]) == 19

    images = tmp_path / "data" / "leftImg8bit" / "val"
    cli.main(["predict", "--checkpoint", str(out / "checkpoint.pkl"), "--input", str(images),
              "--output", str(tmp_path / "pred"), "--device", "cpu"])
    files = sorted((tmp_path / "pred" / "labelIds").rglob("*.png"))  # in the input's city folders
    assert len(files) == 2
    ids = np.asarray(Image.open(files[0]))
    from fastscnn.palette import TRAIN_ID_TO_LABEL_ID
    assert ids.shape == (48, 96) and set(np.unique(ids)) <= set(TRAIN_ID_TO_LABEL_ID.tolist())
    name = files[0].relative_to(tmp_path / "pred" / "labelIds")
    assert (tmp_path / "pred" / "color" / name).is_file()
    assert (tmp_path / "pred" / "overlay" / name).is_file()

    cli.main(["evaluate", "--checkpoint", str(out / "checkpoint.pkl"), "--data-root", str(tmp_path / "data"),
              "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "road" in printed and "mIoU" in printed


def test_bad_arguments_have_clear_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume: no checkpoint at"):
        train(tiny(tmp_path, "nothing", resume=True), progress=False)
    with pytest.raises(ValueError, match="batch_size: 50 is larger than the 6 training images"):
        train(tiny(tmp_path, "big", batch_size=50), progress=False)
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda'"):
        train(tiny(tmp_path, "dev", device="tpu"), progress=False)
    assert cli.main(["predict", "--checkpoint", str(tmp_path / "none.pkl"), "--input", ".", "--output",
                     str(tmp_path)]) == 2  # tests/test_cli.py checks the messages
    with pytest.raises(SystemExit):
        cli.main(["train", "--crop-size", "12xa"])
