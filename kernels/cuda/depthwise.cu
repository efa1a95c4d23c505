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
// these are direct kernels.
//
// Thread-to-index mapping (256 threads per block):
//
//     forward:          block b -> a 32 x 32 tile of y plane n*C + c; inside it, thread t
//                       -> column t % 32 and the 4 rows (t / 32)*4 .. (t / 32)*4 + 3
//     backward-input:   block b -> a 64 x 32 tile of gx plane n*C + c; inside it, thread t
//                       -> column t % 32 and the 8 rows (t / 32)*8 .. (t / 32)*8 + 7, so a
//                       warp's 32 lanes hold 32 neighbouring columns of the same 8 rows
//     backward-weight:  block (c, k) -> run k of 8 consecutive 32 x 32 tiles of channel c's
//                       outputs (over n, tile row, tile column); inside a tile, thread t
//                       -> column t % 32 and the 4 rows (t / 32)*4 .. (t / 32)*4 + 3, all taps
//
// Pseudo-loop (forward). A tile of y reads only a window of x (its rows and columns times
// the stride, plus the taps' halo), so a block copies that window to shared memory once, 0
// outside the image, and every tap reads it from there (XWindow, shared with backward-weight):
//
//     for n, c, tile in parallel:                               (a block each)
//         window = x[n, c, oh0*sh - ph + (0 .. 31*sh + (KH-1)*dh), ow0*sw - pw + ...]
//         for ow, 4 rows oh of the tile in parallel:            (a thread each)
//             s[0..3] = 0
//             for kh, kw:  for r = 0..3:                    (oh_r = the thread's row r)
//                 s[r] += w[c, 0, kh, kw] * window[(oh_r - oh0)*sh + kh*dh, (ow - ow0)*sw + kw*dw]
//             y[n, c, oh_r, ow] = s[r]
//
// Backward-input is the gather that reverses it: input row ih receives from output row
// oh = (ih + ph - kh*dh) / sh when that is an integer in [0, OH). A tile of gx reads only a
// window of gy (its rows and columns, moved back by the taps, plus a halo), so a block
// copies that window to shared memory once and every tap reads it from there:
//
//     for n, c, tile in parallel:                                (a block each)
//         window = gy[n, c, oh0:oh1, ow0:ow1]                    (into shared memory)
//         for iw, ih0 of the tile in parallel:                   (a thread each: 8 rows)
//             s[0..7] = 0
//             for kh:  oh[r] = (ih0 + r + ph - kh*dh) / sh       (-1 unless an integer in [0, OH))
//                 for kw:  ow = (iw + pw - kw*dw) / sw           (skip unless an integer in [0, OW))
//                     for r:  s[r] += w[c, 0, kh, kw] * window[oh[r] - oh0, ow - ow0]
//             gx[n, c, ih0 + r, iw] = s[r]                       (for r = 0..7)
//
// Backward-weight sums N*OH*OW products for each of the C*KH*KW weights. Each output's
// gy meets its KH*KW inputs in the same window of x, so a block stages that window once
// and adds every tap from it, the taps' sums in registers:
//
//     for c, run k in parallel:                               (a block each)
//         acc[0..8] = 0                                       (per thread, in registers)
//         for tile in run k:                                  (n, oh0, ow0)
//             window = x[n, c, oh0*sh - ph + (0 .. 31*sh + (KH-1)*dh), ow0*sw - pw + ...]
//                                                             (into shared memory, 0 outside x)
//             for ow, 4 rows oh of the tile in parallel:      (a thread each)
//                 g = gy[n, c, oh, ow]
//                 for kh, kw:  acc[kh*KW + kw] += g * window[oh*sh + kh*dh, ow*sw + kw*dw]
//         partial[c, tap, k] = sum of acc[tap] over the block (a fixed-order tree)
//     for c, tap in parallel:  gw[c, tap] = sum_k partial[c, tap, k]  (sum_chunks, in order)
//
// A filter of more than 9 taps is summed in passes of 9 over the same tiles.
//
// Optimizations:
//   - Gathers, not scatters, for gx: each thread writes its outputs once, no atomics; the
//     taps are added in the same (kh, kw) order as on the CPU.
//   - The weight gradient is split into (channel, run of tiles) blocks, hundreds to
//     thousands per layer; the partial sums are added in a fixed order, so gw is identical
//     from run to run (no atomicAdd).
//   - Accumulation in a register: T for the KH*KW-term sums and for a thread's share of a
//     weight (at most 32 products per run); double from the block's sum on (reduce.cuh says
//     why). Each output is written exactly once.
//
// Forward, before and after, over the same 14 layers (tools/depthwise_steps.py --forward,
// traced like backward-input; the same 2.4 GB of unique bytes, a DRAM roof of 0.84 ms):
//
//     version                                          sectors  sectors/request  est. ms
//     0  a thread per y element, decoded with 4 div/mod;
//        per tap 2 bounds tests and a global load of
//        x: bound by instructions                          424 M        3.4          1.97
//     1  a block per 32 x 32 tile, x's window staged
//        once (XWindow), 4 rows per thread share each
//        weight load; stride a template argument           121 M        3.5          1.12
//
// Sectors fall 3.5x; the stride-1 layers stay bound by instructions (about 9 shared reads
// and FMAs per output), the stride-2 ones are now DRAM-bound. fastscnn.estimate says 2.04 ->
// 1.49 ms for the family (4.1 -> 2.4 sectors/request): it fits from 64- and 96-pixel images,
// whose small planes leave most of a 32 x 32 tile idle (as for backward-weight, below). Not done: at stride 2 a
// staging warp that crosses a window row (65 wide) flips the column parity mid-warp, 2-way
// bank conflicts on about a fifth of the stores' wavefronts; at stride 1 consecutive rows of a
// thread could share window rows in registers (3x fewer shared reads), as in backward-weight.
//
// Backward-input, step by step. Fast-SCNN's 14 depthwise layers in a training step at
// 12 x 1024 x 1024 on an H100, estimated (uncalibrated) from memory traces of each layer at
// its real plane size by tools/depthwise_steps.py (kernels/cuda/emulator/roofline.py's
// model; the instruction counts are formulas of each version's source, in that tool). All
// versions move the same 2.4 GB of unique bytes: a DRAM roof of 0.84 ms.
//
//     version                                          sectors  sectors/request  est. ms
//     0  a thread per gx element; per tap, % and /
//        by the run-time stride (about 20 instructions
//        each): bound by instructions                    376 M        2.7          6.4
//     1  the stride a template argument (a mask and a
//        shift); 4 rows per thread share each weight
//        load and the index decoding: bound by L1/L2     330 M        3.4          2.3
//     2  each block stages its gy window in shared
//        memory, so global memory sees each gy value
//        about once instead of once per tap               113 M        2.4          1.5
//     3  8 rows per thread (64 x 32 tiles); threads
//        past the plane's edge stop after staging         100 M        2.8          1.2
//
// Sectors per request fall in 2 and 3 although sectors fall more: most requests left are
// the weight loads, one 32-byte sector each (a warp reads one weight).
// Not done: at stride 2 half of a warp's lanes skip each tap (their column is odd), and
// consecutive rows could share gy values in registers instead of re-reading shared memory.
//
// Backward-weight, before and after, over the same 14 layers (tools/depthwise_steps.py
// --weight: each layer traced with all 12 images of one channel, scaled to its channels,
// both launches; the same 2.4 GB of unique bytes, a DRAM roof of 0.84 ms):
//
//     version                                          sectors  sectors/request  est. ms
//     0  a block per (weight, chunk): each of the 9
//        taps re-reads gy and x, with 3 divisions by
//        run-time sizes per product: bound by
//        instructions                                     555 M        4.7          7.5
//     1  a block per (channel, run of tiles): x's
//        window staged once, all taps from it into
//        registers, no division per product               142 M        7.2          0.93
//
// Sectors fall 4x, sectors per request rise: the flat staging loop hands a warp 32
// consecutive window values that often straddle two rows, so a request touches two
// misaligned row pieces (6 to 8 sectors instead of 4 to 5), but a tile needs half the
// requests of a row-per-warp loop, whose second pass over a 34-wide row keeps 2 lanes busy.
// fastscnn.estimate says 5.80 -> 2.03 ms for the family: it fits each launch from 64- and
// 96-pixel images, where the two stride-2 layers of the stem have one tile per image, so
// their grids (32 and 48 blocks) do not grow between the two runs and the fit keeps a
// quarter to a third of the SMs busy (0.92 of its 2.03 ms) where the real step has 3072 and
// 1152 blocks.
// Not done: consecutive rows of a thread read overlapping window rows (at stride 1, row r's
// tap kh is row r+1's tap kh-1); holding them in registers would cut the shared loads 3x.

