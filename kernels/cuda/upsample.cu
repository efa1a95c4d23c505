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

// source_index, weight_of and first_output_at: shared with the fused heads of loss.cu.
#include "bilinear.cuh"

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
    y[i] = bilinear_at(x + p * H * W, W, sh, sw);
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
