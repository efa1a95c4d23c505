"""Solutions to the exercises of lecture 6 (06_gpu_performance.ipynb), one section per exercise.

Each section replaces the notebook cell that starts with the same ``# EXERCISE`` line; the
names it uses (``TILED_TRANSPOSE``) come from the notebook's earlier cells.
"""

# EXERCISE 6.1: a coalesced add_bias
# Consecutive threads take consecutive columns of one row: x, y and b are read and written
# 32 consecutive floats per warp. b[c] is now 32 different floats too, still one request.
ADD_BIAS = r"""
template <typename T>
__global__ void add_bias(const T* x, const T* b, int rows, int cols, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const int c = i % cols;                     // consecutive threads: consecutive columns
    y[i] = x[i] + b[c];
}
"""


# EXERCISE 6.2: pad the tile
# Rows of 33 floats: tile[t][r] is word 33 t + r, so 32 consecutive t fall in 32 banks.
TILED_TRANSPOSE_PADDED = TILED_TRANSPOSE.replace("tile[32][32]", "tile[32][33]")


# EXERCISE 6.3: the arithmetic intensity of the depthwise forward
def depthwise_intensity(N, C, H, W, K, stride, padding):
    # FLOPs per byte of DRAM traffic of the float32 depthwise forward (dilation 1)
    OH = (H + 2 * padding - K) // stride + 1
    OW = (W + 2 * padding - K) // stride + 1
    flops = 2 * K * K * N * C * OH * OW               # a multiply-add per tap of every output
    nbytes = 4 * (N * C * H * W + C * K * K + N * C * OH * OW)   # x and w read once, y written once
    return flops / nbytes


# EXERCISE 6.4: stage the depthwise forward in shared memory
# A block per 32 x 32 tile of y: the 34 x 34 window of x it reads (zero outside the image)
# goes to shared memory, a warp per window row; after the barrier each thread computes 4 rows
# of its column from there. Only the staging and the weights touch global memory.
DEPTHWISE_FORWARD_TILED = r"""
constexpr int TILE = 32, ROWS = 4, THREADS = 256, WINDOW = TILE + 2;

template <typename T>
__global__ void depthwise_forward_tiled(const T* x, const T* w, int N, int C, int H, int W,
                                        int KH, int KW, int sh, int sw, int ph, int pw,
                                        int dh, int dw, int OH, int OW, T* y)
{
    __shared__ T window[WINDOW][WINDOW];
    const int tiles_w = (OW + TILE - 1) / TILE, tiles_h = (OH + TILE - 1) / TILE;
    const int plane = blockIdx.x / (tiles_w * tiles_h), tile = blockIdx.x % (tiles_w * tiles_h);
    const int oh_t = tile / tiles_w * TILE, ow_t = tile % tiles_w * TILE;
    const T* src = x + plane * H * W;
    const T* wc = w + plane % C * 9;
    const int ih0 = oh_t - ph, iw0 = ow_t - pw;         // the window's top-left pixel of x
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int r = warp; r < WINDOW; r += THREADS / 32)
        for (int q = lane; q < WINDOW; q += 32) {
            const int ih = ih0 + r, iw = iw0 + q;
            window[r][q] = ih >= 0 && ih < H && iw >= 0 && iw < W ? src[ih * W + iw] : T(0);
        }
    __syncthreads();                                    // the window is complete before anyone reads it

    const int ow = ow_t + threadIdx.x % TILE, oh0 = oh_t + threadIdx.x / TILE * ROWS;
    if (ow >= OW) return;
    for (int r = 0; r < ROWS && oh0 + r < OH; ++r) {
        const int wr = oh0 + r - oh_t, wq = ow - ow_t;  // the output's place in the window
        T s = 0;
        for (int kh = 0; kh < 3; ++kh)
            for (int kw = 0; kw < 3; ++kw) s += wc[kh * 3 + kw] * window[wr + kh][wq + kw];
        y[(plane * OH + oh0 + r) * OW + ow] = s;
    }
}
"""
