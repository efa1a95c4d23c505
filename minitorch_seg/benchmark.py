"""Per-op benchmark: our kernels against PyTorch, forward + backward, at Fast-SCNN's shapes.

    python -m minitorch_seg.benchmark --device cpu|cuda [--repeat N] [--json] [--quick]

Each row runs one op the way training runs it: the forward pass, then the backward pass
with a fixed random upstream gradient (the loss row: its own scalar), gradients taken for
every input a layer trains (the image of the first conv needs none). Our side goes through
``minitorch_seg.functional``, so a row also pays for the Function, the argument checks and
the graph, as a model does. Because that module takes PyTorch's names and arguments, one
function per row writes the call, and it runs unchanged on ``torch.nn.functional``.

Rows (float32 for both libraries, the same input values):

- ``--device cpu``: batch 2 of 512x1024 images, the sizes of a CPU training step
  (32 to 384 channels, 32x64 to 256x512 pixels).
- ``--device cuda``: batch 12 of 1024x1024 crops, the paper's training batch.
- ``--quick``: tiny shapes covering every op (for the tests; the times mean nothing).

How it measures:

- Time: wall clock around forward + backward, the median of ``--repeat`` runs after one
  warm-up run (which also compiles: Numba loads its cache, NVRTC builds the ``.cu`` files).
  On the GPU the clock is read only after CuPy's and torch's queues are synchronised.
- Memory (GPU only): the peak allocated during one forward + backward beyond what was
  allocated before it (the inputs): CuPy's memory pool, watched through a counting
  allocator, against ``torch.cuda.max_memory_allocated``. Not on the CPU: Numba allocates
  inside kernels with its own allocator, which ``tracemalloc`` does not see, so a number
  there would undercount us.
- PyTorch settings: on the CPU ``torch.set_num_threads(os.cpu_count())``; on the GPU TF32
  for cuDNN as ours for convolutions (``minitorch_seg.backends.cudnn.allow_tf32``), off for
  matmul as ours, so both sides compute at the same precision (cuDNN itself stays on).

torch is imported only when the benchmark runs: it is the optional oracle. This module lives
in ``minitorch_seg``, above the kernels it measures: ``kernels`` imports nothing of ours.
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

from kernels import device

from . import autograd, backends, cuda, functional
from .autograd import no_grad
from .device import allocation_of, to_device
from .tensor import Tensor

WARMUP = 1
CLASSES = 19
IGNORE = 255


# --- the rows --------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """One row: ``inputs(rng)`` makes ``{name: (array, requires_grad)}``, ``call(F, t)`` the output."""

    op: str
    shape: str
    inputs: Callable
    call: Callable


def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def conv(n, cin, h, w, cout, k, stride=1, dilation=1, depthwise=False, input_grad=True):
    """A conv2d row (dense, or depthwise with ``cout == cin``), padding keeping the size at stride 1."""
    groups = cin if depthwise else 1
    padding = dilation * (k // 2)

    def inputs(rng):
        return {"x": (_randn(rng, n, cin, h, w), input_grad),
                "w": (_randn(rng, cout, cin // groups, k, k) * np.float32(0.1), True)}

    name = f"{'depthwise' if depthwise else 'conv2d'} {k}x{k}"
    name += f" s{stride}" if stride > 1 else ""
    name += f" d{dilation}" if dilation > 1 else ""
    shape = f"{n}x{cin}x{h}x{w}" + ("" if depthwise else f" -> {cout}")
    return Case(name, shape, inputs,
                lambda F, t: F.conv2d(t["x"], t["w"], None, stride, padding, dilation, groups))


def batch_norm(n, c, h, w):
    """A training-mode batch norm row (batch statistics, running stats updated)."""
    def inputs(rng):
        return {"x": (_randn(rng, n, c, h, w), True),
                "weight": (np.ones(c, np.float32), True), "bias": (np.zeros(c, np.float32), True),
                "mean": (np.zeros(c, np.float32), False), "var": (np.ones(c, np.float32), False)}
    return Case("batch_norm train", f"{n}x{c}x{h}x{w}", inputs,
                lambda F, t: F.batch_norm(t["x"], t["mean"], t["var"], t["weight"], t["bias"], True))


def _x_only(n, c, h, w):
    return lambda rng: {"x": (_randn(rng, n, c, h, w), True)}


def bilinear(n, c, h, w, out_h, out_w):
    """A bilinear resize row (``align_corners=False``, as Fast-SCNN uses it)."""
    return Case("bilinear", f"{n}x{c}x{h}x{w} -> {out_h}x{out_w}", _x_only(n, c, h, w),
                lambda F, t: F.interpolate(t["x"], size=(out_h, out_w), mode="bilinear",
                                           align_corners=False))


def adaptive_pool(n, c, h, w, out):
    """An adaptive average pool row."""
    return Case("adaptive_avg_pool2d", f"{n}x{c}x{h}x{w} -> {out}x{out}", _x_only(n, c, h, w),
                lambda F, t: F.adaptive_avg_pool2d(t["x"], out))


def avg_pool(n, c, h, w, k):
    """An average pool row with stride = kernel size."""
    return Case(f"avg_pool2d k{k}", f"{n}x{c}x{h}x{w}", _x_only(n, c, h, w),
                lambda F, t: F.avg_pool2d(t["x"], k))


def cross_entropy(n, c, h, w):
    """A cross-entropy row (mean over labelled pixels; about 5% carry the ignore label)."""
    def inputs(rng):
        target = rng.integers(0, c, (n, h, w))
        target[rng.random((n, h, w)) < 0.05] = IGNORE
        return {"x": (_randn(rng, n, c, h, w), True), "target": (target, False)}
    return Case("cross_entropy", f"{n}x{c}x{h}x{w}", inputs,
                lambda F, t: F.cross_entropy(t["x"], t["target"], ignore_index=IGNORE))


def cpu_cases():
    """Fast-SCNN's layers at batch 2 of 512x1024 (a CPU training step)."""
    return [conv(2, 3, 512, 1024, 32, 3, stride=2, input_grad=False),
            conv(2, 48, 128, 256, 64, 1),
            conv(2, 64, 32, 64, 384, 1),
            conv(2, 32, 256, 512, 32, 3, stride=2, depthwise=True),
            conv(2, 384, 32, 64, 384, 3, depthwise=True),
            conv(2, 128, 128, 256, 128, 3, dilation=4, depthwise=True),
            batch_norm(2, 32, 256, 512),
            batch_norm(2, 384, 32, 64),
            adaptive_pool(2, 128, 32, 64, 6),
            bilinear(2, 128, 32, 64, 128, 256),
            bilinear(2, CLASSES, 128, 256, 512, 1024),
            cross_entropy(2, CLASSES, 512, 1024),
            avg_pool(2, 128, 32, 64, 2)]


