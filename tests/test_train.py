"""Training: exact resume, the files a run writes, and runs that never lose work (issue 12).

Every run here is tiny (SynthCity of 6 + 2 images at 48x96, 48x48 crops, batch 2), so a run
of a few iterations takes about a second once Numba's cache is warm.
"""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minitorch_seg as mts
from fastscnn import cli
from fastscnn.data.synthetic import generate_synthcity, synthcity_paths
from fastscnn.errors import InputError, UnreadableImageError
from fastscnn.train import TrainConfig, _load_weights, datasets, resolve, train

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path, out, **kw):
    cfg = dict(out=str(tmp_path / out), synth_root=str(tmp_path / "data"), synth_train=6, synth_val=2,
               synth_size=(48, 96), crop_size=(48, 48), batch_size=2, iters=6, eval_every=3,
               checkpoint_every=3, log_every=1, device="cpu", seed=3)
    cfg.update(kw)
    return TrainConfig(**cfg)


def tiny_data(tmp_path):
    """The SynthCity folder :func:`tiny` uses, generated now (for --data-root and damage)."""
    return generate_synthcity(tmp_path / "data", 6, 2, (48, 96), seed=3)


def truncate(path):
    path.write_bytes(path.read_bytes()[:200])


def log(run):
    """A run's log without the timing, which no two runs share."""
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def assert_same_state(a, b):
    """Two checkpoints hold the same model, optimizer, schedule and RNG state, bit for bit."""
    a, b = mts.load(a), mts.load(b)
    assert a["iter"] == b["iter"]
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=key)
    assert a["optimizer"]["momentum_buffers"].keys() == b["optimizer"]["momentum_buffers"].keys()
    for i, buf in a["optimizer"]["momentum_buffers"].items():
        np.testing.assert_array_equal(buf, b["optimizer"]["momentum_buffers"][i], err_msg=f"momentum {i}")
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"] and a["rng"] == b["rng"]


def test_resume_after_a_crash_is_bit_exact(tmp_path, monkeypatch):
    """3 + 3 iterations with a crash (not a signal) and --resume between equal 6 straight."""
    straight = train(tiny(tmp_path, "straight"), progress=False)
    original_step, calls = mts.optim.SGD.step, {"n": 0}

    def crashing_step(self):
        calls["n"] += 1
        if calls["n"] == 5:  # mid-way between the checkpoints at 3 and 6
            raise RuntimeError("crash")
        original_step(self)

    monkeypatch.setattr(mts.optim.SGD, "step", crashing_step)
    with pytest.raises(RuntimeError, match="crash"):
        train(tiny(tmp_path, "resumed"), progress=False)
    monkeypatch.setattr(mts.optim.SGD, "step", original_step)
    assert mts.load(tmp_path / "resumed" / "checkpoint.pkl")["iter"] == 3
    resumed = train(tiny(tmp_path, "resumed", resume=True), progress=False)
    assert_same_state(tmp_path / "straight" / "checkpoint.pkl", tmp_path / "resumed" / "checkpoint.pkl")
    assert straight["miou"] == resumed["miou"]
    assert log(tmp_path / "straight") == log(tmp_path / "resumed")


