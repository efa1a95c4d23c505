// Batch normalization (BatchNorm2d), optionally followed by a ReLU, on the GPU.
//
// Math. For every channel c the statistics run over the M = N*H*W values of that channel
// (biased variance, as PyTorch uses for normalizing):
//
//     mean[c]   = 1/M * sum_{n,h,w} x[n,c,h,w]
//     var[c]    = 1/M * sum_{n,h,w} (x[n,c,h,w] - mean[c])**2
//     invstd[c] = 1 / sqrt(var[c] + eps)
//     y         = (x - mean[c]) * invstd[c] * weight[c] + bias[c]  =  x*scale[c] + shift[c]
//     y         = max(y, 0)                                          (with relu)
//
// In training the running statistics move toward the batch's in the same launch that
// finishes the statistics: running = (1 - momentum)*running + momentum*batch, with the
// unbiased variance var*M/(M-1), as PyTorch does. In eval mode mean/var are the running
// statistics, fixed numbers, so y is an affine map of x and gx = gy * weight * invstd.
// In training the statistics depend on x too:
//
//     gbias[c]   = sum gy
//     gweight[c] = sum gy * xhat                         xhat = (x - mean[c]) * invstd[c]
//     gx         = weight[c]*invstd[c] * (gy - gbias[c]/M - xhat * gweight[c]/M)
//
// With relu, gy is first replaced by gy * (v > 0), v = x*scale + shift the output before the
// ReLU: the ReLU's backward, done where gy is read instead of in a launch of its own, its
// gate recomputed from x (read anyway) with the forward's own scale and shift and the same
// roundings (normalized): bit for bit the forward's decision, without keeping or reading y.
//
// Shapes. x, y, gy, gx: (N, C, H, W); weight, bias, mean, var, gweight, gbias: (C,);
// stats: (4, C), the rows mean, invstd, scale, shift that the forward used and the backward
// needs; all in the dtype T of x. Element m of channel c (m = n*H*W + hw, 0 <= m < M) sits at
// x[(n*C + c)*H*W + hw]: N contiguous runs of H*W values.
//
// Every kernel runs on a grid (C, chunks) of THREADS-thread blocks: block (c, k) owns
// elements [k*chunk, (k+1)*chunk) of channel c. One block per channel alone would give only
// C = 32..768 blocks (Fast-SCNN's batch norms), too few to keep the memory system of a
// large GPU busy at the small ones; chunks multiply that. Two kinds of kernel:
//
//   1. Per-channel sums (stat_partials, grad_partials): the reduction of reduce.cuh; block
//      (c, k) sums its chunk into partial[c, k], a double.
//   2. Element-wise (forward_train, forward_eval, backward_input): each block first adds
//      partial[c, 0..chunks) itself, coalesced, in a fixed order (channel_total): every
//      block of channel c gets the same bits, so the per-channel constants need no launch of
//      their own. Block (c, 0) also writes the per-channel outputs (stats, the running
//      statistics, gweight, gbias). Then each thread applies them along the chunk.
//
// Pseudo-loop (forward, training), two launches:
//
//     for c, k in parallel:  s[c, k], ss[c, k] = sums over chunk k of d, d*d,    (stat_partials)
//                            d = x - K[c]   (K[c] = the channel's first value)
//     for c, k in parallel:  S, SS = sum_k s[c, k], ss[c, k]   (every block)      (forward_train)
//                            mean = K + S/M,  var = (SS - S*S/M)/M, invstd,
//                            scale = weight*invstd, shift = bias - mean*scale
//                            (k == 0: stats, the running statistics)
//                            y = x*scale + shift over chunk k   (then max(y, 0))
//
// Eval forward: forward_eval alone, scale and shift from the running statistics, which block
// (c, 0) copies into stats (a snapshot for the backward, in a launch that runs anyway).
// Backward: one pass sums g and g*(x - mean) per channel (grad_partials); backward_input
// finishes them per block into gbias, gweight and the constants k, gmean, and writes
// gx = (g - gmean - (x - mean)*k) * scale (training) or g * scale (eval).
//
// Why one pass is accurate here. The textbook one-pass formula E[x**2] - E[x]**2 subtracts
// two nearly equal numbers when |mean| >> std and can lose every digit. Shifting the data by
// a value of the channel first (K, any one of them will do) makes the two terms about
// var-sized instead of mean**2-sized, and the sums run in double registers and a double tree:
// the error is about 1e-16 * (mean - K)**2 / var, far below a float's last digit, for one read
// of x instead of two ("computing shifted data", Chan, Golub and LeVeque 1983).
//
// Optimizations:
//   - (channel, chunk) blocks: thousands of blocks, each thread streaming coalesced runs.
//   - The per-channel constants are folded once (scale/shift, k/gmean), so the element
//     loops are one or two multiply-adds in T per element.
//   - The running statistics and the ReLU ride along in launches that run anyway.
//   - No atomics anywhere: the partial sums are added in a fixed order, so the statistics
//     and gradients are bit-identical from run to run.
//
// The first version, and what changing it bought. It ran three launches each way per layer:
// the partial sums, a one-thread-per-channel finish (C threads: a block or three for the
// whole GPU, reading partial[c, k] with consecutive threads `chunks` doubles apart), then an
// element-wise kernel (a thread per element, c = i / HW % C); eval ran the finish and the
// element-wise kernel, after two CuPy copies of the running statistics. Its backward gated gy
// with the saved output y, read in both passes. A training step at 12 x 1024 x 1024 on an
// H100 (python -m fastscnn.benchmark --device cuda --estimate H100), estimated (uncalibrated):
//
//                  launches   unique bytes   sectors/request   bank conflicts   ms
//     BN forward   138 -> 92  7.94 -> 7.94 GB   3.02 -> 4.74    204,800 -> 0   5.44 -> 4.08
//     BN backward  138 -> 92  15.6 -> 10.9 GB   3.24 -> 5.23    204,800 -> 0   6.64 -> 5.47
//     inference: BN 88 -> 44 launches, and the 88 copies gone (242 -> 109 launches in all)
//
// The bytes of the backward fell by y's two reads; the forward's time by the finishing
// launches, which the model charges as nearly idle GPUs. Both families are DRAM-bound, at
// 1.46x (forward) and 1.43x (backward) of the DRAM time of their bytes; most of the rest is
// the model's fill term for layers whose grids it extrapolates from one chunk per channel.