def cuda_cases():
    """Fast-SCNN's layers at batch 12 of 1024x1024 crops (the paper's training step)."""
    return [conv(12, 3, 1024, 1024, 32, 3, stride=2, input_grad=False),
            conv(12, 64, 64, 64, 384, 1),
            conv(12, 384, 64, 64, 384, 3, depthwise=True),
            conv(12, 32, 512, 512, 32, 3, depthwise=True),
            batch_norm(12, 32, 512, 512),
            adaptive_pool(12, 128, 32, 32, 6),
            bilinear(12, 128, 32, 32, 128, 128),
            bilinear(12, CLASSES, 128, 128, 1024, 1024),
            cross_entropy(12, CLASSES, 1024, 1024)]


def quick_cases():
    """Every op at a tiny shape: checks the harness, not the speed."""
    return [conv(2, 3, 16, 32, 8, 3, stride=2, input_grad=False),
            conv(2, 8, 8, 16, 16, 1),
            conv(2, 8, 16, 16, 8, 3, stride=2, depthwise=True),
            conv(2, 8, 16, 16, 8, 3, dilation=4, depthwise=True),
            batch_norm(2, 8, 8, 16),
            adaptive_pool(2, 8, 8, 16, 6),
            bilinear(2, 8, 4, 8, 16, 32),
            cross_entropy(2, 5, 8, 16),
            avg_pool(2, 8, 8, 16, 2)]


