"""The emulated GPU itself: what it runs, what it refuses, what it counts.

These test the emulator with small kernels of their own (the real kernels are tested on it by
test_cuda_kernels.py and test_cuda_training.py): barriers, warp shuffles and votes, poisoned
memory, the launch checks, the race check, device arrays that behave as CuPy's, the counters.
"""
import numpy as np
import pytest

from kernels import device
from kernels.cuda.emulator.compiler import can_compile

if not can_compile():
    pytest.skip("the emulated GPU needs a C++ compiler", allow_module_level=True)

from kernels.cuda.emulator import xp  # noqa: E402
from kernels.cuda.emulator.compiler import KernelError, RaceError, RawModule, build  # noqa: E402
from minitorch_seg.benchmark import counters  # noqa: E402

SOURCE = r"""
template <typename T>
__global__ void scale(const T* x, T a, int n, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = a * x[i];
}

// Each thread writes its slot, waits, then reads its neighbour's.
template <typename T>
__global__ void rotate(const T* x, T* y)
{
    __shared__ T buf[64];
    const int t = threadIdx.x;
    buf[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    y[blockIdx.x * blockDim.x + t] = buf[(t + 1) % blockDim.x];
}

// The same without the barrier: a race.
template <typename T>
__global__ void rotate_racy(const T* x, T* y)
{
    __shared__ T buf[64];
    const int t = threadIdx.x;
    buf[t] = x[blockIdx.x * blockDim.x + t];
    y[blockIdx.x * blockDim.x + t] = buf[(t + 1) % blockDim.x];
}

// Threads past n return before the barrier: not every thread reaches it.
template <typename T>
__global__ void early_return(T* y, int n)
{
    __shared__ T buf[64];
    if ((int)threadIdx.x >= n) return;
    buf[threadIdx.x] = 1;
    __syncthreads();
    y[threadIdx.x] = buf[0];
}

template <typename T>
__global__ void two_barriers(T* y)
{
    if (threadIdx.x % 2) __syncthreads();
    else __syncthreads();
    y[threadIdx.x] = 1;
}

// Half the warp shuffles while the other half waits at a block barrier.
template <typename T>
__global__ void deadlock(T* y)
{
    if (threadIdx.x < 16) y[threadIdx.x] = __shfl_down_sync(0xffffffffu, y[threadIdx.x], 1);
    else __syncthreads();
}

// Warp sums by shuffles, and a ballot of the positive values.
template <typename T>
__global__ void warp_ops(const T* x, T* sums, unsigned* ballots, T* xor_sums)
{
    const int t = threadIdx.x;
    T v = x[t], w = x[t];
    for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    for (int m = 16; m > 0; m /= 2) w += __shfl_xor_sync(0xffffffffu, w, m);
    const unsigned b = __ballot_sync(0xffffffffu, x[t] > 0);
    if (t % 32 == 0) sums[t / 32] = v, ballots[t / 32] = b;
    xor_sums[t] = w;
}

// A 64-bit parameter, as a size_t or an int64 count would be.
template <typename T>
__global__ void store64(long long n, T* y)
{
    y[0] = (T)n;
}

// Reads a shared array no thread wrote.
template <typename T>
__global__ void read_unwritten(T* y)
{
    __shared__ T buf[32];
    y[threadIdx.x] = buf[threadIdx.x];
}
"""
NAMES = ["scale<float>", "scale<double>", "rotate<float>", "rotate_racy<float>", "early_return<float>",
         "two_barriers<float>", "deadlock<float>", "warp_ops<float>", "read_unwritten<double>",
         "store64<double>"]


@pytest.fixture(scope="module")
def kernel():
    module = RawModule(code=SOURCE, name_expressions=NAMES)
    return module.get_function


def f32(values):
    return xp.asarray(np.asarray(values, np.float32))


def test_a_grid_of_blocks_computes_every_element(kernel):
    x = f32(np.arange(1000))
    y = xp.empty(1000, np.float32)
    kernel("scale<float>")((4,), (256,), (x, np.float32(2), np.int32(1000), y))
    np.testing.assert_array_equal(y.get(), 2 * np.arange(1000))


