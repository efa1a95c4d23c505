"""A roofline estimate of GPU time from memory traces: per launch, per kernel family, per step.

Every time this module gives is a model, never a measurement: print it as "estimated
(uncalibrated)" until a real GPU has timed the same kernels (``tools/gpu_check.sh``).

The model, per launch (all terms in seconds)::

    time = max(DRAM, L1/L2, instructions) / fill + launch

    DRAM          unique bytes read + written (trace: the least that must cross HBM)
                  / (HBM bandwidth x 85%)
    L1/L2         the larger of: L2 bytes / (L2 bandwidth x 85%), and the L1 pipe,
                  (sectors / 4 + shared-memory wavefronts) / (SMs x clock): an SM's L1
                  moves 128 bytes (4 sectors, or one shared wavefront) per clock. L2 bytes
                  are each block's distinct sectors (trace: what L1 cannot serve again)
    instructions  warp instructions / (SMs x 4 per clock x clock x 70%); the count comes from
                  a cost formula per kernel (:data:`COSTS`), see below
    fill          min(1, blocks / SMs): a grid of fewer blocks than SMs leaves SMs idle, and
                  the busy ones get no more than their share of bandwidth and issue slots
    launch        LAUNCH_S per kernel launch (the gap between back-to-back kernels)

The derating (85% of bandwidth, 70% of issue rate) is the one the issue's hand analysis used.

Why a cost formula per kernel, not SASS. The issue offers both: SASS from NVRTC's sm_90 cubin
read by ``cuobjdump -sass``, or a documented formula. NVRTC compiles the cubin here, but
``cuobjdump -sass`` needs ``nvdisasm``, which ships in a package outside the project's allowed
dependencies (checked on this machine: "Could not find executable file 'nvdisasm'"), and CI
would need it too. So each kernel's warp instructions are counted from its source with fixed
costs: :data:`DIV` instructions for an integer division or modulo by a runtime value (sm_90 has
no integer divider: NVCC emits a reciprocal-and-correct sequence of about 20 instructions),
:data:`MEM` per global load or store with its address arithmetic, and 1 per other arithmetic
or compare-and-branch. Loop trip counts come from the emulator: the trace's global requests
per warp count how many times a warp ran the loop body's loads. The formulas are in
:data:`COSTS`, one per kernel, each with the source line it prices.

CuPy's own launches (``LibraryLaunch``): elementwise, reductions and copies move the bytes of
their shapes; a copy of a non-contiguous array reads with the sectors of a strided gather.
``matmul`` launches what CuPy really launches (``trace.matmul_kernels``, which cites
``cupy/_core/_routines_linalg.pyx``): a copy of each operand cuBLAS cannot take as it is
(2-D: neither C- nor F-contiguous; stacks: not C-contiguous), pointer arrays (``_mat_ptrs``)
when one matrix is broadcast over a batch, then one cuBLAS GEMM at :data:`GEMM_EFFICIENCY` of
the FP32 peak, or at HBM bandwidth if that binds; it fills the GPU when it has a
128x128x256 block of work per SM, by output tiles or, for the weight gradients' few tiles
over a long K, by split-K (counted inside the one launch).

TF32: a GEMM that CuPy runs in TF32 (2-D, float32, compute type TF32) records its FLOPs as
``tf32_flops`` too. The estimate's headline prices every GEMM at the FP32 peak (TF32 off, the
precision of PyTorch's fp32 eager baseline); ``seconds(..., tf32=True)`` prices those FLOPs at
the TF32 tensor-core peak instead, at the same :data:`GEMM_EFFICIENCY` (an assumption: cuBLAS
reaches a like share of either peak at our shapes, which are mostly bandwidth-bound in TF32).

Extrapolation to a shape too large to emulate (:func:`extrapolate`): run the same work at two
small shapes; the launches match one to one (the same network launches the same kernels in
the same order); every additive quantity of a launch (bytes, sectors, requests, wavefronts,
instructions, FLOPs, blocks) is fitted as ``a + b * P``, ``P`` = images x pixels, and read at
the target's ``P``. Per-element kernels scale exactly with ``P`` (traced bytes scale with the
elements, ``tests/test_trace.py`` checks it); parameter-sized work (SGD, weight gradients'
finishing) stays constant, which the constant ``a`` carries.
"""
import dataclasses
import math

from .trace import SECTOR, KernelLaunch, LibraryLaunch, matmul_kernels