# --- the two libraries -----------------------------------------------------------------------
def import_torch():
    """Import PyTorch, or exit with a message saying that it is needed and how to get it."""
    try:
        import torch
    except ImportError:
        user_error("this benchmark compares with PyTorch, which is not installed: "
                   "pip install 'minitorch-seg[torch]'")
    return torch


def user_error(message):
    """Print ``error: message`` as one line on stderr and exit with status 2 (a user error)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def configure_torch(torch, device):
    """All CPU threads on the CPU; on the GPU, TF32 for convolutions as ours
    (``minitorch_seg.backends.cudnn.allow_tf32``) and off for other matrix products (as ours)."""
    if device == "cpu":
        torch.set_num_threads(os.cpu_count())
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = backends.cudnn.allow_tf32


def check_cuda(torch=None):
    """Exit with a message unless device cuda is usable (and ``torch`` sees the GPU, when given)."""
    if not cuda.is_available():
        user_error(f"--device cuda: {cuda.unavailable_reason()}")
    if torch is not None and not cuda.is_emulated() and not torch.cuda.is_available():
        user_error("--device cuda: this torch build sees no CUDA device; install a CUDA build")


def torch_device(name):
    """Where torch runs beside us on device ``name``: the GPU, or the CPU beside the emulated GPU."""
    return "cuda" if name == "cuda" and not cuda.is_emulated() else "cpu"


def emulated_note(name):
    """The note for results on the emulated GPU (or None): its times mean nothing."""
    if name == "cuda" and cuda.is_emulated():
        return ("device cuda is the emulated GPU: our kernels run on the CPU one thread at a time and "
                "torch runs on the CPU, so times and their ratios mean nothing here; the counters do")
    return None


def synchronizer(name, torch=None):
    """A function that waits for every queued GPU kernel of ours and ``torch``'s (a no-op on the CPU)."""
    if name == "cpu":
        return lambda: None
    torch_on_gpu = torch is not None and torch_device(name) == "cuda"

    def sync():
        cuda.synchronize()
        if torch_on_gpu:
            torch.cuda.synchronize()
    return sync


def median_ms(fn, repeat, sync, warmup=WARMUP):
    """The median wall time of ``fn()`` in milliseconds over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def device_peak_bytes(fn):
    """Bytes of our device arrays ``(before, at the peak)`` of running ``fn()`` (:class:`counters`)."""
    cuda.synchronize()
    with counters() as c:
        fn()
        cuda.synchronize()
    return c.start_bytes, c.peak_bytes


def torch_peak_bytes(torch, fn):
    """Bytes torch's CUDA allocator has allocated ``(before, at the peak)`` of running ``fn()``."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return before, torch.cuda.max_memory_allocated()


class Counters:
    """What ran on device ``"cuda"`` inside a ``with counters() as c:`` block.

    ``launches`` = ``our_launches`` (the ``.cu`` kernels) + ``library_launches`` (what CuPy
    launches for array arithmetic, reductions, copies and fills); ``syncs``: device-to-host
    reads, each of which makes the host wait for the GPU; ``peak_bytes``: the most bytes of
    device arrays alive at once, counting ``start_bytes``, those alive when the block began.
    ``trace``: with ``counters(trace=True)`` on the emulated device, every launch traced
    (``kernels.cuda.emulator.trace``: requests, sectors, unique bytes, bank conflicts), else None.
    ``kernel_ms``: with ``counters(measure=True)``, ``{kernel name: [launches, ms]}`` timed by
    CUDA events around each launch of ours and each ``matmul`` call (name ``"matmul"``), else None.
    """

    def __init__(self):
        self.our_launches = self.library_launches = self.syncs = self.peak_bytes = self.start_bytes = 0
        self.trace = self.kernel_ms = None

    @property
    def launches(self):
        """All kernel launches: ours and CuPy's."""
        return self.our_launches + self.library_launches

    def __repr__(self):
        return (f"Counters(launches={self.launches} (ours {self.our_launches}, library "
                f"{self.library_launches}), syncs={self.syncs}, peak_bytes={self.peak_bytes})")