def test_sigint_at_a_random_iteration_then_resume_equals_a_straight_run(tmp_path):
    """Fault injection: the CLI in a subprocess gets SIGINT at a random iteration, saves and
    exits with one line; --resume then ends where an uninterrupted run ends, bit for bit."""
    data = tiny_data(tmp_path)
    flags = ["--data-root", str(data), "--iters", "10", "--batch-size", "2", "--crop-size", "48",
             "--eval-every", "5", "--checkpoint-every", "100", "--log-every", "1", "--seed", "3",
             "--device", "cpu", "--no-progress"]
    assert cli.main(["train", "--out", str(tmp_path / "straight"), *flags]) == 0

    at = random.randint(1, 5)  # the signal goes after this iteration (5 more: time to arrive)
    out = tmp_path / "interrupted"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "fastscnn.cli", "train", "--out", str(out), *flags],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not any(r["iter"] >= at for r in _records(out)):
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    stopped = mts.load(out / "checkpoint.pkl")["iter"]
    assert proc.returncode == 130, f"signal after iteration {at}: {stderr}"
    assert stderr.splitlines() == [f"fastscnn train: interrupted at iteration {stopped} of 10; saved iteration "
                                   f"{stopped} in {out}/checkpoint.pkl; continue with: "
                                   f"fastscnn train --out {out} --resume"]
    assert at <= stopped < 10
    assert not (out / "metrics.json").exists()

    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert_same_state(tmp_path / "straight" / "checkpoint.pkl", out / "checkpoint.pkl")
    assert_same_state(tmp_path / "straight" / "best.pkl", out / "best.pkl")
    assert log(tmp_path / "straight") == log(out), f"signal after iteration {at}, stopped at {stopped}"


def _records(out):
    try:
        text = (out / "log.jsonl").read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


def test_checkpoint_and_eval_every_1000_on_cityscapes(tmp_path):
    cfg = resolve(TrainConfig(data_root=str(tmp_path), device="cpu"))
    assert cfg.checkpoint_every == cfg.eval_every == 1000 and cfg.epochs == 1000 and cfg.iters is None
    assert resolve(TrainConfig(data_root=str(tmp_path), device="cpu", checkpoint_every=50)).checkpoint_every == 50


def test_more_loader_threads_beside_a_gpu_and_synthcity_kept_decoded(tmp_path, monkeypatch):
    from fastscnn import train as train_module
    assert resolve(TrainConfig(data_root=str(tmp_path), device="cpu")).workers == 2
    assert resolve(TrainConfig(data_root=str(tmp_path), device="cuda")).workers == min(8, os.cpu_count())
    assert resolve(TrainConfig(data_root=str(tmp_path), device="cuda", workers=3)).workers == 3
    cfg = resolve(tiny(tmp_path, "run"))
    tiny_data(tmp_path)
    assert all(d._cache is not None for d in datasets(cfg))
    monkeypatch.setattr(train_module, "_memory_bytes", lambda: 4 * 8 * 48 * 96 * 4 - 1)  # a byte short
    assert all(d._cache is None for d in datasets(cfg))
    assert all(d._cache is None for d in datasets(dataclasses.replace(cfg, data_root=cfg.synth_root)))


def test_checkpoint_every_saves_between_evaluations(tmp_path, monkeypatch):
    """Item 1: with --checkpoint-every, a crash loses at most that many iterations."""
    monkeypatch.setattr(mts.optim.SGD, "step", _crash_on_call(5))
    with pytest.raises(RuntimeError):
        train(tiny(tmp_path, "run", eval_every=100, checkpoint_every=2), progress=False)
    assert mts.load(tmp_path / "run" / "checkpoint.pkl")["iter"] == 4
    assert not (tmp_path / "run" / "best.pkl").exists()  # nothing was evaluated yet


def _crash_on_call(n):
    original, calls = mts.optim.SGD.step, {"n": 0}

    def step(self):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("crash")
        original(self)
    return step


def test_a_truncated_val_image_keeps_the_training(tmp_path):
    """Item 2: the checkpoint is written before the evaluation, which names the file; fixing
    the file and resuming redoes that evaluation and ends as an undisturbed run would."""
    data = tiny_data(tmp_path)
    bad = synthcity_paths(data, "val", 1)[0]
    truncate(bad)
    with pytest.raises(UnreadableImageError, match=rf"{bad}: cannot read image file.*saved iteration 3 in "
                                                   rf".*checkpoint.pkl; continue with: .* --resume"):
        train(tiny(tmp_path, "run"), progress=False)
    assert mts.load(tmp_path / "run" / "checkpoint.pkl")["iter"] == 3
    assert [r["iter"] for r in log(tmp_path / "run")] == [1, 2, 3]

    bad.unlink()
    tiny_data(tmp_path)  # draws the missing file again, byte for byte
    train(tiny(tmp_path, "run", resume=True), progress=False)
    train(tiny(tmp_path, "straight"), progress=False)
    assert log(tmp_path / "run") == log(tmp_path / "straight")
    assert_same_state(tmp_path / "straight" / "checkpoint.pkl", tmp_path / "run" / "checkpoint.pkl")


