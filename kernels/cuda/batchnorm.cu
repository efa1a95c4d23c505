// Batch normalization (BatchNorm2d) on the GPU.
//
// Math. For every channel c the statistics run over the M = N*H*W values of that channel
// (biased variance, as PyTorch uses for normalizing):
//
//     mean[c]   = 1/M * sum_{n,h,w} x[n,c,h,w]
//     var[c]    = 1/M * sum_{n,h,w} (x[n,c,h,w] - mean[c])**2
//     invstd[c] = 1 / sqrt(var[c] + eps)
//     y         = (x - mean[c]) * invstd[c] * weight[c] + bias[c]  =  x*scale[c] + shift[c]
//
// In eval mode mean/var are the running statistics, fixed numbers, so y is an affine map of
// x and gx = gy * weight * invstd. In training the statistics depend on x too:
//
//     gbias[c]   = sum gy
//     gweight[c] = sum gy * xhat                         xhat = (x - mean[c]) * invstd[c]
//     gx         = weight[c]*invstd[c] * (gy - gbias[c]/M - xhat * gweight[c]/M)
//
// Shapes. x, y, gy, gx: (N, C, H, W); weight, bias, mean, var, invstd, gweight, gbias: (C,),
// all in the dtype T of x. Element m of channel c (m = n*H*W + hw, 0 <= m < M) sits at
// x[(n*C + c)*H*W + hw]: N contiguous runs of H*W values.
//
// Every op is two kinds of kernel:
//
//   1. Per-channel sums (sum_partials, sqdev_partials, grad_partials): the reduction of
//      reduce.cuh on a grid (C, chunks). Block (c, k) sums elements [k*chunk, (k+1)*chunk)
//      of channel c into partial[c, k], a double; one thread per channel then adds the
//      chunks in order (the finish_* kernels) and turns the sums into per-channel
//      constants. One block per channel alone would give only C = 32..128 blocks, too few
//      to keep the memory system of a large GPU busy; chunks multiply that.
//   2. Element-wise kernels (affine, backward_train_input): one thread per element i,
//      channel c = (i / HW) % C, applying the per-channel constants.
//
// Pseudo-loop (forward, training):
//
//     for c, k in parallel:  partial[c, k] = sum over chunk k of x               (sum_partials)
//     for c in parallel:     mean[c] = sum_k partial[c, k] / M                    (finish_mean)
//     for c, k in parallel:  partial[c, k] = sum over chunk k of (x - mean[c])**2 (sqdev_partials)
//     for c in parallel:     invstd, scale = weight*invstd,                      (finish_forward_train)
//                            shift = bias - mean*weight*invstd
//     for i in parallel:     y[i] = x[i]*scale[c] + shift[c]                     (affine)
//
// Backward (training): one pass sums gy and gy*(x - mean) per channel (grad_partials), the
// finish kernel makes gbias, gweight and three constants a, k, gmean, and
// backward_train_input writes gx = (gy - gmean - (x - mean)*k) * a. Backward (eval): the
// same sums, then gx = gy*scale is `affine` with a zero shift.
//
// Why two passes in double: the one-pass formula E[x**2] - E[x]**2 subtracts two nearly
// equal numbers when |mean| >> std and can lose every digit (even go negative), and a
// float32 sum of the ~6M values of a training batch's channel drifts by ~1e-4 relative.
// Summing x first, then (x - mean)**2, both in double registers and a double tree, costs
// one more read of x and is accurate to the last float digit; the statistics are finished
// in double too and only the results are rounded to T.
//
// Optimizations:
//   - (channel, chunk) blocks: thousands of blocks, each thread streaming coalesced runs.
//   - The per-channel constants are folded once (scale/shift, a/k/gmean), so the element
//     kernels are one or two multiply-adds in T per element.
//   - No atomics anywhere: the partial sums are added in a fixed order, so the statistics
//     and gradients are bit-identical from run to run.
//   - Not done: fusing the last chunk's finish into the reduction kernel (a "last block"
//     counter) would save the tiny finish launches.

#include "reduce.cuh"

// Index of element m (0 <= m < N*HW) of channel c in an (N, C, HW) array.
__device__ int channel_at(int m, int c, int C, int HW)
{
    return (m / HW * C + c) * HW + m % HW;
}

// ---------------------------------------------------------------- per-channel reductions

// partial[c, k] = sum of x over chunk k of channel c.
template <typename T>
__global__ void sum_partials(const T* x, int C, int HW, int M, int chunk, double* partial)
{
    __shared__ double buf[THREADS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    double s = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS)
        s += (double)x[channel_at(m, c, C, HW)];
    s = block_sum(s, buf);
    if (threadIdx.x == 0) partial[c * gridDim.y + k] = s;
}