class counters:
    """Context manager: ``with minitorch_seg.benchmark.counters() as c: ...`` then read ``c``.

    On the emulated device every number is exact. On a real GPU ``our_launches`` and
    ``peak_bytes`` (from CuPy's memory pool) are; CuPy's own launches and device-to-host
    reads cannot be seen from Python there, so ``library_launches`` and ``syncs`` are None.

    ``trace=True`` (emulated device only) also traces every launch into ``c.trace``: slower,
    it runs each kernel through an instrumented build (``MTS_CUDA_TRACE=1`` does it everywhere).

    ``measure=True`` times each of our launches and each ``matmul`` (cuBLAS with the copies and
    pointer arrays CuPy adds) with a pair of CUDA events into ``c.kernel_ms``; the block's end
    then waits for the GPU. On the emulated device the events read the host's clock: the
    emulator's wall time, not a GPU's.
    """

    def __init__(self, trace=False, measure=False):
        self.trace = trace
        self.measure = measure

    def __enter__(self):
        self.result = Counters()
        self._ours = device.Stats.our_launches
        self._recording = None
        self._timer = _KernelTimer() if self.measure else None
        if self._timer is not None:
            self._timer.__enter__()
        if self.trace:
            if not device.is_emulated():
                raise ValueError("counters(trace=True): memory traces exist on the emulated GPU only "
                                 "(MTS_CUDA=emulate)")
            from kernels.cuda.emulator.trace import recording
            self._recording = recording()
            self.result.trace = self._recording.__enter__()
        if device.is_emulated():
            from kernels.cuda.emulator.xp import Stats as emulated
            self._stats = emulated
            self._start = (emulated.library_launches, emulated.syncs)
            self.result.peak_bytes = self.result.start_bytes = emulated.live_bytes
            emulated.watchers.append(self.result)
        else:
            self._hook = _peak_memory_hook(self.result)
            self._hook.__enter__()
        return self.result

    def __exit__(self, *exc):
        r = self.result
        if self._recording is not None:
            self._recording.__exit__(*exc)
        if self._timer is not None:
            r.kernel_ms = self._timer.__exit__(*exc)
        r.our_launches = device.Stats.our_launches - self._ours
        if device.is_emulated():
            self._stats.watchers.remove(r)
            r.library_launches = self._stats.library_launches - self._start[0]
            r.syncs = self._stats.syncs - self._start[1]
        else:
            self._hook.__exit__(*exc)
            r.library_launches = r.syncs = None
        return False


class _KernelTimer:
    """Context manager that times each of our launches (``kernels.device.Stats.launch``) and each
    ``matmul`` of the array module with a pair of CUDA events; ``__exit__`` returns
    ``{name: [launches, ms]}`` once the GPU has finished them."""

    def __enter__(self):
        self.xp = device.array_module()
        self.pairs = []  # (name, start event, end event), in launch order
        self._launch, self._matmul = device.Stats.launch, self.xp.matmul
        device.Stats.launch = self.launch
        self.xp.matmul = lambda *args, **kwargs: self.launch("matmul", self._matmul, *args, **kwargs)
        return self

    def launch(self, name, kernel, *args, **kwargs):
        """Run ``kernel(*args, **kwargs)`` between two recorded events; return what it returns."""
        start, end = self.xp.cuda.Event(), self.xp.cuda.Event()
        start.record()
        out = kernel(*args, **kwargs)
        end.record()
        self.pairs.append((name, start, end))
        return out

    def __exit__(self, *exc):
        device.Stats.launch, self.xp.matmul = self._launch, self._matmul
        if self.pairs:
            self.pairs[-1][2].synchronize()
        ms = {}
        for name, start, end in self.pairs:
            m = ms.setdefault(name, [0, 0.0])
            m[0] += 1
            m[1] += self.xp.cuda.get_elapsed_time(start, end)
        return ms


