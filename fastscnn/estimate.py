"""Fast-SCNN's GPU time estimated from memory traces on the emulated GPU (no GPU needed).

    python -m fastscnn.benchmark --device cuda --estimate H100 [--json]

Two workloads, the ones ``fastscnn.benchmark`` times on a real GPU: a training step at batch
12 of 1024x1024 crops (forward with the auxiliary heads, loss, backward, SGD), and inference
on one 1024x2048 frame. Emulating those sizes would take hours, so each workload runs at two
small sizes on the emulated GPU with every launch traced (``kernels.cuda.emulator.trace``),
and ``kernels.cuda.emulator.roofline`` fits each launch's work to the images x pixels of the
target (``extrapolate``) and prices it on the named GPU. The launches are grouped by kernel
family, the families of the issue that introduced this estimate.

Every time printed here is a model: "estimated (uncalibrated)" until a real GPU has timed the
same kernels. The headline prices every GEMM in plain FP32 (TF32 off: the precision of
PyTorch's fp32 baseline); the ``_tf32`` figures price the same traces with the GEMMs that CuPy
runs in TF32 under ``minitorch_seg.backends.cudnn.allow_tf32`` (on while tracing) at the TF32 peak.
"""
import numpy as np

import minitorch_seg as mts
from kernels.cuda.emulator import roofline
from minitorch_seg.benchmark import counters

TRAIN_TARGET = (12, 1024, 1024)
INFERENCE_TARGET = (1, 1024, 2048)
# The two emulated sizes of each workload: (images, height, width). Batch 2 at least in
# training, where the pyramid pooling's 1x1 bin needs more than one value per channel for
# its batch norm; the aspect ratio of the target for inference.
TRAIN_RUNS = ((2, 64, 64), (2, 96, 96))
INFERENCE_RUNS = ((1, 64, 128), (1, 96, 192))
UNCALIBRATED = "estimated (uncalibrated)"

# kernel (ours) or Work.kind (CuPy's) -> family
FAMILIES = {
    "gemm": "GEMMs", "matmul pointers": "GEMMs", "matmul copy 2-D": "GEMMs", "matmul copy 3-D": "GEMMs",
    "copyto": "convolution reorders (NCHW <-> batch inside)",  # kernels/ops.py's CuPy copies
    "depthwise_backward_input": "depthwise backward-input",
    "bilinear_backward": "bilinear backward",
    "depthwise_weight_partials": "depthwise backward-weight", "sum_chunks": "depthwise backward-weight",
    "grad_partials": "BN backward", "backward_input": "BN backward",
    "bilinear_forward": "bilinear forward",
    "stat_partials": "BN forward", "forward_train": "BN forward", "forward_eval": "BN forward",
    # the ReLU's own kernels, which replaced CuPy's launches for relu(a + b) and g * (y > 0)
    "add_relu": "ReLU", "relu_backward": "ReLU",
    "cross_entropy_backward": "cross-entropy backward",
    "cross_entropy_forward": "cross-entropy forward",
    "upsample_cross_entropy_forward": "fused heads", "upsample_cross_entropy_backward_width": "fused heads",
    "upsample_cross_entropy_backward_height": "fused heads",
    "im2col": "im2col",
    "depthwise_forward": "depthwise forward",
    "col2im": "col2im, dropout, pooling, SGD", "dropout": "col2im, dropout, pooling, SGD",
    "avg_pool2d_forward": "col2im, dropout, pooling, SGD", "avg_pool2d_backward": "col2im, dropout, pooling, SGD",
    "adaptive_avg_pool2d_forward": "col2im, dropout, pooling, SGD",
    "adaptive_avg_pool2d_backward": "col2im, dropout, pooling, SGD",
    "sgd_step": "col2im, dropout, pooling, SGD",
}
OTHER = "CuPy elementwise and reductions"
LIBRARY = (OTHER, FAMILIES["copyto"])  # the families of CuPy's own kernels (no events around them)


def family(kind):
    """The family of a launch's work (``roofline.Work.kind``)."""
    return FAMILIES.get(kind, OTHER)


def _model(aux):
    from fastscnn.model import FastSCNN
    from fastscnn.palette import NUM_CLASSES
    mts.manual_seed(0)
    return FastSCNN(NUM_CLASSES, aux=aux).to("cuda")


