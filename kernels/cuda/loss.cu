// Per-pixel cross-entropy (softmax + negative log-likelihood) on the GPU.
//
// Math. For pixel (n, h, w) with logits z_c = logits[n, c, h, w] and class t = target[n, h, w]:
//
//     m      = max_c z_c                              (subtracted so exp never overflows)
//     s      = sum_c exp(z_c - m);   lse = m + log(s)  (log of the softmax denominator)
//     prob_c = exp(z_c - m) / s                       (softmax)
//     loss   = weight[t] * (lse - z_t)                (= -weight[t] * log prob_t)
//
// and loss = 0 where t == ignore_index. Differentiating:
//
//     glogits[n, c, h, w] = gloss[n, h, w] * weight[t] * (prob_c - [c == t])
//
// (0 where ignored). The forward writes prob, which is all the backward needs: no
// exponential there, and the logits can be freed after the forward (PyTorch keeps an array
// of the same size, log_softmax's output).
//
// Shapes. logits, prob, glogits: (N, C, H, W); target: (N, H, W) of class indices, L =
// unsigned char (uint8 labels, as the loader makes them) or long long (int64); weight (C,)
// unless weighted is 0 (every class 1); gloss: (N, H, W), or one value for every pixel when
// gloss_step is 0 (the gradient of a mean, not copied out to every pixel); loss: (N, H, W).
// Floats share the dtype T of logits. Pixel p = n*HW + hw; its class c logit sits at
// logits[(n*C + c)*HW + hw], HW apart.
//
// Thread-to-index mapping (256 threads per block):
//
//     forward:   thread p -> pixel p, looping over the C classes
//     backward:  thread i -> glogits element i, decoded (n, c, hw), hw fastest
//
// The C logits of one pixel are HW apart, but neighbouring threads take neighbouring pixels,
// so at every step of the class loop a warp reads (and writes) 32 consecutive values: coalesced.
//
// Pseudo-loop (forward):
//
//     for p in parallel:
//         m = max_c z[c];   s = sum_c exp(z[c] - m)
//         for c: prob[c] = exp(z[c] - m) / s
//         loss[p] = 0 if t == ignore_index else weight[t] * (m + log(s) - z[t])
//
// Pseudo-loop (backward):
//
//     for n, c, hw in parallel:
//         coef = 0 if t == ignore_index else gloss[p] * weight[t]
//         glogits = coef * prob  -  (coef if c == t else 0)
//
// Target check. A class index outside [0, C) (other than ignore_index) would read outside
// weight and logits. The kernels are the only code that looks at every target on the GPU,
// so they check it, but a kernel cannot raise an exception, and reading a flag back after
// each launch would make the host wait for the GPU twice a loss. So a bad pixel records
// itself with atomicMin(first_bad, check << 32 | p) in a flag that stays on the device, and
// writes nothing; the launcher reads the flag at the next read from the device the program
// makes anyway (as a GPU reports a device-side assert) and raises a ValueError there. The
// minimum names the first launch and its first bad pixel, the same on every run.
//
// Optimizations:
//   - One pass over a pixel's logits for the max, one for the sum and one writing prob
//     (the exponential taken again rather than stored and read back: on a GPU memory
//     costs more than arithmetic), all coalesced across the warp.
//   - The backward is one multiply-add per element: no exponential, no max or sum again.
//   - Ignored pixels skip the exponential in the backward.
//   - Not done: an online softmax (running max and rescaled sum in one pass) would halve the
//     forward's reads.

// Stable softmax per pixel, then the weighted negative log-likelihood of the target.
template <typename T, typename L>
__global__ void cross_entropy_forward(const T* logits, const L* target, const T* weight, int weighted,
                                      long long ignore_index, int N, int C, int HW,
                                      T* loss, T* prob, long long check, long long* first_bad)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= N * HW) return;
    const int first = (p / HW) * C * HW + p % HW;  // class c of this pixel at [first + c * HW]
    const T* z = logits + first;
    T m = z[0];
    for (int c = 1; c < C; ++c) m = fmax(m, z[c * HW]);
    T s = 0;
    for (int c = 0; c < C; ++c) s += exp(z[c * HW] - m);
    const T inv = T(1) / s;
    for (int c = 0; c < C; ++c) prob[first + c * HW] = exp(z[c * HW] - m) * inv;
    const long long t = target[p];
    if (t == ignore_index) {
        loss[p] = 0;
        return;
    }
    if (t < 0 || t >= C) {
        atomicMin(first_bad, check << 32 | p);
        return;
    }
    loss[p] = (weighted ? weight[t] : T(1)) * (m + log(s) - z[t * HW]);
}

