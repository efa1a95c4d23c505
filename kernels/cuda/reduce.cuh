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
// then a one-thread-per-row kernel adds partial[r, 0..chunks) in order. Consecutive
// threads read consecutive elements, so every warp load is one coalesced transaction.
//
// block_sum is a tree in shared memory: 256 values, then 128 pairwise sums, then 64, ...
//
//     buf[t] = s;                 sync
//     t < 128:  buf[t] += buf[t + 128];  sync
//     t <  64:  buf[t] += buf[t +  64];  sync       ... buf[0] is the block's total
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
// Optimizations (not taken, to keep one pattern): warp shuffles (__shfl_down_sync) would
// replace the last five levels of the tree and their __syncthreads.

constexpr int THREADS = 256;  // must equal kernels/cuda/launch.py THREADS: blocks are this big

// Sum v over the block. Every thread must call it (it synchronizes); thread 0 gets the total.
__device__ double block_sum(double v, double* buf)
{
    const int t = threadIdx.x;
    buf[t] = v;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) buf[t] += buf[t + half];
        __syncthreads();
    }
    return buf[0];
}
