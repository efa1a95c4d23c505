"""Depthwise backward-input (or -weight) on Fast-SCNN's 14 depthwise layers: traced sectors and estimated ms.

    MTS_CUDA=emulate PYTHONPATH=. python tools/depthwise_steps.py [--formula tiled|rows|loop] [--rows 8]
    MTS_CUDA=emulate PYTHONPATH=. python tools/depthwise_steps.py --weight
    MTS_CUDA=emulate PYTHONPATH=. python tools/depthwise_steps.py --forward [--formula tiled|simple]

The numbers behind the step-by-step table in ``kernels/cuda/depthwise.cu``. Each layer of a
training step at 12 x 1024 x 1024 runs once on the emulated GPU, traced, at its real plane
size but with 2 of its 12*C planes; every additive count is then scaled to all 12*C planes
and priced by ``kernels.cuda.emulator.roofline`` for an H100. Tracing the real plane size
matters for a tiled kernel: ``fastscnn.estimate`` fits the step from 64- and 96-pixel
images, where the global feature extractor's planes are 2x2 and 3x3 and fill a 64 x 32 tile
with a few pixels; the fit then says more about idle threads than about the kernel.

Instructions are the one term the trace cannot count. The estimator prices the current
version (``roofline._tiled_gather_cost``, ``--formula tiled``); the earlier versions'
formulas are here, each priced from its source the way ``roofline.COSTS`` prices the others
(``DIV`` per division by a run-time value, ``MEM`` per global load or store) with trip counts
from the trace. To price an earlier version,
check out its ``kernels/cuda/depthwise.*`` and ``launch.py`` and pick its formula and rows:
version 0 ``--formula loop``, 1 ``--formula rows --rows 4``, 2 ``--formula tiled --rows 4``,
3 (the current one) the defaults.

``--weight`` prices the weight gradient the same way (its table in ``depthwise.cu``), traced
with all 12 images of one channel (a block sums a run of tiles across images), scaled to
every channel, both of its launches, each by the estimator's own formula.
``--forward`` prices the forward, traced like backward-input (2 planes, scaled), by the
estimator's formula (``--formula tiled``) or, with the simple version's ``depthwise.*``
checked out (a thread per output, main at 37cda7d), by that version's (``--formula simple``).
Every time printed is estimated (uncalibrated).
"""
import argparse
import math

import numpy as np

from kernels import device
from kernels.cuda import depthwise_backward_input, depthwise_backward_weight, depthwise_forward
from kernels.cuda.emulator import roofline, trace
from kernels.cuda.emulator.roofline import DIV, MEM

BATCH = 12
# (channels, input height = width, stride, dilation) of each depthwise 3x3 layer at 1024 x 1024,
# in the order backward runs them: classifier, fusion, global feature extractor, downsampling.
LAYERS = [(128, 128, 1, 1), (128, 128, 1, 1), (128, 128, 1, 4),
          (768, 32, 1, 1), (768, 32, 1, 1), (576, 32, 1, 1), (576, 32, 1, 1), (576, 32, 1, 1),
          (384, 64, 2, 1), (384, 64, 1, 1), (384, 64, 1, 1), (384, 128, 2, 1),
          (48, 256, 2, 1), (32, 512, 2, 1)]
PLANES = 2


def _per_warp(launch):
    warps = launch.blocks * math.ceil(launch.threads / launch.blocks / 32)
    return warps, launch.requests / warps, launch.counts["shared_requests"] / warps


def rows_cost(launch, rows=4):
    """Version 1 (a thread per 4 gx rows of one column): 4 div/mod decoding, a row test per kh
    and row, per tap a column test and the weight load, per gy load its address + FMA, stores."""
    s = launch.scalars
    _, r, _ = _per_warp(launch)
    taps = s["KH"] * s["KW"]
    gy_loads = max(r - taps - rows, 0)
    test = roofline._tap_test(s)
    return 4 * DIV + 16 + s["KH"] * rows * test + taps * (test + MEM) + gy_loads * (MEM + 1) + rows * MEM


def loop_cost(launch, rows=None):
    """Version 0 (a thread per gx element, a division per row and per tap): the gather formula."""
    _, r, _ = _per_warp(launch)
    return roofline._gather_cost(launch.scalars, r, 4, 2)


def tiled_cost(launch, rows=8):
    """Versions 2 and 3 (a block per tile, gy's window in shared memory): the estimator's own
    formula, ``roofline._tiled_gather_cost``."""
    _, r, shared = _per_warp(launch)
    return roofline._tiled_gather_cost(launch.scalars, r, shared, rows)


def simple_forward_cost(launch, rows=None):
    """The simple forward (a thread per output): 4 div/mod decoding, 5 per row and per tap for
    the bounds, 2 loads + FMA per tap inside."""
    s = launch.scalars
    _, r, _ = _per_warp(launch)
    return 4 * DIV + 12 + 5 * s["KH"] + 5 * s["KH"] * s["KW"] + roofline._taps(r) * (2 * MEM + 1)


