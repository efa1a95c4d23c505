// 2-D convolution (groups == 1, no bias) on the GPU: the im2col and col2im kernels.
//
// The math and the driver (batched matrix products in cuBLAS) are in kernels.ops.conv2d_*,
// shared with the CPU; this file holds the two data-movement kernels, over the whole batch:
//
//     col[(c, kh, kw), n, (oh, ow)] = x[n, c, ih, iw]     ih = oh*sh - ph + kh*dh,
//                                                         iw = ow*sw - pw + kw*dw (0 outside)
//     gx[n, c, ih, iw] = sum of the gcol entries that im2col copied from x[n, c, ih, iw]
//
// Shapes: x, gx (N, C, H, W); col, gcol (C*KH*KW, N, OH, OW): the batch inside each row of col,
// so that one 2-D cuBLAS GEMM takes every image (kernels/ops.py says what that buys).
//
// Thread-to-index mapping (one thread per element written, 256 per block):
//
//     im2col:  thread i -> col element i, decoded as (c, kh, kw, n, oh, ow), ow fastest
//     col2im:  thread i -> gx element i, decoded as (n, c, ih, iw), iw fastest
//
// Consecutive threads take consecutive ow (iw), so their reads and writes are neighbours in
// memory (coalesced) whenever the stride is 1.
//
// Pseudo-loop (what the grid of threads does together):
//
//     im2col:  for c, kh, kw, n, oh, ow in parallel:
//                  ih = oh*sh - ph + kh*dh;  iw = ow*sw - pw + kw*dw
//                  col[c, kh, kw, n, oh, ow] = x[n, c, ih, iw] if inside else 0
//
//     col2im (the reverse gather: who read x[n, c, ih, iw]?):
//              for n, c, ih, iw in parallel:
//                  s = 0
//                  for kh:  oh = (ih + ph - kh*dh) / sh   (skip unless an integer in [0, OH))
//                      for kw:  ow = (iw + pw - kw*dw) / sw   (same test)
//                          s += gcol[c, kh, kw, n, oh, ow]
//                  gx[n, c, ih, iw] = s
//
// col2im is a gather, not a scatter: a scatter (one thread per gcol element adding into gx)
// would need atomicAdd, because up to KH*KW gcol elements land on the same pixel; the gather
// gives each gx element to exactly one thread, which writes it once.
//
// Optimizations:
//   - The whole batch in one launch each, so the launches per convolution do not grow with N
//     (col then holds N images' windows: memory traded for launches).
//   - The gather has no atomics and writes every gx element exactly once (no zero-fill).
//   - The batch inside each row of col, built once. The simple version wrote col as
//     (N, C*KH*KW, OH, OW) in forward and again in backward, where the weight gradient needed
//     col transposed per image: a strided copy CuPy makes before a batched GEMM (18 sectors per
//     request), then a sum over the images. Now forward, backward-input and backward-weight
//     are one 2-D GEMM each over (C*KH*KW, N*OH*OW) (kernels/ops.py), and the forward's col
//     serves the backward. Training step, batch 12 at 1024x1024 on an H100, estimated
//     (uncalibrated): im2col 6 launches 2.59 ms -> 3 launches 1.48 ms (an index division more
//     per element: n moved inside); the transposed copies, 3.94 ms, are gone; the reorders of
//     y and gy between NCHW and the batch inside that replace them are coalesced (4 sectors
//     per request). The price: the 3 dense convolutions keep 849 MB of columns for backward.
//   - Not done: fusing im2col into the GEMM's tile loads (implicit GEMM, as cuDNN does),
//     which would never write col to memory at all.

// Fill col (C*KH*KW, N, OH, OW) from the images x (N, C, H, W).
template <typename T>
__global__ void im2col(const T* x, int N, int C, int H, int W, int KH, int KW,
                       int sh, int sw, int ph, int pw, int dh, int dw,
                       int OH, int OW, T* col)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C * KH * KW * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int n = i / (OW * OH) % N;
    const int r = i / (OW * OH * N);  // the row of col: (c, kh, kw)
    const int kw = r % KW;
    const int kh = r / KW % KH;
    const int c = r / (KW * KH);
    const int ih = oh * sh - ph + kh * dh;
    const int iw = ow * sw - pw + kw * dw;
    const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
    col[i] = inside ? x[((n * C + c) * H + ih) * W + iw] : T(0);
}

// Sum gcol (C*KH*KW, N, OH, OW) back into the image gradients gx (N, C, H, W), a pixel per thread.
template <typename T>
__global__ void col2im(const T* gcol, int N, int C, int H, int W, int KH, int KW,
                       int sh, int sw, int ph, int pw, int dh, int dw,
                       int OH, int OW, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C * H * W) return;
    const int iw = i % W;
    const int ih = i / W % H;
    const int c = i / (W * H) % C;  // gcol's rows for it start at c*KH*KW
    const int n = i / (W * H * C);
    T s = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int th = ih + ph - kh * dh;  // = oh*sh if output row oh read this pixel
        if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
        const int oh = th / sh;
        for (int kw = 0; kw < KW; ++kw) {
            const int tw = iw + pw - kw * dw;
            if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
            const int ow = tw / sw;
            s += gcol[((((c * KH + kh) * KW + kw) * N + n) * OH + oh) * OW + ow];
        }
    }
    gx[i] = s;
}
