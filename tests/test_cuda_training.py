"""The whole CUDA path of a training step against the CPU path, and the counters that measure it.

A Fast-SCNN step (forward with the three heads, loss, backward, SGD with momentum and weight
decay) on device ``cuda`` must give the CPU's logits, loss, every gradient and the updated
parameters. Dropout is on: both devices draw its masks from the same counter-based stream.
Batch 2, because training batch norm needs more than one value per channel and the pyramid
pooling's 1x1 bin has one value per image.
"""
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastscnn.train
import minitorch_seg as mts
from minitorch_seg.benchmark import counters
from fastscnn.data.synthetic import generate_synthcity
from fastscnn.losses import SegmentationLoss
from fastscnn.model import FastSCNN
from fastscnn.train import param_groups, train, train_step, uploader

pytestmark = pytest.mark.gpu


def training_step(device, dtype, size=(64, 128), batch=2, seed=0):
    """Build the model, run one step on ``device``; everything it produced, on the host."""
    mts.manual_seed(seed)
    model = FastSCNN(19, aux=True)
    model = (model.double() if dtype == np.float64 else model).to(device).train()
    optimizer = mts.optim.SGD(param_groups(model, 4e-5), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(seed)
    x = mts.tensor(rng.standard_normal((batch, 3, *size)).astype(dtype), device=device)
    y = rng.integers(0, 19, (batch, *size))
    y[:, :4] = 255
    outputs = model(x)
    loss = SegmentationLoss(aux_weight=0.4)(outputs, mts.tensor(y, device=device))
    optimizer.zero_grad()
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    optimizer.step()
    return {"logits": [o.numpy() for o in outputs], "loss": loss.item(), "grads": grads,
            "params": {k: p.numpy() for k, p in model.named_parameters()}}


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_a_training_step_on_cuda_equals_the_cpu_step(dtype, tol):
    cpu, cuda = training_step("cpu", dtype), training_step("cuda", dtype)

    def close(a, b, what, floor=0.0):
        scale = max(float(np.abs(b).max()), floor)
        error = float(np.abs(a - b).max())
        assert error <= tol * scale, f"{what}: differs by {error:.3g}, {error / scale:.2e} of {scale:.3g}"

    for i, (a, b) in enumerate(zip(cuda["logits"], cpu["logits"])):
        close(a, b, f"logits of head {i}")
    close(np.float64(cuda["loss"]), np.float64(cpu["loss"]), "loss")
    assert cpu["grads"].keys() == cuda["grads"].keys()
    # A bias that feeds a training-mode batch norm has a gradient that is 0 in exact arithmetic
    # (the norm removes any constant shift); both devices hold rounding noise there, so every
    # gradient is compared on the scale of at least a thousandth of the largest one, and so is
    # every parameter after the step (those biases start at 0 and move by that noise).
    grad_floor = 1e-3 * max(float(np.abs(g).max()) for g in cpu["grads"].values())
    param_floor = 1e-3 * max(float(np.abs(p).max()) for p in cpu["params"].values())
    for k in cpu["grads"]:
        close(cuda["grads"][k], cpu["grads"][k], f"gradient of {k}", grad_floor)
        close(cuda["params"][k], cpu["params"][k], f"{k} after the SGD step", param_floor)


def test_the_main_job_runs_on_the_device_it_picks(tmp_path):
    """``examples/train_cityscapes.py`` for 2 iterations in a fresh process, on the device it
    picks by itself: a real GPU where there is one, else the CPU. (``fastscnn train --device
    cuda`` on the emulated GPU, the same command, runs in tests/test_wheel.py from the wheel.)"""
    root = generate_synthcity(tmp_path / "data", 4, 2, size=(48, 96), seed=0)
    env = {k: v for k, v in os.environ.items() if k != "MTS_CUDA"}
    main_job = Path(__file__).resolve().parents[1] / "examples" / "train_cityscapes.py"
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(main_job), "--iters", "2", "--data-root", str(root),
                             "--batch-size", "2", "--crop-size", "48", "--out", str(out), "--no-progress"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"] == ("cuda" if mts.cuda.is_available() and not mts.cuda.is_emulated() else "cpu")
    assert metrics["iterations"] == 2 and 0.0 <= metrics["miou"] <= 1.0
    assert (out / "predictions.png").is_file()


def test_resume_on_cuda_is_bit_exact(tmp_path, monkeypatch):
    """1 + 1 iterations on device cuda with a crash and --resume between equal 2 straight, bit
    for bit: the checkpoint carries the momentum buffers and the dropout stream to the device."""
    from test_train import assert_same_state, log, tiny

    def run(out, **kw):
        return train(tiny(tmp_path, out, device="cuda", iters=2, eval_every=2, checkpoint_every=1, **kw),
                     progress=False)

    straight = run("straight")
    original_step, calls = fastscnn.train.train_step, {"n": 0}

    def crashing_step(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # after the checkpoint at 1; before the step, which costs most here
            raise RuntimeError("crash")
        return original_step(*args)

    monkeypatch.setattr(fastscnn.train, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="crash"):
        run("resumed")
    monkeypatch.setattr(fastscnn.train, "train_step", original_step)
    resumed = run("resumed", resume=True)
    assert_same_state(tmp_path / "straight" / "checkpoint.pkl", tmp_path / "resumed" / "checkpoint.pkl")
    assert straight["miou"] == resumed["miou"] and log(tmp_path / "straight") == log(tmp_path / "resumed")


@pytest.mark.skipif(not mts.cuda.is_emulated(), reason="reads the emulated device's memory")
def test_a_step_reads_nothing_launches_the_same_at_any_batch_and_leaves_only_its_state():
    from kernels.cuda.emulator.xp import Stats
    from kernels.cuda.loss import _flag  # the loss kernels' error flag lives as long as the process
    gc.collect()  # other tests' garbage, freed in the middle of this test, would count against it
    before, flag_before = Stats.live_bytes, list(_flag)  # other tests' arrays may be alive
    mts.manual_seed(0)
    model = FastSCNN(19, aux=True).to("cuda")
    optimizer = mts.optim.SGD(param_groups(model, 4e-5), lr=0.01, momentum=0.9)
    upload, criterion = uploader("cuda"), SegmentationLoss(0.4)
    first_bad = mts.device.xp_for("cuda").zeros((), np.int64)
    counts = []
    for it, batch in enumerate((2, 2, 4), 1):  # the first step makes the momentum buffers
        rng = np.random.default_rng(it)
        x = rng.standard_normal((batch, 3, 64, 128)).astype(np.float32)
        y = rng.integers(0, 19, (batch, 64, 128)).astype(np.uint8)
        with counters() as c:
            loss, first_bad = train_step(model, optimizer, criterion, *upload(x, y), it, first_bad)
        counts.append(c)
    assert counts[1].syncs == counts[2].syncs == 0
    # Counted as CuPy launches them (a matmul: its copies, pointer arrays and GEMM; 854 a step
    # on main at 02304ed by this count, which then counted a matmul as one launch).
    assert counts[1].launches == counts[2].launches <= 700
    # What is left: parameters, buffers, gradients, momentum, and the two 0-d results.
    state = [t.data for t in model.state_dict().values()] + [p.grad.data for p in model.parameters()]
    state += list(optimizer.momentum_buffers.values()) + [loss, first_bad] + _flag[len(flag_before):]
    allocations = dict(map(mts.device.allocation_of, state))
    assert Stats.live_bytes - before == sum(allocations.values())