DIV = 20        # SASS instructions of a 32-bit integer division or modulo by a runtime value
MEM = 3         # a global load or store with its address arithmetic
BANDWIDTH_DERATE = 0.85
ISSUE_DERATE = 0.70
GEMM_EFFICIENCY = 0.60  # cuBLAS FP32 (no TF32) GEMM at our shapes: a stated assumption
LAUNCH_S = 2.5e-6       # per kernel launch, back to back on one stream: a stated assumption


@dataclasses.dataclass(frozen=True)
class GPU:
    """A GPU's published limits, and where each number comes from."""

    name: str
    sms: int
    clock_hz: float
    hbm_bytes_per_s: float
    l2_bytes: float
    l2_bytes_per_s: float
    fp32_flops: float
    fp64_flops: float
    tf32_flops: float
    warp_instructions_per_clock_per_sm: int
    sources: tuple


GPUS = {
    "H100": GPU(
        name="NVIDIA H100 SXM5 80GB", sms=132, clock_hz=1.98e9, hbm_bytes_per_s=3.35e12,
        l2_bytes=50e6, l2_bytes_per_s=5.5e12, fp32_flops=67e12, fp64_flops=34e12, tf32_flops=494.5e12,
        warp_instructions_per_clock_per_sm=4,
        sources=(
            "132 SMs, 50 MB L2, 4 SM partitions each issuing one warp instruction per clock: "
            "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), Table 3 and the SM figure",
            "1.98 GHz boost (SXM5), FP32 67 TFLOPS, FP64 34 TFLOPS (non-tensor), HBM3 3.35 TB/s: "
            "NVIDIA H100 Tensor Core GPU datasheet (SXM column)",
            "TF32 Tensor Core 494.5 TFLOPS dense: half the 989 TFLOPS that the same datasheet gives "
            "'with sparsity' (SXM column)",
            "L2 bandwidth 5.5 TB/s: NOT published by NVIDIA; an assumption of the order measured by "
            "microbenchmarks (Chips and Cheese, 'Nvidia's H100: Funny L2, and Tons of Bandwidth', 2023, "
            "H100 PCIe); uncalibrated",
        )),
}


@dataclasses.dataclass
class Work:
    """What one launch does, in additive quantities (so that it can be fitted and summed)."""

    kind: str                 # a kernel name ("im2col") or CuPy's ("matmul", "copy", ...)
    launches: float = 1
    blocks: float = 0
    dram_bytes: float = 0     # unique bytes: the DRAM term
    l2_bytes: float = 0       # each block's distinct sectors: the L2 term
    sector_bytes: float = 0   # sectors x 32: L1 traffic
    requests: float = 0       # global-memory requests
    sectors: float = 0
    shared_requests: float = 0
    shared_wavefronts: float = 0
    bank_conflicts: float = 0
    instructions: float = 0   # warp instructions
    flops: float = 0          # GEMMs only: they are timed against the FP32 peak instead
    tf32_flops: float = 0     # the part of flops that CuPy runs in TF32 when asked

    NUMBERS = ("launches", "blocks", "dram_bytes", "l2_bytes", "sector_bytes", "requests", "sectors",
               "shared_requests", "shared_wavefronts", "bank_conflicts", "instructions", "flops", "tf32_flops")


# ---------------------------------------------------------------------- instruction counts

def _taps(r, loads_per_tap=2):
    """Taps that load, per thread, of a kernel issuing ``r`` requests per warp (one is the store)."""
    return max(r - 1, 0) / loads_per_tap


def _gather_cost(s, r, decode_divisions, loads_per_tap):
    """Gathers over (kh, kw) that test ``(ih + ph - kh*dh) % sh`` per row and per tap
    (depthwise backward-input, col2im): a division per row, a division per tap of every row
    that passes, plus the loads of the taps that read."""
    rows = s["KH"] / max(s.get("sh", 1), 1)
    return (decode_divisions * DIV + 12 + s["KH"] * (DIV + 7) + rows * s["KW"] * (DIV + 8)
            + _taps(r, loads_per_tap) * (loads_per_tap * MEM + 1))


def _tap_test(s):
    """Instructions of a tap's row or column test in a stride-specialized gather: a mask and a
    shift with a compile-time stride (1 or 2), two divisions with a run-time one."""
    return 4 if (s["sh"], s["sw"]) in ((1, 1), (2, 2)) else 2 * DIV + 4


