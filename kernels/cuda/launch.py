"""Compiling the ``.cu`` lessons and launching their kernels, for every launcher module.

Every ``.cu`` file holds ``template <typename T>`` kernels. The launcher module of the same
name wraps the file in a :class:`CudaFile` that lists the kernels' names; the first launch
compiles the whole file with NVRTC (through ``cupy.RawModule``) for ``T = float`` and
``T = double``, and CuPy keeps the binary in memory and in its on-disk cache, so a process
compiles each file at most once and a second process usually not at all.

Launch shapes:

- :meth:`CudaFile.launch`: one thread per output element, a 1-D grid of ``THREADS``-thread
  blocks; the kernel guards with ``if (i >= n) return;``.
- :meth:`CudaFile.launch_rows`: a 2-D grid for the reductions, ``blockIdx.x`` = the row being
  reduced (a channel, a channel x tap), ``blockIdx.y`` = a chunk of that row. Their kernels
  size their shared memory by ``THREADS`` in ``reduce.cuh``, which must equal ``THREADS`` here.

``MTS_DEBUG=1`` in the environment prints every launch (file, kernel, grid, block and the
shapes of the array arguments) to stderr; ``kernels.device.Stats`` counts them.
"""
import os
import re
import sys
from pathlib import Path

import numpy as np

from .. import device


THREADS = 256
MAX_CHUNKS = 256          # at most this many partial sums per reduced row,
MIN_CHUNK = 4096          # each over about this many elements or more (16 per thread)
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           np.dtype(np.uint8): "unsigned char", np.dtype(np.int64): "long long"}
FLOATS = ((np.float32,), (np.float64,))  # the template arguments most kernels are compiled for
_HERE = Path(__file__).parent
_LOCAL_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.MULTILINE)


def chunks_for(length):
    """Chunking of a reduction over ``length`` elements: return ``(chunks, chunk)``.

    Enough chunks to fill the GPU when there are few rows, few enough that the per-row
    finishing step stays short; the split depends only on ``length``, so the summation
    order, hence the result, is the same on every run.
    """
    chunks = max(1, min(MAX_CHUNKS, -(-length // MIN_CHUNK)))
    return chunks, -(-length // chunks)


def _source(filename):
    # Local headers are pasted in here rather than left to NVRTC's include path, because
    # CuPy's cache key is the source text: an edited header must change it. The #line marks
    # keep __FILE__/__LINE__ (in compiler errors and the emulator's) pointing at the real files.
    code = (_HERE / filename).read_text()

    def paste(m):
        after = code.count("\n", 0, m.end()) + 2
        return (f'#line 1 "{m.group(1)}"\n{(_HERE / m.group(1)).read_text()}\n'
                f'#line {after} "{filename}"')

    return f'#line 1 "{filename}"\n' + _LOCAL_INCLUDE.sub(paste, code)


def _template(args):
    """Template arguments: NumPy dtypes as C types, ints as written: (float32, 2) -> "float, 2"."""
    args = args if isinstance(args, tuple) else (args,)
    return ", ".join(str(a) if isinstance(a, int) else _CTYPES[np.dtype(a)] for a in args)


class CudaFile:
    """The kernels ``kernels`` of the ``.cu`` file ``filename``, compiled on first use for every tuple
    of template arguments in ``types`` (by default ``<float>`` and ``<double>``).

    ``variants`` maps a kernel specialized on integers (a stride) to the tuples of integer
    template arguments it is compiled for, after each of ``types``: ``{"k": ((1,), (2,))}``
    compiles ``k<float, 1>``, ``k<float, 2>``, ``k<double, 1>`` and ``k<double, 2>``.
    """

    def __init__(self, filename, kernels, types=FLOATS, variants=None):
        self.filename = filename
        self.kernels = tuple(kernels)
        self.types = tuple(types)
        self.variants = dict(variants or {})
        self._raw = None
        self._functions = {}

    OPTIONS = ("-std=c++17",)

    def name_expressions(self):
        """Every instantiation the file is compiled for, e.g. ``im2col<float>``, ``im2col<double>``."""
        return [f"{k}<{_template(t + v)}>" for k in self.kernels for t in self.types
                for v in self.variants.get(k, ((),))]

    def _function(self, name, dtypes):
        key = f"{name}<{_template(dtypes)}>"
        if key not in self._functions:
            if self._raw is None:
                self._raw = device.raw_module(code=_source(self.filename), options=self.OPTIONS,
                                                 name_expressions=self.name_expressions())
            self._functions[key] = self._raw.get_function(key)
        return self._functions[key]

    def launch(self, name, dtypes, n, args):
        """Run kernel ``name<dtypes>`` with one thread per element ``i < n``."""
        self._run(name, dtypes, (-(-n // THREADS),), args)

    def launch_rows(self, name, dtypes, rows, chunks, args):
        """Run reduction kernel ``name<dtypes>`` with a block per (row, chunk)."""
        self._run(name, dtypes, (rows, chunks), args)

    def _run(self, name, dtypes, grid, args):
        if min(grid) == 0:
            return
        arrays = [a for a in args if device.is_device_array(a)]
        if max(a.size for a in arrays) >= 2**31:
            raise ValueError(f"{name}: arrays of 2**31 elements or more overflow the kernels' "
                             f"32-bit indices; use a smaller batch")
        if os.environ.get("MTS_DEBUG", "0") not in ("", "0"):
            shapes = " ".join("x".join(map(str, a.shape)) or "()" for a in arrays)
            print(f"[mts] {self.filename} {name}<{_template(dtypes)}> grid={grid} "
                  f"block=({THREADS},) arrays: {shapes}", file=sys.stderr)
        device.Stats.our_launches += 1
        device.Stats.launch(name, self._function(name, dtypes), grid, (THREADS,), args)


def empty(shape, dtype):
    """A scratch array on the device (partial sums, per-channel constants)."""
    return device.array_module().empty(shape, dtype)


def ints(*values):
    """The values as ``np.int32`` kernel arguments: an ``int`` parameter's 4 bytes, said explicitly."""
    return tuple(np.int32(v) for v in values)
