"""The ``fastscnn`` command as a user meets it: one line and exit 2 for a user error, a
traceback for a bug; predict and evaluate output; the hand-off to cityscapesscripts."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minitorch_seg as mts
from fastscnn import cli
from fastscnn.data.synthetic import generate_synthcity
from fastscnn.errors import UserError
from fastscnn.model import FastSCNN

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_synthcity(tmp_path_factory.mktemp("cli") / "data", 2, 2, (48, 96), seed=3)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A bare state_dict of an untrained model: predict and evaluate accept it like a checkpoint."""
    mts.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "weights.pkl"
    mts.save(FastSCNN(19, aux=False).state_dict(), path)
    return path


def run(capsys, *argv):
    """``fastscnn ARGV`` in this process: (exit status, stdout, stderr lines)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse exits by itself
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def val_images(data):
    return sorted((data / "leftImg8bit" / "val").rglob("*.png"))


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, data, weights):
    """Item 8, tried as a new user would; a failed start leaves no --out behind."""
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all\n" * 50)
    (tmp_path / "old").mkdir()
    shutil.copy(garbage, tmp_path / "old" / "checkpoint.pkl")
    images = tmp_path / "images"
    images.mkdir()
    for image in val_images(data):
        shutil.copy(image, images)
    truncated = images / "truncated.png"
    truncated.write_bytes(val_images(data)[0].read_bytes()[:300])
    new = tmp_path / "new"
    cases = {
        "wrong --data-root": (["train", "--data-root", tmp_path / "nowhere", "--out", new],
                              f"fastscnn train: error: --data-root {tmp_path}/nowhere: no such folder; expected a "
                              f"Cityscapes folder holding leftImg8bit/ and gtFine/ (leave --data-root out to use "
                              f"SynthCity)"),
        "wrong --data-root (evaluate)": (["evaluate", "--checkpoint", weights, "--data-root", tmp_path / "nowhere"],
                                         f"fastscnn evaluate: error: Cityscapes root {tmp_path}/nowhere not found: "
                                         f"expected a folder holding leftImg8bit/ and gtFine/"),
        "--iters 0": (["train", "--iters", "0", "--out", new],
                      "fastscnn train: error: --iters: expected a positive integer, got 0"),
        "garbage checkpoint (evaluate)": (
            ["evaluate", "--checkpoint", garbage, "--data-root", data],
            f"fastscnn evaluate: error: --checkpoint: {garbage} is not a checkpoint (UnpicklingError: invalid load key"),
        "garbage checkpoint (--resume)": (
            ["train", "--out", tmp_path / "old", "--resume"],
            f"fastscnn train: error: --resume: {tmp_path}/old/checkpoint.pkl is not a checkpoint (UnpicklingError: invalid load key"),
        "garbage checkpoint (--load-from)": (
            ["train", "--load-from", garbage, "--data-root", data, "--out", new],
            f"fastscnn train: error: --load-from: {garbage} is not a checkpoint (UnpicklingError: invalid load key"),
        "a truncated image in predict": (
            ["predict", "--checkpoint", weights, "--input", images, "--output", tmp_path / "pred", "--device", "cpu"],
            f"fastscnn predict: error: {truncated}: cannot read image file ("),
        "a typo in a flag": (["train", "--itres", "5", "--out", new],
                             "fastscnn: error: unrecognized arguments: --itres 5 (see fastscnn --help)"),
        "an image as --checkpoint (its unpickling message holds a newline)": (
            ["evaluate", "--checkpoint", truncated, "--data-root", data],
            f"fastscnn evaluate: error: --checkpoint: {truncated} is not a checkpoint (UnpicklingError: "),
        "evaluate without --data-root, for weights that record no data": (
            ["evaluate", "--checkpoint", weights],
            f"fastscnn evaluate: error: --data-root: needed, as {weights} records no data (only fastscnn train's "
            f"checkpoints do)"),
        "a file as --output": (
            ["predict", "--checkpoint", weights, "--input", val_images(data)[0], "--output", garbage, "--device", "cpu"],
            f"fastscnn predict: error: --output {garbage}: cannot write {garbage}/"),
        "a file in the way of --out": (
            ["train", "--data-root", data, "--out", garbage / "run", "--iters", "1", "--batch-size", "2",
             "--crop-size", "48", "--device", "cpu"],
            f"fastscnn train: error: --out {garbage}/run: cannot write {garbage}/run (Not a directory); fix that "
            f"and start again"),
    }
    for name, (argv, expected) in cases.items():
        code, _, err = run(capsys, *argv)
        assert code == 2 and len(err) == 1 and err[0].startswith(expected), (name, err)
    assert not new.exists()
    assert sorted(p.name for p in (tmp_path / "pred" / "labelIds").iterdir()) == sorted(
        p.name for p in val_images(data))  # the readable images were still predicted


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastscnn.cli", "train", "--data-root", str(tmp_path / "nowhere")],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"fastscnn train: error: --data-root {tmp_path}/nowhere: no such folder; "
                                        f"expected a Cityscapes folder holding leftImg8bit/ and gtFine/ (leave "
                                        f"--data-root out to use SynthCity)"]
    assert not (tmp_path / "runs").exists()


def test_a_bug_keeps_its_traceback(monkeypatch):
    import fastscnn.train

    def broken(cfg, progress=True):
        raise ValueError("a bug: not a user error")
    monkeypatch.setattr(fastscnn.train, "train", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["train", "--iters", "1"])


def test_train_flags_reach_the_config(monkeypatch):
    import fastscnn.train
    seen = {}

    def capture(cfg, progress=True):
        seen["cfg"], seen["progress"] = cfg, progress
        raise UserError("stop here")
    monkeypatch.setattr(fastscnn.train, "train", capture)
    cli.main(["train", "--weight-decay", "1e-4", "--momentum", "0.8", "--aux-weight", "0.3", "--ohem",
              "--ohem-thresh", "0.6", "--ohem-min-kept", "500", "--scale-range", "0.75", "1.5",
              "--checkpoint-every", "7", "--eval-every", "9", "--load-from", "w.pkl", "--no-progress"])
    cfg = seen["cfg"]
    assert (cfg.weight_decay, cfg.momentum, cfg.aux_weight, cfg.ohem, cfg.ohem_thresh, cfg.ohem_min_kept,
            cfg.scale_range, cfg.checkpoint_every, cfg.eval_every, cfg.load_from) == (
        1e-4, 0.8, 0.3, True, 0.6, 500, [0.75, 1.5], 7, 9, "w.pkl")
    assert cfg.lr is None and cfg.batch_size is None and cfg.seed is None  # not given: checkpoint or default
    assert seen["progress"] is False


def test_predict_mirrors_subfolders(tmp_path, capsys, weights, data):
    """Item 5: a/X.png and b/X.png are two predictions, not one written twice."""
    first, second = val_images(data)
    for sub, image in (("a", first), ("b", second)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(image, tmp_path / "in" / sub / "X.png")
    code, out, err = run(capsys, "predict", "--checkpoint", weights, "--input", tmp_path / "in",
                         "--output", tmp_path / "pred", "--device", "cpu")
    assert code == 0 and err == [] and "predicted 2 of 2 image(s)" in out
    written = sorted(str(p.relative_to(tmp_path / "pred")) for p in (tmp_path / "pred").rglob("*.png"))
    assert written == [f"{kind}/{sub}/X.png" for kind in ("color", "labelIds", "overlay") for sub in ("a", "b")]
    a, b = (np.asarray(Image.open(tmp_path / "pred" / "overlay" / sub / "X.png")) for sub in ("a", "b"))
    assert not np.array_equal(a, b)  # each is its own image's overlay

    shutil.copy(first, tmp_path / "in" / "a" / "X.jpg")
    code, _, err = run(capsys, "predict", "--checkpoint", weights, "--input", tmp_path / "in",
                       "--output", tmp_path / "pred2", "--device", "cpu")
    assert code == 2 and err == [f"fastscnn predict: error: --input: {tmp_path}/in/a/X.jpg and "
                                 f"{tmp_path}/in/a/X.png would both be written as a/X.png"]
    assert not (tmp_path / "pred2").exists()


def test_evaluate_json_is_strict_and_the_table_has_categories(capsys, weights, data):
    code, out, _ = run(capsys, "evaluate", "--checkpoint", weights, "--data-root", data, "--device", "cpu", "--json")

    def strict(constant):
        raise AssertionError(f"not JSON: {constant}")
    scores = json.loads(out, parse_constant=strict)
    assert code == 0 and scores["iou_per_class"]["train"] is None  # SynthCity never draws a train
    assert set(scores) >= {"miou", "pixel_accuracy", "category_miou", "iou_per_category"}

    code, out, _ = run(capsys, "evaluate", "--checkpoint", weights, "--data-root", data, "--device", "cpu")
    rows = dict(line.rsplit(None, 1) for line in out.splitlines() if line.strip() and not line.startswith("-"))
    assert code == 0 and rows["train"] == "nan"
    for category in ("flat", "construction", "object", "nature", "sky", "human", "vehicle"):
        assert float(rows[category]) == pytest.approx(scores["iou_per_category"][category], abs=5e-4)


# The README's hand-off to the official evaluator on SynthCity (keep the two in sync).
HAND_OFF = ('python -c "from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev; '
            'ev.args.evalInstLevelScore = False; ev.main()"')


def test_the_readme_hand_off_to_cityscapesscripts_gives_our_miou(tmp_path, capsys, weights, data):
    assert HAND_OFF in (ROOT / "README.md").read_text()
    assert run(capsys, "predict", "--checkpoint", weights, "--input", data / "leftImg8bit" / "val",
               "--output", tmp_path / "preds", "--device", "cpu")[0] == 0
    code, out, _ = run(capsys, "evaluate", "--checkpoint", weights, "--data-root", data, "--device", "cpu", "--json")
    ours = json.loads(out)
    env = dict(os.environ, CITYSCAPES_DATASET=str(data), CITYSCAPES_RESULTS=str(tmp_path / "preds" / "labelIds"),
               CITYSCAPES_EXPORT_DIR=str(tmp_path / "preds"))
    proc = subprocess.run(HAND_OFF, shell=True, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    official = json.loads((tmp_path / "preds" / "resultPixelLevelSemanticLabeling.json").read_text())
    assert official["averageScoreClasses"] == pytest.approx(ours["miou"], rel=1e-9)
    assert official["averageScoreCategories"] == pytest.approx(ours["category_miou"], rel=1e-9)


def one_line_in_a_process(tmp_path, hidden, module, *argv, env=()):
    """Run ``python -m module ARGV`` with the modules ``hidden`` made unimportable, as on a
    machine without them: (exit status, stderr lines)."""
    code = (f"import runpy, sys\nfor name in {hidden!r}: sys.modules[name] = None\n"
            f"sys.argv = [{module!r}, *{[str(a) for a in argv]!r}]\nrunpy.run_module({module!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "MTS_CUDA": "", **dict(env)})
    return proc.returncode, proc.stderr.splitlines()


def test_what_is_not_installed_is_one_line_and_exit_2(tmp_path):
    """--device cuda without CuPy says how to get a device; a benchmark without torch says how to
    get it; a bad MTS_CUDA is named."""
    code, err = one_line_in_a_process(tmp_path, ["cupy"], "fastscnn.cli", "train", "--device", "cuda")
    assert code == 2 and err == ["fastscnn train: error: --device cuda: CuPy is not installed (pip install "
                                 "'minitorch-seg[cuda13]', or [cuda12], to match your CUDA); without a GPU, run "
                                 "the CUDA code on the emulated GPU: MTS_CUDA=emulate"]
    code, err = one_line_in_a_process(tmp_path, ["cupy"], "fastscnn.cli", "predict", "--checkpoint", "x.pkl", "--output", "p",
                                      "--device", "cuda")
    assert code == 2 and len(err) == 1 and err[0].startswith("fastscnn predict: error: --device cuda: CuPy is not")
    code, err = one_line_in_a_process(tmp_path, ["torch"], "fastscnn.cli", "benchmark", "--compare-torch")
    assert code == 2 and err[-1:] == ["error: --compare-torch: the PyTorch reference needs PyTorch, which is not "
                                      "installed: pip install 'minitorch-seg[torch]'"]
    assert not any("Traceback" in line for line in err)
    code, err = one_line_in_a_process(tmp_path, ["torch"], "minitorch_seg.benchmark")
    assert code == 2 and err == ["error: this benchmark compares with PyTorch, which is not installed: "
                                 "pip install 'minitorch-seg[torch]'"]
    code, err = one_line_in_a_process(tmp_path, [], "fastscnn.cli", "train", env={"MTS_CUDA": "yes"})
    assert code == 2 and err == ["fastscnn train: error: MTS_CUDA: expected 'gpu' or 'emulate', got 'yes'"]


def test_predict_reports_only_folders_it_created(tmp_path, capsys, weights):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    code, out, err = run(capsys, "predict", "--checkpoint", weights, "--input", tmp_path / "in",
                         "--output", tmp_path / "pred", "--device", "cpu")
    assert code == 2 and out == "predicted 0 of 1 image(s); nothing written\n"
    assert len(err) == 1 and "broken.png: cannot read image file" in err[0]
    assert not (tmp_path / "pred").exists()


def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch, data):
    """The second checkpoint finds the disk full half-way: one line naming the folder and the
    space a checkpoint needs; the first checkpoint stays and no temporary file is left."""
    import pickle
    import minitorch_seg.nn
    dumps, real_dump = [], pickle.dump

    def dump_until_full(obj, f, protocol=None):
        dumps.append(1)
        if len(dumps) == 2:
            f.write(b"half a checkpoint")
            raise OSError(28, "No space left on device")
        real_dump(obj, f, protocol=protocol)
    monkeypatch.setattr(minitorch_seg.nn.pickle, "dump", dump_until_full)
    out = tmp_path / "run"
    code, _, err = run(capsys, "train", "--data-root", data, "--out", out, "--iters", "2", "--checkpoint-every", "1",
                       "--batch-size", "2", "--crop-size", "48", "--device", "cpu", "--no-progress")
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"fastscnn train: error: --out {out}: no space left on the device for checkpoint.pkl, "
                             f"which needs about ")
    assert err[0].endswith(" MB; free some space (or choose another --out), then --resume")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pkl", "log.jsonl"]
    assert mts.load(out / "checkpoint.pkl")["iter"] == 1


def test_synthcity_has_an_address_that_the_checkpoint_keeps(tmp_path, capsys, monkeypatch):
    """SynthCity goes to $MTS_DATA (else the user cache folder); the run prints where; the
    checkpoint's absolute location lets evaluate, predict and --resume find it from anywhere."""
    monkeypatch.setenv("MTS_DATA", str(tmp_path / "store"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    synth = ["--synth-train", "4", "--synth-val", "2", "--synth-size", "48x96", "--batch-size", "2",
             "--crop-size", "48", "--device", "cpu", "--no-progress", "--out", tmp_path / "run"]
    code, out, err = run(capsys, "train", "--iters", "1", *synth)
    root = tmp_path / "store" / "synthcity-4-2-48x96-s0"
    assert code == 0 and out.startswith(f"data: SynthCity (4 train + 2 val images at 48x96) in {root} "
                                        f"(set MTS_DATA to keep it elsewhere)\n")
    progress = [line for line in err if line.startswith("SynthCity: ")]  # a line per 10%, not a bar
    assert progress[-1] == f"SynthCity: 6 of 6 images (100%) in {root}" and len(progress) == 6
    assert mts.load(tmp_path / "run" / "checkpoint.pkl")["config"]["synth_root"] == str(root)
    assert list((tmp_path / "store").iterdir()) == [root] and not list((tmp_path / "a").iterdir())

    monkeypatch.chdir(tmp_path / "b")
    monkeypatch.setenv("MTS_DATA", str(tmp_path / "elsewhere"))  # the checkpoint's location wins
    code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run" / "best.pkl", "--json", "--device", "cpu")
    assert code == 0 and json.loads(out)["miou"] >= 0 and err[0].startswith("data: SynthCity") and str(root) in err[0]
    code, out, _ = run(capsys, "predict", "--checkpoint", tmp_path / "run" / "best.pkl", "--output", "preds",
                       "--device", "cpu")
    assert code == 0 and out.startswith("predicted 2 of 2 image(s) into preds/")
    code, out, _ = run(capsys, "train", "--resume", "--iters", "2", "--out", tmp_path / "run", "--no-progress")
    assert code == 0 and f"in {root} " in out
    assert not (tmp_path / "elsewhere").exists() and sorted(p.name for p in (tmp_path / "b").iterdir()) == ["preds"]

    code, _, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run" / "metrics.json")
    assert code == 2 and err == [f"fastscnn evaluate: error: --checkpoint: {tmp_path}/run/metrics.json is not a "
                                 f"checkpoint" + err[0].split("is not a checkpoint", 1)[1]]


def test_synthcity_defaults_to_the_user_cache(monkeypatch, tmp_path):
    from fastscnn.train import TrainConfig, data_home, resolve
    monkeypatch.delenv("MTS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data_home() == tmp_path / "minitorch-seg" / "data"
    cfg = resolve(TrainConfig(device="cpu"))
    assert cfg.synth_root == str(tmp_path / "minitorch-seg" / "data" / "synthcity-240-40-192x384-s0")