def tiled_forward_cost(launch, rows=4):
    """The tiled forward: the estimator's own formula, ``roofline._tiled_forward_cost``."""
    _, r, shared = _per_warp(launch)
    return roofline._tiled_forward_cost(launch.scalars, r, shared, rows)


FORMULAS = {"loop": loop_cost, "rows": rows_cost, "tiled": tiled_cost}
FORWARD_FORMULAS = {"simple": simple_forward_cost, "tiled": tiled_forward_cost}


def layer_work(channels, size, stride, dilation, formula, rows, forward=False):
    """The :class:`roofline.Work` of one layer's backward-input (or forward) at the full batch."""
    xp = device.array_module()
    out = (size - 1) // stride + 1
    rng = np.random.default_rng(0)
    gy = xp.asarray(rng.standard_normal((1, PLANES, out, out)).astype(np.float32))
    w = xp.asarray(rng.standard_normal((PLANES, 1, 3, 3)).astype(np.float32))
    gx = xp.asarray(rng.standard_normal((1, PLANES, size, size)).astype(np.float32))
    op = depthwise_forward if forward else depthwise_backward_input
    with trace.recording() as launches:
        op(*((gx, w) if forward else (gy, w)), (stride, stride), (dilation, dilation), (dilation, dilation),
           gy if forward else gx)
    (launch,) = launches
    work = roofline.kernel_work(launch)
    warps, _, _ = _per_warp(launch)
    work.instructions = warps * (FORWARD_FORMULAS if forward else FORMULAS)[formula](launch, rows)
    scale = BATCH * channels / PLANES
    return roofline.Work(work.kind, **{f: getattr(work, f) * (1 if f == "launches" else scale)
                                       for f in roofline.Work.NUMBERS})


def weight_work(channels, size, stride, dilation):
    """The :class:`roofline.Work` of one layer's backward-weight (both launches) at the full batch."""
    xp = device.array_module()
    out = (size - 1) // stride + 1
    rng = np.random.default_rng(0)
    gy = xp.asarray(rng.standard_normal((BATCH, 1, out, out)).astype(np.float32))
    x = xp.asarray(rng.standard_normal((BATCH, 1, size, size)).astype(np.float32))
    with trace.recording() as launches:
        depthwise_backward_weight(gy, x, (stride, stride), (dilation, dilation), (dilation, dilation),
                                  xp.empty((1, 1, 3, 3), np.float32))
    works = [roofline.kernel_work(launch) for launch in launches]
    return [roofline.Work(w.kind, **{f: getattr(w, f) * (1 if f == "launches" else channels)
                                     for f in roofline.Work.NUMBERS}) for w in works]


def main():
    """Print the table: per layer, then the family."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formula", choices=[*FORMULAS, *FORWARD_FORMULAS], default="tiled",
                   help="instruction count of the version checked out (default: tiled, the current one)")
    p.add_argument("--rows", type=int, default=8, help="gx rows per thread of that version (default: 8)")
    p.add_argument("--weight", action="store_true", help="the weight gradient instead (the current version)")
    p.add_argument("--forward", action="store_true", help="the forward instead (4 rows per thread when tiled)")
    args = p.parse_args()
    gpu = roofline.GPUS["H100"]
    total = dict(ms=0.0, dram_ms=0.0, bytes=0.0, sectors=0.0, requests=0.0)
    op = "backward-weight" if args.weight else "forward" if args.forward else "backward-input"
    total = dict(total, bank_conflicts=0.0, launches=0)
    print(f"depthwise {op}, batch {BATCH} at 1024x1024, {gpu.name}, estimated (uncalibrated)")
    print("    C   input  s  d  sectors/request     MB    ms  bound")
    for channels, size, stride, dilation in LAYERS:
        works = (weight_work(channels, size, stride, dilation) if args.weight
                 else [layer_work(channels, size, stride, dilation, args.formula,
                                  4 if args.forward else args.rows, args.forward)])
        for w in works:
            t, bound, terms = roofline.seconds(w, gpu)
            total["ms"] += 1e3 * t
            total["dram_ms"] += 1e3 * terms["DRAM"]
            total["bytes"] += w.dram_bytes
            total["sectors"] += w.sectors
            total["requests"] += w.requests
            total["bank_conflicts"] += w.bank_conflicts
            total["launches"] += w.launches
            print(f"{channels:5d} {size:4d}^2 {stride:2d} {dilation:2d}  {w.sectors / w.requests:15.2f} "
                  f"{w.dram_bytes / 1e6:6.0f} {1e3 * t:5.2f}  {bound}  {w.kind}")
    print(f"family: {total['launches']} launches, {total['sectors'] / 1e6:.0f} M sectors, "
          f"{total['sectors'] / total['requests']:.2f} sectors/request, {total['bank_conflicts'] / 1e6:.1f} M "
          f"bank conflicts, {total['bytes'] / 1e6:.0f} MB unique, {total['ms']:.2f} ms estimated "
          f"(uncalibrated); the DRAM roof of those bytes: {total['dram_ms']:.2f} ms")


if __name__ == "__main__":
    main()
