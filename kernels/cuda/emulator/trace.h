// trace.h and trace.cpp: what a GPU's memory system would see of an emulated launch (MTS_CUDA_TRACE=1).
//
// How accesses are observed. The traced build compiles the kernel source with
// -fsanitize=thread but links without ThreadSanitizer's runtime: the compiler then puts a call
// __tsan_read4(address), __tsan_write8(address), ... before every load and store it emits, and
// the functions it calls are the ones below. Inside one, __builtin_return_address(0) is an
// address in the kernel's machine code just after the call: one per load or store of the source
// (per copy of it, where the compiler unrolled a loop), which is what a GPU instruction is.
// The untraced build has none of these calls, so default runs keep their speed.
//
// What an access is. An address inside a __shared__ array of the kernel (the scheduler
// registers each, shared_array) is shared memory; an address inside a live device array (the
// ranges Python passes to mts_trace_begin) is global memory; anything else (a thread's local
// variables, threadIdx, the scheduler's own data) is neither and is not counted.
//
// How accesses become requests. On a GPU the 32 threads of a warp (threads 32w .. 32w+31 of a
// block, threadIdx as one number, x fastest) execute an instruction together: one request to
// the memory system carrying up to 32 addresses. The emulator runs the threads one after
// another, so the trace regroups them: the k-th time thread t executes access instruction pc
// pairs with the k-th time every other lane of its warp executes pc. Lanes that skip an
// instruction (a branch, an early return) are simply absent from its request, as inactive
// lanes are on a GPU. (Known limit: a function called twice whose loop runs a different number
// of times in different lanes, as block_sum's `if (t < half)` for the two sums of batchnorm.cu,
// pairs some lanes' second call with others' first; batch norm shows a few false conflicts.)
// Per request:
//
//   global   sectors = distinct 32-byte segments its addresses touch (Nsight Compute's
//            l1tex__t_sectors; sectors per request: 4 for 32 consecutive floats, 32 when every
//            lane reads a different segment)
//   shared   wavefronts = the most distinct 4-byte words any one of the 32 banks must deliver
//            (bank = word % 32; lanes reading the same word share it), and at least one per
//            128 bytes moved; the wavefronts beyond that minimum are the request's bank conflicts
//
// Per launch it also merges every byte range read and written: unique bytes, the least that
// must come from (or go to) DRAM if every reused byte hits in the caches.
#pragma once

// In trace.cpp (compiled without instrumentation).
extern "C" bool mts_tracing;
extern "C" void mts_trace_access(int thread, long long serial, uintptr_t pc, uintptr_t a, int size, bool write,
                                 bool shared);

namespace mts {
// Pass an access of the running thread on to trace.cpp: an offset in its __shared__ array
// (banks count from the array's start, as if each began on a 128-byte boundary), or the address.
__attribute__((no_sanitize_thread)) inline void traced(void* p, int size, bool write, void* pc)
{
    if (!mts_tracing || in_emulator || L.current == nullptr) return;
    const uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < shared_range_count; ++i)
        if (a >= shared_ranges[i].begin && a < shared_ranges[i].end) {
            mts_trace_access(L.current->thread, block_serial, (uintptr_t)pc, a - shared_ranges[i].begin, size,
                             write, true);
            return;
        }
    mts_trace_access(L.current->thread, block_serial, (uintptr_t)pc, a, size, write, false);
}
}  // namespace mts

// The hooks the compiler calls (-fsanitize=thread); their names and signatures are GCC's and
// Clang's ThreadSanitizer ABI. __builtin_return_address(0) names the access instruction.
#define MTS_HOOK(NAME, N, WRITE)                                                                 \
    extern "C" __attribute__((visibility("default"), no_sanitize_thread)) void NAME(void* p) \
    { mts::traced(p, N, WRITE, __builtin_return_address(0)); }
#define MTS_HOOKS(N) MTS_HOOK(__tsan_read##N, N, false) MTS_HOOK(__tsan_write##N, N, true) \
    MTS_HOOK(__tsan_unaligned_read##N, N, false) MTS_HOOK(__tsan_unaligned_write##N, N, true)
MTS_HOOKS(1) MTS_HOOKS(2) MTS_HOOKS(4) MTS_HOOKS(8) MTS_HOOKS(16)

extern "C" {
__attribute__((visibility("default"), no_sanitize_thread)) void __tsan_read_range(void* p, unsigned long n)
{ mts::traced(p, int(n), false, __builtin_return_address(0)); }
__attribute__((visibility("default"), no_sanitize_thread)) void __tsan_write_range(void* p, unsigned long n)
{ mts::traced(p, int(n), true, __builtin_return_address(0)); }
__attribute__((visibility("default"))) void __tsan_init() {}
__attribute__((visibility("default"))) void __tsan_func_entry(void*) {}
__attribute__((visibility("default"))) void __tsan_func_exit() {}
__attribute__((visibility("default"))) void __tsan_vptr_update(void**, void*) {}
__attribute__((visibility("default"))) void __tsan_vptr_read(void**) {}
}