// partial[c, k] = sum of (x - mean[c])**2 over chunk k of channel c.
template <typename T>
__global__ void sqdev_partials(const T* x, const double* mean, int C, int HW, int M, int chunk,
                               double* partial)
{
    __shared__ double buf[THREADS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    const double mu = mean[c];
    double s = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS) {
        const double d = (double)x[channel_at(m, c, C, HW)] - mu;
        s += d * d;
    }
    s = block_sum(s, buf);
    if (threadIdx.x == 0) partial[c * gridDim.y + k] = s;
}

// partial_g[c, k] = sum of gy, partial_gd[c, k] = sum of gy*(x - mean[c]), over chunk k.
template <typename T>
__global__ void grad_partials(const T* gy, const T* x, const T* mean, int C, int HW, int M,
                              int chunk, double* partial_g, double* partial_gd)
{
    __shared__ double buf_g[THREADS];
    __shared__ double buf_gd[THREADS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    const double mu = mean[c];
    double sg = 0, sgd = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS) {
        const int i = channel_at(m, c, C, HW);
        const double g = gy[i];
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

// ---------------------------------------------------- per-channel finishing, a thread each

// Sum of row c of partial (C, chunks), in order.
__device__ double sum_row(const double* partial, int c, int chunks)
{
    double s = 0;
    for (int k = 0; k < chunks; ++k) s += partial[c * chunks + k];
    return s;
}

// mean64[c] = sum / M, kept in double for the second pass; mean[c] is its T result.
template <typename T>
__global__ void finish_mean(const double* partial, int C, int chunks, int M, double* mean64,
                            T* mean)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    mean64[c] = sum_row(partial, c, chunks) / M;
    mean[c] = (T)mean64[c];
}

// invstd from the summed squared deviations; scale/shift fold weight, bias, mean, invstd.
template <typename T>
__global__ void finish_forward_train(const double* partial, const double* mean64, const T* weight,
                                     const T* bias, double eps, int C, int chunks, int M,
                                     T* invstd, T* scale, T* shift)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double istd = 1.0 / sqrt(sum_row(partial, c, chunks) / M + eps);
    invstd[c] = (T)istd;
    scale[c] = (T)(weight[c] * istd);
    shift[c] = (T)(bias[c] - mean64[c] * weight[c] * istd);
}

// Eval mode: the same scale/shift from the running statistics.
template <typename T>
__global__ void eval_coefficients(const T* mean, const T* var, const T* weight, const T* bias,
                                  double eps, int C, T* scale, T* shift)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double istd = 1.0 / sqrt((double)var[c] + eps);
    scale[c] = (T)(weight[c] * istd);
    shift[c] = (T)(bias[c] - (double)mean[c] * weight[c] * istd);
}

// gbias, gweight, and gx = (gy - gmean - (x - mean)*k) * a split into per-channel a, k, gmean.
template <typename T>
__global__ void finish_backward_train(const double* partial_g, const double* partial_gd,
                                      const T* invstd, const T* weight, int C, int chunks, int M,
                                      T* gweight, T* gbias, T* a, T* k, T* gmean)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double sg = sum_row(partial_g, c, chunks);
    const double sgd = sum_row(partial_gd, c, chunks);
    const double istd = invstd[c];
    gbias[c] = (T)sg;
    gweight[c] = (T)(sgd * istd);
    a[c] = (T)(weight[c] * istd);
    k[c] = (T)(sgd * istd * istd / M);
    gmean[c] = (T)(sg / M);
}

// Eval mode: gbias, gweight, and gx = gy*scale (+ a zero shift, so `affine` applies it).
template <typename T>
__global__ void finish_backward_eval(const double* partial_g, const double* partial_gd,
                                     const T* var, const T* weight, double eps, int C, int chunks,
                                     T* gweight, T* gbias, T* scale, T* shift)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double istd = 1.0 / sqrt((double)var[c] + eps);
    gbias[c] = (T)sum_row(partial_g, c, chunks);
    gweight[c] = (T)(sum_row(partial_gd, c, chunks) * istd);
    scale[c] = (T)(weight[c] * istd);
    shift[c] = T(0);
}

// ------------------------------------------------------------- element-wise, a thread each

// out[i] = in[i]*scale[c] + shift[c]: the forward (both modes) and the eval backward.
template <typename T>
__global__ void affine(const T* in, const T* scale, const T* shift, int C, int HW, int n, T* out)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = i / HW % C;
    out[i] = in[i] * scale[c] + shift[c];
}

// gx through the batch statistics.
template <typename T>
__global__ void backward_train_input(const T* gy, const T* x, const T* mean, const T* a,
                                     const T* k, const T* gmean, int C, int HW, int n, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = i / HW % C;
    gx[i] = (gy[i] - gmean[c] - (x[i] - mean[c]) * k[c]) * a[c];
}