def traced_train_steps(runs):
    """The traced launches of one training step at each size of ``runs`` = [(images, height,
    width), ...]. One model and its momentum buffers serve every size; one untraced step first
    compiles the kernels and creates the buffers, so that each traced step is a steady one."""
    from fastscnn.workloads import images, labels, our_train_step
    model, buffers, traces = _model(aux=True), None, []
    rng = np.random.default_rng(1)
    for batch, height, width in runs:
        step, optimizer, _ = our_train_step(model, images(rng, batch, (height, width)),
                                            labels(rng, batch, (height, width)), "cuda")
        if buffers is None:
            step()
        else:
            optimizer.momentum_buffers = buffers
        with counters(trace=True) as c:
            step()
        buffers = optimizer.momentum_buffers
        traces.append(c.trace)
    return traces


def traced_inferences(runs):
    """The traced launches of one inference pass (eval, no graph, to the logits) at each size."""
    from fastscnn.workloads import images, our_inference
    model, traces = _model(aux=False), []
    for batch, height, width in runs:
        logits, _ = our_inference(model, images(np.random.default_rng(0), batch, (height, width)), "cuda")
        with counters(trace=True) as c:
            logits()
        traces.append(c.trace)
    return traces


def workload(traces_at, runs, target, gpu):
    """Per-launch work and times of a workload at ``target`` = (images, height, width) on ``gpu``,
    fitted from the traces ``traces_at(runs)`` at the two sizes ``runs``. Returns a list of
    (family, Work, seconds, bound, seconds with TF32 GEMMs)."""
    sizes = [n * h * w for n, h, w in runs]
    tf32_before, mts.backends.cudnn.allow_tf32 = mts.backends.cudnn.allow_tf32, True
    try:
        small, large = (roofline.work_of(t) for t in traces_at(runs))
    finally:
        mts.backends.cudnn.allow_tf32 = tf32_before
    works = roofline.extrapolate(small, large, sizes[0], sizes[1], target[0] * target[1] * target[2])
    rows = []
    for w in works:
        t, bound, _ = roofline.seconds(w, gpu)
        rows.append((family(w.kind), w, t, bound, roofline.seconds(w, gpu, tf32=True)[0]))
    return rows


def by_family(rows):
    """Rows of :func:`workload` summed per family: ``{name: {launches, bytes, sectors_per_request,
    bank_conflicts, est_ms, est_ms_tf32, bound}}``, the costliest first; ``bound`` is the term that
    binds for most of the family's time."""
    families = {}
    for name, w, t, bound, t_tf32 in rows:
        f = families.setdefault(name, {"launches": 0, "bytes": 0.0, "sectors": 0.0, "requests": 0.0,
                                       "bank_conflicts": 0.0, "est_ms": 0.0, "est_ms_tf32": 0.0, "by_bound": {}})
        f["est_ms_tf32"] += 1e3 * t_tf32
        f["launches"] += int(w.launches)
        f["bytes"] += w.dram_bytes
        f["sectors"] += w.sectors
        f["requests"] += w.requests
        f["bank_conflicts"] += w.bank_conflicts
        f["est_ms"] += 1e3 * t
        f["by_bound"][bound] = f["by_bound"].get(bound, 0.0) + t
    out = {}
    for name, f in sorted(families.items(), key=lambda kv: -kv[1]["est_ms"]):
        out[name] = {"launches": f["launches"], "bytes": f["bytes"],
                     "sectors_per_request": f["sectors"] / f["requests"] if f["requests"] else None,
                     "bank_conflicts": f["bank_conflicts"], "est_ms": f["est_ms"], "est_ms_tf32": f["est_ms_tf32"],
                     "bound": max(f["by_bound"], key=f["by_bound"].get)}
    return out


