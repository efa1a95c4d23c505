"""``cupy.RawModule`` for the emulated GPU: a ``.cu`` source compiled by the host's C++ compiler.

The source is pasted between ``device.h`` (what CUDA adds to C++) and ``scheduler.h`` (how a
grid runs), followed by a table of the requested kernel instantiations, and compiled into a
shared library that Python loads with ``ctypes``. Libraries are cached by a hash of
everything that goes into them, so each source is compiled once per machine.

Each launch is checked as a real GPU never would: the number of arguments, each argument's
type against the kernel's parameter (a pointer parameter takes a device array of its element
type; a scalar must arrive as the value it was, see :func:`scalar_argument`), contiguity, and
the grid and block sizes. A barrier that some threads never reach, or a deadlock, stops the
launch with an error naming the kernel and the block. With ``MTS_CUDA_RACECHECK=1`` every
launch runs twice, in forward and in reverse order, and any difference in the outputs is
reported as a race.

The kernels run with ``-O2 -g``: a student can ``printf`` in a kernel, or run Python under gdb
and ``break im2col<float>``, step through the ``.cu`` source and ``print threadIdx``.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import trace, xp

HERE = Path(__file__).parent
# -U_FORTIFY_SOURCE: the checked longjmp of fortified builds refuses to jump between stacks.
FLAGS = ["-std=c++17", "-O2", "-g", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing",
         "-fvisibility=hidden", "-U_FORTIFY_SOURCE"]
# The traced build (trace.h): every load and store calls a hook, without TSan's runtime.
TRACE_FLAGS = ["-fsanitize=thread", "--param=tsan-instrument-func-entry-exit=0", "-Wl,-z,defs"]
MAX_BLOCK = 1024

# C type of a kernel parameter -> the NumPy type of the value or of the array elements.
C_TYPES = {
    "bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "unsigned int": np.uint32,
    "long": np.int64, "unsigned long": np.uint64, "long long": np.int64,
    "unsigned long long": np.uint64, "float": np.float32, "double": np.float64,
}
_EXPORTS = """
extern "C" {
__attribute__((visibility("default"))) int mts_count();
__attribute__((visibility("default"))) const char* mts_name(int);
__attribute__((visibility("default"))) const char* mts_signature(int);
__attribute__((visibility("default"))) int mts_launch(int, const unsigned*, const unsigned*, void**, int, char*, int);
}
"""


class KernelError(RuntimeError):
    """A launch the emulator refused or stopped: bad arguments, a broken barrier, a deadlock."""


class RaceError(KernelError):
    """A launch whose outputs depend on the order in which its threads run."""


def cache_dir():
    """Where compiled kernels are kept: ``$XDG_CACHE_HOME/minitorch-seg/emulator`` (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minitorch-seg" / "emulator"


def compiler():
    """The C++ compiler: ``$CXX``, else g++, else clang++."""
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("the emulated GPU compiles kernels with a C++ compiler: install g++ or clang++ "
                       "(or set CXX)")


def can_compile():
    """True when a C++ compiler is installed, so the emulated GPU can run kernels."""
    try:
        compiler()
    except RuntimeError:
        return False
    return True


# "__shared__ double buf[256];" (one variable per declaration, in a function)
_SHARED = re.compile(r"__shared__\s+([^;{}()]*?)\b(\w+)\s*((?:\[[^\];]*\]\s*)*);")


def _shared_arrays_poisoned(code):
    """Each ``__shared__`` declaration as a static variable, then a call that poisons it per block."""
    def one_line(line):
        code_part, comment, rest = line.partition("//")
        return _SHARED.sub(lambda m: f"static {m.group(1)}{m.group(2)}{m.group(3)}; "
                                     f"mts::shared_array(&{m.group(2)}, sizeof({m.group(2)}));",
                           code_part) + comment + rest
    return "\n".join(one_line(line) for line in code.split("\n"))


def _glue(code, name_expressions, traced=False):
    table = ",\n".join(f'    mts::entry("{e}", &{e})' for e in name_expressions)
    hooks = '#include "trace.h"\n' if traced else ""
    return (f'#include "device.h"\n#line 1 "kernel.cu"\n{_shared_arrays_poisoned(code)}\n#include "scheduler.h"\n'
            f'{hooks}{_EXPORTS}\n'
            f"extern const mts::Entry mts_entries[] = {{\n{table}\n}};\n"
            f"extern const int mts_entry_count = {len(name_expressions)};\n")


def build(code, name_expressions, traced=False):
    """Compile ``code`` with its kernel table into a shared library (cached); return its path.

    ``traced``: the build whose loads and stores report to ``trace.h`` (compiled with
    ``-fsanitize=thread``, then linked without ThreadSanitizer's runtime: the hooks are ours).
    """
    cxx = compiler()
    glue = _glue(code, name_expressions, traced)
    headers = ["device.h", "scheduler.h"] + (["trace.h", "trace.cpp"] if traced else [])
    key = hashlib.sha256("\0".join([cxx, *FLAGS, *(TRACE_FLAGS if traced else []), glue,
                                    *((HERE / h).read_text() for h in headers)]).encode()).hexdigest()[:24]
    folder = cache_dir()
    library = folder / f"{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{key}.cpp"
    source.write_text(glue)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so")
    os.close(fd)
    # Run from kernels/cuda: the #line marks name the .cu files relative to it, so gdb finds them.
    if traced:  # the kernels instrumented, trace.cpp plain, linked as g++ would (no -ltsan)
        steps = [[*TRACE_FLAGS[:2], "-c", str(source), "-o", tmp + ".k.o"],
                 ["-c", str(HERE / "trace.cpp"), "-o", tmp + ".t.o"],
                 [TRACE_FLAGS[2], tmp + ".k.o", tmp + ".t.o", "-o", tmp]]
        for step in steps:
            result = subprocess.run([cxx, *FLAGS, "-I", str(HERE), *step], capture_output=True, text=True,
                                    cwd=HERE.parent)
            if result.returncode != 0:
                break
        for o in (".k.o", ".t.o"):
            Path(tmp + o).unlink(missing_ok=True)
    else:
        result = subprocess.run([cxx, *FLAGS, "-I", str(HERE), str(source), "-o", tmp],
                                capture_output=True, text=True, cwd=HERE.parent)
    if result.returncode != 0:
        Path(tmp).unlink(missing_ok=True)  # a failed link has removed it already
        raise KernelError(f"the emulated GPU could not compile the kernels ({source}):\n{result.stderr}")
    os.replace(tmp, library)  # atomic: another process never loads half a file
    return library


def _parameter_names(code, kernel):
    """The parameter names of ``__global__`` function ``kernel`` in ``code`` (None if not found)."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", code, flags=re.S)
    m = re.search(rf"__global__\s+void\s+{re.escape(kernel)}\s*\(([^)]*)\)", text)
    if m is None:
        return None
    return [re.findall(r"\w+", p)[-1] for p in m.group(1).split(",") if p.strip()]


class RawModule:
    """A compiled ``.cu`` source, as ``cupy.RawModule(code=..., name_expressions=...)``."""

    def __init__(self, code, options=(), name_expressions=()):
        self.code = code
        self.name_expressions = list(name_expressions)
        self._library = self._traced = None

    def traced_library(self):
        """The traced build of this module (compiled on first use)."""
        if self._traced is None:
            self._traced = ctypes.CDLL(str(build(self.code, self.name_expressions, traced=True)))
        return self._traced

    def get_function(self, name):
        """The kernel instantiation ``name`` (one of the name expressions) as a launchable Function."""
        if name not in self.name_expressions:
            raise KernelError(f"get_function: {name!r} is not among the name expressions "
                              f"{self.name_expressions}")
        if self._library is None:
            lib = ctypes.CDLL(str(build(self.code, self.name_expressions)))
            lib.mts_name.restype = lib.mts_signature.restype = ctypes.c_char_p
            self._library = lib
        index = self.name_expressions.index(name)
        signature = self._library.mts_signature(index).decode().split(",")
        names = _parameter_names(self.code, name.split("<")[0])
        return Function(self._library, index, name, [s for s in signature if s], names, self)


class Function:
    """One kernel of a :class:`RawModule`: call it as ``f(grid, block, args)``, as in CuPy."""

    def __init__(self, library, index, name, param_types, param_names, module=None):
        self.library, self.index, self.name, self.module = library, index, name, module
        self.param_types = param_types
        if param_names is None or len(param_names) != len(param_types):
            param_names = [f"#{i}" for i in range(len(param_types))]
        self.param_names = param_names

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        grid, block = self._dims("grid", grid, 2**31 - 1), self._dims("block", block, MAX_BLOCK)
        if block[0] * block[1] * block[2] > MAX_BLOCK:
            raise KernelError(f"{self.name}: block {block} has more than {MAX_BLOCK} threads")
        if shared_mem:
            raise KernelError(f"{self.name}: dynamic shared memory is not emulated; declare a "
                              f"__shared__ array of fixed size")
        values, arrays = self._arguments(args, xp.ndarray)
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        if trace.enabled():  # one forward run, traced (the race check is left to untraced runs)
            trace.launch(self, grid, block, pointers, args, xp.live_arrays(), xp.ndarray)
        elif os.environ.get("MTS_CUDA_RACECHECK", "0") not in ("", "0"):
            self._race_check(grid, block, pointers, arrays)
        else:
            self._launch(grid, block, pointers, reverse=False)

    def _launch(self, grid, block, pointers, reverse, library=None):
        error = ctypes.create_string_buffer(2048)
        status = (library or self.library).mts_launch(self.index, (ctypes.c_uint * 3)(*grid),
                                         (ctypes.c_uint * 3)(*block), pointers, int(reverse),
                                         error, len(error))
        if status:
            raise KernelError(error.value.decode())

    def _race_check(self, grid, block, pointers, arrays):
        """Run forward and in reverse from the same memory; everything written must be equal.

        The whole device memory is saved and compared, not only the array arguments: a kernel
        may reach arrays through a table of addresses (``sgd.cu``)."""
        memory = xp.live_arrays()
        before = [m.copy() for m in memory]
        self._launch(grid, block, pointers, reverse=False)
        forward = [m.copy() for m in memory]
        for m, b in zip(memory, before):
            m[...] = b
        self._launch(grid, block, pointers, reverse=True)
        for m, f in zip(memory, forward):
            differ = f.reshape(-1).view(np.uint8) != m.reshape(-1).view(np.uint8)
            if differ.any():
                names = [self.param_names[i] for i, a in arrays if np.shares_memory(a._a, m)]
                what = repr(names[0]) if names else "device memory reached through a table of addresses"
                flat = int(np.argwhere(differ.reshape(-1))[0, 0]) // m.itemsize
                where = tuple(int(k) for k in np.unravel_index(flat, m.shape))
                raise RaceError(
                    f"race check: {self.name} wrote different values to {what} when its threads and "
                    f"blocks ran in reverse order: element {where} is {f[where].item()!r} in order and "
                    f"{m[where].item()!r} in reverse. Some thread reads memory that another thread "
                    f"writes, with no __syncthreads between them")

    def _dims(self, what, dims, limit):
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if not 1 <= len(dims) <= 3 or any(not isinstance(d, (int, np.integer)) or not 1 <= d <= limit
                                          for d in dims):
            raise KernelError(f"{self.name}: {what}: expected 1 to 3 positive ints, got {dims}")
        return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))

    def _arguments(self, args, device_array):
        """ctypes values for ``args``, checked against the parameter types; and the array args."""
        args = tuple(args)
        if len(args) != len(self.param_types):
            raise KernelError(f"{self.name}: expected {len(self.param_types)} arguments "
                              f"({', '.join(self.param_types)}), got {len(args)}")
        values, arrays = [], []
        for i, (arg, ctype) in enumerate(zip(args, self.param_types)):
            what = f"{self.name}: argument {i} {self.param_names[i]!r}"
            base = ctype.replace("const ", "").rstrip("*")
            if ctype.endswith("*"):
                if not isinstance(arg, device_array):
                    raise KernelError(f"{what}: the kernel takes {ctype}, a device array; got "
                                      f"{type(arg).__module__}.{type(arg).__name__}")
                if arg.dtype != C_TYPES[base]:
                    raise KernelError(f"{what}: the kernel takes {ctype}, got an array of {arg.dtype}")
                if not arg.flags.c_contiguous:
                    raise KernelError(f"{what}: the kernel reads a C-contiguous array, got strides "
                                      f"{arg.strides}")
                if not ctype.startswith("const") and not arg.flags.writeable:
                    raise KernelError(f"{what}: the kernel writes through {ctype}, got a read-only array")
                values.append(ctypes.c_void_p(arg._a.ctypes.data))
                arrays.append((i, arg))
            else:
                try:
                    raw = scalar_argument(arg, ctype)
                except ValueError as error:
                    raise KernelError(f"{what}: {error}") from None
                values.append((ctypes.c_char * len(raw)).from_buffer_copy(raw))
        return values, arrays


def scalar_argument(arg, ctype):
    """The bytes a kernel's scalar parameter of C type ``ctype`` receives for ``arg`` under CuPy.

    CuPy passes a NumPy scalar's own bytes, a Python ``int`` as a ``numpy.int64`` and a Python
    ``float`` as a ``numpy.float64``, each as a pointer to the value; the driver copies as many
    bytes from there as the parameter has. On a little-endian GPU a parameter narrower than the
    value gets its low bytes, and one wider than the value gets the bytes that follow it in host
    memory too. Raises ``ValueError`` saying what the kernel would read unless that is the value:
    an integer that fits the parameter (a Python int for ``int``) arrives intact; a float arrives
    only into a parameter of its own size (a Python float into ``double``: the low 4 bytes of 0.5
    read as a ``float`` are 0.0); an integer never arrives in a float parameter, nor the reverse.
    """
    want = np.dtype(C_TYPES[ctype.replace("const ", "")])
    if isinstance(arg, np.generic):
        passed, how = arg, f"numpy.{type(arg).__name__} {arg} ({arg.itemsize} byte{'s' * (arg.itemsize > 1)})"
    elif isinstance(arg, (int, float)):  # a bool too: CuPy tests for int first
        kind = np.int64 if isinstance(arg, int) else np.float64
        try:
            passed = kind(arg)
        except OverflowError:
            raise ValueError(f"the kernel takes {ctype}; got Python int {arg!r}, which CuPy cannot pass "
                             f"(it converts a Python int to numpy.int64)") from None
        how = f"Python {type(arg).__name__} {arg!r}, which CuPy passes as 8 bytes (numpy.{kind.__name__})"
    else:
        raise ValueError(f"the kernel takes {ctype}, a number; got {type(arg).__module__}."
                         f"{type(arg).__name__}")
    raw, size = passed.tobytes(), want.itemsize
    advice = f"pass numpy.{want.type.__name__}"
    if len(raw) < size:
        raise ValueError(f"the kernel takes {ctype} ({size} bytes); got {how}: the driver copies {size} "
                         f"bytes, so the kernel would read the value and then {size - len(raw)} bytes of "
                         f"whatever follows it in host memory; {advice}")
    read = np.frombuffer(raw[:size], want)[0]
    if (int(read) == int(passed) if passed.dtype.kind in "biu" and want.kind in "biu"
            else passed.dtype.kind == want.kind == "f" and len(raw) == size):
        return raw[:size]
    part = ("the value's bytes" if len(raw) == size else f"its low {size} bytes"
            + (f", the end of the {passed.dtype}'s mantissa" if passed.dtype.kind == want.kind == "f" else ""))
    raise ValueError(f"the kernel takes {ctype} ({size} bytes); got {how}: the driver copies {part}, "
                     f"and the kernel would read them as {read!s}; {advice}")
