// trace.h: what a GPU's memory system would see of an emulated launch (MTS_CUDA_TRACE=1).
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
// lanes are on a GPU. Per request:
//
//   global   sectors = distinct 32-byte segments its addresses touch (Nsight Compute's
//            l1tex__t_sectors; sectors per request: 4 for 32 consecutive floats, 32 when every
//            lane reads a different segment)
//   shared   wavefronts = the most distinct 4-byte words any one of the 32 banks must deliver
//            (bank = word % 32; lanes reading the same word share it), and at least one per
//            128 bytes moved; wavefronts - 1 are the bank conflicts of the request
//
// Per launch it also merges every byte range read and written: unique bytes, the least that
// must come from (or go to) DRAM if every reused byte hits in the caches.
#pragma once

#include <stdint.h>

#include <unordered_map>

namespace mts {
namespace trace {

struct Access {
    uint32_t warp, k;          // warp of the block; k-th execution of pc by this thread
    uintptr_t pc, address;
    uint8_t size, write, shared;
};

// A device array's memory; `at` is where it would start on a GPU, whose allocations begin on
// 256-byte boundaries (NumPy's host memory is aligned to 16 only, which would split sectors).
struct Range { uintptr_t begin, end, at; };

// Counts of one launch, in the order mts_trace_end hands them to Python (trace.py FIELDS).
struct Counts {
    double load_requests, load_sectors, store_requests, store_sectors,
           shared_requests, shared_wavefronts, unique_read, unique_written;
};

static bool on;
static bool inside;                            // in a hook: the containers' own code is instrumented
static std::vector<Range> device_ranges;       // sorted by begin
static long long block;                        // block_serial of the accesses in `accesses`
static std::vector<Access> accesses;           // of that block
static std::unordered_map<uint64_t, uint32_t> executions;  // (thread, pc) -> times seen
static std::vector<Range> read_ranges, written_ranges;
static Counts counts;

// The GPU address of host address a if it lies in a device array, else 0.
static uintptr_t on_device(uintptr_t a)
{
    auto it = std::upper_bound(device_ranges.begin(), device_ranges.end(), a,
                               [](uintptr_t x, const Range& r) { return x < r.begin; });
    if (it == device_ranges.begin() || a >= (it - 1)->end) return 0;
    return a - (it - 1)->begin + (it - 1)->at;
}

// The offset of a in its __shared__ array plus one, if it lies in one (banks count from the
// array's start, as if each array began on a 128-byte boundary), else 0.
static uintptr_t in_shared(uintptr_t a)
{
    for (const SharedArray& s : shared_arrays)
        if (a >= (uintptr_t)s.array && a < (uintptr_t)s.array + s.bytes) return a - (uintptr_t)s.array + 1;
    return 0;
}

// One request: the accesses [first, last) of one warp to one instruction execution.
static void request(const Access* first, const Access* last)
{
    std::vector<uintptr_t> units;
    if (!first->shared) {
        for (const Access* a = first; a != last; ++a)
            for (uintptr_t s = a->address >> 5; s <= (a->address + a->size - 1) >> 5; ++s) units.push_back(s);
        std::sort(units.begin(), units.end());
        const double sectors = std::unique(units.begin(), units.end()) - units.begin();
        if (first->write) counts.store_requests += 1, counts.store_sectors += sectors;
        else counts.load_requests += 1, counts.load_sectors += sectors;
        return;
    }
    for (const Access* a = first; a != last; ++a)
        for (uintptr_t w = a->address >> 2; w <= (a->address + a->size - 1) >> 2; ++w) units.push_back(w);
    std::sort(units.begin(), units.end());
    units.erase(std::unique(units.begin(), units.end()), units.end());
    int per_bank[32] = {0}, most = 0;
    for (uintptr_t w : units) most = std::max(most, ++per_bank[w % 32]);
    const int by_bytes = int((units.size() * 4 + 127) / 128);
    counts.shared_requests += 1;
    counts.shared_wavefronts += std::max(most, by_bytes);

}

// Group the accesses of the finished block into requests.
static void flush_block()
{
    std::sort(accesses.begin(), accesses.end(), [](const Access& a, const Access& b) {
        return a.warp != b.warp ? a.warp < b.warp : a.pc != b.pc ? a.pc < b.pc : a.k < b.k;
    });
    size_t i = 0;
    while (i < accesses.size()) {
        size_t j = i + 1;
        while (j < accesses.size() && accesses[j].warp == accesses[i].warp &&
               accesses[j].pc == accesses[i].pc && accesses[j].k == accesses[i].k) ++j;
        request(&accesses[i], &accesses[j]);
        i = j;
    }
    accesses.clear();
    executions.clear();
}

__attribute__((no_sanitize_thread)) static void record(void* p, int size, bool write, void* pc)
{
    if (!on || inside || in_emulator || L.current == nullptr) return;
    inside = true;
    const uintptr_t offset = in_shared((uintptr_t)p);
    const bool shared = offset != 0;
    const uintptr_t a = shared ? offset - 1 : on_device((uintptr_t)p);
    if (!shared && a == 0) {
        inside = false;
        return;
    }
    if (block != block_serial) {
        flush_block();
        block = block_serial;
    }
    const int t = L.current->thread;
    const uint32_t k = executions[(uint64_t)t << 48 ^ (uintptr_t)pc]++;
    accesses.push_back({uint32_t(t / 32), k, (uintptr_t)pc, a, uint8_t(size), uint8_t(write), uint8_t(shared)});
    if (!shared) (write ? written_ranges : read_ranges).push_back({a, a + size, 0});
    inside = false;
}

static double merged_bytes(std::vector<Range>& ranges)
{
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    double total = 0;
    uintptr_t begin = 0, end = 0;
    for (const Range& r : ranges) {
        if (r.begin > end) total += end - begin, begin = r.begin, end = r.end;
        else end = std::max(end, r.end);
    }
    ranges.clear();
    return total + (end - begin);
}

}  // namespace trace
}  // namespace mts