def _tiled_gather_cost(s, r, shared, rows=8):
    """depthwise backward-input as a block per tile with gy's window staged in shared memory,
    ``rows`` gx rows per thread: 3 div/mod to find the tile, the window's bounds, the staging
    loop (a global load and a shared store per value), a row test per kh and row, a column test
    and a weight load per tap, a shared load + predicate + FMA per read, the stores. The staged
    values and the shared reads per warp (``r`` and ``shared``) come from the trace."""
    taps = s["KH"] * s["KW"]
    staged = max(r - taps - rows, 0)
    reads = max(shared - staged, 0)
    return (3 * DIV + 40 + staged * (MEM + 4) + s["KH"] * rows * (_tap_test(s) + 1)
            + taps * (_tap_test(s) + MEM) + reads * 4 + rows * MEM)


def _tiled_forward_cost(s, r, shared, rows=4):
    """depthwise forward as a block per 32 x 32 tile of y with x's window staged in shared
    memory (depthwise.cu's XWindow), ``rows`` y rows per thread: 5 div/mod to find the tile and
    the thread's first staged value, the window's bounds; per staged value a bounds test, a
    load, the parity offset and a shared store; per tap a weight load and its offset; per read
    a row test, the address, a shared load and an FMA; the stores. Staged values and shared
    reads per warp come from the trace (``r`` = weight loads + staging loads + stores)."""
    taps = s["KH"] * s["KW"]
    staged = max(r - taps - rows, 0)
    reads = max(shared - staged, 0)
    return 5 * DIV + 40 + staged * (MEM + 8) + taps * (MEM + 4) + reads * 4 + rows * MEM


def _tiled_weight_cost(s, r, shared):
    """depthwise backward-weight as a block per (channel, run of 32 x 32 tiles) that stages x's
    window in shared memory, in passes of up to 9 taps. Per warp and pass: 5 div/mod to find
    the tiles, the tap table (a multiply-add or two per tap), per tile its origin, bounds and two
    barriers; a bounds test, a load and a shared store per staged value; per output row a load
    of gy, and per tap a shared load and an FMA; the block's sum (a 5-step double shuffle tree
    per tap, 8 warp sums). Output rows per warp come from the shapes, staged values from the
    trace (the shared requests that are neither tap reads nor the final sum's 10 per warp)."""
    taps = s["KH"] * s["KW"]
    passes = math.ceil(taps / 9)
    tiles = s["N"] * math.ceil(s["OH"] / 32) * math.ceil(s["OW"] / 32)
    runs = math.ceil(tiles / s["tiles"])
    rows = s["N"] * s["OH"] * math.ceil(s["OW"] / 32) / (runs * 8)  # output rows per warp
    staged = max(shared - rows * taps - passes * 10, 0) / passes
    return (5 * DIV + 20 + passes * (2 * DIV + 9 * 6 + tiles / runs * 25 + staged * (MEM + 8)
                                     + rows * (MEM + 6) + 9 * 17 + 24) + rows * taps * 3)


def _reduction_cost(iteration, loads_per_iteration, block_sums):
    """Block reductions (reduce.cuh): a loop over the chunk, then ``block_sums`` block sums of 8
    shuffle levels (two 32-bit shuffles and an add for a double, about 4 instructions each) and
    the shared store, barrier and load between the two warp stages (about 8)."""
    return lambda s, r: 10 + max(r - 1, 0) / loads_per_iteration * iteration + block_sums * (8 * 4 + 8)


def _channel_total_prologue(totals):
    """Batch norm's element-wise kernels: each block first adds its channel's partial sums
    (``totals`` block sums of one load per thread) and thread 0 turns them into constants."""
    return totals * (MEM + 8 * 4 + 8) + 60


def _heads_width_cost(s, r):
    """The fused heads' width pass (loss.cu): 3 div/mod decoding, a source_index, 2 binary searches
    of log2(OW) steps (about 16 each), then per chunk of 8 pixels (count from the requests: per
    chunk up to 8 x 4 pixel loads, then C x (4 loads and 2 stores, 2 loads after the first)) the
    pixels' loads and source_index (about 20 each), and per class the 2 row mixes and per pixel
    slot a test, 2 FMA, an exp (about 16) and the 2 adds (about 24)."""
    C = s["C"]
    chunks = max(1.0, r / (32 + 6.5 * C))
    return 3 * DIV + 30 + 32 * math.log2(max(s["OW"], 2)) + chunks * (8 * (4 * MEM + 20) + C * (7 * MEM + 4 + 8 * 24))