#include "reduce.cuh"

// Index of element m (0 <= m < N*HW) of channel c in an (N, C, HW) array.
__device__ int channel_at(int m, int c, int C, int HW)
{
    return (m / HW * C + c) * HW + m % HW;
}

// Batch norm's output before the ReLU, x*scale + shift, rounded twice and never contracted
// into an fma (the _rn intrinsics forbid it): the backward recomputes it to find the ReLU's
// gate and must get the forward's bits, and the CPU twin rounds the same way.
__device__ float normalized(float x, float scale, float shift)
{
    return __fadd_rn(__fmul_rn(x, scale), shift);
}

__device__ double normalized(double x, double scale, double shift)
{
    return __dadd_rn(__dmul_rn(x, scale), shift);
}

// The gradient that reaches the batch norm: gy, or 0 where the ReLU after it was off
// (!(v > 0), so a NaN output passes no gradient, as y > 0 would not).
template <typename T>
__device__ T gated(const T* gy, const T* x, int relu, T scale, T shift, int i)
{
    return relu && !(normalized(x[i], scale, shift) > T(0)) ? T(0) : gy[i];
}

// The total of row c of partial (C, chunks), in thread 0: every block of channel c adds the
// same values in the same order, so all of them get the same bits.
__device__ double channel_total(const double* partial, int c, double* buf)
{
    double s = 0;
    for (int k = threadIdx.x; k < gridDim.y; k += THREADS) s += partial[c * gridDim.y + k];
    return block_sum(s, buf);
}

