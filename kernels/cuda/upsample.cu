// Bilinear resizing (F.interpolate(mode="bilinear")) on the GPU.
//
// Math. Along one axis, output index d reads the source coordinate src (r is the ratio of
// source pixels per output pixel the caller computed with PyTorch's rule):
//
//     align_corners=true:   src = d * r
//     align_corners=false:  src = max((d + 0.5) * r - 0.5, 0)
//     i0 = min(int(src), in - 1);   i1 = i0 + 1 if i0 < in - 1 else i0
//     l1 = clamp(src - i0, 0, 1);   l0 = 1 - l1
//
// (when out == in PyTorch copies: i0 = i1 = d, l0 = 1, l1 = 0). In 2-D the weights multiply:
//
//     y[oh, ow] = lw0*(lh0*x[h0, w0] + lh1*x[h1, w0]) + lw1*(lh0*x[h0, w1] + lh1*x[h1, w1])
//
// The map is linear in x, so the gradient is its transpose: each gy[oh, ow] goes back to
// the same four source pixels with the same four weights.
//
// Shapes. x, gx: (N, C, H, W); y, gy: (N, C, OH, OW); seen as P = N*C planes.
//
// Thread-to-index mapping: one thread per element written, 256 per block,
//
//     forward:   thread i -> y element i,  decoded (p, oh, ow), ow fastest
//     backward:  thread i -> gx element i, decoded (p, h, w), w fastest
//
// Each thread computes its source indices and weights itself (source_index below) instead
// of reading the CPU's per-axis tables: a few flops are cheaper than table loads here.
//
// Pseudo-loop (forward):
//
//     for p, oh, ow in parallel:
//         (h0, h1, lh0, lh1) = source_index(oh);  (w0, w1, lw0, lw1) = source_index(ow)
//         y[p, oh, ow] = as in the formula above
//
// Backward: a gather, not atomicAdd. The scatter "add lh*lw*gy into four pixels" would need
// atomicAdd (up to (2/r)^2 outputs hit the same pixel when upsampling), whose order of
// additions, hence the rounding, changes from run to run. Instead each thread owns one input
// pixel and finds the outputs that read it: i0(d) never decreases as d grows, and input h
// is read (as i0 or i1) exactly by the outputs with i0(d) in {h-1, h}, a contiguous range
// [first_output_at(h-1), first_output_at(h+1)) found by binary search over d, with the same
// source_index the forward uses (so the two can never disagree about who read what):
//
//     for p, h, w in parallel:
//         s = 0
//         for oh in [first_output_at(h-1), first_output_at(h+1)):            (rows)
//             row = 0
//             for ow in [first_output_at(w-1), first_output_at(w+1)):        (columns)
//                 row += weight of w in source_index(ow) * gy[p, oh, ow]
//             s += weight of h in source_index(oh) * row
//         gx[p, h, w] = s
//
// The weight of h in a source index is l0 if i0 == h, plus l1 if i1 == h (both at the last
// pixel, where i0 == i1). The ranges hold about 2/r outputs per axis, so a pixel does about
// (2/r)^2 multiply-adds, as many as the scatter would have sent it.
//
// Optimizations:
//   - Index math per thread, no tables, no atomics, every output written exactly once.
//   - Row sums first, then one weight per row: 2/r + (2/r)^2 multiplies, not 2*(2/r)^2.
//   - Multiplications in source_index are rounded on their own (mul_rn), not fused into an
//     FMA with the following subtraction: the CPU rounds twice too, so at an exact pixel
//     boundary both backends pick the same neighbours.

// a*b rounded by itself: the compiler may not contract it with a following add into an FMA.
__device__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// Output d of an axis reads input i0 with weight l0 and input i1 with weight l1.
template <typename T>
struct Source {
    int i0, i1;
    T l0, l1;
};

template <typename T>
__device__ Source<T> source_index(int d, int in_size, int out_size, T ratio, int align_corners)
{
    if (in_size == out_size) return {d, d, T(1), T(0)};
    const T src = align_corners ? mul_rn((T)d, ratio)
                                : fmax(mul_rn((T)d + T(0.5), ratio) - T(0.5), T(0));
    const int i0 = min((int)src, in_size - 1);
    const T l1 = fmin(fmax(src - (T)i0, T(0)), T(1));
    return {i0, i0 < in_size - 1 ? i0 + 1 : i0, T(1) - l1, l1};
}

// The weight with which output `s` reads input index h (0 if it does not read it).
template <typename T>
__device__ T weight_of(const Source<T>& s, int h)
{
    return (s.i0 == h ? s.l0 : T(0)) + (s.i1 == h ? s.l1 : T(0));
}

// The first output d with i0(d) >= v (out_size if none): binary search, i0 never decreases.
template <typename T>
__device__ int first_output_at(int v, int in_size, int out_size, T ratio, int align_corners)
{
    int lo = 0, hi = out_size;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (source_index(mid, in_size, out_size, ratio, align_corners).i0 < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

// y[p, oh, ow] from the four source pixels, mixing the two rows first as the CPU does.
template <typename T>
__global__ void bilinear_forward(const T* x, int P, int H, int W, int OH, int OW,
                                 T rh, T rw, int align_corners, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int p = i / (OW * OH);
    const Source<T> sh = source_index(oh, H, OH, rh, align_corners);
    const Source<T> sw = source_index(ow, W, OW, rw, align_corners);
    const T* row0 = x + (p * H + sh.i0) * W;
    const T* row1 = x + (p * H + sh.i1) * W;
    const T t0 = sh.l0 * row0[sw.i0] + sh.l1 * row1[sw.i0];
    const T t1 = sh.l0 * row0[sw.i1] + sh.l1 * row1[sw.i1];
    y[i] = sw.l0 * t0 + sw.l1 * t1;
}

// Gather: gx[p, h, w] sums weight * gy over the outputs that read input (h, w).
template <typename T>
__global__ void bilinear_backward(const T* gy, int P, int H, int W, int OH, int OW,
                                  T rh, T rw, int align_corners, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * H * W) return;
    const int w = i % W;
    const int h = i / W % H;
    const int p = i / (W * H);
    const int oh0 = first_output_at(h - 1, H, OH, rh, align_corners);
    const int oh1 = first_output_at(h + 1, H, OH, rh, align_corners);
    const int ow0 = first_output_at(w - 1, W, OW, rw, align_corners);
    const int ow1 = first_output_at(w + 1, W, OW, rw, align_corners);
    const T* g = gy + p * OH * OW;
    T s = 0;
    for (int oh = oh0; oh < oh1; ++oh) {
        T row = 0;
        for (int ow = ow0; ow < ow1; ++ow)
            row += weight_of(source_index(ow, W, OW, rw, align_corners), w) * g[oh * OW + ow];
        s += weight_of(source_index(oh, H, OH, rh, align_corners), h) * row;
    }
    gx[i] = s;
}
