// Dropout on the GPU, from a counter-based random generator.
//
// Math (the lesson is in kernels/cpu/dropout.py): element i keeps its input, scaled by
// 1/(1-p), when the uniform number u_i >= p:
//
//     y[i] = x[i] * mask[i],    mask[i] = scale if u_i >= p else 0,    scale = 1/(1-p)
//
// The backward is the same kernel on the gradient, with the same stream position: the mask
// is drawn again instead of stored.
//
// u_i is number offset+i+1 of SplitMix64's stream `seed`: mix(seed + n*GAMMA), top 53 bits.
// The generator is counter-based: each thread computes its own number from (seed, n) alone,
// so no thread waits for another, and the numbers are those the CPU kernel draws.
//
// Thread-to-index mapping: thread i -> element i (256 threads per block).
//
// Pseudo-loop:
//
//     for i in parallel:
//         z = mix(seed + (offset + i + 1) * GAMMA);   u = (z >> 11) * 2^-53
//         y[i] = u >= p ? x[i] * scale : 0

__device__ unsigned long long splitmix64(unsigned long long z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void dropout(const T* x, unsigned long long seed, unsigned long long offset, double p,
                        T scale, int n, T* y)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned long long z = splitmix64(seed + (offset + i + 1) * 0x9E3779B97F4A7C15ull);
    const double u = (z >> 11) * 0x1.0p-53;
    y[i] = u >= p ? x[i] * scale : T(0);
}