def test_an_unreadable_training_image_is_skipped_and_counted(tmp_path, capsys):
    data = tiny_data(tmp_path)
    bad = synthcity_paths(data, "train", 4)[0]
    truncate(bad)
    train(tiny(tmp_path, "run", batch_size=3), progress=False)  # 6 iterations: 3 epochs of 2 batches
    records = [r for r in log(tmp_path / "run") if "loss" in r]
    assert [r["iter"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["skipped_images"] for r in records][1::2] == [1, 2, 3]  # once an epoch
    printed = capsys.readouterr().out
    assert printed.count(f"skipped an unreadable training image: {bad}: cannot read image file") == 3
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["skipped_images"] == 3

    # A batch of 2 that loses one cannot be trained on (batch norm): the run stops, named and saved.
    with pytest.raises(InputError, match=rf"a batch has a single readable image: {bad}: cannot read image file"
                                         rf".*; (nothing was trained yet|saved iteration \d+ in .*--resume)"):
        train(tiny(tmp_path, "pairs", batch_size=2), progress=False)


def test_a_diverging_run_keeps_its_last_finite_checkpoint(tmp_path, capsys):
    """Item 3: --lr 1e6. The run stops with one line naming the iteration and --lr; the
    checkpoint left is the last finite one; no evaluation of a broken model is logged."""
    data = tiny_data(tmp_path)
    out = tmp_path / "run"
    code = cli.main(["train", "--data-root", str(data), "--out", str(out), "--iters", "6", "--batch-size", "2",
                     "--crop-size", "48", "--checkpoint-every", "1", "--eval-every", "2", "--log-every", "10",
                     "--lr", "1e6", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    kept = mts.load(out / "checkpoint.pkl")
    assert err[0].startswith("fastscnn train: error: training diverged: ")
    assert f"the last good checkpoint, {out}/checkpoint.pkl (iteration {kept['iter']}), is kept" in err[0]
    assert err[0].endswith("try a lower --lr than 1e+06")
    assert kept["iter"] < 6
    assert all(np.isfinite(v).all() for v in kept["model"].values())
    assert all(np.isfinite(v).all() for v in kept["optimizer"]["momentum_buffers"].values())
    if (out / "best.pkl").exists():
        assert all(np.isfinite(v).all() for v in mts.load(out / "best.pkl")["model"].values())
    assert all(r["iter"] <= kept["iter"] for r in log(out) if "miou" in r)


def test_the_step_flags_a_non_finite_loss_on_the_device(tmp_path):
    """The finite check reads nothing back: the flag is a device array, set at the first bad
    iteration and kept after it."""
    from fastscnn.train import train_step

    class Tiny(mts.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = mts.nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x)

    def loss_of(value):  # a loss with a graph (so backward runs) and a chosen value
        return lambda outputs, target: outputs.sum() * 0.0 + value

    model = Tiny()
    optimizer = mts.optim.SGD(model.parameters(), lr=0.1)
    x, y = np.ones((1, 1, 2, 2), np.float32), np.zeros((1, 2, 2), np.int64)
    flag = np.zeros((), np.int64)
    for it, value in ((1, 1.0), (2, float("nan")), (3, 1.0), (4, float("inf"))):
        loss, flag = train_step(model, optimizer, loss_of(value), x, y, it, flag)
        assert isinstance(flag, np.ndarray) and flag.shape == ()
    assert int(flag) == 2


def test_resume_takes_the_checkpoint_settings_and_extends_only_when_asked(tmp_path, capsys):
    """Item 4: a 4-iteration run, then --resume --iters 8 --lr 0.01: the poly schedule is
    extended (and says so) instead of running at lr 0; contradicting flags are errors."""
    data = tiny_data(tmp_path)
    out = str(tmp_path / "run")
    base = ["train", "--out", out, "--no-progress"]
    assert cli.main([*base, "--data-root", str(data), "--iters", "4", "--lr", "0.01", "--batch-size", "2",
                     "--crop-size", "48", "--log-every", "1", "--eval-every", "4", "--device", "cpu"]) == 0
    capsys.readouterr()
    for flags, message in ((["--batch-size", "4"], "--batch-size 4 contradicts the checkpoint's 2"),
                           (["--lr", "0.02"], "--lr 0.02 contradicts the checkpoint's 0.01"),
                           (["--crop-size", "64"], "--crop-size (64, 64) contradicts the checkpoint's (48, 48)"),
                           (["--iters", "3"], "--iters 3 is shorter than the checkpoint's schedule of 4 iterations"),
                           (["--load-from", out + "/checkpoint.pkl"], "give one of them")):
        assert cli.main([*base, "--resume", *flags]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and message in err[0], (flags, err)
    assert mts.load(tmp_path / "run" / "checkpoint.pkl")["iter"] == 4  # untouched by the refusals

    assert cli.main([*base, "--resume", "--iters", "8", "--lr", "0.01", "--batch-size", "2"]) == 0
    assert "extending the poly schedule from 4 to 8 iterations" in capsys.readouterr().out
    lrs = {r["iter"]: r["lr"] for r in log(out) if "lr" in r}
    assert lrs[4] == pytest.approx(0.01 * (1 - 3 / 4) ** 0.9)
    for it in (5, 6, 7, 8):  # the lr of iteration it is set after it - 1 steps
        assert lrs[it] == pytest.approx(0.01 * (1 - (it - 1) / 8) ** 0.9)
    saved = mts.load(tmp_path / "run" / "checkpoint.pkl")
    assert saved["iter"] == 8 and saved["config"]["iters"] == 8 and saved["scheduler"]["max_iters"] == 8


def test_resume_may_change_where_and_how_often(tmp_path):
    train(tiny(tmp_path, "run", iters=2), progress=False)
    metrics = train(tiny(tmp_path, "run", resume=True, iters=4, log_every=2, eval_every=4, workers=0),
                    progress=False)
    assert metrics["iterations"] == 4
    assert [r["iter"] for r in log(tmp_path / "run") if "loss" in r] == [1, 2, 4]
    saved = mts.load(tmp_path / "run" / "checkpoint.pkl")["config"]
    assert (saved["log_every"], saved["eval_every"], saved["workers"]) == (2, 4, 0)


def test_a_fresh_run_refuses_an_out_that_holds_a_run(tmp_path):
    """Item 7: nothing is wiped; the message says how to continue."""
    train(tiny(tmp_path, "run", iters=2), progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(InputError, match=r"--out .*run already holds a run \(checkpoint.pkl, best.pkl, log.jsonl, "
                                         r"metrics.json\): continue it with --resume, or choose another --out"):
        train(tiny(tmp_path, "run", iters=2), progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    (tmp_path / "crashed").mkdir()  # a run that died before its first checkpoint
    (tmp_path / "crashed" / "log.jsonl").write_text('{"iter": 1, "loss": 5.0}\n')
    with pytest.raises(InputError, match=r"holds a run \(log.jsonl\): it saved no checkpoint to resume from: "
                                         r"remove those files, or choose another --out"):
        train(tiny(tmp_path, "crashed", iters=2), progress=False)
    assert (tmp_path / "crashed" / "log.jsonl").read_text() == '{"iter": 1, "loss": 5.0}\n'


def test_load_from_starts_a_new_run_from_the_weights(tmp_path):
    train(tiny(tmp_path, "first", iters=1, eval_every=1), progress=False)
    saved = mts.load(tmp_path / "first" / "checkpoint.pkl")
    from fastscnn.model import FastSCNN
    from fastscnn.predict import model_weights, read_checkpoint

    def load(path, model=None):
        model = model or FastSCNN(19, aux=True)
        _load_weights(model, model_weights(read_checkpoint(path, "--load-from"), path, "--load-from"), path)
        return model

    for key, value in load(tmp_path / "first" / "checkpoint.pkl").state_dict().items():
        np.testing.assert_array_equal(value.numpy(), saved["model"][key], err_msg=key)
    bare = {k: v for k, v in saved["model"].items() if not k.startswith("aux_")}  # e.g. imported weights
    mts.save(bare, tmp_path / "bare.pkl")
    load(tmp_path / "bare.pkl")
    mts.save({k: v for k, v in bare.items() if "classifier" not in k}, tmp_path / "partial.pkl")
    with pytest.raises(InputError, match="--load-from: .*partial.pkl holds no Fast-SCNN weights"):
        load(tmp_path / "partial.pkl")
    mts.save({k: v for k, v in bare.items() if "learning_to_downsample" not in k}, tmp_path / "partial.pkl")
    with pytest.raises(InputError, match=r"--load-from: .*partial.pkl lacks \d+ of the model's tensors"):
        load(tmp_path / "partial.pkl")

    metrics = train(tiny(tmp_path, "tuned", iters=1, eval_every=1, load_from=str(tmp_path / "bare.pkl")),
                    progress=False)
    assert metrics["iterations"] == 1
    assert mts.load(tmp_path / "tuned" / "checkpoint.pkl")["config"]["load_from"] == str(tmp_path / "bare.pkl")


def test_a_run_writes_its_files_as_strict_json(tmp_path):
    """Item 6: metrics.json and log.jsonl are JSON that strict parsers accept: no NaN."""
    metrics = train(tiny(tmp_path, "run", iters=2, eval_every=2), progress=False)
    out = tmp_path / "run"
    for name in ("log.jsonl", "checkpoint.pkl", "best.pkl", "curves.png", "metrics.json", "predictions.png"):
        assert (out / name).is_file(), name

    def strict(constant):
        raise AssertionError(f"not JSON: {constant}")
    saved = json.loads((out / "metrics.json").read_text(), parse_constant=strict)
    for line in (out / "log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=strict)
    assert set(saved) >= {"miou", "pixel_accuracy", "category_miou", "iou_per_class", "iou_per_category",
                          "iterations", "seconds"}
    assert saved["iterations"] == 2 and saved["miou"] == metrics["miou"]
    assert len(saved["iou_per_class"]) == 19
    assert saved["iou_per_class"]["train"] is None  # SynthCity never draws a train
    assert np.isnan(metrics["iou_per_class"]["train"])  # Python callers keep the NaN


def test_bad_settings_have_clear_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at .*nothing.checkpoint.pkl"):
        train(tiny(tmp_path, "nothing", resume=True), progress=False)
    with pytest.raises(ValueError, match="--batch-size 50 is larger than the 6 training images"):
        train(tiny(tmp_path, "big", batch_size=50), progress=False)
    for setting, message in ((dict(device="tpu"), "--device: expected 'cpu' or 'cuda', got 'tpu'"),
                             (dict(iters=0), "--iters: expected a positive integer, got 0"),
                             (dict(lr=-1.0), "--lr: expected a number > 0, got -1.0"),
                             (dict(momentum=1.0), r"--momentum: expected a number in \[0, 1\), got 1.0"),
                             (dict(ohem_thresh=0.0), r"--ohem-thresh: expected a probability in \(0, 1\]"),
                             (dict(scale_range=(2, 1)), "--scale-range: expected two factors 0 < MIN <= MAX"),
                             (dict(workers=-1), "--workers: expected an integer >= 0, got -1"),
                             (dict(batch_size=1), "--batch-size: expected an integer >= 2, got 1"),
                             (dict(epochs=2), "--iters 6 and --epochs 2: give one of them")):
        with pytest.raises(InputError, match=message):
            train(tiny(tmp_path, "bad", **setting), progress=False)
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "big").exists() and not (tmp_path / "bad").exists()