// y = normalized(x), then max(y, 0) when relu, over the block's chunk of channel c.
template <typename T>
__device__ void write_normalized(const T* x, int C, int HW, int M, int chunk, T scale, T shift,
                                 int relu, T* y)
{
    const int c = blockIdx.x, first = blockIdx.y * chunk, end = min(M, first + chunk);
    for (int m = first + threadIdx.x; m < end; m += THREADS) {
        const int i = channel_at(m, c, C, HW);
        const T v = normalized(x[i], scale, shift);
        y[i] = relu && v < T(0) ? T(0) : v;  // v < 0, not !(v > 0): a NaN stays NaN, as in max(v, 0)
    }
}

// ---------------------------------------------------------------- per-channel reductions

// s[c, k], ss[c, k] = sums of d and d*d over chunk k of channel c, d = x - (the channel's first x).
template <typename T>
__global__ void stat_partials(const T* x, int C, int HW, int M, int chunk, double* partial_s,
                              double* partial_ss)
{
    __shared__ double buf_s[WARPS];
    __shared__ double buf_ss[WARPS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    const double shift = x[channel_at(0, c, C, HW)];
    double s = 0, ss = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS) {
        const double d = (double)x[channel_at(m, c, C, HW)] - shift;
        s += d;
        ss += d * d;
    }
    s = block_sum(s, buf_s);
    ss = block_sum(ss, buf_ss);
    if (threadIdx.x == 0) {
        partial_s[c * gridDim.y + k] = s;
        partial_ss[c * gridDim.y + k] = ss;
    }
}

// partial_g[c, k] = sum of g, partial_gd[c, k] = sum of g*(x - mean[c]), over chunk k,
// g = the gradient reaching the batch norm (gated by the recomputed ReLU when relu).
template <typename T>
__global__ void grad_partials(const T* gy, const T* x, const T* stats, int relu, int C, int HW,
                              int M, int chunk, double* partial_g, double* partial_gd)
{
    __shared__ double buf_g[WARPS];
    __shared__ double buf_gd[WARPS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    const double mu = stats[c];
    const T scale = stats[2 * C + c], shift = stats[3 * C + c];
    double sg = 0, sgd = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS) {
        const int i = channel_at(m, c, C, HW);
        const double g = gated(gy, x, relu, scale, shift, i);
        sg += g;
        sgd += g * ((double)x[i] - mu);
    }
    sg = block_sum(sg, buf_g);
    sgd = block_sum(sgd, buf_gd);
    if (threadIdx.x == 0) {
        partial_g[c * gridDim.y + k] = sg;
        partial_gd[c * gridDim.y + k] = sgd;
    }
}

// -------------------------------------- per-channel constants, then element-wise, a block per chunk

// Training forward: every block of channel c finishes the statistics from the partial sums,
// then writes y over its chunk; block (c, 0) also keeps stats (mean, invstd, scale, shift)
// and moves the running statistics.
template <typename T>
__global__ void forward_train(const double* partial_s, const double* partial_ss, const T* x,
                              const T* weight, const T* bias, double eps, int C, int HW, int M,
                              int chunk, int update, T* running_mean, T* running_var,
                              double momentum, int relu, T* y, T* stats)
{
    __shared__ double buf_s[WARPS];
    __shared__ double buf_ss[WARPS];
    __shared__ T coefficients[2];
    const int c = blockIdx.x;
    const double s = channel_total(partial_s, c, buf_s), ss = channel_total(partial_ss, c, buf_ss);
    if (threadIdx.x == 0) {
        const double mu = (double)x[channel_at(0, c, C, HW)] + s / M;
        const double var = max((ss - s * s / M) / M, 0.0);
        const double istd = 1.0 / sqrt(var + eps);
        coefficients[0] = (T)(weight[c] * istd);
        coefficients[1] = (T)(bias[c] - mu * weight[c] * istd);
        if (blockIdx.y == 0) {
            stats[c] = (T)mu;
            stats[C + c] = (T)istd;
            stats[2 * C + c] = coefficients[0];
            stats[3 * C + c] = coefficients[1];
            if (update) {
                running_mean[c] = (T)((1 - momentum) * running_mean[c] + momentum * mu);
                running_var[c] = (T)((1 - momentum) * running_var[c] + momentum * var * M / max(M - 1, 1));
            }
        }
    }
    __syncthreads();
    write_normalized(x, C, HW, M, chunk, coefficients[0], coefficients[1], relu, y);
}

