// device.h: what a CUDA kernel sees, for a kernel compiled by the host's C++ compiler.
//
// The emulator pastes a .cu file between this header and scheduler.h and compiles the lot as
// ordinary C++. Everything CUDA adds to C++ that our kernels use is defined here in a few
// lines each:
//
//   __global__ __device__ __host__       nothing: every function is a plain C++ function
//   __shared__ T name[n];                a static variable: one copy, shared by the threads of
//                                        the running block (blocks run one at a time); the
//                                        compiler (compiler.py) adds a call after it that
//                                        fills it with 0xFF bytes (NaN, or -1) when the first
//                                        thread of each block gets there
//   threadIdx blockIdx blockDim gridDim  globals that the scheduler sets before it runs or
//                                        resumes a thread
//   __syncthreads()                      suspends the calling thread (a fiber) until every
//                                        thread of the block has reached the barrier
//   __shfl_*_sync, __ballot_sync, ...    suspend until every lane named in the mask has
//                                        arrived, then read the other lanes' values
//   atomicAdd, atomicMin, ...            plain read-modify-write: only one thread runs at a
//                                        time, and threads switch only at barriers
//   exp, log, sqrt, fmax, min, max, ...  the C library's, with CUDA's float overloads
//
// Numbers. Floats round as on the GPU, operation by operation (the compiler is told not to
// fuse a*b + c into one rounding, -ffp-contract=off). The math functions are the C
// library's, which may differ from CUDA's in the last bit.
#pragma once

#include <math.h>    // exp, log, sqrt, fmax... with float overloads, in the global namespace
#include <stdio.h>   // printf works in a kernel, as on a GPU
#include <string.h>
#include <assert.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __constant__

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace mts {
// Implemented in scheduler.h: suspend the calling thread at a barrier or a warp operation.
void barrier(const char* file, int line);
long long warp_op(int op, unsigned mask, long long bits, int arg, int width, const char* file, int line);
void shared_array(void* array, size_t bytes);
enum WarpOp { SHFL, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL, SYNCWARP };

template <typename T> struct same { using type = T; };
template <typename T> using plain = typename same<T>::type;  // keeps a parameter out of deduction
template <typename T> long long to_bits(T v) { long long b = 0; memcpy(&b, &v, sizeof(T)); return b; }
template <typename T> T from_bits(long long b) { T v; memcpy(&v, &b, sizeof(T)); return v; }
}  // namespace mts

// ---------------------------------------------------------------- barriers and warp exchange
// Macros, so that an error can name the file and line where the thread waits.
#define __syncthreads() mts::barrier(__FILE__, __LINE__)
#define __syncwarp(...) mts::warp_op(mts::SYNCWARP, mts_mask_or_all(__VA_ARGS__), 0, 0, 32, __FILE__, __LINE__)
#define __shfl_sync(mask, v, lane, ...) mts_shfl(mts::SHFL, mask, v, lane, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_up_sync(mask, v, d, ...) mts_shfl(mts::SHFL_UP, mask, v, d, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_down_sync(mask, v, d, ...) mts_shfl(mts::SHFL_DOWN, mask, v, d, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, v, m, ...) mts_shfl(mts::SHFL_XOR, mask, v, m, __FILE__, __LINE__, ##__VA_ARGS__)
#define __ballot_sync(mask, p) ((unsigned)mts::warp_op(mts::BALLOT, mask, (p) != 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, p) ((int)mts::warp_op(mts::ANY, mask, (p) != 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, p) ((int)mts::warp_op(mts::ALL, mask, (p) != 0, 0, 32, __FILE__, __LINE__))

inline unsigned mts_mask_or_all(unsigned mask = 0xffffffffu) { return mask; }

template <typename T>
T mts_shfl(int op, unsigned mask, T v, int arg, const char* file, int line, int width = warpSize)
{
    return mts::from_bits<T>(mts::warp_op(op, mask, mts::to_bits(v), arg, width, file, line));
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------- atomics (return the old value)
template <typename T> T atomicAdd(T* p, mts::plain<T> v) { T old = *p; *p = old + v; return old; }
template <typename T> T atomicSub(T* p, mts::plain<T> v) { T old = *p; *p = old - v; return old; }
template <typename T> T atomicMin(T* p, mts::plain<T> v) { T old = *p; *p = v < old ? v : old; return old; }
template <typename T> T atomicMax(T* p, mts::plain<T> v) { T old = *p; *p = v > old ? v : old; return old; }
template <typename T> T atomicExch(T* p, mts::plain<T> v) { T old = *p; *p = v; return old; }
template <typename T> T atomicAnd(T* p, mts::plain<T> v) { T old = *p; *p = old & v; return old; }
template <typename T> T atomicOr(T* p, mts::plain<T> v) { T old = *p; *p = old | v; return old; }
template <typename T> T atomicXor(T* p, mts::plain<T> v) { T old = *p; *p = old ^ v; return old; }
template <typename T> T atomicCAS(T* p, mts::plain<T> compare, mts::plain<T> v) { T old = *p; if (old == compare) *p = v; return old; }

// ---------------------------------------------------------------- math CUDA has and C++ lacks
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rsqrt(float x) { return rsqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
// The _rn intrinsics are single roundings; with -ffp-contract=off every + and * is one.
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline int __float_as_int(float x) { return mts::from_bits<int>(mts::to_bits(x)); }
inline float __int_as_float(int x) { return mts::from_bits<float>(mts::to_bits(x)); }
inline long long __double_as_longlong(double x) { return mts::to_bits(x); }
inline double __longlong_as_double(long long x) { return mts::from_bits<double>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