def estimate(gpu_name="H100", train_runs=None, inference_runs=None,
             train_target=TRAIN_TARGET, inference_target=INFERENCE_TARGET):
    """The whole estimate as a dict (the ``--json`` output): totals and families of both workloads,
    traced at ``train_runs`` and ``inference_runs`` (default: :data:`TRAIN_RUNS`, :data:`INFERENCE_RUNS`)."""
    train_runs, inference_runs = train_runs or TRAIN_RUNS, inference_runs or INFERENCE_RUNS
    if gpu_name not in roofline.GPUS:
        raise SystemExit(f"--estimate: unknown GPU {gpu_name!r}; known: {', '.join(roofline.GPUS)}")
    gpu = roofline.GPUS[gpu_name]
    train = workload(traced_train_steps, train_runs, train_target, gpu)
    inference = workload(traced_inferences, inference_runs, inference_target, gpu)
    return {
        "gpu": gpu.name, "gpu_sources": list(gpu.sources), "note": UNCALIBRATED,
        "model": {"bandwidth_derate": roofline.BANDWIDTH_DERATE, "issue_derate": roofline.ISSUE_DERATE,
                  "gemm_efficiency": roofline.GEMM_EFFICIENCY, "launch_us": 1e6 * roofline.LAUNCH_S,
                  "tf32_tflops": gpu.tf32_flops / 1e12},
        "train_size": list(train_target), "train_runs": [list(r) for r in train_runs],
        "inference_size": list(inference_target), "inference_runs": [list(r) for r in inference_runs],
        "est_step_ms": sum(1e3 * row[2] for row in train),
        "est_inference_ms": sum(1e3 * row[2] for row in inference),
        "est_step_ms_tf32": sum(1e3 * row[4] for row in train),
        "est_inference_ms_tf32": sum(1e3 * row[4] for row in inference),
        "est_step_launches": int(sum(row[1].launches for row in train)),
        "est_inference_launches": int(sum(row[1].launches for row in inference)),
        "families": by_family(train),
        "inference_families": by_family(inference),
    }


def _table(families, total_ms, total_tf32_ms, launches):
    header = ["family", "launches", "MB", "sectors/req", "bank conflicts", "est. ms", "bound", "TF32 ms"]
    rows = [[name, str(f["launches"]), f"{f['bytes'] / 1e6:.0f}",
             "-" if f["sectors_per_request"] is None else f"{f['sectors_per_request']:.1f}",
             f"{f['bank_conflicts']:.0f}", f"{f['est_ms']:.2f}", f["bound"], f"{f['est_ms_tf32']:.2f}"]
            for name, f in families.items()]
    rows.append(["total", str(launches), "", "", "", f"{total_ms:.2f}", "", f"{total_tf32_ms:.2f}"])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def report(result):
    """The estimate as text: both tables by family, then the totals, every time marked uncalibrated."""
    n, h, w = result["train_size"]
    _, ih, iw = result["inference_size"]
    m = result["model"]
    lines = [f"GPU time {UNCALIBRATED} for {result['gpu']}: a roofline model of memory traces taken on the "
             f"emulated GPU, not a measurement",
             f"model: max(DRAM, L1/L2, instructions) / fill + {m['launch_us']:.1f} us per launch; "
             f"{m['bandwidth_derate']:.0%} of bandwidth, {m['issue_derate']:.0%} of issue rate, cuBLAS at "
             f"{m['gemm_efficiency']:.0%} of FP32 peak (TF32 ms: of the TF32 peak); MB = unique bytes (the DRAM lower bound)",
             f"traced at {' and '.join('x'.join(map(str, r)) for r in result['train_runs'])} (training) and "
             f"{' and '.join('x'.join(map(str, r)) for r in result['inference_runs'])} (inference), "
             f"fitted to the target's images x pixels",
             "", f"training step, batch {n} at {h}x{w}, {UNCALIBRATED}:",
             _table(result["families"], result["est_step_ms"], result["est_step_ms_tf32"], result["est_step_launches"]),
             "", f"inference, 1x3x{ih}x{iw}, {UNCALIBRATED}:",
             _table(result["inference_families"], result["est_inference_ms"], result["est_inference_ms_tf32"],
                    result["est_inference_launches"]),
             "", f"training step: {result['est_step_ms']:.1f} ms {UNCALIBRATED}, {result['est_step_launches']} launches; "
                 f"inference: {result['est_inference_ms']:.1f} ms {UNCALIBRATED}, "
                 f"{result['est_inference_launches']} launches",
             f"with TF32 convolution GEMMs (minitorch_seg.backends.cudnn.allow_tf32, priced at "
             f"{m['tf32_tflops']:.1f} TFLOPS TF32): training step {result['est_step_ms_tf32']:.1f} ms, inference "
             f"{result['est_inference_ms_tf32']:.1f} ms, {UNCALIBRATED}",
             "sources of the GPU's limits:"] + [f"  - {s}" for s in result["gpu_sources"]]
    return "\n".join(lines)
