"""Memory traces of emulated launches: what a GPU's memory system would see (opt-in).

Tracing is on while ``MTS_CUDA_TRACE=1`` is set, or inside
``minitorch_seg.benchmark.counters(trace=True)``. Each launch of one of our kernels then runs
once through a second build of its ``.cu`` file whose loads and stores report to ``trace.h``
(see there how accesses become warp requests, sectors and wavefronts), and each launch CuPy
would make for array code is recorded with the shapes it reads and writes. Untraced runs use
the plain build and pay nothing.

A :class:`KernelLaunch` holds, for one launch of ours: its grid, block, scalar arguments by
name, and the counts of ``trace.h``:

- global memory: load and store requests, 32-byte sectors, sectors per request;
- unique bytes read and written (a lower bound on DRAM traffic within the launch);
- sector bytes (sectors x 32: the traffic between the SMs and their L1);
- block sectors: the distinct sectors of each block, summed over blocks: what the L1 of the SM
  running a block cannot serve from its own earlier misses, a lower bound on L2 traffic;
- shared memory: requests, wavefronts, and bank conflicts (the wavefronts beyond one per 128
  bytes a request moves).

A :class:`LibraryLaunch` holds one of CuPy's: the NumPy function's name and the shapes,
item sizes and contiguity of the arrays it reads and writes.
"""
import ctypes
import dataclasses
import math
import os
import sys

import numpy as np

FIELDS = ("load_requests", "load_sectors", "store_requests", "store_sectors",
          "shared_requests", "shared_wavefronts", "unique_read", "unique_written", "block_sectors",
          "bank_conflicts")
SECTOR = 32

_recordings = []  # the open recordings (lists of launches), innermost last


def enabled():
    """True when launches are traced: ``MTS_CUDA_TRACE=1``, or a recording is open."""
    return bool(_recordings) or os.environ.get("MTS_CUDA_TRACE", "0") not in ("", "0")


class recording:
    """Context manager: every launch inside is traced and appended to the list it yields."""

    def __enter__(self):
        self.launches = []
        _recordings.append(self.launches)
        return self.launches

    def __exit__(self, *exc):
        _recordings.remove(self.launches)
        return False


def _keep(launch):
    for launches in _recordings:
        launches.append(launch)
    if os.environ.get("MTS_CUDA_TRACE", "0") not in ("", "0"):
        print(f"[mts trace] {launch}", file=sys.stderr)


@dataclasses.dataclass
class KernelLaunch:
    """One traced launch of a ``.cu`` kernel (``name`` as ``im2col<float>``)."""

    name: str
    grid: tuple
    block: tuple
    scalars: dict
    counts: dict

    @property
    def kernel(self):
        """The kernel's name without template arguments."""
        return self.name.split("<")[0]

    @property
    def blocks(self):
        """Blocks in the grid."""
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def threads(self):
        """Threads launched (blocks x threads per block)."""
        return self.blocks * self.block[0] * self.block[1] * self.block[2]

    @property
    def requests(self):
        """Global-memory requests (warp instructions that load or store)."""
        return self.counts["load_requests"] + self.counts["store_requests"]

    @property
    def sectors(self):
        """32-byte sectors the global requests touch."""
        return self.counts["load_sectors"] + self.counts["store_sectors"]

    @property
    def sectors_per_request(self):
        """Nsight Compute's ``l1tex__t_sectors_per_request`` (0 without global requests)."""
        return self.sectors / self.requests if self.requests else 0.0

    @property
    def sector_bytes(self):
        """Bytes moved between the SMs and L1/L2: sectors x 32."""
        return SECTOR * self.sectors

    @property
    def l2_bytes(self):
        """Bytes of each block's distinct sectors, summed: the L2 traffic if L1 keeps a block's data."""
        return SECTOR * self.counts["block_sectors"]

    @property
    def unique_bytes(self):
        """Distinct bytes read plus distinct bytes written: the least DRAM traffic."""
        return self.counts["unique_read"] + self.counts["unique_written"]

    @property
    def wavefronts_per_request(self):
        """Shared-memory wavefronts per request: 1 without bank conflicts, up to 32."""
        r = self.counts["shared_requests"]
        return self.counts["shared_wavefronts"] / r if r else 0.0

    @property
    def bank_conflicts(self):
        """Shared-memory wavefronts beyond what the bytes moved need (bank conflicts)."""
        return self.counts["bank_conflicts"]

    def __str__(self):
        c = self.counts
        return (f"{self.name} grid={self.grid} block={self.block}: {self.requests:.0f} global requests, "
                f"{self.sectors_per_request:.2f} sectors/request, unique {c['unique_read']:.0f} B read "
                f"{c['unique_written']:.0f} B written, shared {c['shared_requests']:.0f} requests "
                f"{self.wavefronts_per_request:.2f} wavefronts/request")


