"""How fast is our Fast-SCNN? Inference latency, training step time, memory; PyTorch alongside.

    python -m fastscnn.benchmark [--device cpu|cuda] [--compare-torch] [--profile] [--json]
    python -m fastscnn.benchmark --device cuda --estimate H100 [--json]
    python -m fastscnn.benchmark --device cuda --estimate H100 --measure [ESTIMATE_JSON] [--json]

What it runs (float32, random inputs, the model freshly initialised with seed 0):

- Inference: the model in eval mode without a graph on a batch of ``--batch-size``
  images of ``--height`` x ``--width``; the time to the logits, and to the label map
  (logits, then argmax over the classes, left on the device). FPS = images per second.
- Training step: forward with the auxiliary heads, the loss (cross-entropy + 0.4 x each
  auxiliary one), backward, and the SGD step of ``fastscnn.train`` (momentum 0.9, weight
  decay 4e-5 except on depthwise weights), on ``--train-batch`` crops of ``--train-size``.
- Defaults, GPU: inference 1 x 1024x2048 (a Cityscapes frame), training 12 x 1024x1024
  (the paper's batch). CPU: inference 1 x 512x1024 and training 2 x 512x1024, since the
  full sizes take minutes per step there.
- Times are medians of ``--iters`` runs after one warm-up run; on the GPU both libraries'
  queues are synchronised before the clock is read. Peak memory (GPU only) is the most
  memory allocated at once during one run, model and optimizer state included: CuPy's pool
  for us, ``torch.cuda.max_memory_allocated`` for torch.
- Convolutions on the GPU run in TF32, ours and torch's, as PyTorch's default
  (``torch.backends.cudnn.allow_tf32``); ``--no-tf32`` turns both off (the precision of
  the issue's FP32 targets).
- ``--compare-torch``: the same network in ``torch.nn`` with our weights
  (:mod:`fastscnn.torch_reference`); its logits are checked against ours on the inference
  batch, then it is timed on the same inputs, and each row gets a ratio ours / torch.
- ``--profile``: one training step split by op family. Every ``Function``'s forward and
  backward is wrapped with a timer (synchronised on the GPU), the optimizer separately;
  what no timer saw (graph walk, gradient accumulation, Python) is the last row. With torch
  installed, torch's time for the same step is shown beside it.
- ``--estimate GPU``: no timing at all; the GPU time of the same two workloads on a named
  GPU, estimated (uncalibrated) from memory traces on the emulated GPU (:mod:`fastscnn.estimate`).
  The sizes flags choose its target sizes (default: the GPU defaults above).
- ``--estimate GPU --measure``: that estimate, family by family, beside the same kernels timed
  with CUDA events on device cuda, and the ratio measured / estimated (:mod:`fastscnn.measure`).

The ops are in :mod:`minitorch_seg.benchmark`, which times them one by one at these shapes.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

import minitorch_seg as mts
import minitorch_seg.functional as F
from fastscnn.argtypes import parse_size, positive_int
from fastscnn.model import FastSCNN
from fastscnn.palette import NUM_CLASSES
from fastscnn.torch_reference import head_losses, import_torch, torch_fastscnn
from fastscnn.train import TrainConfig, resolve
from fastscnn.workloads import IGNORE, images, labels, our_inference, our_train_step
from minitorch_seg.benchmark import (WARMUP, busy_note, check_cuda, configure_torch, counters,
                                     device_peak_bytes, emulated_note, gpu_name, median_ms,
                                     release_cached_memory, saved_bytes, synchronizer, torch_device,
                                     torch_peak_bytes, user_error)

DEFAULTS = {
    "cuda": dict(batch_size=1, height=1024, width=2048, train_batch=12, train_size=(1024, 1024), iters=20),
    "cpu": dict(batch_size=1, height=512, width=1024, train_batch=2, train_size=(512, 1024), iters=3),
}
OP_FAMILIES = ("conv2d", "depthwise", "batchnorm", "relu", "upsample", "pool", "loss", "other")
UNTIMED = "autograd+python"  # the profile's last row: time inside the step that no timer saw


# --- the workloads -------------------------------------------------------------------------
def torch_inference(twin, torch, x, device):
    """``(logits, labels)`` for the torch twin, as :func:`our_inference`."""
    data = torch.from_numpy(x).to(device)
    twin.eval()

    @torch.no_grad()
    def logits():
        return twin(data)

    @torch.no_grad()
    def label_map():
        return twin(data).argmax(dim=1)
    return logits, label_map


def torch_saved_bytes(twin, torch, x, y, device):
    """Bytes PyTorch's autograd graph saves in the forward pass and loss of a training step.

    Every tensor the graph saves passes through a ``saved_tensors_hooks`` pack hook; each
    storage counts once, whole (the way ``minitorch_seg.benchmark.saved_bytes`` counts ours).
    """
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    twin.train()
    data, target = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = head_losses(torch, twin(data), target, resolve(TrainConfig()).aux_weight, IGNORE)
    del loss
    return sum(storages.values())


def torch_train_step(twin, torch, x, y, device):
    """The same training step for the torch twin: the same loss, the same SGD parameter groups."""
    cfg = resolve(TrainConfig())  # the recipe's values (a TrainConfig field left None means default)
    depthwise = {id(m.weight) for m in twin.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    groups = [{"params": [p for p in twin.parameters() if id(p) not in depthwise], "weight_decay": cfg.weight_decay},
              {"params": [p for p in twin.parameters() if id(p) in depthwise], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    data, target = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    twin.train()

    def step():
        loss = head_losses(torch, twin(data), target, cfg.aux_weight, IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


# --- measuring -----------------------------------------------------------------------------
class Bench:
    """The device, its synchronisation, the iteration count and (when loaded) torch."""

    def __init__(self, device, iters, torch):
        self.device, self.iters, self.torch = device, iters, torch
        self.torch_device = torch_device(device)  # the CPU beside the emulated GPU
        self.sync = synchronizer(device, torch)

    def ms(self, fn):
        """Median milliseconds of ``fn()`` (see :func:`minitorch_seg.benchmark.median_ms`)."""
        return median_ms(fn, self.iters, self.sync)

    def release_memory(self):
        """On the GPU, hand the memory both libraries keep cached back, so the next section has room."""
        if self.device == "cuda":
            release_cached_memory(self.torch)

    def peak_mb(self, fn, side):
        """Peak MB allocated during one ``fn()`` by ``side`` ("ours"/"torch"); None on the CPU."""
        if (self.device if side == "ours" else self.torch_device) == "cpu":
            return None
        _, peak = device_peak_bytes(fn) if side == "ours" else torch_peak_bytes(self.torch, fn)
        return peak / 2**20

    def ratios(self, ours, theirs):
        """ours / torch for every number of a row (None where the two are not comparable)."""
        if emulated_note(self.device):
            return {k: None for k in ours}
        return ratios(ours, theirs)


def _ratio(a, b):
    return a / b if a is not None and b else None


def inference_numbers(bench, logits, label_map, batch, side):
    """Latency (ms) and FPS to the logits and to the labels, and the peak memory, of one side."""
    logits_ms, labels_ms = bench.ms(logits), bench.ms(label_map)
    return {"logits_ms": logits_ms, "labels_ms": labels_ms,
            "fps": 1e3 * batch / logits_ms, "labels_fps": 1e3 * batch / labels_ms,
            "peak_memory_mb": bench.peak_mb(label_map, side)}


def train_numbers(bench, step, batch, side):
    """Step time (ms), images per second and peak memory of one side's training step."""
    step_ms = bench.ms(step)
    return {"step_ms": step_ms, "images_per_s": 1e3 * batch / step_ms,
            "peak_memory_mb": bench.peak_mb(step, side)}


