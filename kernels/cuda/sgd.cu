// The SGD update of many parameters in one launch (PyTorch's rule), on the GPU.
//
// Math (the lesson is in kernels/cpu/sgd.py): for each element of each parameter p, with
// gradient g and momentum buffer b (0 before the first step):
//
//     d = g + weight_decay * p;   b = momentum * b + d;   d = nesterov ? d + momentum * b : b
//     p = p - lr * d
//
// A launch per parameter would be hundreds of tiny launches per step, each costing more to
// start than to run. Instead one launch treats the parameters as if they were laid end to
// end: the launcher passes a table of their addresses and where each one starts in that
// concatenation (a "multi-tensor apply", as PyTorch's fused optimizers do):
//
//     table = [p_0 .. p_{K-1} | g_0 .. g_{K-1} | b_0 .. b_{K-1} | start_0 .. start_K]
//
// Thread-to-index mapping: thread i -> element i of the concatenation; it finds its tensor
// k with start_k <= i < start_{k+1} by binary search in the table, then element i - start_k.
// Consecutive threads take consecutive elements of the same tensor: coalesced.
//
// Pseudo-loop:
//
//     for i in parallel:
//         k = the tensor holding element i;   j = i - start[k]
//         update p_k[j] and b_k[j] as above
//
// The arithmetic is in T, the parameters' type, as PyTorch's is.

template <typename T>
__global__ void sgd_step(const long long* table, int K, long long total, T lr, T momentum,
                         T weight_decay, int nesterov)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    const long long* start = table + 3 * K;
    int lo = 0, hi = K - 1;
    while (lo < hi) {  // the last k with start[k] <= i
        const int mid = (lo + hi + 1) / 2;
        if (start[mid] <= i) lo = mid; else hi = mid - 1;
    }
    const long long j = i - start[lo];
    T* p = reinterpret_cast<T*>(table[lo]);
    const T* g = reinterpret_cast<const T*>(table[K + lo]);
    T* b = reinterpret_cast<T*>(table[2 * K + lo]);
    T d = g[j] + weight_decay * p[j];
    if (momentum != T(0)) {
        b[j] = momentum * b[j] + d;
        d = nesterov ? d + momentum * b[j] : b[j];
    }
    p[j] -= lr * d;
}