# Warp instructions per thread of each kernel: f(scalars, global requests per warp). The
# requests per warp stand in for loop trip counts: a warp issues one request per load that
# any of its lanes executes, so a loop with one load issues one request per iteration.
COSTS = {
    # 7 div/mod decoding (ow, oh, n, then c, kh, kw of the row), bounds test, one load, one store
    "im2col": lambda s, r: 7 * DIV + 16 + 2 * MEM,
    # 4 div/mod decoding (iw, ih, c, n), then the gather over taps: a division per row and per tap
    "col2im": lambda s, r: _gather_cost(s, r, 4, 1),
    "sum_chunks": lambda s, r: 10 + 5 * s["chunks"],
    # per element: channel_at (a div/mod), a load, FP64 subtract, add, FMA
    "stat_partials": _reduction_cost(DIV + 13, 1, 2),
    # per element: channel_at, gy and x loads, the ReLU gate recomputed (FMA, compare), FP64 sums
    "grad_partials": _reduction_cost(DIV + 23, 2, 2),
    # the channel's totals (2 or none), then per element: channel_at, a load, FMA, ReLU, a store
    "forward_train": lambda s, r: _channel_total_prologue(2) + max(r - 4, 0) / 2 * (DIV + 6 + 2 * MEM),
    "forward_eval": lambda s, r: _channel_total_prologue(0) + max(r - 4, 0) / 2 * (DIV + 6 + 2 * MEM),
    # the totals, then per element: channel_at, gy and x loads, the gate, 4 flops, a store
    "backward_input": lambda s, r: _channel_total_prologue(2) + max(r - 4, 0) / 3 * (DIV + 12 + 3 * MEM),
    # two loads, an add or a compare, a select, a store
    "add_relu": lambda s, r: 12 + 3 * MEM,
    "relu_backward": lambda s, r: 12 + 3 * MEM,
    # 3 div/mod decoding, two source_index (about 12 each), 4 loads, 6 FMA, a store
    "bilinear_forward": lambda s, r: 3 * DIV + 32 + 5 * MEM,
    # 3 div/mod decoding, 4 binary searches of log2(out) steps of about 16 instructions
    # (a source_index each), then per output read: a source_index, weight_of, load, FMA
    "bilinear_backward": lambda s, r: (3 * DIV + 10 + 16 * 2 * (math.log2(max(s["OH"], 2)) + math.log2(max(s["OW"], 2)))
                                       + max(r - 1, 0) * (20 + MEM)),
    # per pixel: 2 div/mod, 3 passes over the C classes (max, sum of exp, write prob)
    "cross_entropy_forward": lambda s, r: 2 * DIV + 20 + s["C"] * (4 * MEM + 20),
    # 3 div/mod decoding, target load, coefficient, prob load, store
    "cross_entropy_backward": lambda s, r: 3 * DIV + 20 + 4 * MEM,
    # the fused heads (loss.cu): per pixel, 3 div/mod decoding, two source_index (about 12
    # each), per class a bilinear_at (4 loads, 6 FMA), the online softmax's compare, exp
    # (about 16) and add, then a log, the target's logit, target and 2 stores
    "upsample_cross_entropy_forward": lambda s, r: (3 * DIV + 50 + s["C"] * (4 * MEM + 6 + 20)
                                                    + 4 * MEM + 6 + 3 * MEM),
    "upsample_cross_entropy_backward_width": lambda s, r: _heads_width_cost(s, r),
    # 3 div/mod decoding, one binary search of log2(OH) steps, then per row oh that reads row h
    # (2 loads each): a source_index, weight_of, the two partials' loads, add and FMA
    "upsample_cross_entropy_backward_height": lambda s, r: (3 * DIV + 10 + 16 * math.log2(max(s["OH"], 2))
                                                            + max(r - 1, 0) / 2 * (20 + 2 * MEM)),
    "avg_pool2d_forward": lambda s, r: 3 * DIV + 16 + max(r - 1, 0) * (MEM + 4),
    "avg_pool2d_backward": lambda s, r: 3 * DIV + 4 * DIV + 16 + max(r - 1, 0) * (MEM + 4),
    "adaptive_avg_pool2d_forward": lambda s, r: 3 * DIV + 4 * DIV + 16 + max(r - 1, 0) * (MEM + 4),
    "adaptive_avg_pool2d_backward": lambda s, r: 3 * DIV + 4 * DIV + 16 + max(r - 1, 0) * (2 * DIV + MEM + 8),
    # splitmix64 on 64-bit integers (about 30), a load, a store
    "dropout": lambda s, r: 40 + 2 * MEM,
    # a binary search over the K parameters (log2 K steps of ~8), 4-5 loads and stores
    "sgd_step": lambda s, r: 20 + 8 * math.log2(max(s["K"], 2)) + 6 * MEM,
}