def ratios(ours, theirs):
    """ours / torch for every number of a row (for FPS: our FPS / torch FPS)."""
    return {k: _ratio(ours[k], theirs[k]) for k in ours}


def agreement(ours, theirs):
    """How close our logits are to torch's: max abs difference, relative to torch's largest."""
    diff = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max())
    relative = diff / scale if scale else diff
    return {"max_abs_diff": diff, "max_abs_torch": scale, "relative": relative, "agree": relative < 1e-4}


# --- the profile ---------------------------------------------------------------------------
def _function_classes():
    found, todo = [], [mts.Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


_FAMILY_OF = {F.BatchNormFunction: "batchnorm", F.ReLUFunction: "relu", F.AddReLUFunction: "relu",
              F.BilinearFunction: "upsample", F.AvgPool2dFunction: "pool", F.AdaptiveAvgPool2dFunction: "pool",
              F.CrossEntropyFunction: "loss", F.UpsampleCrossEntropyFunction: "loss"}


def family(cls, ctx):
    """The op family a Function call counts toward (a convolution: dense or depthwise)."""
    if cls is F.Conv2dFunction:
        return "depthwise" if ctx.depthwise else "conv2d"
    return _FAMILY_OF.get(cls, "other")


@contextlib.contextmanager
def op_timers(sync):
    """Inside, every Function's forward and backward adds its time to ``totals[family]``.

    Yields ``totals``: family -> [forward seconds, backward seconds]. The original static
    methods are put back on exit.
    """
    totals = defaultdict(lambda: [0.0, 0.0])

    def timed(cls, fn, slot):
        def run(ctx, *args):
            sync()
            start = time.perf_counter()
            out = fn(ctx, *args)
            sync()
            totals[family(cls, ctx)][slot] += time.perf_counter() - start
            return out
        return staticmethod(run)

    saved = []
    for cls in _function_classes():
        for slot, name in enumerate(("forward", "backward")):
            if name in cls.__dict__:
                saved.append((cls, name, cls.__dict__[name]))
                setattr(cls, name, timed(cls, getattr(cls, name), slot))
    try:
        yield totals
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def profile(bench, step, optimizer):
    """One training ``step`` split by op family; the optimizer's ``zero_grad``/``step`` timed apart.

    Rows: each family's forward and backward ms, the optimizer's ms, then what no timer saw.
    """
    optimizer_s = 0.0

    def timed_optimizer(fn):
        def run():
            nonlocal optimizer_s
            start = time.perf_counter()
            fn()
            bench.sync()
            optimizer_s += time.perf_counter() - start
        return run

    with op_timers(bench.sync) as totals:
        optimizer.zero_grad, optimizer.step = timed_optimizer(optimizer.zero_grad), timed_optimizer(optimizer.step)
        try:
            bench.sync()
            start = time.perf_counter()
            step()
            bench.sync()
            total = time.perf_counter() - start
        finally:
            del optimizer.zero_grad, optimizer.step  # the class's methods show through again

    def row(name, seconds, forward=None, backward=None):
        ms = {"forward_ms": forward, "backward_ms": backward, "total_ms": seconds}
        return dict({k: None if t is None else 1e3 * t for k, t in ms.items()},
                    family=name, percent=100 * seconds / total)

    rows = []
    for name in OP_FAMILIES:
        forward, backward = totals.get(name, (0.0, 0.0))
        rows.append(row(name, forward + backward, forward, backward))
    rows.append(row("optimizer", optimizer_s))
    rows.append(row(UNTIMED, total - sum(f + b for f, b in totals.values()) - optimizer_s))
    return {"total_ms": 1e3 * total, "families": rows}


# --- the report ----------------------------------------------------------------------------
def _fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))) for line in lines)