#include "reduce.cuh"

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

// Backward-input's tiles (kernels/cuda/depthwise.py has the same TILE_H and TILE_W).
constexpr int ROWS = 8;            // gx rows per thread
constexpr int TILE_W = 32;         // a block's gx tile: TILE_W columns (a warp's lanes) ...
constexpr int TILE_H = THREADS / TILE_W * ROWS;  // ... x TILE_H rows (8 warps x ROWS rows)
// The most gy values a block stages: a 64 x 32 tile's window at dilation 4 and below
// (72 x 40 at stride 1); 15 KB of float, 30 KB of double.
constexpr int STAGED = 80 * 48;

// First multiple-of-S index q with q*S >= t (t may be negative): the first gy row (column)
// that a tap can reach from input row t.
template <int S>
__device__ int first_on_grid(int t, int s)
{
    const int stride = S > 0 ? S : s;
    return t <= 0 ? 0 : (t + stride - 1) / stride;
}

// gx of a TILE_H x TILE_W tile: stage the gy window, then gather w * gy for ROWS rows per thread.
template <typename T, int SH, int SW>
__global__ void depthwise_backward_input(const T* gy, const T* w, int N, int C, int H, int W,
                                         int KH, int KW, int sh, int sw, int ph, int pw,
                                         int dh, int dw, int OH, int OW, T* gx)
{
    __shared__ T staged[STAGED];
    const int tiles_w = (W + TILE_W - 1) / TILE_W, tiles_h = (H + TILE_H - 1) / TILE_H;
    const int plane = blockIdx.x / (tiles_w * tiles_h);
    const int tile = blockIdx.x % (tiles_w * tiles_h);
    const int ih_t = tile / tiles_w * TILE_H, iw_t = tile % tiles_w * TILE_W;
    const int c = plane % C;
    const T* g = gy + plane * OH * OW;
    const T* wc = w + c * KH * KW;

    // The gy window [oh0, oh1) x [ow0, ow1) that the tile's taps reach.
    const int oh0 = first_on_grid<SH>(ih_t + ph - (KH - 1) * dh, sh);
    const int oh1 = min(OH, (ih_t + TILE_H - 1 + ph) / (SH > 0 ? SH : sh) + 1);
    const int ow0 = first_on_grid<SW>(iw_t + pw - (KW - 1) * dw, sw);
    const int ow1 = min(OW, (iw_t + TILE_W - 1 + pw) / (SW > 0 ? SW : sw) + 1);
    const int rows = max(oh1 - oh0, 0), cols = max(ow1 - ow0, 0);
    // A window too large for shared memory (a large kernel or dilation) is read in place.
    const bool fits = rows * cols <= STAGED;
    const T* src = fits ? staged : g + oh0 * OW + ow0;
    const int pitch = fits ? cols : OW;
    if (fits) {
        const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
        for (int r = warp; r < rows; r += THREADS / 32)
            for (int q = lane; q < cols; q += 32) staged[r * cols + q] = g[(oh0 + r) * OW + ow0 + q];
    }
    __syncthreads();

    const int iw = iw_t + threadIdx.x % TILE_W;
    const int ih0 = ih_t + threadIdx.x / TILE_W * ROWS;
    if (iw >= W || ih0 >= H) return;  // past the plane's edge: this thread only helped to stage
    T s[ROWS] = {};
    for (int kh = 0; kh < KH; ++kh) {
        int oh[ROWS];  // the window row each of our rows reads through tap row kh, or -1
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            oh[r] = on_grid<SH>(ih0 + r + ph - kh * dh, sh, OH);
            if (oh[r] >= 0) oh[r] -= oh0;
        }
        for (int kw = 0; kw < KW; ++kw) {
            const int ow = on_grid<SW>(iw + pw - kw * dw, sw, OW);
            if (ow < 0) continue;
            const T wv = wc[kh * KW + kw];  // one load for ROWS outputs
#pragma unroll
            for (int r = 0; r < ROWS; ++r)
                if (oh[r] >= 0) s[r] += wv * src[oh[r] * pitch + ow - ow0];
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
        if (ih0 + r < H) gx[(plane * H + ih0 + r) * W + iw] = s[r];
}

// Forward's and backward-weight's tiles (kernels/cuda/depthwise.py has the same WTILE_H and TILE_W).
constexpr int WROWS = 4;                           // output rows per thread
constexpr int WTILE_H = THREADS / TILE_W * WROWS;  // a tile: WTILE_H x TILE_W outputs (32 x 32)
constexpr int TAPS = 9;                            // weights a pass keeps in registers (a 3x3 filter)
// The most x values a block stages: a 32 x 32 tile's window at stride 2 (65 x 65, split by
// column parity) or at stride 1 up to dilation 16 (64 x 64); 17 KB of float, 35 KB of double.
constexpr int X_STAGED = 66 * 66;

// The window of x that a WTILE_H x TILE_W tile of outputs reads through its taps, staged in
// shared memory with 0 outside the image: the forward and backward-weight share it (both
// read x over the same stencil). At stride 2 a row's even columns go to one plane and its
// odd ones to another: the 32 lanes of a warp then read 32 consecutive values through every
// tap (no bank conflict), and the odd plane starts 16 banks after the even one, so that
// staging stores are conflict-free too.
template <typename T, int SW>
struct XWindow {
    static constexpr int P = SW == 2 ? 2 : 1;
    int rows, cols, half, plane, r_start, q_start, step_r, step_q;
    bool fits;  // else the kernel reads x in place
    const T* xp;  // the tile's plane of x (H x W) and the window's origin in it, set by stage
    int H, W, ih0, iw0;
    // Every tile stages the window of a whole tile, rows x cols (at the plane's edge some of
    // it goes unread). Staging runs over it as one flat array: thread t stages values t,
    // t + THREADS, ..., so a warp stores 32 consecutive values (across a row's end) and no
    // lane idles while others finish a row. r_start, q_start: value t's row and column.
    __device__ XWindow(int OH, int OW, int KH, int KW, int strh, int strw, int dh, int dw)
        : rows((min(WTILE_H, OH) - 1) * strh + (KH - 1) * dh + 1),
          cols((min(TILE_W, OW) - 1) * strw + (KW - 1) * dw + 1), half((cols + P - 1) / P),
          plane(P == 2 ? (rows * half + 15) / 32 * 32 + 16 : 0), r_start(threadIdx.x / cols),
          q_start(threadIdx.x % cols), step_r(THREADS / cols), step_q(THREADS % cols),
          fits(plane + rows * half <= X_STAGED) {}
    // Where window row y, column q lies in shared memory; offset(y, q) + offset(dy, dx) ==
    // offset(y + dy, q + dx) for even q at stride 2, so a tap's offset is computed once.
    __device__ int offset(int y, int q) const { return q % P * plane + y * half + q / P; }
    // Copy x[ih0 .. ih0 + rows, iw0 .. iw0 + cols) of plane xp, between two barriers.
    __device__ void stage(T* staged, const T* plane_x, int h, int w, int row0, int col0)
    {
        xp = plane_x, H = h, W = w, ih0 = row0, iw0 = col0;
        __syncthreads();  // the previous tile's (and pass's) shared reads are done
        if (fits)
            for (int r = r_start, q = q_start; r < rows; r += step_r) {
                const int ih = ih0 + r, iw = iw0 + q;
                staged[offset(r, q)] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xp[ih * W + iw] : T(0);
                if ((q += step_q) >= cols) q -= cols, ++r;
            }
        __syncthreads();
    }
    // Window value (y, q), at offset `at` in shared memory; in place if the window did not fit.
    __device__ T read(const T* staged, int y, int q, int at) const
    {
        const int ih = ih0 + y, iw = iw0 + q;
        if (fits) return staged[at];
        return ih >= 0 && ih < H && iw >= 0 && iw < W ? xp[ih * W + iw] : T(0);
    }
};

// y of a WTILE_H x TILE_W tile of plane n*C + c: stage x's window, then WROWS rows per thread.
template <typename T, int SH, int SW>
__global__ void depthwise_forward(const T* x, const T* w, int N, int C, int H, int W,
                                  int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw,
                                  int OH, int OW, T* y)
{
    __shared__ T staged[X_STAGED];
    const int strh = SH > 0 ? SH : sh, strw = SW > 0 ? SW : sw;
    const int tiles_w = (OW + TILE_W - 1) / TILE_W, tiles_h = (OH + WTILE_H - 1) / WTILE_H;
    const int plane = blockIdx.x / (tiles_w * tiles_h), tile = blockIdx.x % (tiles_w * tiles_h);
    const int oh_t = tile / tiles_w * WTILE_H, ow_t = tile % tiles_w * TILE_W;
    const int ih0 = oh_t * strh - ph, iw0 = ow_t * strw - pw;  // the window's origin in x
    const T* xp = x + plane * H * W;
    const T* wc = w + plane % C * KH * KW;
    XWindow<T, SW> win(OH, OW, KH, KW, strh, strw, dh, dw);
    win.stage(staged, xp, H, W, ih0, iw0);

    const int lane = threadIdx.x % 32, row0 = threadIdx.x / 32 * WROWS, ow = ow_t + lane;
    if (ow >= OW || oh_t + row0 >= OH) return;  // past the plane's edge: this thread only staged
    const int rows = min(WROWS, OH - oh_t - row0), q = lane * strw;
    T s[WROWS] = {};
    for (int kh = 0; kh < KH; ++kh)
        for (int kw = 0; kw < KW; ++kw) {
            const T wv = wc[kh * KW + kw];  // one load for WROWS outputs
            const int off = win.offset(kh * dh, kw * dw);
#pragma unroll
            for (int r = 0; r < WROWS; ++r) {
                const int yr = (row0 + r) * strh;
                if (r < rows) s[r] += wv * win.read(staged, yr + kh * dh, q + kw * dw, win.offset(yr, q) + off);
            }
        }
#pragma unroll
    for (int r = 0; r < WROWS; ++r)
        if (r < rows) y[(plane * OH + oh_t + row0 + r) * OW + ow] = s[r];
}

// Block (c, k): for tiles k*tiles .. (k+1)*tiles - 1 of channel c (tiles run over n, then
// tile rows, then tile columns), partial[c*KH*KW + t, k] = the tiles' share of gw[c, t].
template <typename T, int SH, int SW>
__global__ void depthwise_weight_partials(const T* gy, const T* x, int N, int C, int H, int W,
                                          int KH, int KW, int sh, int sw, int ph, int pw,
                                          int dh, int dw, int OH, int OW, int tiles,
                                          double* partial)
{
    __shared__ T staged[X_STAGED];
    __shared__ double warp_sums[TAPS][THREADS / 32 + 1];  // + 1: the 9 readers hit 9 banks
    const int strh = SH > 0 ? SH : sh, strw = SW > 0 ? SW : sw;
    const int c = blockIdx.x, k = blockIdx.y, chunks = gridDim.y;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int tiles_w = (OW + TILE_W - 1) / TILE_W, tiles_h = (OH + WTILE_H - 1) / WTILE_H;
    const int first = k * tiles, last = min(first + tiles, N * tiles_h * tiles_w);
    XWindow<T, SW> win(OH, OW, KH, KW, strh, strw, dh, dw);
    for (int tap0 = 0; tap0 < KH * KW; tap0 += TAPS) {  // one pass for up to 9 taps
        // Tap j of this pass reads (dy[j], dx[j]) from the output's first tap, at off[j] in the window.
        int dy[TAPS], dx[TAPS], off[TAPS];
        const int taps = min(TAPS, KH * KW - tap0);
#pragma unroll
        for (int j = 0, kh = tap0 / KW, kw = tap0 % KW; j < TAPS; ++j) {
            dy[j] = kh * dh, dx[j] = kw * dw, off[j] = win.offset(dy[j], dx[j]);
            if (++kw == KW) kw = 0, ++kh;
        }
        T acc[TAPS] = {};
        int tw = first % tiles_w, th = first / tiles_w % tiles_h, n = first / (tiles_w * tiles_h);
        for (int t = first; t < last; ++t) {
            const int oh_t = th * WTILE_H, ow_t = tw * TILE_W;
            const int ih0 = oh_t * strh - ph, iw0 = ow_t * strw - pw;  // the window's origin in x
            const T* xp = x + (n * C + c) * H * W;
            win.stage(staged, xp, H, W, ih0, iw0);
            const int ow = ow_t + lane;
            for (int r = 0; r < WROWS; ++r) {
                const int oh = oh_t + warp * WROWS + r;
                if (oh >= OH || ow >= OW) continue;
                const T g = gy[((n * C + c) * OH + oh) * OW + ow];
                // The output's first tap, in the window: row y, column q, at `at` in shared memory.
                const int y = (warp * WROWS + r) * strh, q = lane * strw, at = win.offset(y, q);
#pragma unroll
                for (int j = 0; j < TAPS; ++j)
                    if (j < taps) acc[j] += g * win.read(staged, y + dy[j], q + dx[j], at + off[j]);
            }
            if (++tw == tiles_w) tw = 0, ++th;  // the next tile, without a division
            if (th == tiles_h) th = 0, ++n;
        }
        // A fixed-order sum of each tap over the block: a shuffle tree in each warp, then the
        // 8 warps' sums in order.
#pragma unroll
        for (int j = 0; j < TAPS; ++j) {
            double v = acc[j];
            for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
            if (lane == 0) warp_sums[j][warp] = v;
        }
        __syncthreads();
        if (threadIdx.x < taps) {
            double s = 0;
            for (int w = 0; w < THREADS / 32; ++w) s += warp_sums[threadIdx.x][w];
            partial[(c * KH * KW + tap0 + threadIdx.x) * chunks + k] = s;
        }
    }
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
