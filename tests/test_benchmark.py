"""The benchmarks run end to end on tiny sizes and report well-formed numbers; the torch twin
of Fast-SCNN computes what ours computes.

No test here asserts a time: only that each number is there, positive, and consistent with
the others (a ratio is the quotient of the two times it names, percentages add up to 100).
"""
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import minitorch_seg as mts
import minitorch_seg.functional as F
from fastscnn.model import FastSCNN

torch = pytest.importorskip("torch")

from fastscnn import benchmark as model_bench  # noqa: E402
from fastscnn.torch_reference import torch_fastscnn  # noqa: E402
from minitorch_seg import benchmark as op_bench  # noqa: E402
from kernels import device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_benchmarks_does_not_import_torch():
    code = ("import sys, minitorch_seg.benchmark, fastscnn.benchmark, fastscnn.torch_reference; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_kernel_benchmark_quick(capsys):
    assert op_bench.main(["--device", "cpu", "--quick", "--repeat", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cpu" and out["torch_threads"] == os.cpu_count()
    rows = out["results"]
    assert [(r["op"], r["shape"]) for r in rows] == [(c.op, c.shape) for c in op_bench.quick_cases()]
    for r in rows:
        assert r["ours_ms"] > 0 and r["torch_ms"] > 0
        assert r["ratio"] == pytest.approx(r["ours_ms"] / r["torch_ms"])
    table = op_bench.format_table({k: v for k, v in out.items() if k != "results"}, rows)
    assert "ours/torch" in table and all(r["op"] in table for r in rows)


@pytest.fixture(scope="module")
def model_run():
    """One tiny run of ``fastscnn.benchmark`` with everything on; its JSON result."""
    forward_before = F.Conv2dFunction.__dict__["forward"]
    args = ["--device", "cpu", "--height", "32", "--width", "48", "--train-batch", "2",
            "--train-size", "32", "--iters", "1", "--compare-torch", "--profile", "--json"]
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        rc = model_bench.main(args)
    assert F.Conv2dFunction.__dict__["forward"] is forward_before, "--profile left its timers installed"
    return rc, json.loads(buffer.getvalue())


def test_model_benchmark_inference(model_run):
    rc, out = model_run
    assert rc == 0
    inf = out["inference"]
    assert (inf["batch_size"], inf["height"], inf["width"]) == (1, 32, 48)
    for side in ("ours", "torch"):
        n = inf[side]
        assert n["logits_ms"] > 0 and n["labels_ms"] > 0
        assert n["fps"] == pytest.approx(1e3 / n["logits_ms"])
        assert n["peak_memory_mb"] is None  # the CPU has no peak-memory number
    assert inf["ratios"]["logits_ms"] == pytest.approx(inf["ours"]["logits_ms"] / inf["torch"]["logits_ms"])
    assert inf["ratios"]["fps"] == pytest.approx(inf["ours"]["fps"] / inf["torch"]["fps"])
    assert inf["agreement"]["agree"] and inf["agreement"]["relative"] < 1e-4


def test_model_benchmark_training_and_profile(model_run):
    _, out = model_run
    tr = out["train"]
    assert (tr["batch_size"], tr["height"], tr["width"]) == (2, 32, 32)
    for side in ("ours", "torch"):
        assert tr[side]["step_ms"] > 0
        assert tr[side]["images_per_s"] == pytest.approx(2e3 / tr[side]["step_ms"])
    assert tr["ratios"]["step_ms"] == pytest.approx(tr["ours"]["step_ms"] / tr["torch"]["step_ms"])
    # What a step holds for its backward, measured the same way for both; no counters on the CPU.
    assert 0 < tr["step_saved_bytes"] <= tr["torch_step_saved_bytes"]
    assert tr["step_launches"] is tr["step_syncs"] is tr["step_peak_bytes"] is None

    p = out["profile"]
    families = {f["family"]: f for f in p["families"]}
    assert list(families) == [*model_bench.OP_FAMILIES, "optimizer", model_bench.UNTIMED]
    for name in ("conv2d", "depthwise", "batchnorm", "relu", "upsample", "pool", "loss"):
        assert families[name]["forward_ms"] > 0 and families[name]["backward_ms"] > 0, name
    assert families["optimizer"]["total_ms"] > 0
    assert sum(f["total_ms"] for f in p["families"]) == pytest.approx(p["total_ms"])
    assert sum(f["percent"] for f in p["families"]) == pytest.approx(100)
    assert min(f["total_ms"] for f in p["families"]) >= 0
    assert p["torch_total_ms"] > 0

    text = model_bench.report(out)
    assert "training step" in text and "agree" in text and "autograd+python" in text
    assert "the graph of one step saves" in text and "torch's:" in text


@pytest.mark.skipif(device.gpu_present(), reason="checks the message shown without a GPU")
@pytest.mark.parametrize("module", ["minitorch_seg.benchmark", "fastscnn.benchmark"])
def test_cuda_without_a_gpu_fails_clearly(module):
    # In a process of its own: this one may use the emulated GPU for "cuda".
    result = subprocess.run([sys.executable, "-m", module, "--device", "cuda"], capture_output=True,
                            text=True, env={**os.environ, "MTS_CUDA": "gpu"})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: --device cuda: CuPy ")
    assert result.stderr.strip().endswith("without a GPU, run the CUDA code on the emulated GPU: MTS_CUDA=emulate")


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the parity tests: their tiny ops gain nothing from more, and on a
    shared machine a thread waiting at each op's barrier for a busy core costs seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_close(ours, theirs, tol, what="", floor=0.0):
    """Equal up to ``tol`` times the larger of ``floor`` and the largest magnitude in ``theirs``."""
    scale = max(np.abs(theirs).max(), floor)
    diff = np.abs(ours - theirs).max()
    assert diff <= tol * scale, f"{what}: max |ours - torch| {diff:.3g}, scale {scale:.3g}"


def assert_all_close(ours, theirs, tol):
    """:func:`assert_close` for each name of ``ours``, the floor 1e-3 x the largest value of all."""
    largest = max(np.abs(theirs[name]).max() for name in ours)
    for name in ours:
        assert_close(ours[name], theirs[name], tol, name, floor=1e-3 * largest)


def _float64(model):
    for _, t in list(model.named_parameters()) + list(model.named_buffers()):
        t.data = t.data.astype(np.float64)
    return model


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, mts.nn.Dropout):
            m.p = 0.0
    return model


def test_twin_has_our_names():
    model = FastSCNN(19)
    twin = torch_fastscnn(model)
    theirs = {k for k in twin.state_dict() if not k.endswith("num_batches_tracked")}
    assert theirs == set(model.state_dict())
    assert twin.training and twin.classifier.body[2].p == 0.1


def test_twin_agrees_in_eval(one_torch_thread):
    mts.manual_seed(1)
    model = _float64(FastSCNN(19)).eval()
    rng = np.random.default_rng(0)
    for name, b in model.named_buffers():  # running statistics other than the initial 0 and 1
        b.data[...] = rng.uniform(0.5, 1.5, b.shape) if name.endswith("var") else rng.normal(0, 0.1, b.shape)
    x = rng.standard_normal((2, 3, 40, 56))
    twin = torch_fastscnn(model)
    assert not twin.training
    ours = model(mts.tensor(x)).numpy()
    theirs = twin(torch.from_numpy(x)).detach().numpy()
    assert_close(ours, theirs, 1e-10)


def test_twin_agrees_in_training_forward_backward_and_running_stats(one_torch_thread):
    mts.manual_seed(2)
    model = _no_dropout(_float64(FastSCNN(19))).train()
    twin = torch_fastscnn(model)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 32, 48))

    ours = model(mts.tensor(x))
    theirs = twin(torch.from_numpy(x))
    assert len(ours) == len(theirs) == 3
    weights = [rng.standard_normal(o.shape) for o in ours]  # the heads at their own resolution
    for a, b in zip(ours, theirs):
        assert_close(a.numpy(), b.detach().numpy(), 1e-9, "output")
    sum((o * mts.tensor(w)).sum() for o, w in zip(ours, weights)).backward()
    sum((t * torch.from_numpy(w)).sum() for t, w in zip(theirs, weights)).backward()

    # Some true values are 0: the gradient of a BN bias whose output meets the loss only through
    # conv + BN in training mode (the next BN subtracts any shift), and the running mean of a BN
    # after a 1x1 conv of zero-mean channels. Both sides return round-off there, so each value
    # is compared on the scale of the largest of its kind.
    assert_all_close({n: p.grad.numpy() for n, p in model.named_parameters()},
                     {n: p.grad.numpy() for n, p in twin.named_parameters()}, 1e-8)
    assert_all_close({n: b.numpy() for n, b in model.named_buffers()},
                     {n: b.numpy() for n, b in twin.named_buffers()}, 1e-9)


def test_the_gpu_check_script_runs_modules_that_exist():
    """tools/gpu_check.sh is what a session with a GPU runs: its commands must name real modules."""
    import importlib.util
    import re
    from pathlib import Path
    script = (Path(__file__).resolve().parents[1] / "tools" / "gpu_check.sh").read_text()
    modules = re.findall(r"python3 -m ([\w.]+)", script)
    assert {"pytest", "minitorch_seg.benchmark", "fastscnn.benchmark"} <= set(modules)
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    assert "examples/train_cityscapes.py" in script