// The hooks the compiler calls (-fsanitize=thread); their names and signatures are GCC's and
// Clang's ThreadSanitizer ABI.
#define MTS_HOOKS(N)                                                                                    \
    extern "C" __attribute__((visibility("default"), no_sanitize_thread)) void __tsan_read##N(void* p)   \
    { mts::trace::record(p, N, false, __builtin_return_address(0)); }                                   \
    extern "C" __attribute__((visibility("default"), no_sanitize_thread)) void __tsan_write##N(void* p)  \
    { mts::trace::record(p, N, true, __builtin_return_address(0)); }                                    \
    extern "C" __attribute__((visibility("default"), no_sanitize_thread)) void __tsan_unaligned_read##N(void* p) \
    { mts::trace::record(p, N, false, __builtin_return_address(0)); }                                   \
    extern "C" __attribute__((visibility("default"), no_sanitize_thread)) void __tsan_unaligned_write##N(void* p) \
    { mts::trace::record(p, N, true, __builtin_return_address(0)); }
MTS_HOOKS(1) MTS_HOOKS(2) MTS_HOOKS(4) MTS_HOOKS(8) MTS_HOOKS(16)

extern "C" {
__attribute__((visibility("default"), no_sanitize_thread)) void __tsan_read_range(void* p, unsigned long n)
{ mts::trace::record(p, int(n), false, __builtin_return_address(0)); }
__attribute__((visibility("default"), no_sanitize_thread)) void __tsan_write_range(void* p, unsigned long n)
{ mts::trace::record(p, int(n), true, __builtin_return_address(0)); }
__attribute__((visibility("default"))) void __tsan_init() {}
__attribute__((visibility("default"))) void __tsan_func_entry(void*) {}
__attribute__((visibility("default"))) void __tsan_func_exit() {}
__attribute__((visibility("default"))) void __tsan_vptr_update(void**, void*) {}
__attribute__((visibility("default"))) void __tsan_vptr_read(void**) {}

// Start tracing a launch: `ranges` holds n (begin, end) pairs, the device arrays alive now.
__attribute__((visibility("default"))) void mts_trace_begin(const uintptr_t* ranges, int n)
{
    using namespace mts::trace;
    device_ranges.clear();
    uintptr_t at = 256;
    for (int i = 0; i < n; ++i) {
        device_ranges.push_back({ranges[2 * i], ranges[2 * i + 1], at});
        at += (ranges[2 * i + 1] - ranges[2 * i] + 511) / 256 * 256;
    }
    std::sort(device_ranges.begin(), device_ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    counts = Counts();
    block = -1;
    on = true;
}

// Stop tracing; the launch's counts into out (the fields of Counts, in order).
__attribute__((visibility("default"))) void mts_trace_end(double* out)
{
    using namespace mts::trace;
    inside = true;
    flush_block();
    counts.unique_read = merged_bytes(read_ranges);
    counts.unique_written = merged_bytes(written_ranges);
    inside = false;
    on = false;
    memcpy(out, &counts, sizeof(counts));
}
}