// coef * (prob - onehot) per element, coef = gloss * weight[t] (0 if ignored).
template <typename T, typename L>
__global__ void cross_entropy_backward(const T* gloss, int gloss_step, const T* prob, const L* target,
                                       const T* weight, int weighted, long long ignore_index,
                                       int N, int C, int HW, T* glogits, long long check,
                                       long long* first_bad)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C * HW) return;
    const int hw = i % HW;
    const int c = i / HW % C;
    const int p = i / (HW * C) * HW + hw;
    const long long t = target[p];
    if (t == ignore_index) {
        glogits[i] = 0;
        return;
    }
    if (t < 0 || t >= C) {
        atomicMin(first_bad, check << 32 | p);
        return;
    }
    const T coef = gloss[p * gloss_step] * (weighted ? weight[t] : T(1));
    glogits[i] = coef * prob[i] - (c == t ? coef : T(0));
}

// ---------------------------------------------------------------------------------------------
// The fused heads: F.upsample_cross_entropy, i.e. cross_entropy(interpolate(x, (OH, OW))),
// without the full-resolution logits, probabilities or their gradient in memory.
//
// Math. z_c(oh, ow) = bilinear_at(x[n, c], source_index(oh), source_index(ow)) (upsample.cu),
// then the loss above with lse = m + log(s) kept per pixel (one value, not C). The gradient is
// the bilinear backward of glogits, done in two separable passes, each a gather in a fixed order:
//
//     g_c(oh, ow)     = coef * (exp(z_c - lse) - [c == t])      (coef = gloss * weight[t], 0 if ignored)
//     rows[n,c,oh,w]  = sum over ow reading column w:  weight_of(source_index(ow), w) * g_c(oh, ow)
//     gx[n,c,h,w]     = sum over oh reading row h:     weight_of(source_index(oh), h) * rows[n,c,oh,w]
//
// The second line is this file's backward_width; the third is upsample.cu's bilinear_backward
// on rows (OH x W) with the width left as it is. rows is 1/r of full resolution (1/8 for the
// main head), the only full-height array of the backward; g is never stored.
//
// Shapes. x, gx: (N, C, H, W) low resolution; target, loss, lse, gloss: (N, OH, OW).
//
// Thread-to-index mapping (256 threads per block):
//
//     forward:         thread p -> full-resolution pixel p = (n, oh, ow), ow fastest
//     backward_width:  thread i -> (n, oh, w), w fastest; it writes rows[n, c, oh, w] for every c
//
// Pseudo-loop (backward_width):
//
//     for n, oh, w in parallel:
//         for each chunk of CHUNK pixels ow in [first_output_at(w - 1), first_output_at(w + 1)):
//             a[k] = weight_of(source_index(ow), w) * coef(n, oh, ow);  lse[k], t[k]   (registers)
//             for c:
//                 tl, tc, tr = rows sh.i0 and sh.i1 of x[n, c] mixed, at columns w-1, w, w+1
//                 s = 0 (first chunk) or rows[n, c, oh, w]
//                 for k: s += a[k] * (exp(z_k(tl, tc, tr) - lse[k]) - [c == t[k]])
//                 rows[n, c, oh, w] = s
//
// Every pixel that reads column w reads it as i0 or i1, so its other column is w-1 or w+1:
// 3 row-mixed values per class serve all of a thread's about 2/r pixels, and z_k is the same
// two FMAs bilinear_at does. Each thread owns its C outputs: no atomics, a fixed order.
//
// The forward takes the softmax online (a running max m and sum s rescaled when m grows):
// one interpolation and one exp per class instead of a max pass and a sum pass, as every
// class costs 4 loads and 6 FMA to interpolate. The CPU twin keeps the two passes: over a row
// they vectorize, and a branch per element would not.
//
// What the unfused heads did, and what fusing bought: bilinear forward wrote the full-resolution
// logits (N*C*OH*OW), cross-entropy read them and wrote prob (as many), its backward read prob
// and wrote glogits (as many), and bilinear backward read glogits: 4 full-resolution C-channel
// tensors per head. Here the forward writes 2 values per pixel (loss, lse) and the backward
// reads 2-3 and writes rows (C values per 1/r pixels); the low-resolution x (C values per
// r*r pixels) stays in L1/L2. The training step at batch 12, 1024x1024, 3 heads, H100, all
// estimated (uncalibrated) by `python -m fastscnn.benchmark --device cuda --estimate H100`:
//
//     before: bilinear forward + backward, cross-entropy forward + backward (12 launches)
//             3.42 + 5.21 + 2.18 + 2.83 = 13.6 ms, 18.1 GB unique bytes, 2.0-18.8 sectors/request
//     fused, first version (two softmax passes; backward_width a pixel at a time, adding
//             into rows in global memory for every pixel and class): 1.9 + 3.66 ms
//     now:    forward 1.39 ms (online softmax), backward_width 2.64 ms (chunks in registers,
//             3 row mixes per class), 2.4 and 4.1 sectors/request, 1.65 GB; + the height
//             passes, in "bilinear backward" with the 5 small resizes of the pyramid pooling
//             and the fusion (1.19 ms for all 8): about 5.2 ms; the step 51.8 -> 43.6 ms
//
// Both kernels are bound by instructions, not memory (the roof of 1.65 GB is about 0.6 ms):
// C exps per pixel in the forward and 2C in backward_width, which visits each pixel from
// both columns it reads. Not done: let only a pixel's left column handle it and write two
// partial sums that a height pass of its own adds (half the exps, and no binary searches
// along the width in the height pass).