def _comparison(section, keys):
    ours, theirs, r = section["ours"], section.get("torch"), section.get("ratios")
    header = ["", "ours"] + (["torch", "ours/torch"] if theirs else [])
    rows = []
    for key, label in keys:
        row = [label, _fmt(ours[key])]
        if theirs:
            row += [_fmt(theirs[key]), _fmt(r[key], 3)]
        rows.append(row)
    return _table(header, rows)


def report(result):
    """The result dict as readable text."""
    inf, tr = result["inference"], result["train"]
    lines = [f"fastscnn.benchmark on {result['device']} ({result['hardware']}), float32, "
             f"load average {' '.join(map(str, result['load_average']))}"]
    lines += [f"note: {n}" for n in result["notes"]]
    lines += ["", f"inference: batch {inf['batch_size']} at {inf['height']}x{inf['width']}, eval, no graph; "
                  f"median of {result['iters']} after {WARMUP} warm-up",
              _comparison(inf, [("logits_ms", "to logits ms"), ("labels_ms", "to labels ms"),
                                ("fps", "FPS (logits)"), ("labels_fps", "FPS (labels)"),
                                ("peak_memory_mb", "peak memory MB")])]
    if "agreement" in inf:
        a = inf["agreement"]
        lines.append(f"logits vs torch: max |diff| {a['max_abs_diff']:.3g} (max |torch| {a['max_abs_torch']:.3g}, "
                     f"relative {a['relative']:.3g}): {'agree' if a['agree'] else 'DISAGREE'}")
    lines += ["", f"training step: batch {tr['batch_size']} at {tr['height']}x{tr['width']}, forward + loss "
                  f"(with aux heads) + backward + SGD; median of {result['iters']} after {WARMUP} warm-up",
              _comparison(tr, [("step_ms", "step ms"), ("images_per_s", "images/s"),
                               ("peak_memory_mb", "peak memory MB")])]
    if tr["step_launches"] is not None:
        lines.append(f"one step on cuda: {tr['step_launches']} kernel launches, {tr['step_syncs']} reads "
                     f"from the device, peak {tr['step_peak_bytes'] / 2**20:.1f} MB of device arrays")
    saved = f"the graph of one step saves {tr['step_saved_bytes'] / 2**20:.1f} MB"
    if "torch_step_saved_bytes" in tr:
        saved += f" (torch's: {tr['torch_step_saved_bytes'] / 2**20:.1f} MB)"
    lines.append(saved)
    if "profile" in result:
        p = result["profile"]
        lines += ["", f"profile: one training step, batch {tr['batch_size']} at {tr['height']}x{tr['width']}",
                  _table(["family", "forward ms", "backward ms", "total ms", "%"],
                         [[f["family"], _fmt(f["forward_ms"], 1), _fmt(f["backward_ms"], 1),
                           _fmt(f["total_ms"], 1), _fmt(f["percent"], 1)] for f in p["families"]]
                         + [["total", "", "", _fmt(p["total_ms"], 1), "100.0"]])]
        if p["torch_total_ms"] is not None:
            lines.append(f"torch, the same step: {p['torch_total_ms']:.1f} ms "
                         f"(ours/torch {p['total_ms'] / p['torch_total_ms']:.2f})")
        else:
            lines.append("torch, the same step: not measured (PyTorch is not installed)")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(prog="fastscnn benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("--batch-size", type=positive_int, help="inference batch (default 1)")
    p.add_argument("--height", type=positive_int, help="inference height (default 1024 on cuda, 512 on cpu)")
    p.add_argument("--width", type=positive_int, help="inference width (default 2048 on cuda, 1024 on cpu)")
    p.add_argument("--train-batch", type=positive_int, help="training batch (default 12 on cuda, 2 on cpu)")
    p.add_argument("--train-size", type=parse_size, help="training crop, N or HxW (default 1024x1024 on cuda, "
                                                     "512x1024 on cpu)")
    p.add_argument("--iters", type=positive_int, help="timed runs (the median is shown; default 20 on cuda, 3 on cpu)")
    p.add_argument("--compare-torch", action="store_true", help="time the same network in PyTorch too")
    p.add_argument("--no-tf32", action="store_true", help="full float32 convolutions on the GPU, ours and torch's "
                   "(minitorch_seg.backends.cudnn.allow_tf32 = False; both default to TF32, as PyTorch)")
    p.add_argument("--profile", action="store_true", help="split one training step by op family")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--estimate", metavar="GPU", help="estimate (uncalibrated) the GPU time of the training step "
                   "and inference on GPU (H100) from memory traces on the emulated GPU, instead of timing")
    p.add_argument("--measure", nargs="?", const="", metavar="ESTIMATE_JSON",
                   help="with --estimate: also time the same workloads' kernels on device cuda with CUDA events "
                        "and print them beside the estimate; the estimate is read from ESTIMATE_JSON (an earlier "
                        "--estimate --json) or else computed in a child process on the emulated GPU")
    return p