def _peak_memory_hook(counters):
    """A CuPy memory hook that keeps ``counters.peak_bytes`` at the most bytes in use (real GPU)."""
    cp = device.array_module()

    class PeakMemory(cp.cuda.MemoryHook):
        name = "mts-peak-memory"

        def __init__(self):
            self.used = cp.get_default_memory_pool().used_bytes()
            counters.peak_bytes = counters.start_bytes = self.used

        def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
            self.used += mem_size
            counters.peak_bytes = max(counters.peak_bytes, self.used)

        def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id):
            self.used -= mem_size

    return PeakMemory()


def saved_bytes(root):
    """Bytes of the arrays the graph below tensor ``root`` keeps for its backward pass.

    Each allocation counts once, whole, however many saved arrays view it: what stays in
    memory because of the graph (the measure ``fastscnn.benchmark`` compares with PyTorch's
    saved tensors).
    """
    if root._node is None:
        return 0
    allocations = {}
    for node in autograd._topological_order(root._node):
        for array in (node.ctx.saved_tensors if node.ctx is not None else ()):
            if hasattr(array, "nbytes"):
                key, size = allocation_of(array)
                allocations[key] = size
    return sum(allocations.values())


class Ours:
    """minitorch_seg on ``device``: arrays moved there once, leaves wrapped per run."""

    name = "ours"

    def __init__(self, device):
        self.F, self.device = functional, device

    def array(self, a):
        """``a`` (NumPy) on the device, as this library's raw data."""
        return to_device(a, self.device)

    def leaf(self, data, requires_grad):
        """A fresh leaf over ``data`` (no copy), so gradients never accumulate across runs."""
        return Tensor(data, requires_grad=requires_grad)


class Torch:
    """torch.nn.functional on ``device``, the same conventions as :class:`Ours`."""

    name = "torch"

    def __init__(self, torch, device):
        self.torch, self.F, self.device = torch, torch.nn.functional, device

    def array(self, a):
        """``a`` (NumPy) on the device, as a torch tensor."""
        return self.torch.from_numpy(a).to(self.device)

    def leaf(self, data, requires_grad):
        """A fresh leaf sharing ``data``'s storage."""
        return data.detach().requires_grad_(requires_grad)


def runner(lib, case, data, grad_out):
    """A function running ``case`` forward + backward once in ``lib`` on its device ``data``."""
    upstream = None if grad_out is None else lib.array(grad_out)

    def run():
        out = case.call(lib.F, {k: lib.leaf(d, g) for k, (d, g) in data.items()})
        out.backward(upstream)
    return run


def output_shape(case, ours, data):
    """The shape of the case's output: one forward pass of ours without a graph."""
    with no_grad():
        return case.call(ours.F, {k: ours.leaf(d, False) for k, (d, _) in data.items()}).shape


def measure(case, libs, device, repeat, sync, torch):
    """Time (and on the GPU, measure the memory of) ``case`` in each library; one result dict.

    ``libs[0]`` is ours. Both libraries get copies of the same NumPy inputs and the same
    upstream gradient.
    """
    rng = np.random.default_rng(0)
    arrays = case.inputs(rng)
    data = {lib.name: {k: (lib.array(a), g) for k, (a, g) in arrays.items()} for lib in libs}
    shape = output_shape(case, libs[0], data[libs[0].name])
    grad_out = _randn(rng, *shape) if shape else None
    row = {"op": case.op, "shape": case.shape}
    for lib in libs:
        run = runner(lib, case, data[lib.name], grad_out)
        row[f"{lib.name}_ms"] = median_ms(run, repeat, sync)
        if device == "cuda":
            if lib.name == "ours" or torch_device(device) == "cuda":
                before, peak = device_peak_bytes(run) if lib.name == "ours" else torch_peak_bytes(torch, run)
                row[f"{lib.name}_peak_mb"] = (peak - before) / 2**20
            else:
                row[f"{lib.name}_peak_mb"] = None
    row["ratio"] = row["ours_ms"] / row["torch_ms"] if emulated_note(device) is None else None
    if device == "cuda":
        row["memory_ratio"] = row["ours_peak_mb"] / row["torch_peak_mb"] if row["torch_peak_mb"] else None
    return row