def test_a_barrier_lets_threads_read_what_others_wrote(kernel):
    x = f32(np.arange(128))
    y = xp.empty(128, np.float32)
    kernel("rotate<float>")((2,), (64,), (x, y))
    np.testing.assert_array_equal(y.get(), np.roll(np.arange(128).reshape(2, 64), -1, axis=1).ravel())


def test_warp_shuffles_and_votes(kernel):
    values = np.arange(64, dtype=np.float32) - 5
    sums, ballots, xor_sums = xp.empty(2, np.float32), xp.empty(2, np.uint32), xp.empty(64, np.float32)
    kernel("warp_ops<float>")((1,), (64,), (f32(values), sums, ballots, xor_sums))
    np.testing.assert_array_equal(sums.get(), values.reshape(2, 32).sum(axis=1))
    np.testing.assert_array_equal(xor_sums.get(), np.repeat(values.reshape(2, 32).sum(axis=1), 32))
    assert ballots.get().tolist() == [0xFFFFFFC0, 0xFFFFFFFF]  # lanes 0-5 of warp 0 hold <= 0


def test_a_barrier_some_threads_skip_is_an_error_naming_kernel_block_and_threads(kernel):
    y = xp.zeros(64, np.float32)
    with pytest.raises(KernelError, match=r"early_return<float>, block \(0, 0, 0\): __syncthreads at "
                                          r"kernel.cu:\d+ is reached by 40 of 64 threads; threads 40, 41"):
        kernel("early_return<float>")((2,), (64,), (y, np.int32(40)))
    kernel("early_return<float>")((2,), (64,), (y, np.int32(64)))  # the emulator recovers


def test_threads_at_two_different_barriers_are_an_error(kernel):
    with pytest.raises(KernelError, match="threads wait at two different barriers"):
        kernel("two_barriers<float>")((1,), (32,), (xp.zeros(32, np.float32),))


def test_a_deadlock_is_an_error(kernel):
    with pytest.raises(KernelError, match=r"deadlock: threads 0, 1, .* wait at __shfl_down_sync .*"
                                          r"threads 16, 17, .* wait at __syncthreads"):
        kernel("deadlock<float>")((1,), (32,), (xp.zeros(32, np.float32),))


def test_unwritten_memory_reads_as_nan(kernel):
    y = xp.zeros(32, np.float64)
    kernel("read_unwritten<double>")((1,), (32,), (y,))
    assert np.isnan(y.get()).all()
    assert np.isnan(xp.empty((3, 4), np.float32).get()).all()
    assert (xp.empty(5, np.int32).get() == -1).all()


@pytest.mark.parametrize("args, match", [
    ((np.ones(1, np.float32), np.float32(2), np.int32(1), xp.empty(1, np.float32)),
     r"argument 0 'x': the kernel takes const float\*, a device array; got numpy.ndarray"),
    ((f32([1]).astype(np.float64), np.float32(2), np.int32(1), xp.empty(1, np.float32)),
     r"argument 0 'x': the kernel takes const float\*, got an array of float64"),
    ((f32([1, 2, 3, 4])[::2], np.float32(2), np.int32(1), xp.empty(1, np.float32)),
     r"argument 0 'x': the kernel reads a C-contiguous array"),
    ((f32([1]), np.float32(2), np.int32(1)), r"expected 4 arguments \(const float\*, float, int, float\*\), got 3"),
])
def test_launch_arguments_are_checked_against_the_kernel(kernel, args, match):
    with pytest.raises(KernelError, match=match):
        kernel("scale<float>")((1,), (32,), args)


# CuPy passes a Python int as 8 bytes (int64), a Python float as 8 bytes (float64), a NumPy
# scalar as its own bytes; the driver copies as many bytes as the parameter has (the low ones,
# on a little-endian GPU). Each case below is what a GPU would do with that rule.
def test_a_python_int_for_an_int_parameter_arrives_intact(kernel):
    x, y = f32(np.arange(40)), xp.empty(40, np.float32)
    kernel("scale<float>")((1,), (64,), (x, np.float32(2), 40, y))
    np.testing.assert_array_equal(y.get(), 2 * np.arange(40))