def _default_cost(s, r):
    """A kernel without a formula (the tests' planted ones): a prologue and its accesses."""
    return 20 + r * MEM


# Kernels whose count needs the shared-memory requests per warp too: f(scalars, requests, shared).
SHARED_COSTS = {"depthwise_forward": _tiled_forward_cost, "depthwise_backward_input": _tiled_gather_cost,
                "depthwise_weight_partials": _tiled_weight_cost}


def instructions_per_thread(launch):
    """Warp instructions each thread of ``launch`` (a :class:`KernelLaunch`) issues, by its formula."""
    warps = launch.blocks * math.ceil(launch.threads / launch.blocks / 32)
    per_warp_requests = launch.requests / warps if warps else 0.0
    if launch.kernel in SHARED_COSTS:
        shared = launch.counts["shared_requests"] / warps if warps else 0.0
        return SHARED_COSTS[launch.kernel](launch.scalars, per_warp_requests, shared)
    cost = COSTS.get(launch.kernel, _default_cost)
    return cost(launch.scalars, per_warp_requests)


def kernel_work(launch):
    """The :class:`Work` of one traced launch of ours."""
    warps = launch.blocks * math.ceil(launch.threads / launch.blocks / 32)
    c = launch.counts
    return Work(launch.kernel, blocks=launch.blocks, dram_bytes=launch.unique_bytes,
                l2_bytes=launch.l2_bytes, sector_bytes=launch.sector_bytes, requests=launch.requests, sectors=launch.sectors,
                shared_requests=c["shared_requests"], shared_wavefronts=c["shared_wavefronts"],
                bank_conflicts=c["bank_conflicts"],
                instructions=warps * instructions_per_thread(launch))


def _elements(desc):
    return math.prod(desc[0])


def _streaming(kind, bytes_, elements, instructions_per_element=8, strided=(0, 0)):
    """A CuPy kernel (a thread per element) reading and writing ``bytes_`` coalesced: 32
    consecutive elements per request. ``strided = (elements, itemsize)`` of them are gathered
    instead, each lane of a request from its own sector (32 sectors per request)."""
    gathered, itemsize = strided
    sectors = (bytes_ - gathered * itemsize) / SECTOR + gathered
    return Work(kind, blocks=max(1, elements / 256), dram_bytes=bytes_, l2_bytes=sectors * SECTOR,
                sector_bytes=sectors * SECTOR,
                requests=2 * elements / 32, sectors=sectors, instructions=elements / 32 * instructions_per_element)


def _copy(kind, desc):
    """``ascontiguousarray`` of a non-contiguous operand: a division per axis to find each
    element, strided reads, coalesced writes."""
    n, size = _elements(desc), desc[1]
    return _streaming(kind, 2 * n * size, n, instructions_per_element=10 + DIV * len(desc[0]),
                      strided=(n, size))


def library_work(launch):
    """The :class:`Work` of one of CuPy's launches (matmul: every kernel CuPy launches for it)."""
    if launch.name != "matmul":
        n = max([_elements(d) for d in launch.inputs + launch.outputs] or [0])
        return [_streaming(launch.name, launch.bytes, n)]
    (a, b), out = launch.inputs[:2], launch.outputs[0]
    batch = math.prod(out[0][:-2])
    works = []
    for kind, d in matmul_kernels(a, b, out):
        if kind == "copy":
            works.append(_copy(f"matmul copy {len(d[0])}-D", d))
        elif kind == "pointers":
            works.append(Work("matmul pointers", blocks=1, dram_bytes=8 * batch, l2_bytes=8 * batch,
                              sector_bytes=8 * batch, instructions=batch))
    m, k, n = a[0][-2], a[0][-1], b[0][-1]
    # How many SMs a GEMM can keep busy: one 128x128 output tile each, and where the output has
    # fewer tiles than SMs (our weight gradients: a few tiles, K = all the pixels) cuBLAS splits
    # K (split-K), so count blocks of work of 128x128x256. Unrounded, so that a fit through two
    # small sizes (under one block each) still sees the target's thousands.
    blocks = batch * m * n * k / (128 * 128 * 256)
    flops = 2.0 * batch * m * n * k
    works.append(Work("gemm", blocks=blocks, dram_bytes=(_elements(a) + _elements(b) + _elements(out)) * out[1],
                      flops=flops, tf32_flops=flops if launch.tf32 else 0))
    return works


