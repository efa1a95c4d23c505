// Depthwise 2-D convolution (groups == C, one KHxKW filter per channel) on the GPU.
//
// Math (PyTorch's F.conv2d(x, w, None, stride, padding, dilation, groups=C)):
//
//     y[n, c, oh, ow] = sum_{kh, kw} w[c, 0, kh, kw] * x[n, c, ih, iw]
//         ih = oh*sh - ph + kh*dh,   iw = ow*sw - pw + kw*dw        (x is 0 outside the image)
//
//     gx[n, c, ih, iw] = sum over the (oh, ow, kh, kw) that read x[n, c, ih, iw] of
//                        w[c, 0, kh, kw] * gy[n, c, oh, ow]
//     gw[c, 0, kh, kw] = sum_{n, oh, ow} gy[n, c, oh, ow] * x[n, c, ih, iw]
//
// Shapes: x (N, C, H, W), w (C, 1, KH, KW), y (N, C, OH, OW),
// OH = (H + 2*ph - dh*(KH-1) - 1) / sh + 1 (and OW alike).
//
// Each output needs only KH*KW multiply-adds: far too little work for a matrix product, so
// these are direct kernels, one thread per output value.
//
// Thread-to-index mapping (256 threads per block):
//
//     forward:          thread i -> y element i,  decoded (n, c, oh, ow), ow fastest
//     backward-input:   thread i -> gx element i, decoded (n, c, ih, iw), iw fastest
//     backward-weight:  block (r, k) -> chunk k of the sum for weight r = (c, kh, kw);
//                       inside the chunk, thread t takes elements t, t+256, ... of the
//                       N*OH*OW products, e decoded (n, oh, ow)  (see reduce.cuh)
//
// Pseudo-loop (forward):
//
//     for n, c, oh, ow in parallel:
//         s = 0
//         for kh:  ih = oh*sh - ph + kh*dh          (skip rows outside the image)
//             for kw:  iw = ow*sw - pw + kw*dw      (skip columns outside)
//                 s += w[c, 0, kh, kw] * x[n, c, ih, iw]
//         y[n, c, oh, ow] = s
//
// Backward-input is the gather that reverses it: input row ih receives from output row
// oh = (ih + ph - kh*dh) / sh when that is an integer in [0, OH):
//
//     for n, c, ih, iw in parallel:
//         s = 0
//         for kh:  oh = (ih + ph - kh*dh) / sh      (skip unless an integer in [0, OH))
//             for kw:  ow = (iw + pw - kw*dw) / sw  (same test)
//                 s += w[c, 0, kh, kw] * gy[n, c, oh, ow]
//         gx[n, c, ih, iw] = s
//
// Backward-weight sums N*OH*OW products for each of the C*KH*KW weights:
//
//     for r = (c, kh, kw), chunk k in parallel:        (a block each)
//         partial[r, k] = sum over e in chunk k of gy[n, c, oh, ow] * x[n, c, ih, iw]
//     for r in parallel:  gw[r] = sum_k partial[r, k]  (sum_chunks, one thread per weight)
//
// Optimizations:
//   - Gathers, not scatters, for gx: each thread writes one element once, no atomics.
//   - The weight gradient is split into (weight, chunk) blocks, so even C*KH*KW = 288
//     weights give thousands of blocks to fill the GPU; the partial sums are added in a
//     fixed order, so gw is identical from run to run (no atomicAdd).
//   - Accumulation in a register (T for the KH*KW-term sums, double for the long weight
//     sums, see reduce.cuh); each output is written exactly once.
//   - Not done: staging a tile of x in shared memory so neighbouring outputs share their
//     overlapping inputs (the L1 cache already catches most of that reuse).

#include "reduce.cuh"

// y[n, c] = x[n, c] correlated with w[c, 0], one output per thread.
template <typename T>
__global__ void depthwise_forward(const T* x, const T* w, int N, int C, int H, int W,
                                  int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                                  int OH, int OW, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int plane = i / (OW * OH);  // n*C + c
    const int c = plane % C;
    const T* src = x + plane * H * W;
    const T* wc = w + c * KH * KW;
    T s = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int ih = oh * sh - ph + kh * dh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int iw = ow * sw - pw + kw * dw;
            if (iw < 0 || iw >= W) continue;
            s += wc[kh * KW + kw] * src[ih * W + iw];
        }
    }
    y[i] = s;
}

