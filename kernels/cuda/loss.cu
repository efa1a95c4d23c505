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

// Whether class index t is out of [0, C); if so, records pixel p in the flag (see Target check).
__device__ bool bad_target(long long t, int C, long long check, int p, long long* first_bad)
{
    if (t >= 0 && t < C) return false;
    atomicMin(first_bad, check << 32 | p);
    return true;
}

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
    if (t == ignore_index)
        loss[p] = 0;
    else if (!bad_target(t, C, check, p, first_bad))
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
    } else if (!bad_target(t, C, check, p, first_bad)) {
        const T coef = gloss[p * gloss_step] * (weighted ? weight[t] : T(1));
        glogits[i] = coef * prob[i] - (c == t ? coef : T(0));
    }
}

// ---------------------------------------------------------------------------------------------
// The fused heads: F.upsample_cross_entropy, i.e. cross_entropy(interpolate(x, (OH, OW))),
// without the full-resolution logits, probabilities or their gradient in memory.
//
// Math. z_c(oh, ow) = bilinear_at(x[n, c], source_index(oh), source_index(ow)) (upsample.cu),
// then the loss above with lse = m + log(s) kept per pixel (one value, not C). The gradient is
// the bilinear backward of glogits, done in two separable passes in a fixed order. Pixel ow
// reads columns i0(ow) and i1(ow) = i0 + 1 (or i0 at the last column) with weights l0, l1;
// the width pass visits it once, from its left column w = i0, and keeps two sums:
//
//     g_c(oh, ow)         = coef * (exp(z_c - lse) - [c == t])   (coef = gloss * weight[t], 0 if ignored)
//     pair[n,c,oh,0,w]    = sum over ow with i0 = w:  weight_of(source_index(ow), w) * g_c(oh, ow)
//     pair[n,c,oh,1,w]    = sum over ow with i0 = w < i1:  l1(ow) * g_c(oh, ow)     (for column w+1)
//     gx[n,c,h,w]         = sum over oh reading row h:  weight_of(source_index(oh), h)
//                                                       * (pair[n,c,oh,0,w] + pair[n,c,oh,1,w-1])
//
// The second and third lines are backward_width, the last backward_height. pair is 2/r of
// full resolution (r = 8 for the main head), the only full-height array of the backward; g is
// never stored.
//
// Shapes. x, gx: (N, C, H, W) low resolution; target, loss, lse, gloss: (N, OH, OW).
//
// Thread-to-index mapping (256 threads per block):
//
//     forward:          thread p -> full-resolution pixel p = (n, oh, ow), ow fastest
//     backward_width:   thread i -> (n, oh, w), w fastest; it writes pair[n, c, oh, :, w] for every c
//     backward_height:  thread i -> gx element (n, c, h, w), w fastest
//
// Pseudo-loop (backward_width, then backward_height):
//
//     for n, oh, w in parallel:
//         for each chunk of CHUNK pixels ow in [first_output_at(w), first_output_at(w + 1)):
//             a0[k], a1[k] = the pixel's weights for columns w, w+1, times coef;  lse[k], t[k]
//             for c:
//                 t0, t1 = rows sh.i0 and sh.i1 of x[n, c] mixed, at columns w and w+1
//                 for k: g = exp(l0[k] * t0 + l1[k] * t1 - lse[k]) - [c == t[k]]
//                        s0 += a0[k] * g;  s1 += a1[k] * g     (s0, s1 start at 0 or pair's)
//                 pair[n, c, oh, 0, w], pair[n, c, oh, 1, w] = s0, s1
//     for n, c, h, w in parallel:
//         for oh from first_output_at(h - 1) while i0(oh) <= h:
//             s += weight_of(source_index(oh), h) * (pair[.., oh, 0, w] + pair[.., oh, 1, w-1])
//
// z_k is the same two FMAs bilinear_at does, from 2 row-mixed values per class that serve all
// of a thread's about r pixels. Each thread owns its outputs: no atomics, a fixed order.
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
// reads 2-3 and writes pair (2C values per 1/r pixels); the low-resolution x (C values per
// r*r pixels) stays in L1/L2. The training step at batch 12, 1024x1024, 3 heads, H100, all
// estimated (uncalibrated) by `python -m fastscnn.benchmark --device cuda --estimate H100`:
//
//     before: bilinear forward + backward, cross-entropy forward + backward (12 launches)
//             3.42 + 5.21 + 2.18 + 2.83 = 13.6 ms, 18.1 GB unique bytes, 2.0-18.8 sectors/request
//     fused, first version (two softmax passes; backward_width a pixel at a time, adding
//             into rows in global memory for every pixel and class): 1.9 + 3.66 ms
//     second: forward 1.39 ms (online softmax), backward_width 2.64 ms (chunks in registers),
//             2.4 and 4.1 sectors/request, 1.65 GB; its width pass visited each pixel from
//             both columns it reads (2C exps, 3 row mixes per class), and its height pass was
//             upsample.cu's bilinear_backward on rows (OH x W), 4 binary searches a thread, two
//             along the width for nothing, and a weight-0 load per row
//     now:    each pixel once, from its left column (C exps), and a height pass of its own
//             (one binary search); for one 1/8 head, batch 12 at 1024x1024, traced on a
//             512x512 crop (tools/heads_steps.py): width 0.74 -> 0.44 ms (4.5 -> 3.9
//             sectors/request), height 0.21 -> 0.10 ms (4.5 -> 4.2 sectors/request, 2 loads
//             of pair a row); the head 1.41 -> 1.01 ms (the 1/32 head 1.25 -> 0.97 ms)
//             In the step's estimate: "fused heads" 4.03 ms (6 launches) + the 3 height
//             passes (0.44 of "bilinear backward"'s 1.19 ms) -> 3.30 ms (9 launches, 3.3
//             sectors/request, 2.3 GB); the step 33.0 ms
//
// All three kernels are bound by instructions, not memory: the forward's C interpolations and
// exps per pixel (0.46 ms a head against a 0.05 ms roof) are now the largest part. Not done: a
// forward that mixes rows once per low-resolution column, as backward_width does.

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
    if (t == ignore_index)
        loss[p] = 0;
    else if (!bad_target(t, C, check, p, first_bad))
        loss[p] = (weighted ? weight[t] : T(1)) * (l - bilinear_at(z + t * H * W, W, sh, sw));
}