def _progress(text):
    print(text, file=sys.stderr, flush=True)


def run_inference(bench, model, twin, batch, size):
    """The inference section: our numbers and, with a ``twin``, torch's, the ratios and the agreement."""
    x = images(np.random.default_rng(0), batch, size)
    section = {"batch_size": batch, "height": size[0], "width": size[1]}
    _progress(f"inference {batch}x3x{size[0]}x{size[1]}: ours")
    logits, label_map = our_inference(model, x, bench.device)
    section["ours"] = inference_numbers(bench, logits, label_map, batch, "ours")
    if twin is not None:
        _progress("inference: torch")
        t_logits, t_label_map = torch_inference(twin, bench.torch, x, bench.torch_device)
        section["agreement"] = agreement(logits().numpy(), t_logits().cpu().numpy())
        section["torch"] = inference_numbers(bench, t_logits, t_label_map, batch, "torch")
        section["ratios"] = bench.ratios(section["ours"], section["torch"])
    return section


def step_counters(bench, step, loss):
    """What one training step costs besides time: its kernel launches, device-to-host reads and
    peak bytes on device cuda (None on the CPU), and the bytes its graph saves (both devices)."""
    counts = {"step_launches": None, "step_syncs": None, "step_peak_bytes": None}
    if bench.device == "cuda":
        bench.sync()
        with counters() as c:
            step()
            bench.sync()
        counts.update(step_launches=c.launches, step_syncs=c.syncs, step_peak_bytes=c.peak_bytes)
    value = loss()
    counts["step_saved_bytes"] = saved_bytes(value)
    return counts