// t / S if t is a multiple of S in [0, S*n), else -1: which output row (or column) a tap
// reached by moving t = ih + ph - kh*dh back from the input came from. S is the stride as a
// template argument, so "% S" and "/ S" compile to a mask and a shift (nothing for S = 1);
// S = 0 stands for a stride above 2, read at run time from s.
template <int S>
__device__ int on_grid(int t, int s, int n)
{
    const unsigned stride = S > 0 ? S : s;
    if (t < 0 || (unsigned)t % stride != 0) return -1;
    const int q = (unsigned)t / stride;
    return q < n ? q : -1;
}

constexpr int ROWS = 4;  // gx rows per thread; must equal kernels/cuda/depthwise.py ROWS

// gx[n, c, ih0 .. ih0+ROWS-1, iw] gather w * gy from every output that read them.
template <typename T, int SH, int SW>
__global__ void depthwise_backward_input(const T* gy, const T* w, int N, int C, int H, int W,
                                         int KH, int KW, int sh, int sw, int ph, int pw,
                                         int dh, int dw, int OH, int OW, T* gx)
{
    const int blocks_per_column = (H + ROWS - 1) / ROWS;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C * blocks_per_column * W) return;
    const int iw = i % W;
    const int ih0 = i / W % blocks_per_column * ROWS;
    const int plane = i / (W * blocks_per_column);
    const int c = plane % C;
    const T* g = gy + plane * OH * OW;
    const T* wc = w + c * KH * KW;
    T s[ROWS] = {};
    for (int kh = 0; kh < KH; ++kh) {
        int oh[ROWS];  // the gy row each of our rows reads through tap row kh, or -1
#pragma unroll
        for (int r = 0; r < ROWS; ++r) oh[r] = on_grid<SH>(ih0 + r + ph - kh * dh, sh, OH);
        for (int kw = 0; kw < KW; ++kw) {
            const int ow = on_grid<SW>(iw + pw - kw * dw, sw, OW);
            if (ow < 0) continue;
            const T wv = wc[kh * KW + kw];  // one load for ROWS outputs
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
                if (oh[r] >= 0) s[r] += wv * g[oh[r] * OW + ow];
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
        if (ih0 + r < H) gx[(plane * H + ih0 + r) * W + iw] = s[r];
}

// Block (r, k): partial[r, k] = this chunk's share of gw[r], r = (c*KH + kh)*KW + kw.
template <typename T>
__global__ void depthwise_weight_partials(const T* gy, const T* x, int N, int C, int H, int W,
                                          int KH, int KW, int sh, int sw, int ph, int pw,
                                          int dh, int dw, int OH, int OW, int chunk,
                                          double* partial)
{
    __shared__ double buf[THREADS];
    const int r = blockIdx.x, k = blockIdx.y;
    const int kw = r % KW;
    const int kh = r / KW % KH;
    const int c = r / (KW * KH);
    const int length = N * OH * OW;
    const int end = min(length, (k + 1) * chunk);
    double s = 0;
    for (int e = k * chunk + threadIdx.x; e < end; e += THREADS) {
        const int ow = e % OW;
        const int oh = e / OW % OH;
        const int n = e / (OW * OH);
        const int ih = oh * sh - ph + kh * dh;
        const int iw = ow * sw - pw + kw * dw;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
        const int plane = n * C + c;
        s += (double)gy[(plane * OH + oh) * OW + ow] * (double)x[(plane * H + ih) * W + iw];
    }
    s = block_sum(s, buf);
    if (threadIdx.x == 0) partial[r * gridDim.y + k] = s;
}

// gw[r] = sum_k partial[r, k], in order: one thread per weight.
template <typename T>
__global__ void sum_chunks(const double* partial, int rows, int chunks, T* gw)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    double s = 0;
    for (int k = 0; k < chunks; ++k) s += partial[r * chunks + k];
    gw[r] = (T)s;
}
