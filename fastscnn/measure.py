"""The estimate of :mod:`fastscnn.estimate` beside times measured on device ``"cuda"``.

    python -m fastscnn.benchmark --device cuda --estimate H100 --measure [ESTIMATE_JSON] [--json]

Runs the estimate's two workloads at the estimate's target sizes on device ``"cuda"`` with
``minitorch_seg.benchmark.counters(measure=True)``: a pair of CUDA events around each launch of
our kernels and each ``matmul`` call. Sums them by the estimate's kernel families, and prints
each family's estimated ms, measured ms and their ratio: the data that calibrates the model.

What the events can and cannot split:

- our kernels: each launch, exactly, so each of their families is measured on its own;
- ``matmul``: one pair of events around the call holds cuBLAS, CuPy's pointer-array kernels
  and its contiguous copies of operands, the estimate's "GEMMs" family;
- CuPy's elementwise kernels, copies (the convolutions' reorders) and reductions run outside
  both: they are measured as the whole step (one more pair of events) less everything timed
  above, which also holds the time the GPU waited for the host between launches.

On the emulated GPU the same code runs and the events read the host's clock: the emulator's
wall time, so the ratios say nothing about a GPU there (the report says so).
"""
import statistics

import numpy as np

import minitorch_seg as mts
from fastscnn import estimate
from kernels import device
from minitorch_seg.benchmark import counters, gpu_name

MATMUL = "GEMMs (cupy.matmul)"
REST = f"{' + '.join(estimate.LIBRARY)} (step less all above: with GPU idle time)"


def _timed_runs(fn, runs):
    """``(kernel_ms, total_ms)`` of each of ``runs`` calls of ``fn``, after one untimed call that
    compiles the kernels and fills the memory pool."""
    xp = device.array_module()
    fn()
    out = []
    for _ in range(runs):
        start, end = xp.cuda.Event(), xp.cuda.Event()
        with counters(measure=True) as c:
            start.record()
            fn()
            end.record()
        out.append((c.kernel_ms, xp.cuda.get_elapsed_time(start, end)))
    return out


def measured_families(runs):
    """``{row: {"launches", "ms"}}`` from :func:`_timed_runs`: launches of one run, the median ms
    over runs, rows named by the estimate's families (:data:`MATMUL`, :data:`REST` as above),
    plus ``"total"``."""
    per_run = []
    for kernel_ms, total in runs:
        rows = {}
        for name, (launches, ms) in kernel_ms.items():
            row = rows.setdefault(MATMUL if name == "matmul" else estimate.family(name), [0, 0.0])
            row[0] += launches
            row[1] += ms
        rest = rows.setdefault(REST, [None, 0.0])  # CuPy's launches are not seen from Python
        rest[1] += total - sum(ms for _, ms in rows.values())
        rows["total"] = [None, total]
        per_run.append(rows)
    return {name: {"launches": launches, "ms": statistics.median(r[name][1] for r in per_run)}
            for name, (launches, _) in per_run[0].items()}


def compare(families, est_total_ms, measured):
    """Rows ``{row: {est_ms, est_launches, measured_ms, measured_launches, ratio}}`` of the
    estimate's ``families`` (``estimate.by_family``) beside ``measured``
    (:func:`measured_families`); ratio = measured / estimated."""
    est = {name: (f["est_ms"], f["launches"]) for name, f in families.items()
           if name != "GEMMs" and name not in estimate.LIBRARY}
    gemms = families.get("GEMMs", {"est_ms": 0.0, "launches": 0})
    est[MATMUL] = (gemms["est_ms"], gemms["launches"])
    library = [families[n] for n in estimate.LIBRARY if n in families]
    est[REST] = (sum(f["est_ms"] for f in library), sum(f["launches"] for f in library))
    est["total"] = (est_total_ms, None)
    rows = {}
    for name in list(est) + [n for n in measured if n not in est]:
        e_ms, e_launches = est.get(name, (None, None))
        m = measured.get(name, {"ms": None, "launches": None})
        rows[name] = {"est_ms": e_ms, "est_launches": e_launches, "measured_ms": m["ms"],
                      "measured_launches": m["launches"],
                      "ratio": m["ms"] / e_ms if e_ms and m["ms"] is not None else None}
    return rows


def measure(est, runs=3, sizes=None, workloads=("train", "inference")):
    """Time ``workloads`` (``"train"``: a training step, ``"inference"``) on device ``"cuda"``,
    ``runs`` times each, beside the estimate ``est`` (``estimate.estimate``'s dict). They run at
    the estimate's target sizes unless ``sizes`` = ``{"train": (images, height, width), ...}``
    states others. Returns a dict (the ``--json`` output)."""
    from fastscnn.workloads import images, labels, our_inference, our_train_step
    rng = np.random.default_rng(0)
    sizes = {"train": est["train_size"], "inference": est["inference_size"], **(sizes or {})}
    result = {"gpu": est["gpu"], "emulated": device.is_emulated(), "note": estimate.UNCALIBRATED, "runs": runs,
              "measured_on": "the emulated GPU" if device.is_emulated() else gpu_name(),
              "estimate_sizes": {"train": est["train_size"], "inference": est["inference_size"]},
              "sizes": {}, "estimate": est}
    for name in workloads:
        n, h, w = sizes[name]
        mts.manual_seed(0)
        if name == "train":
            fn, _, _ = our_train_step(estimate._model(aux=True), images(rng, n, (h, w)), labels(rng, n, (h, w)), "cuda")
            families, total = est["families"], est["est_step_ms"]
        else:
            fn, _ = our_inference(estimate._model(aux=False), images(rng, n, (h, w)), "cuda")
            families, total = est["inference_families"], est["est_inference_ms"]
        result["sizes"][name] = [n, h, w]
        result[name] = compare(families, total, measured_families(_timed_runs(fn, runs)))
        del fn  # its model and arrays go back to the pool before the next workload
    return result


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _table(rows):
    header = ["family", "launches est/meas", f"{estimate.UNCALIBRATED} ms", "measured ms", "measured/est"]
    body = [[name, f"{_fmt(r['est_launches'], 'd')}/{_fmt(r['measured_launches'], 'd')}",
             _fmt(r["est_ms"], ".2f"), _fmt(r["measured_ms"], ".2f"), _fmt(r["ratio"], ".2f")]
            for name, r in rows.items()]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in [header, ["-" * w for w in widths]] + body)


def report(result):
    """The comparison as text: each workload's table, every estimate marked uncalibrated."""
    lines = [f"{result['gpu']} roofline, {estimate.UNCALIBRATED}, beside CUDA-event times measured on "
             f"{result['measured_on']} (median of {result['runs']} runs; launches: 'matmul' calls, not "
             f"what cuBLAS launches)"]
    if result["emulated"]:
        lines.append("measured on the emulated GPU: the events read the host's clock, so these are the "
                     "emulator's wall times and the ratios say nothing about a GPU")
    for name, title in (("train", "training step"), ("inference", "inference")):
        if name not in result["sizes"]:
            continue
        n, h, w = result["sizes"][name]
        lines += ["", f"{title}, {n}x3x{h}x{w}:"]
        if list(result["sizes"][name]) != list(result["estimate_sizes"][name]):
            lines.append(f"(the estimate is for {'x'.join(map(str, result['estimate_sizes'][name]))}: these "
                         f"ratios compare different sizes)")
        lines.append(_table(result[name]))
    return "\n".join(lines)
