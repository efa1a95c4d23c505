// 2-D convolution (groups == 1, no bias) on the GPU: im2col + one matrix product per image.
//
// Math (PyTorch's F.conv2d, zero padding, cross-correlation):
//
//     y[n, o, oh, ow] = sum_{c, kh, kw} w[o, c, kh, kw] * x[n, c, ih, iw]
//         ih = oh*sh - ph + kh*dh,   iw = ow*sw - pw + kw*dw        (x is 0 outside the image)
//
// Shapes: x (N, C, H, W), w (O, C, KH, KW), y (N, O, OH, OW),
// OH = (H + 2*ph - dh*(KH-1) - 1) / sh + 1 (and OW alike).
//
// im2col turns the sum into a matrix product. For one image, build
// col[(c, kh, kw), (oh, ow)] = x[c, ih, iw], a (C*KH*KW, OH*OW) matrix; then (conv2d.py)
//
//     forward          y[n] = W @ col                 W = w.reshape(O, C*KH*KW), cuBLAS
//     backward-input   gcol = W.T @ gy[n]             then col2im gathers gcol into gx[n]
//     backward-weight  gW  += gy[n] @ col.T           summed over the batch in order
//
// This file holds the two data-movement kernels; the arithmetic is in cupy.matmul.
//
// Thread-to-index mapping (one image; one thread per element written, 256 per block):
//
//     im2col:  thread i -> col element i, decoded as (c, kh, kw, oh, ow), ow fastest
//     col2im:  thread i -> gx element i, decoded as (c, ih, iw), iw fastest
//
// Consecutive threads take consecutive ow (iw), so their reads and writes are neighbours in
// memory (coalesced) whenever the stride is 1.
//
// Pseudo-loop (what the grid of threads does together):
//
//     im2col:  for c, kh, kw, oh, ow in parallel:
//                  ih = oh*sh - ph + kh*dh;  iw = ow*sw - pw + kw*dw
//                  col[c, kh, kw, oh, ow] = x[c, ih, iw] if inside else 0
//
//     col2im (the reverse gather: who read x[c, ih, iw]?):
//              for c, ih, iw in parallel:
//                  s = 0
//                  for kh:  oh = (ih + ph - kh*dh) / sh   (skip unless an integer in [0, OH))
//                      for kw:  ow = (iw + pw - kw*dw) / sw   (same test)
//                          s += gcol[c, kh, kw, oh, ow]
//                  gx[c, ih, iw] = s
//
// col2im is a gather, not a scatter: a scatter (one thread per gcol element adding into gx)
// would need atomicAdd, because up to KH*KW gcol elements land on the same pixel; the gather
// gives each gx element to exactly one thread, which writes it once.
//
// Optimizations:
//   - One image at a time with one reused col buffer, as on the CPU: memory is
//     C*KH*KW*OH*OW values, not N times that, and each GEMM is still large.
//   - The 1x1 / stride 1 / padding 0 case skips both kernels (col would be x[n] itself).
//   - The gather has no atomics and writes every gx element exactly once (no zero-fill).
//   - Not done: fusing im2col into the GEMM's tile loads (implicit GEMM, as cuDNN does),
//     which would never write col to memory at all.

// Fill col (C*KH*KW, OH, OW) from one image x (C, H, W).
template <typename T>
__global__ void im2col(const T* x, int C, int H, int W, int KH, int KW,
                       int sh, int sw, int ph, int pw, int dh, int dw,
                       int OH, int OW, T* col)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C * KH * KW * OH * OW) return;
    const int ow = i % OW;
    const int oh = i / OW % OH;
    const int r = i / (OW * OH);  // the row of col: (c, kh, kw)
    const int kw = r % KW;
    const int kh = r / KW % KH;
    const int c = r / (KW * KH);
    const int ih = oh * sh - ph + kh * dh;
    const int iw = ow * sw - pw + kw * dw;
    const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
    col[i] = inside ? x[(c * H + ih) * W + iw] : T(0);
}

// Sum gcol (C*KH*KW, OH, OW) back into one image gradient gx (C, H, W), one pixel per thread.
template <typename T>
__global__ void col2im(const T* gcol, int C, int H, int W, int KH, int KW,
                       int sh, int sw, int ph, int pw, int dh, int dw,
                       int OH, int OW, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= C * H * W) return;
    const int iw = i % W;
    const int ih = i / W % H;
    const int c = i / (W * H);
    T s = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int th = ih + ph - kh * dh;  // = oh*sh if output row oh read this pixel
        if (th < 0 || th % sh != 0 || th / sh >= OH) continue;
        const int oh = th / sh;
        for (int kw = 0; kw < KW; ++kw) {
            const int tw = iw + pw - kw * dw;
            if (tw < 0 || tw % sw != 0 || tw / sw >= OW) continue;
            const int ow = tw / sw;
            s += gcol[(((c * KH + kh) * KW + kw) * OH + oh) * OW + ow];
        }
    }
    gx[i] = s;
}