@dataclasses.dataclass
class LibraryLaunch:
    """One call of CuPy's: ``name`` (the NumPy function) and the arrays it reads and writes,
    each as ``(shape, itemsize, c_contiguous, strides)``; ``tf32``: a GEMM whose operands CuPy
    rounds to TF32. A ``matmul`` is several launches (:func:`matmul_kernels`)."""

    name: str
    inputs: list
    outputs: list
    tf32: bool = False

    @property
    def bytes(self):
        """Bytes read and written, each array once, from its shape."""
        return sum(int(np.prod(s)) * size for s, size, _, _ in self.inputs + self.outputs)

    @property
    def launches(self):
        """Kernels CuPy launches for this call."""
        return len(matmul_kernels(*self.inputs[:2], self.outputs[0])) if self.name == "matmul" else 1

    def __str__(self):
        shapes = lambda arrays: " ".join("x".join(map(str, s)) or "()" for s, _, _, _ in arrays)  # noqa: E731
        return f"cupy {self.name}: reads {shapes(self.inputs)} writes {shapes(self.outputs)}"


def _f_contiguous(desc):
    shape, itemsize, _, strides = desc
    expected = itemsize
    for size, stride in zip(shape, strides):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True


def matmul_kernels(a, b, out):
    """What ``cupy.matmul(a, b, out=out)`` launches, from its arrays' descriptors: a list of
    ``(kind, descriptor)``, kind "copy" (an operand made contiguous, or the result copied to
    ``out``), "pointers" (an array of matrix pointers) or "gemm". CuPy's rules, in
    ``cupy/_core/_routines_linalg.pyx`` (cupy at 6b6d956, lines cited):

    - 2-D operands (``matmul`` 856-865 hands them to ``dot``, then ``tensordot_core`` 541-630):
      ``_mat_to_cublas_contiguous`` (461-472) passes a C- or F-contiguous matrix to cuBLAS
      as it is, with a transpose flag, and copies any other; one ``gemmEx``
      (``tensordot_core_v11``, 702-779: the one GEMM that follows the compute type, 719-729);
    - more dimensions: ``ascontiguousarray`` of each operand (903-904: a transposed or
      broadcast stack is copied; a 2-D operand counts as a stack of one); a stack of one
      broadcast over the batch (910-934) takes ``_mat_ptrs`` (796-818, one launch per batch
      axis) for a, b and the result, then ``sgemmBatched`` (1026-1035); else one
      ``gemmStridedBatchedEx`` (1009-1022), its compute type the data type: neither is TF32;
    - a result CuPy cannot write in place (not C-contiguous) is copied to ``out`` (864, 1070).
    """
    ndim = max(len(a[0]), len(b[0]))
    if ndim <= 2:
        kernels = [("copy", d) for d in (a, b) if not (d[2] or _f_contiguous(d))]
    else:
        kernels = [("copy", d) for d in (a, b) if not d[2]]
        batch = math.prod(out[0][:-2])
        if batch > 1 and 1 in (math.prod(a[0][:-2]), math.prod(b[0][:-2])):
            kernels += [("pointers", out)] * (3 * (ndim - 2))
    kernels.append(("gemm", out))
    return kernels + ([("copy", out)] if not out[2] else [])


def describe(a):
    """A NumPy array's ``(shape, itemsize, c_contiguous, strides)``."""
    return (tuple(a.shape), a.itemsize, bool(a.flags.c_contiguous), tuple(a.strides))


def keep(launch):
    """Record ``launch`` (a :class:`LibraryLaunch`) in every open recording."""
    _keep(launch)


def launch(function, grid, block, pointers, args, memory, device_array):
    """Run ``function`` (a ``compiler.Function``) traced, once, and record what it did.

    ``memory``: the NumPy arrays holding device memory now (global memory is what lies in
    them); ``device_array``: the device array type, to tell array arguments from scalars."""
    library_ = function.module.traced_library()
    ranges = np.array([(m.ctypes.data, m.ctypes.data + m.nbytes) for m in memory], np.uintp).reshape(-1)
    library_.mts_trace_begin(ranges.ctypes.data_as(ctypes.c_void_p), len(memory))
    out = (ctypes.c_double * len(FIELDS))()
    try:
        function._launch(grid, block, pointers, reverse=False, library=library_)
    finally:
        library_.mts_trace_end(out)
    scalars = {function.param_names[i]: a.item() for i, a in enumerate(args) if not isinstance(a, device_array)}
    _keep(KernelLaunch(function.name, tuple(grid), tuple(block), scalars, dict(zip(FIELDS, out))))
