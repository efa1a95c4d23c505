// reduce.cuh: the block reduction behind every sum over many elements (depthwise weight
// gradient, batch-norm statistics and gradients). The launcher pastes this file into the
// .cu that includes it.
//
// Shape of a reduction. The sum is split into rows (one per result: a channel, a channel x
// tap) and each row into `chunks` chunks of `chunk` consecutive elements. The grid is
// (rows, chunks) of THREADS-thread blocks; block (r, k) owns elements
// [k*chunk, min((k+1)*chunk, length)) of row r:
//
//     s = 0                                          (a double, in a register)
//     for (e = k*chunk + threadIdx.x; e < end; e += THREADS)  s += element(r, e)
//     partial[r*chunks + k] = block_sum(s)           (written by thread 0)
//
// then partial[r, 0..chunks) is added in a fixed order: by a one-thread-per-row kernel
// (depthwise), or by every block of the kernel that uses the total (batch norm). Consecutive
// threads read consecutive elements, so every warp load is one coalesced transaction.
//
// block_sum adds in a fixed tree: first within each warp by register shuffles, lane i taking
// lane i + 16, then i + 8, ... (__shfl_down_sync: no shared memory, no barrier), then the
// eight warp totals, put in shared memory, by the first warp the same way:
//
//     for (o = 16; o > 0; o /= 2)  s += shfl_down(s, o)        lane 0: its warp's sum
//     lane 0: buf[warp] = s;  sync
//     warp 0: s = buf[lane] (lane < 8);  for (o = 4; o > 0; o /= 2)  s += shfl_down(s, o)
//
// Deterministic: which element goes into which register, and which register is added to
// which, depend only on the shapes, never on timing, so results repeat bit for bit
// (atomicAdd on a float would not: its order of additions changes from run to run).
//
// Why double: a float32 running sum of a million values carries a relative error around
// 1e-4 (each add rounds at 6e-8 of the growing total); a double register and double tree
// keep the sum exact to the last float digit, and cost nothing visible in kernels that
// wait on memory.
//
// Optimizations: the first version was a tree in shared memory (256 values, then 128
// pairwise sums, ...: 8 levels, each a barrier, and 2-way bank conflicts on the doubles).
// The shuffles keep one barrier and 8 shared values, and no bank conflicts (batch norm's
// traced conflicts went from 204,800 per family to 0).

constexpr int THREADS = 256;  // must equal kernels/cuda/launch.py THREADS: blocks are this big
constexpr int WARPS = THREADS / 32;

// Sum v over the block into thread 0 (the other threads get partial sums). Every thread must
// call it (it synchronizes); buf: WARPS doubles of shared memory, a separate one per call
// that may overlap another (a second call would overwrite what a slow warp still reads).
__device__ double block_sum(double v, double* buf)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) buf[warp] = v;
    __syncthreads();
    v = lane < WARPS ? buf[lane] : 0.0;
    for (int offset = WARPS / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}
