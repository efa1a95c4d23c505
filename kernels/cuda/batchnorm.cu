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
// With relu, gy is first replaced by gy * (y > 0), y the op's output: the ReLU's backward,
// done where gy is read instead of in a launch of its own.
//
// Shapes. x, y, gy, gx: (N, C, H, W); weight, bias, mean, var, invstd, gweight, gbias: (C,),
// all in the dtype T of x. Element m of channel c (m = n*H*W + hw, 0 <= m < M) sits at
// x[(n*C + c)*H*W + hw]: N contiguous runs of H*W values.
//
// Every op is two kinds of kernel:
//
//   1. Per-channel sums (stat_partials, grad_partials): the reduction of reduce.cuh on a
//      grid (C, chunks). Block (c, k) sums elements [k*chunk, (k+1)*chunk) of channel c into
//      partial[c, k], a double; one thread per channel then adds the chunks in order (the
//      finish_* kernels) and turns the sums into per-channel constants. One block per
//      channel alone would give only C = 32..768 blocks (Fast-SCNN's batch norms), too few to
//      keep the memory system of a large GPU busy at the small ones; chunks multiply that.
//   2. Element-wise kernels (affine, backward_train_input): one thread per element i,
//      channel c = (i / HW) % C, applying the per-channel constants.
//
// Pseudo-loop (forward, training), three launches:
//
//     for c, k in parallel:  s[c, k], ss[c, k] = sums over chunk k of d, d*d,    (stat_partials)
//                            d = x - K[c]   (K[c] = the channel's first value)
//     for c in parallel:     mean = K + S/M,  var = (SS - S*S/M)/M,              (finish_forward_train)
//                            invstd, scale = weight*invstd,
//                            shift = bias - mean*scale, the running statistics
//     for i in parallel:     y[i] = x[i]*scale[c] + shift[c]   (then max(y, 0))  (affine)
//
// Backward (training): one pass sums gy and gy*(x - mean) per channel (grad_partials), the
// finish kernel makes gbias, gweight and three constants a, k, gmean, and
// backward_train_input writes gx = (gy - gmean - (x - mean)*k) * a. Backward (eval): the
// same sums, then gx = gy*scale is `affine` with a zero shift.
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
//   - The per-channel constants are folded once (scale/shift, a/k/gmean), so the element
//     kernels are one or two multiply-adds in T per element.
//   - The running statistics and the ReLU ride along in launches that run anyway.
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

// The gradient that reaches the batch norm: gy, or gy * (y > 0) when a ReLU followed it.
template <typename T>
__device__ T gated(const T* gy, const T* y, int relu, int i)
{
    return relu && !(y[i] > T(0)) ? T(0) : gy[i];
}

// ---------------------------------------------------------------- per-channel reductions

// s[c, k], ss[c, k] = sums of d and d*d over chunk k of channel c, d = x - (the channel's first x).
template <typename T>
__global__ void stat_partials(const T* x, int C, int HW, int M, int chunk, double* partial_s,
                              double* partial_ss)
{
    __shared__ double buf_s[THREADS];
    __shared__ double buf_ss[THREADS];
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
// g = the gradient reaching the batch norm (gated by the ReLU's output y when relu).
template <typename T>
__global__ void grad_partials(const T* gy, const T* y, int relu, const T* x, const T* mean, int C,
                              int HW, int M, int chunk, double* partial_g, double* partial_gd)
{
    __shared__ double buf_g[THREADS];
    __shared__ double buf_gd[THREADS];
    const int c = blockIdx.x, k = blockIdx.y;
    const int end = min(M, (k + 1) * chunk);
    const double mu = mean[c];
    double sg = 0, sgd = 0;
    for (int m = k * chunk + threadIdx.x; m < end; m += THREADS) {
        const int i = channel_at(m, c, C, HW);
        const double g = gated(gy, y, relu, i);
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

// mean, invstd and scale/shift from the shifted sums; with update, the running statistics.
template <typename T>
__global__ void finish_forward_train(const double* partial_s, const double* partial_ss, const T* x,
                                     const T* weight, const T* bias, double eps, int C, int HW,
                                     int chunks, int M, T* mean, T* invstd, T* scale, T* shift,
                                     int update, T* running_mean, T* running_var, double momentum)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const double s = sum_row(partial_s, c, chunks), ss = sum_row(partial_ss, c, chunks);
    const double mu = (double)x[channel_at(0, c, C, HW)] + s / M;
    const double var = max((ss - s * s / M) / M, 0.0);
    const double istd = 1.0 / sqrt(var + eps);
    mean[c] = (T)mu;
    invstd[c] = (T)istd;
    scale[c] = (T)(weight[c] * istd);
    shift[c] = (T)(bias[c] - mu * weight[c] * istd);
    if (update) {
        running_mean[c] = (T)((1 - momentum) * running_mean[c] + momentum * mu);
        running_var[c] = (T)((1 - momentum) * running_var[c] + momentum * var * M / max(M - 1, 1));
    }
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

// gbias, gweight, and gx = (g - gmean - (x - mean)*k) * a split into per-channel a, k, gmean.
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

// Eval mode: gbias, gweight, and gx = g*scale (+ a zero shift, so `affine` applies it).
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

// out[i] = g*scale[c] + shift[c], g = in[i] gated by y when gate (the eval backward), then
// max(out, 0) when relu (the forward of batch norm + ReLU).
template <typename T>
__global__ void affine(const T* in, const T* y, int gate, const T* scale, const T* shift, int C,
                       int HW, int n, int relu, T* out)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = i / HW % C;
    const T v = gated(in, y, gate, i) * scale[c] + shift[c];
    out[i] = relu && v < T(0) ? T(0) : v;  // v < 0, not !(v > 0): a NaN stays NaN, as in max(v, 0)
}

// gx through the batch statistics.
template <typename T>
__global__ void backward_train_input(const T* gy, const T* y, int relu, const T* x, const T* mean,
                                     const T* a, const T* k, const T* gmean, int C, int HW, int n,
                                     T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = i / HW % C;
    gx[i] = (gated(gy, y, relu, i) - gmean[c] - (x[i] - mean[c]) * k[c]) * a[c];
}