def test_a_python_float_for_double_and_a_python_int_for_long_long_arrive_intact(kernel):
    x, y = xp.asarray(np.arange(4.0)), xp.empty(4, np.float64)
    kernel("scale<double>")((1,), (32,), (x, 0.5, 4, y))
    np.testing.assert_array_equal(y.get(), 0.5 * np.arange(4.0))
    kernel("store64<double>")((1,), (1,), (2**40 + 3, y))
    kernel("store64<double>")((1,), (1,), (np.int64(-7), y[1:]))
    assert y.get()[:2].tolist() == [2**40 + 3, -7]


@pytest.mark.parametrize("name, args, match", [
    ("scale<float>", (f32([1]), 0.5, np.int32(1), xp.empty(1, np.float32)),
     r"argument 1 'a': the kernel takes float \(4 bytes\); got Python float 0.5, which CuPy passes as 8 bytes "
     r"\(numpy.float64\): the driver copies its low 4 bytes, .* and the kernel would read them as 0.0; pass numpy.float32"),
    ("scale<float>", (f32([1]), 3, np.int32(1), xp.empty(1, np.float32)),
     r"argument 1 'a': .* got Python int 3, .* the kernel would read them as 4e-45"),
    ("scale<float>", (f32([1]), np.float64(0.5), np.int32(1), xp.empty(1, np.float32)),
     r"argument 1 'a': .* got numpy.float64 0.5 \(8 bytes\): .* would read them as 0.0"),
    ("scale<double>", (xp.ones(1, np.float64), np.float32(2), np.int32(1), xp.empty(1, np.float64)),
     r"argument 1 'a': the kernel takes double \(8 bytes\); got numpy.float32 2.0 \(4 bytes\): the driver copies "
     r"8 bytes, so the kernel would read the value and then 4 bytes of whatever follows it in host memory"),
    ("scale<float>", (f32([1]), np.float32(2), 2**31, xp.empty(1, np.float32)),
     r"argument 2 'n': the kernel takes int \(4 bytes\); got Python int 2147483648, .* would read them as -2147483648"),
    ("scale<float>", (f32([1]), np.float32(2), 2.0, xp.empty(1, np.float32)),
     r"argument 2 'n': .* got Python float 2.0, .* would read them as 0; pass numpy.int32"),
    ("scale<float>", (f32([1]), np.float32(2), np.float32(1), xp.empty(1, np.float32)),
     r"argument 2 'n': .* got numpy.float32 1.0 \(4 bytes\): the driver copies the value's bytes, and the kernel "
     r"would read them as 1065353216"),
    ("store64<double>", (np.int32(5), xp.empty(1, np.float64)),
     r"argument 0 'n': the kernel takes long long \(8 bytes\); got numpy.int32 5 \(4 bytes\): .* then 4 bytes of "
     r"whatever follows it in host memory; pass numpy.int64"),
    ("store64<double>", (2**64, xp.empty(1, np.float64)), r"got Python int 18446744073709551616, which CuPy cannot pass"),
    ("store64<double>", ("5", xp.empty(1, np.float64)), r"the kernel takes long long, a number; got builtins.str"),
])
def test_a_scalar_the_kernel_would_misread_is_refused_with_what_it_would_read(kernel, name, args, match):
    with pytest.raises(KernelError, match=match):
        kernel(name)((1,), (32,), args)


def test_grid_and_block_are_checked(kernel):
    args = (f32([1]), np.float32(2), np.int32(1), xp.empty(1, np.float32))
    with pytest.raises(KernelError, match="block .* has more than 1024 threads"):
        kernel("scale<float>")((1,), (64, 32), args)
    with pytest.raises(KernelError, match="grid: expected 1 to 3 positive ints"):
        kernel("scale<float>")((0,), (32,), args)