# --- the report ------------------------------------------------------------------------------
def busy_note():
    """A warning when the 1-minute load average exceeds the core count (other work skews times), else None."""
    load, cores = os.getloadavg()[0], os.cpu_count()
    if load <= cores:
        return None
    return (f"the machine is busy (load average {load:.1f} on {cores} cores): other processes "
            f"share the cores, so times are slower and noisier than on an idle machine")


def release_cached_memory(torch=None):
    """Give the memory CuPy's pool (and ``torch``'s allocator, when given) keep cached back to the GPU."""
    if cuda.is_emulated():
        return
    import cupy
    cupy.get_default_memory_pool().free_all_blocks()
    if torch is not None:
        torch.cuda.empty_cache()


def gpu_name():
    """The name of the current CUDA device, as CuPy reports it (or the emulated GPU's)."""
    if cuda.is_emulated():
        return f"the emulated GPU on {os.cpu_count()} CPU cores"
    import cupy
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    return name.decode() if isinstance(name, bytes) else name


def header(device, repeat, torch):
    """What the numbers were measured on and how (also the JSON's top-level keys)."""
    info = {"device": device, "dtype": "float32", "measure": "forward+backward",
            "repeat": repeat, "warmup": WARMUP, "torch_version": torch.__version__,
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "notes": [n for n in [busy_note(), emulated_note(device)] if n]}
    if device == "cpu":
        import numba
        info.update(cpu_count=os.cpu_count(), numba_threads=numba.get_num_threads(),
                    torch_threads=torch.get_num_threads())
    else:
        info.update(gpu=gpu_name(), tf32=backends.cudnn.allow_tf32, cudnn=torch.backends.cudnn.enabled)
    return info


def format_table(info, rows):
    """The rows as a fixed-width text table under a one-line description of the setup."""
    gpu = info["device"] == "cuda"
    lines = [", ".join(f"{k}={v}" for k, v in info.items() if k != "notes")]
    lines += [f"note: {n}" for n in info["notes"]]
    cols = ["op", "shape", "ours ms", "torch ms", "ours/torch"]
    cols += ["ours MB", "torch MB", "mem ours/torch"] if gpu else []
    table = []
    num = lambda v, digits: "-" if v is None else f"{v:.{digits}f}"  # noqa: E731
    for r in rows:
        line = [r["op"], r["shape"], num(r["ours_ms"], 2), num(r["torch_ms"], 2), num(r["ratio"], 2)]
        if gpu:
            line += [num(r["ours_peak_mb"], 1), num(r["torch_peak_mb"], 1), num(r["memory_ratio"], 2)]
        table.append(line)
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]

    def fmt(cells):  # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines += [fmt(cols), fmt(["-" * w for w in widths])] + [fmt(t) for t in table]
    if not gpu:
        lines.append("(memory: not measured on the CPU; Numba's allocations are invisible to tracemalloc)")
    return "\n".join(lines)


def _parser():
    p = argparse.ArgumentParser(prog="python -m minitorch_seg.benchmark", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per op (the median is shown)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--quick", action="store_true", help="tiny shapes (checks the harness, times mean nothing)")
    return p


def main(argv=None):
    """Run the benchmark and print the table (or JSON); returns the exit status."""
    args = _parser().parse_args(argv)
    if args.repeat < 1:
        user_error(f"--repeat: expected a positive integer, got {args.repeat}")
    torch = import_torch()
    if args.device is None:
        args.device = cuda.default_device()
    if args.device == "cuda":
        check_cuda(torch)
    configure_torch(torch, torch_device(args.device))
    cases = quick_cases() if args.quick else cpu_cases() if args.device == "cpu" else cuda_cases()
    libs = [Ours(args.device), Torch(torch, torch_device(args.device))]
    sync = synchronizer(args.device, torch)
    info = header(args.device, args.repeat, torch)
    rows = []
    for case in cases:
        rows.append(measure(case, libs, args.device, args.repeat, sync, torch))
        if args.device == "cuda":
            release_cached_memory(torch)  # the next row starts from an empty cache on both sides
        print(f"  {case.op} {case.shape}: ours {rows[-1]['ours_ms']:.2f} ms, torch {rows[-1]['torch_ms']:.2f} ms",
              file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(dict(info, results=rows), indent=1))
    else:
        print(format_table(info, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