// pair[n, c, oh, 0, w] and pair[n, c, oh, 1, w]: the softmax gradient of the pixels of row oh
// whose left column is w, weighted for column w and for column w+1. The pixels go CHUNK at a
// time: their weighted coefficients, lse and class wait in registers while the class loop
// runs, and each class mixes its 2 columns once.
constexpr int CHUNK = 8;

template <typename T, typename L>
__global__ void upsample_cross_entropy_backward_width(const T* gloss, int gloss_step, const T* x, const T* lse,
                                                      const L* target, const T* weight, int weighted,
                                                      long long ignore_index, int N, int C, int H, int W,
                                                      int OH, int OW, T rh, T rw, int align_corners, T* pair,
                                                      long long check, long long* first_bad)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * OH * W) return;
    const int w = i % W;
    const int oh = i / W % OH;
    const int n = i / (W * OH);
    const int right = min(w + 1, W - 1);  // the pixels' i1: w + 1, or w itself at the last column
    const Source<T> sh = source_index(oh, H, OH, rh, align_corners);
    const int begin = first_output_at(w, W, OW, rw, align_corners);
    const int end = first_output_at(w + 1, W, OW, rw, align_corners);
    T* out = pair + (n * C * OH + oh) * 2 * W + w;  // class c's two outputs at out[c * OH * 2 * W] and + W
    for (int first = begin; first == begin || first < end; first += CHUNK) {  // once at least: write 0
        T a0[CHUNK], a1[CHUNK], l[CHUNK], l0[CHUNK], l1[CHUNK];
        int t[CHUNK];
        for (int k = 0; k < CHUNK; ++k) {
            const int ow = first + k, p = (n * OH + oh) * OW + ow;
            a0[k] = a1[k] = 0;  // 0: no pixel, or one that adds nothing (ignored, weight 0)
            if (ow >= end) continue;
            const long long tp = target[p];
            if (tp == ignore_index) continue;
            if (bad_target(tp, C, check, p, first_bad)) return;
            t[k] = (int)tp;
            const Source<T> sw = source_index(ow, W, OW, rw, align_corners);
            const T coef = gloss[p * gloss_step] * (weighted ? weight[t[k]] : T(1));
            a0[k] = weight_of(sw, w) * coef;
            a1[k] = right > w ? sw.l1 * coef : T(0);
            l[k] = lse[p], l0[k] = sw.l0, l1[k] = sw.l1;
        }
        for (int c = 0; c < C; ++c) {
            const T* row0 = x + ((n * C + c) * H + sh.i0) * W;
            const T* row1 = x + ((n * C + c) * H + sh.i1) * W;
            const T t0 = sh.l0 * row0[w] + sh.l1 * row1[w];  // as bilinear_at mixes rows
            const T t1 = sh.l0 * row0[right] + sh.l1 * row1[right];
            T s0 = first == begin ? T(0) : out[c * OH * 2 * W];
            T s1 = first == begin ? T(0) : out[c * OH * 2 * W + W];
            for (int k = 0; k < CHUNK; ++k) {
                if (a0[k] == T(0) && a1[k] == T(0)) continue;
                const T g = exp(l0[k] * t0 + l1[k] * t1 - l[k]) - (c == t[k] ? T(1) : T(0));
                s0 += a0[k] * g;
                s1 += a1[k] * g;
            }
            out[c * OH * 2 * W] = s0;
            out[c * OH * 2 * W + W] = s1;
        }
    }
}

// gx[n, c, h, w]: the rows oh that read row h, each weighted, of column w's two partial sums
// (its own pixels' and those of column w-1). One thread per element; no search along the width.
// L, the label type, only keeps this file's kernels one list of instantiations.
template <typename T, typename L>
__global__ void upsample_cross_entropy_backward_height(const T* pair, int P, int H, int W, int OH, T rh,
                                                       int align_corners, T* gx)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= P * H * W) return;
    const int w = i % W;
    const int h = i / W % H;
    const T* g = pair + i / (W * H) * OH * 2 * W + w;  // row oh's two partials at g[oh * 2 * W] and g[... + W - 1]
    T s = 0;
    for (int oh = first_output_at(h - 1, H, OH, rh, align_corners); oh < OH; ++oh) {
        const Source<T> sh = source_index(oh, H, OH, rh, align_corners);
        if (sh.i0 > h) break;
        s += weight_of(sh, h) * (g[oh * 2 * W] + (w > 0 ? g[oh * 2 * W + W - 1] : T(0)));
    }
    gx[i] = s;
}