def run_training(bench, model, twin, batch, size, with_profile):
    """The training section (and, if asked, the profile of one more step of ours)."""
    rng = np.random.default_rng(1)
    x, y = images(rng, batch, size), labels(rng, batch, size)
    section = {"batch_size": batch, "height": size[0], "width": size[1]}
    _progress(f"training step {batch}x3x{size[0]}x{size[1]}: ours")
    step, optimizer, loss = our_train_step(model, x, y, bench.device)
    section["ours"] = train_numbers(bench, step, batch, "ours")
    section.update(step_counters(bench, step, loss))
    if twin is not None:
        _progress("training step: torch")
        section["torch_step_saved_bytes"] = torch_saved_bytes(twin, bench.torch, x, y, bench.torch_device)
        section["torch"] = train_numbers(bench, torch_train_step(twin, bench.torch, x, y, bench.torch_device),
                                         batch, "torch")
        section["ratios"] = bench.ratios(section["ours"], section["torch"])
    if not with_profile:
        return section, None
    _progress("profile: one training step")
    prof = profile(bench, step, optimizer)
    if twin is not None:
        prof["torch_total_ms"] = section["torch"]["step_ms"]
    elif bench.torch is not None:
        torch_step = torch_train_step(torch_fastscnn(model, bench.torch_device), bench.torch, x, y,
                                      bench.torch_device)
        prof["torch_total_ms"] = median_ms(torch_step, 1, bench.sync)
    else:
        prof["torch_total_ms"] = None
    return section, prof


def estimate_targets(args, defaults=None):
    """``(training, inference)`` target sizes (images, height, width) of ``--estimate``: those
    given by ``--train-batch``/``--train-size`` and ``--batch-size``/``--height``/``--width``,
    else ``defaults`` (by default the estimate's own targets)."""
    from fastscnn import estimate
    (n, h, w), (ni, hi, wi) = defaults or (estimate.TRAIN_TARGET, estimate.INFERENCE_TARGET)
    return ((args.train_batch or n, *(args.train_size or (h, w))),
            (args.batch_size or ni, args.height or hi, args.width or wi))


