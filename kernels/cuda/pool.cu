// Average pooling (fixed window and adaptive) on the GPU.
//
// Math, avg_pool2d (PyTorch's defaults: count_include_pad=True, ceil_mode=False). The window
// of output (oh, ow) starts at (oh*SH - PH, ow*SW - PW) and is KH x KW; padded positions
// count as zeros, so the divisor is always KH*KW:
//
//     OH = (H + 2*PH - KH) / SH + 1                                  (and OW alike)
//     y[p, oh, ow] = 1/(KH*KW) * sum_{kh,kw} x[p, oh*SH-PH+kh, ow*SW-PW+kw]   (in-bounds only)
//
// The gradient sends gy/(KH*KW) back to every input of the window. As a gather: input h lies
// in the windows oh with oh*SH - PH <= h < oh*SH - PH + KH, i.e.
// floor((h+PH-KH)/SH) + 1 <= oh <= floor((h+PH)/SH), clipped to [0, OH).
//
// Math, adaptive_avg_pool2d: output i of O averages the bin [floor(i*H/O), ceil((i+1)*H/O)):
//
//     y[p, i, j] = mean(x[p, h0(i):h1(i), w0(j):w1(j)])
//
// Its gradient adds gy[i, j] / bin_area(i, j) to every element of the bin. The bins that
// contain input row h are again a range, found by inverting the two floor/ceil formulas:
//
//     h0(i) <= h  <=>  i*H < (h+1)*O   <=>  i <= ((h+1)*O - 1) / H
//     h1(i) >  h  <=>  (i+1)*H > h*O   <=>  i >= (h*O) / H            (integer division)
//
// Shapes. x, gx: (N, C, H, W); y, gy: (N, C, OH, OW); the kernels see them as P = N*C
// planes, p = n*C + c.
//
// Thread-to-index mapping: one thread per element written, 256 per block,
//
//     forward:   thread i -> y element i,  decoded (p, oh, ow), ow fastest
//     backward:  thread i -> gx element i, decoded (p, h, w), w fastest
//
// Pseudo-loop (forward; both pools):
//
//     for p, oh, ow in parallel:
//         h0, h1, w0, w1 = the window, clipped to the plane
//         s = 0
//         for h in [h0, h1): for w in [w0, w1): s += x[p, h, w]
//         y[p, oh, ow] = s / area
//
// Pseudo-loop (backward; both pools):
//
//     for p, h, w in parallel:
//         oh0, oh1, ow0, ow1 = the outputs whose windows contain (h, w)
//         s = 0
//         for oh in [oh0, oh1): for ow in [ow0, ow1): s += gy[p, oh, ow] / area(oh, ow)
//         gx[p, h, w] = s
//
// Optimizations:
//   - Both backwards are gathers: each thread writes one gx element once, no atomics, no
//     zero-fill (the CPU's adaptive backward scatters within the plane its thread owns; a
//     GPU thread owns one element, so it gathers instead).
//   - Windows are clipped once per thread, so the inner loops carry no bounds tests.
//   - Sums run in T: the windows are short (KH*KW terms; an adaptive bin is at most one
//     plane of a small feature map).
//   - Not done: a 1x1 adaptive output makes one thread sum a whole plane while the rest of
//     the GPU idles; a block per output with the tree of reduce.cuh would spread that, but
//     the pyramid-pooling planes it meets are small (e.g. 32x64).

// floor(a / b) for b > 0 (C++ division truncates toward zero instead).
__device__ int floor_div(int a, int b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Each output is the window sum divided by KH*KW (padding counts as zeros).
template <typename T>
__global__ void avg_pool2d_forward(const T* x, int P, int H, int W, int KH, int KW,
                                   int SH, int SW, int PH, int PW, int OH, int OW, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int p = i / (OW * OH);
    const int h0 = max(oh * SH - PH, 0), h1 = min(oh * SH - PH + KH, H);
    const int w0 = max(ow * SW - PW, 0), w1 = min(ow * SW - PW + KW, W);
    const T* plane = x + p * H * W;
    T s = 0;
    for (int h = h0; h < h1; ++h)
        for (int w = w0; w < w1; ++w)
            s += plane[h * W + w];
    y[i] = s / (T)(KH * KW);
}

// Gather: gx[p, h, w] sums gy over the outputs whose windows contain (h, w).
template <typename T>
__global__ void avg_pool2d_backward(const T* gy, int P, int H, int W, int KH, int KW,
                                    int SH, int SW, int PH, int PW, int OH, int OW, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * H * W) return;
    const int w = i % W;
    const int h = i / W % H;
    const int p = i / (W * H);
    const int oh0 = max(floor_div(h + PH - KH, SH) + 1, 0), oh1 = min((h + PH) / SH + 1, OH);
    const int ow0 = max(floor_div(w + PW - KW, SW) + 1, 0), ow1 = min((w + PW) / SW + 1, OW);
    const T* g = gy + p * OH * OW;
    T s = 0;
    for (int oh = oh0; oh < oh1; ++oh)
        for (int ow = ow0; ow < ow1; ++ow)
            s += g[oh * OW + ow];
    gx[i] = s / (T)(KH * KW);
}

// Each output averages its bin [floor(i*H/OH), ceil((i+1)*H/OH)) in both axes.
template <typename T>
__global__ void adaptive_avg_pool2d_forward(const T* x, int P, int H, int W, int OH, int OW, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int p = i / (OW * OH);
    const int h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
    const int w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
    const T* plane = x + p * H * W;
    T s = 0;
    for (int h = h0; h < h1; ++h)
        for (int w = w0; w < w1; ++w)
            s += plane[h * W + w];
    y[i] = s / (T)((h1 - h0) * (w1 - w0));
}

// Gather: gx[p, h, w] sums gy/bin_area over the bins that contain (h, w).
template <typename T>
__global__ void adaptive_avg_pool2d_backward(const T* gy, int P, int H, int W, int OH, int OW, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * H * W) return;
    const int w = i % W;
    const int h = i / W % H;
    const int p = i / (W * H);
    const int oh0 = h * OH / H, oh1 = ((h + 1) * OH - 1) / H + 1;
    const int ow0 = w * OW / W, ow1 = ((w + 1) * OW - 1) / W + 1;
    const T* g = gy + p * OH * OW;
    T s = 0;
    for (int oh = oh0; oh < oh1; ++oh) {
        const int bin_h = ((oh + 1) * H + OH - 1) / OH - oh * H / OH;
        for (int ow = ow0; ow < ow1; ++ow) {
            const int bin_w = ((ow + 1) * W + OW - 1) / OW - ow * W / OW;
            s += g[oh * OW + ow] / (T)(bin_h * bin_w);
        }
    }
    gx[i] = s;
}