// Eval forward: the same from the running statistics, which block (c, 0) copies into stats
// (the backward's snapshot: a later training step may move the running statistics).
template <typename T>
__global__ void forward_eval(const T* x, const T* mean, const T* var, const T* weight, const T* bias,
                             double eps, int C, int HW, int M, int chunk, int relu, T* y, T* stats)
{
    __shared__ T coefficients[2];
    const int c = blockIdx.x;
    if (threadIdx.x == 0) {
        const double istd = 1.0 / sqrt((double)var[c] + eps);
        coefficients[0] = (T)(weight[c] * istd);
        coefficients[1] = (T)(bias[c] - (double)mean[c] * weight[c] * istd);
        if (blockIdx.y == 0) {
            stats[c] = mean[c];
            stats[C + c] = (T)istd;
            stats[2 * C + c] = coefficients[0];
            stats[3 * C + c] = coefficients[1];
        }
    }
    __syncthreads();
    write_normalized(x, C, HW, M, chunk, coefficients[0], coefficients[1], relu, y);
}

// gx over the block's chunk: every block of channel c finishes the channel's sums; block
// (c, 0) writes gbias and gweight. Training: gx = (g - gmean - (x - mean)*k) * scale,
// through the batch statistics; eval: gx = g * scale (the statistics are constants).
template <typename T>
__global__ void backward_input(const double* partial_g, const double* partial_gd, const T* gy,
                               const T* x, const T* stats, int relu, int training, int C, int HW,
                               int M, int chunk, T* gx, T* gweight, T* gbias)
{
    __shared__ double buf_g[WARPS];
    __shared__ double buf_gd[WARPS];
    __shared__ T coefficients[2];
    const int c = blockIdx.x;
    const double sg = channel_total(partial_g, c, buf_g), sgd = channel_total(partial_gd, c, buf_gd);
    const T mean = stats[c], scale = stats[2 * C + c], shift = stats[3 * C + c];
    if (threadIdx.x == 0) {
        const double istd = stats[C + c];
        coefficients[0] = training ? (T)(sgd * istd * istd / M) : T(0);
        coefficients[1] = training ? (T)(sg / M) : T(0);
        if (blockIdx.y == 0) {
            gbias[c] = (T)sg;
            gweight[c] = (T)(sgd * istd);
        }
    }
    __syncthreads();
    const T k = coefficients[0], gmean = coefficients[1];
    const int first = blockIdx.y * chunk, end = min(M, first + chunk);
    for (int m = first + threadIdx.x; m < end; m += THREADS) {
        const int i = channel_at(m, c, C, HW);
        const T g = gated(gy, x, relu, scale, shift, i);
        gx[i] = training ? (g - gmean - (x[i] - mean) * k) * scale : g * scale;
    }
}

// ---------------------------------------------------- the ReLU where no batch norm precedes it

// y = max(a + b, 0): a sum and its ReLU in one pass (Fast-SCNN's feature fusion).
template <typename T>
__global__ void add_relu(const T* a, const T* b, int n, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const T v = a[i] + b[i];
    y[i] = v < T(0) ? T(0) : v;
}

// gx = g where the ReLU's output y > 0, else 0: one kernel instead of g * (y > 0)'s two.
template <typename T>
__global__ void relu_backward(const T* g, const T* y, int n, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    gx[i] = y[i] > T(0) ? g[i] : T(0);
}
