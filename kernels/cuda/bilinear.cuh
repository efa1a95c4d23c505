// Bilinear source indices along one axis, for upsample.cu and the fused heads of loss.cu
// (the math is in upsample.cu's header). One definition, so that the fused heads read the
// same neighbours with the same weights as F.interpolate.

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

// One value of channel plane x (W wide) at the output (sh, sw): the two rows mixed first.
template <typename T>
__device__ T bilinear_at(const T* x, int W, const Source<T>& sh, const Source<T>& sw)
{
    const T* row0 = x + sh.i0 * W;
    const T* row1 = x + sh.i1 * W;
    const T t0 = sh.l0 * row0[sw.i0] + sh.l1 * row1[sw.i0];
    const T t1 = sh.l0 * row0[sw.i1] + sh.l1 * row1[sw.i1];
    return sw.l0 * t0 + sw.l1 * t1;
}