def run_measure(args):
    """``--estimate GPU --measure``: the estimate (from a file or a child process on the emulated
    GPU, since this process times device cuda) beside CUDA-event times of the same kernels."""
    from fastscnn import measure
    check_cuda()  # a real GPU, or the emulated one that MTS_CUDA=emulate selects
    if args.measure:
        with open(args.measure) as f:
            est = json.load(f)
    else:
        train, inference = estimate_targets(args)
        command = [sys.executable, "-m", "fastscnn.benchmark", "--device", "cuda", "--estimate", args.estimate,
                   "--json", "--train-batch", str(train[0]), "--train-size", f"{train[1]}x{train[2]}",
                   "--batch-size", str(inference[0]), "--height", str(inference[1]), "--width", str(inference[2])]
        est = json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout)
    # The sizes the flags state, else the estimate's (the same as the flags' without a file).
    train, inference = estimate_targets(args, (est["train_size"], est["inference_size"]))
    _progress(f"timing the kernels of a training step at {'x'.join(map(str, train))} and of inference "
              f"at {'x'.join(map(str, inference))} on device cuda")
    result = measure.measure(est, sizes={"train": train, "inference": inference})
    if args.json:
        _progress(measure.report(result))  # the tables too, on stderr: gpu_check.sh's log keeps them
    print(json.dumps(result, indent=1) if args.json else measure.report(result))
    return 0


def run_estimate(args):
    """``--estimate``: trace both workloads on the emulated GPU and print the estimate."""
    from fastscnn import estimate
    if args.device != "cuda":
        user_error("--estimate: traces come from the CUDA kernels; add --device cuda")
    if args.measure is not None:
        return run_measure(args)
    mts.cuda.emulate()  # traces exist only on the emulated GPU, also on a machine with a real one
    _progress(f"estimate for {args.estimate}: tracing training steps at "
              f"{' and '.join('x'.join(map(str, r)) for r in estimate.TRAIN_RUNS)} on the emulated GPU")
    train, inference = estimate_targets(args)
    result = estimate.estimate(args.estimate, train_target=train, inference_target=inference)
    print(json.dumps(result, indent=1) if args.json else estimate.report(result))
    return 0


def main(argv=None):
    """Run the benchmark and print the report (or JSON); returns the exit status (1: outputs disagree)."""
    args = _parser().parse_args(argv)
    if args.estimate is not None:
        return run_estimate(args)
    mts.backends.cudnn.allow_tf32 = not args.no_tf32  # torch's follows ours (configure_torch)
    device = args.device or mts.cuda.default_device()
    notes = []
    defaulted = [key for key in DEFAULTS[device] if getattr(args, key) is None]
    for key in defaulted:
        setattr(args, key, DEFAULTS[device][key])
    if device == "cpu" and {"height", "width", "train_size"} & set(defaulted):
        notes.append("smaller CPU defaults: inference at 512x1024, training batch 2 of 512x1024 "
                     "(cuda: 1024x2048, and batch 12 of 1024x1024)")
    notes += [n for n in (busy_note(), emulated_note(device)) if n]

    torch = None
    if args.compare_torch or args.profile:
        try:
            torch = import_torch()
        except RuntimeError as e:
            if args.compare_torch:
                user_error(f"--compare-torch: {e}")
    if device == "cuda":
        check_cuda(torch)
    if torch is not None:
        configure_torch(torch, torch_device(device))
    bench = Bench(device, args.iters, torch)

    mts.manual_seed(0)
    model = FastSCNN(NUM_CLASSES, aux=True).to(device)
    twin = torch_fastscnn(model, torch_device(device)) if args.compare_torch else None  # before a step changes our weights
    result = {"device": device, "hardware": gpu_name() if device == "cuda" else f"{os.cpu_count()} CPU cores",
              "dtype": "float32", "iters": args.iters, "warmup": WARMUP,
              "load_average": [round(v, 2) for v in os.getloadavg()], "notes": notes}
    result["inference"] = run_inference(bench, model, twin, args.batch_size, (args.height, args.width))
    bench.release_memory()
    result["train"], prof = run_training(bench, model, twin, args.train_batch, args.train_size, args.profile)
    if prof is not None:
        result["profile"] = prof
    print(json.dumps(result, indent=1) if args.json else report(result))
    return 0 if result["inference"].get("agreement", {"agree": True})["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