def test_the_race_check_catches_a_missing_barrier(kernel, monkeypatch):
    x, y = f32(np.arange(64)), xp.empty(64, np.float32)
    kernel("rotate_racy<float>")((1,), (64,), (x, y))  # runs, wrongly, without the check
    monkeypatch.setenv("MTS_CUDA_RACECHECK", "1")
    with pytest.raises(RaceError, match=r"rotate_racy<float> wrote different values to 'y' when its threads "
                                        r"and blocks ran in reverse order: element \(\d+,\)"):
        kernel("rotate_racy<float>")((1,), (64,), (x, y))
    kernel("rotate<float>")((1,), (64,), (x, y))  # with the barrier it passes the check


def test_kernels_are_compiled_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = build(SOURCE, ["scale<float>"])
    stamp = first.stat().st_mtime_ns
    assert build(SOURCE, ["scale<float>"]) == first and first.stat().st_mtime_ns == stamp
    assert build(SOURCE + "\n// edited\n", ["scale<float>"]) != first


def test_device_arrays_behave_as_cupys():
    a = f32([1, 2, 3])
    assert type(a + 1) is xp.ndarray and type(a.sum()) is xp.ndarray and a.sum().ndim == 0
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(3, np.float32)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    assert a.device.id == 0 and xp.get_array_module(a) is xp and xp.get_array_module(np.ones(1)) is np
    b = a.reshape(3, 1)
    b[0, 0] = 7  # a view: writes through
    assert a.get().tolist() == [7, 2, 3]


def test_what_cupy_lacks_the_emulated_gpu_lacks_too():
    pytest.importorskip("cupy")
    with pytest.raises(AttributeError, match="cupy has no 'nanpercentile'.*fail on a real GPU"):
        xp.nanpercentile  # NumPy has it, CuPy 14 does not
    with pytest.raises(AttributeError, match="cupy.ndarray has no 'setflags'"):
        f32([1, 2]).setflags
    assert xp.nanmax(f32([1, np.nan])).get() == 1  # and what CuPy has still works


@pytest.mark.skipif(not device.is_emulated(), reason="device cuda is a real GPU in this session")
def test_counters_count_launches_reads_and_live_bytes(kernel):
    import kernels
    x = xp.zeros((1, 1, 4, 4), np.float32)
    before = xp.Stats.live_bytes  # x and whatever else is alive
    with counters() as c:
        y = kernels.avg_pool2d_forward(x, (2, 2), (2, 2), (0, 0))  # ours: one launch
        z = y * 2                           # library: one elementwise kernel
        del z
        total = float((y + 1).sum())        # library: two; and one read back
    assert (c.our_launches, c.library_launches, c.syncs) == (1, 3, 1)
    # At most y (16) + y+1 (16) + its sum (4) are alive at once beside what was: y*2 died before.
    assert c.peak_bytes == before + 36
    assert c.launches == 4 and total == 4.0


@pytest.mark.skipif(not device.is_emulated(), reason="device cuda is a real GPU in this session")
@pytest.mark.parametrize("case, launches", [
    ("2-D, a transposed view", 1),           # cuBLAS reads an F-contiguous matrix with a flag
    ("2-D, a strided view", 2),              # neither C- nor F-contiguous: copied first
    ("W broadcast over a stack", 4),         # 3 pointer arrays, then sgemmBatched
    ("W repeated per image", 2),             # the broadcast view copied, then one strided-batched GEMM
    ("a stack transposed", 2),               # ascontiguousarray copies it
])
def test_a_matmul_counts_what_cupy_launches_for_it(case, launches):
    """``cupy.matmul`` is several kernels (``trace.matmul_kernels`` cites CuPy's source for each)."""
    w, x, t, s = (xp.ones(shape, np.float32) for shape in ((4, 6), (3, 6, 5), (5, 6), (6, 10)))
    calls = {"2-D, a transposed view": lambda: xp.matmul(w, t.T),
             "2-D, a strided view": lambda: xp.matmul(w, s[:, ::2]),
             "W broadcast over a stack": lambda: xp.matmul(w, x),
             "W repeated per image": lambda: xp.matmul(xp.broadcast_to(w, (3, 4, 6)), x),
             "a stack transposed": lambda: xp.matmul(x.transpose(0, 2, 1), x)}
    with counters() as c:
        calls[case]()
    assert c.library_launches == launches