def work_of(launches):
    """Every launch (ours and CuPy's, traced) as a list of :class:`Work`, in launch order."""
    works = []
    for launch in launches:
        if isinstance(launch, KernelLaunch):
            works.append(kernel_work(launch))
        elif isinstance(launch, LibraryLaunch):
            works.extend(library_work(launch))
    return works


# ---------------------------------------------------------------------- time

def seconds(work, gpu, tf32=False):
    """``(time, bound, terms)`` of one :class:`Work` on ``gpu``: the model in the module docstring
    (``tf32``: its ``tf32_flops`` at the TF32 tensor-core peak)."""
    in_tf32 = work.tf32_flops if tf32 else 0
    bandwidth = gpu.hbm_bytes_per_s * BANDWIDTH_DERATE
    terms = {
        "DRAM": work.dram_bytes / bandwidth,
        "L1/L2": max(work.l2_bytes / (gpu.l2_bytes_per_s * BANDWIDTH_DERATE),
                     (work.sectors / 4 + work.shared_wavefronts) / (gpu.sms * gpu.clock_hz)),
        "instructions": work.instructions / (gpu.sms * gpu.warp_instructions_per_clock_per_sm
                                              * gpu.clock_hz * ISSUE_DERATE),
        "FLOPs": ((work.flops - in_tf32) / gpu.fp32_flops + in_tf32 / gpu.tf32_flops) / GEMM_EFFICIENCY,
    }
    bound = max(terms, key=terms.get)
    fill = fill_factor(work.blocks, gpu)
    return terms[bound] / fill + work.launches * LAUNCH_S, bound, terms


def fill_factor(blocks, gpu):
    """The share of the GPU a grid of ``blocks`` blocks keeps busy: min(1, blocks / SMs)."""
    return min(1.0, max(blocks, 1) / gpu.sms)


# ---------------------------------------------------------------------- extrapolation

def extrapolate(small, large, p_small, p_large, p_target):
    """Each launch's :class:`Work` at ``p_target`` from the same launches at two sizes.

    ``small`` and ``large``: lists of :class:`Work` from the same code at sizes ``p_small`` <
    ``p_large`` (images x pixels); they must match one to one in kind. Every number is fitted
    as ``a + b * P`` through the two points and read at ``p_target`` (never below zero: a
    quantity that shrank between the two runs is noise at small sizes, not a trend to follow).
    The one exception is the grid of a kernel in :data:`GRID_GROWS_WITH_P` (see there).
    """
    if [w.kind for w in small] != [w.kind for w in large]:
        raise ValueError("extrapolate: the two runs launched different kernels; the model needs the "
                         "same launches at both sizes")
    t = (p_target - p_small) / (p_large - p_small)
    out = []
    for a, b in zip(small, large):
        values = {f: max(0.0, getattr(a, f) + (getattr(b, f) - getattr(a, f)) * t) for f in Work.NUMBERS}
        values["launches"] = a.launches
        if a.kind in GRID_GROWS_WITH_P:
            values["blocks"] = max(values["blocks"], b.blocks * p_target / p_large)
        out.append(Work(a.kind, **values))
    return out


# Kernels whose grid is cut from the elements they cover: a block per (channel, chunk) with
# ``launch.chunks_for`` (batch norm's five kernels, the depthwise weight gradient's runs of
# tiles) or a block per spatial tile (depthwise backward-input). At the emulated sizes a small
# plane is one chunk or one tile in both runs, so a line through the two equal grids would keep
# the grid at its small size (32 blocks, say) where the target's has thousands, and the fill
# term would charge those launches up to 4x. Their grid is read as proportional to P instead:
# exact for the fill term, which only asks whether the grid reaches the SM count (chunks_for
# caps a row at 256 chunks, and a row per channel means at least 32 rows: 8192 blocks).
# Not for a grid cut from a fixed-size output (adaptive pooling: its grid grows with the
# images, not the pixels), whose fitted grid stays a line.
GRID_GROWS_WITH_P = {"stat_partials", "grad_partials", "forward_train", "forward_eval", "backward_input",
                     "depthwise_weight_partials", "depthwise_backward_input"}
