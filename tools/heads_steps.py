"""One fused output head (F.upsample_cross_entropy), forward and backward: traced sectors and estimated ms.

    MTS_CUDA=emulate PYTHONPATH=. python tools/heads_steps.py

The numbers behind the table in ``kernels/cuda/loss.cu``. Each head runs once on the emulated
GPU, traced, on a 512x512 crop of one image (19 classes, 10% of the pixels ignored, a mean's
gradient), upsampled by 8 (the main head and the first auxiliary one) or by 32 (the second
auxiliary one); every additive count is then scaled to batch 12 at 1024x1024 and priced by
``kernels.cuda.emulator.roofline`` for an H100 with the formulas of the checkout. To price an
earlier version, check it out (its ``kernels/`` and ``fastscnn/``) and run this file from here.
Every time printed is estimated (uncalibrated).
"""
import numpy as np

from kernels import device, ops
from kernels.cuda.emulator import roofline, trace

BATCH, SIZE, CROP, CLASSES = 12, 1024, 512, 19


def head(ratio):
    """Print each launch of one head upsampling by ``ratio``, scaled to the full batch."""
    xp = device.array_module()
    rng = np.random.default_rng(0)
    low = CROP // ratio
    x = xp.asarray((3 * rng.standard_normal((1, CLASSES, low, low))).astype(np.float32))
    target = rng.integers(0, CLASSES, (1, CROP, CROP)).astype(np.uint8)
    target[rng.random(target.shape) < 0.1] = 255
    target, r = xp.asarray(target), (1 / ratio, 1 / ratio)
    with trace.recording() as launches:
        _, lse = ops.upsample_cross_entropy_forward(x, target, None, 255, r, False)
        ops.upsample_cross_entropy_backward(xp.asarray(np.float32(1e-3)), x, lse, target, None, 255, r, False)
    scale = BATCH * (SIZE / CROP) ** 2
    gpu, total = roofline.GPUS["H100"], 0.0
    print(f"head up by {ratio} ({low}x{low} -> {CROP}x{CROP} traced, x{scale:.0f}), {gpu.name}:")
    for w in roofline.work_of(launches):
        if w.kind not in roofline.COSTS:  # CuPy's fill of the target-check flag
            continue
        w = roofline.Work(w.kind, **{f: getattr(w, f) * (1 if f == "launches" else scale)
                                     for f in roofline.Work.NUMBERS})
        t, bound, terms = roofline.seconds(w, gpu)
        total += t
        print(f"  {w.kind:40s} {w.sectors / w.requests:5.2f} sectors/request {w.dram_bytes / 1e6:6.0f} MB "
              f"{1e3 * t:6.3f} ms, {bound}-bound (DRAM roof {1e3 * terms['DRAM']:.3f} ms)")
    print(f"  the head: {1e3 * total:.3f} ms estimated (uncalibrated)")


if __name__ == "__main__":
    for ratio in (8, 32):
        head(ratio)
