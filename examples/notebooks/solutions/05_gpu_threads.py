"""Solutions to the exercises of lecture 5 (05_gpu_threads.ipynb), one section per exercise.

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``np``) come from the notebook's earlier cells.
"""

# EXERCISE 5.1: the arguments of a launch
def axpb_arguments(x, a, b, n, y):
    """The argument tuple for axpb<float>(x, a, b, n, y); a and b are Python floats, n a Python int."""
    # a and b: float parameters read 4 bytes, and a Python float is 8 (the low 4 would be read).
    # n: a long long reads 8 bytes, which is what CuPy makes of a Python int; np.int64 says so.
    return (x, np.float32(a), np.float32(b), np.int64(n), y)


# EXERCISE 5.2: a 2-D grid: transpose
# threadIdx.x runs along a row of x (j), so a warp's reads are consecutive; its writes to y are
# H apart (a tiled transpose through shared memory would make both coalesced).
TRANSPOSE = r"""
template <typename T>
__global__ void transpose(const T* x, int H, int W, T* y)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;   // column of x
    const int i = blockIdx.y * blockDim.y + threadIdx.y;   // row of x
    if (i >= H || j >= W) return;
    y[j * H + i] = x[i * W + j];
}
"""


# EXERCISE 5.3: block_sum with __shfl_down_sync
BLOCK_SUM = r"""
template <typename T>
__device__ T block_sum(T v)
{
    __shared__ T warp_sums[32];               // one slot per warp: at most 1024 / 32
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();                          // every warp's sum is written before warp 0 reads them
    if (warp == 0) {
        v = lane < (int)(blockDim.x / 32) ? warp_sums[lane] : T(0);
        for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    }
    return v;
}
"""


# EXERCISE 5.4: a coalesced sum_chunks
SUM_CHUNKS_WARP = r"""
template <typename T>
__global__ void sum_chunks_warp(const double* partial, int rows, int chunks, T* out)
{
    const int r = blockIdx.x, lane = threadIdx.x;   // a warp per row
    if (r >= rows) return;
    double s = 0;
    for (int k = lane; k < chunks; k += 32) s += partial[r * chunks + k];   // 32 consecutive doubles a step
    for (int d = 16; d > 0; d /= 2) s += __shfl_down_sync(0xffffffffu, s, d);
    if (lane == 0) out[r] = (T)s;
}
"""