#include "bilinear.cuh"

// Per full-resolution pixel: interpolate the C logits, then the loss, and lse for the backward.
template <typename T, typename L>
__global__ void upsample_cross_entropy_forward(const T* x, const L* target, const T* weight, int weighted,
                                               long long ignore_index, int N, int C, int H, int W, int OH,
                                               int OW, T rh, T rw, int align_corners, T* loss, T* lse,
                                               long long check, long long* first_bad)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= N * OH * OW) return;
    const int ow = p % OW;
    const int oh = p / OW % OH;
    const T* z = x + p / (OW * OH) * C * H * W;  // class c's plane at z + c * H * W
    const Source<T> sh = source_index(oh, H, OH, rh, align_corners);
    const Source<T> sw = source_index(ow, W, OW, rw, align_corners);
    T m = bilinear_at(z, W, sh, sw), s = 1;  // online softmax: s = sum_c exp(z_c - m) so far
    for (int c = 1; c < C; ++c) {
        const T zc = bilinear_at(z + c * H * W, W, sh, sw);
        if (zc > m) {
            s = s * exp(m - zc) + 1;
            m = zc;
        } else {
            s += exp(zc - m);
        }
    }
    const T l = m + log(s);
    lse[p] = l;
    const long long t = target[p];
    if (t == ignore_index) {
        loss[p] = 0;
        return;
    }
    if (t < 0 || t >= C) {
        atomicMin(first_bad, check << 32 | p);
        return;
    }
    loss[p] = (weighted ? weight[t] : T(1)) * (l - bilinear_at(z + t * H * W, W, sh, sw));
}

// rows[n, c, oh, w]: the softmax gradient of the pixels of row oh that read column w, weighted.
// The pixels go CHUNK at a time: their weighted coefficient a, lse, class and x-weights wait
// in registers while the class loop runs, and each class reads its 3 row-mixed columns once.
constexpr int CHUNK = 8;

template <typename T, typename L>
__global__ void upsample_cross_entropy_backward_width(const T* gloss, int gloss_step, const T* x, const T* lse,
                                                      const L* target, const T* weight, int weighted,
                                                      long long ignore_index, int N, int C, int H, int W,
                                                      int OH, int OW, T rh, T rw, int align_corners, T* rows,
                                                      long long check, long long* first_bad)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * OH * W) return;
    const int w = i % W;
    const int oh = i / W % OH;
    const int n = i / (W * OH);
    const Source<T> sh = source_index(oh, H, OH, rh, align_corners);
    const int begin = first_output_at(w - 1, W, OW, rw, align_corners);
    const int end = first_output_at(w + 1, W, OW, rw, align_corners);
    T* out = rows + (n * C * OH + oh) * W + w;  // class c's output at out[c * OH * W]
    for (int first = begin; first == begin || first < end; first += CHUNK) {  // once at least: write 0
        T a[CHUNK], l[CHUNK], l0[CHUNK], l1[CHUNK];
        int t[CHUNK];
        bool from_left[CHUNK], to_right[CHUNK];  // reads column w-1 as i0, w+1 as i1 (else w)
        for (int k = 0; k < CHUNK; ++k) {
            const int ow = first + k, p = (n * OH + oh) * OW + ow;
            a[k] = 0;  // 0: no pixel, or one that adds nothing (ignored, weight 0)
            if (ow >= end) continue;
            const long long tp = target[p];
            if (tp == ignore_index) continue;
            if (tp < 0 || tp >= C) {
                atomicMin(first_bad, check << 32 | p);
                return;
            }
            t[k] = (int)tp;
            const Source<T> sw = source_index(ow, W, OW, rw, align_corners);
            a[k] = weight_of(sw, w) * gloss[p * gloss_step] * (weighted ? weight[t[k]] : T(1));
            l[k] = lse[p], l0[k] = sw.l0, l1[k] = sw.l1, from_left[k] = sw.i0 < w, to_right[k] = sw.i1 > w;
        }
        for (int c = 0; c < C; ++c) {
            const T* row0 = x + ((n * C + c) * H + sh.i0) * W;
            const T* row1 = x + ((n * C + c) * H + sh.i1) * W;
            const int left = max(w - 1, 0), right = min(w + 1, W - 1);
            const T tl = sh.l0 * row0[left] + sh.l1 * row1[left];  // as bilinear_at mixes rows
            const T tc = sh.l0 * row0[w] + sh.l1 * row1[w];
            const T tr = sh.l0 * row0[right] + sh.l1 * row1[right];
            T s = first == begin ? T(0) : out[c * OH * W];
            for (int k = 0; k < CHUNK; ++k) {
                if (a[k] == T(0)) continue;
                const T z = l0[k] * (from_left[k] ? tl : tc) + l1[k] * (to_right[k] ? tr : tc);
                s += a[k] * (exp(z - l[k]) - (c == t[k] ? T(1) : T(0)));
            }
            out[c * OH * W] = s;
        }
    }
}
