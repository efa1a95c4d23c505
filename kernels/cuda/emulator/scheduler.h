// scheduler.h: how the emulator runs a grid of blocks of threads on one CPU core.
//
// A GPU runs a launch as a grid of blocks; each block is a group of threads that can wait for
// one another at a barrier (__syncthreads) and share __shared__ memory. Blocks never wait for
// each other, so the hardware may run them in any order, and so may we: one after another.
//
// The threads of a block are the hard part: a thread that reaches __syncthreads must stop
// there until every other thread of its block has arrived, then go on where it stopped. A
// plain function call cannot stop in the middle and continue later, so each waiting thread
// keeps its own stack: a fiber. POSIX ucontext starts a function on a stack of its own
// (makecontext, setcontext); after that, switching from one fiber to another is _setjmp
// (save where this stack is) then _longjmp (go on where the other one stopped). The scheduler runs one
// fiber at a time on this one CPU thread:
//
//     for each block (in order, or in reverse for the race check):
//         start threads 0, 1, 2, ... one after another, each until it returns or waits
//         while some threads wait:
//             if all the lanes named by a waiting warp operation have arrived: do it
//             elif every thread that has not returned waits at the same __syncthreads:
//                 release them all (in thread order, or in reverse)
//             else: error (a barrier that some threads never reach, or a deadlock)
//             run the released threads, each until it returns or waits again
//
// A fiber runs threads one after another until one of them has to wait, so a kernel without
// barriers runs its whole block on one fiber with no switch at all, and a kernel with
// barriers uses as many fibers as the block has threads. Fibers are kept for the next block.
//
// Why not swapcontext for every switch: it also saves and restores the signal mask, a system
// call each time. A block reduction (reduce.cuh) switches 256 threads at each of its 9
// barriers; with swapcontext a Fast-SCNN training step at 64x128 spent 170 s in those system
// calls, with _setjmp/_longjmp about 15 s.
//
// Because threads only switch at barriers, a missing __syncthreads does not make the result
// random, as it would on a GPU; it makes it depend on the order in which threads run. The race
// check (MTS_CUDA_RACECHECK=1) therefore runs every launch twice, threads and blocks in
// forward and in reverse order, and reports a difference in the outputs.
#pragma once

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace mts {

enum class State { running, barrier, warp, done };

struct Fiber {
    jmp_buf registers;     // where it stopped, once started
    ucontext_t start;      // how it starts: fiber_main on its own stack
    bool started;
    char* stack;
    int thread;            // the thread it runs: threadIdx as one number, x fastest
    State state;
    const char* file;      // where it waits
    int line;
    int op, arg, width;    // the warp operation it waits at
    unsigned mask;
    long long bits, result;
};

constexpr size_t STACK_BYTES = 256 * 1024;

// The launch in progress.
struct Launch {
    const char* kernel_name;
    void (*kernel)();
    void (*invoke)(void (*)(), void**);
    void** args;
    int threads;                      // per block
    bool reverse;                     // run threads and blocks last to first
    int started;                      // threads of this block started so far
    std::vector<char> returned;       // per thread of this block
    jmp_buf scheduler;
    Fiber* current;
    std::vector<Fiber*> idle, waiting;
    std::string error;
};
static Launch L;

// Every __shared__ array is filled with 0xFF bytes (NaN) when the first thread of a block
// reaches its declaration, so that reading an element no thread of the block wrote shows.
struct SharedArray { void* array; size_t bytes; long long block; };
static std::vector<SharedArray> shared_arrays;
static long long block_serial;

// False only while a kernel's own code runs: the trace (trace.h) skips the emulator's accesses
// (its bookkeeping at every barrier would otherwise cost more than the kernel's).
static volatile bool in_emulator = true;
// The shared arrays again as a plain array: the trace looks addresses up in it on every access,
// and a std::vector's accessors are calls, instrumented in the traced build.
struct SharedRange { uintptr_t begin, end; };
static SharedRange shared_ranges[64];
static int shared_range_count;

void shared_array(void* array, size_t bytes)
{
    in_emulator = true;  // called by a kernel: back to false below
    for (SharedArray& s : shared_arrays)
        if (s.array == array) {
            if (s.block != block_serial) memset(array, 0xFF, bytes), s.block = block_serial;
            in_emulator = false;
            return;
        }
    shared_arrays.push_back({array, bytes, block_serial});
    if (shared_range_count < 64) shared_ranges[shared_range_count++] = {(uintptr_t)array, (uintptr_t)array + bytes};
    memset(array, 0xFF, bytes);
    in_emulator = false;
}

static void set_thread_index(int t)
{
    threadIdx.x = t % blockDim.x;
    threadIdx.y = t / blockDim.x % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
}

// Start threads on the current fiber, one after another, until all have started.
static void run_threads()
{
    while (L.started < L.threads) {
        const int n = L.started++;
        const int t = L.reverse ? L.threads - 1 - n : n;
        L.current->thread = t;
        set_thread_index(t);
        in_emulator = false;
        L.invoke(L.kernel, L.args);     // returns when the thread is done; it may wait inside
        in_emulator = true;
        L.returned[L.current->thread] = 1;
    }
}

// Switch from the running fiber back to the scheduler; returns when the scheduler resumes it.
static void to_scheduler()
{
    in_emulator = true;
    if (_setjmp(L.current->registers) == 0) _longjmp(L.scheduler, 1);
    in_emulator = false;            // back in the kernel (or in run_threads, which sets it again)
    asm volatile("" ::: "memory");  // other threads wrote memory meanwhile: read it again
}

// The life of a fiber: run threads; when none are left, park until the next block needs it.
static void fiber_main()
{
    for (;;) {
        run_threads();
        L.current->state = State::done;
        to_scheduler();
    }
}

static Fiber* new_fiber()
{
    if (!L.idle.empty()) {
        Fiber* f = L.idle.back();
        L.idle.pop_back();
        return f;
    }
    const size_t page = sysconf(_SC_PAGESIZE);
    Fiber* f = new Fiber();
    f->stack = static_cast<char*>(mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(f->stack, page, PROT_NONE);  // a stack overflow faults instead of corrupting
    getcontext(&f->start);
    f->start.uc_stack.ss_sp = f->stack + page;
    f->start.uc_stack.ss_size = STACK_BYTES;
    makecontext(&f->start, fiber_main, 0);
    return f;
}

// Switch to fiber f until its thread returns or waits.
static void resume(Fiber* f)
{
    L.current = f;
    f->state = State::running;
    set_thread_index(f->thread);
    if (_setjmp(L.scheduler) == 0) {
        if (!f->started) {
            f->started = true;
            setcontext(&f->start);
        }
        _longjmp(f->registers, 1);
    }
    (f->state == State::done ? L.idle : L.waiting).push_back(f);
}

// Called by a waiting thread: switch back to the scheduler; returns when released.
static void suspend(State why, const char* file, int line)
{
    Fiber* f = L.current;
    f->state = why;
    f->file = file;
    f->line = line;
    to_scheduler();
}

void barrier(const char* file, int line)
{
    suspend(State::barrier, file, line);
}

long long warp_op(int op, unsigned mask, long long bits, int arg, int width, const char* file, int line)
{
    Fiber* f = L.current;
    f->op = op, f->mask = mask, f->bits = bits, f->arg = arg, f->width = width;
    suspend(State::warp, file, line);
    return L.current->result;
}

static const char* OP_NAMES[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                 "__shfl_xor_sync", "__ballot_sync", "__any_sync",
                                 "__all_sync", "__syncwarp"};

static bool fail(const std::string& what)
{
    L.error = std::string(L.kernel_name) + ", block (" + std::to_string(blockIdx.x) + ", " +
              std::to_string(blockIdx.y) + ", " + std::to_string(blockIdx.z) + "): " + what;
    return false;
}

static std::string where(const Fiber* f)
{
    return std::string(f->state == State::barrier ? "__syncthreads" : OP_NAMES[f->op]) + " at " +
           f->file + ":" + std::to_string(f->line);
}

static std::string thread_list(const std::vector<int>& threads)
{
    std::string s;
    for (size_t i = 0; i < threads.size() && i < 8; ++i) s += (i ? ", " : "") + std::to_string(threads[i]);
    if (threads.size() > 8) s += ", ... (" + std::to_string(threads.size()) + " threads)";
    return s;
}

// The value lane `lane` reads in warp operation `f`, from the lanes' fibers `at`.
static bool exchange(Fiber* f, int lane, Fiber* const* at, long long* result)
{
    const int w = f->width, seg = lane / w * w;
    int src = lane;
    switch (f->op) {
    case SHFL: src = seg + f->arg % w; break;
    case SHFL_UP: src = lane % w >= f->arg ? lane - f->arg : lane; break;
    case SHFL_DOWN: src = lane % w + f->arg < w ? lane + f->arg : lane; break;
    case SHFL_XOR: src = (lane ^ f->arg) / w > lane / w ? lane : lane ^ f->arg; break;
    default: {
        long long ballot = 0;
        for (int l = 0; l < 32; ++l)
            if ((f->mask >> l & 1) && at[l]->bits) ballot |= 1LL << l;
        *result = f->op == BALLOT ? ballot : f->op == ANY ? ballot != 0
                : f->op == ALL ? ballot == (long long)f->mask : 0;
        return true;
    }
    }
    if (src < 0 || src > 31 || !(f->mask >> src & 1))
        return fail(where(f) + ": lane " +
                    std::to_string(lane) + " reads lane " + std::to_string(src) + ", which is not in the mask");
    *result = at[src]->bits;
    return true;
}

// Complete the warp operations whose lanes have all arrived; false (with L.error) if one never can.
// Linear in the waiting threads: they are indexed by thread once, and each warp's lanes read
// from that index (a block of 256 threads at a shuffle used to cost 256 x 256 look-ups here).
static bool release_warps(std::vector<Fiber*>& ready)
{
    std::vector<Fiber*> by_thread(L.threads, nullptr);
    for (Fiber* f : L.waiting) by_thread[f->thread] = f;
    std::vector<Fiber*> lanes(32);
    std::vector<std::pair<int, unsigned>> seen;  // (warp, mask) groups already looked at
    for (Fiber* f : L.waiting) {
        const int base = f->thread / 32 * 32;
        if (f->state != State::warp) continue;
        if (std::find(seen.begin(), seen.end(), std::make_pair(base, f->mask)) != seen.end()) continue;
        seen.emplace_back(base, f->mask);
        for (int l = 0; l < 32; ++l) lanes[l] = base + l < L.threads ? by_thread[base + l] : nullptr;
        if (f->width < 1 || f->width > 32 || (f->width & (f->width - 1)))
            return fail(where(f) + ": width " + std::to_string(f->width) + " is not a power of 2 up to 32");
        bool all_here = true;
        for (int l = 0; l < 32; ++l) {
            if (!(f->mask >> l & 1)) continue;
            if (base + l >= L.threads)
                return fail(where(f) + ": the mask names lane " + std::to_string(l) + ", which the block does not have");
            if (L.returned[base + l])
                return fail(where(f) + ": lane " + std::to_string(l) + " (thread " + std::to_string(base + l) +
                            ") returned without reaching it");
            Fiber* g = lanes[l];
            if (g == nullptr) { all_here = false; continue; }
            if (g->state != State::warp || g->op != f->op || g->mask != f->mask || g->line != f->line)
                all_here = false;
        }
        if (!all_here) continue;
        for (int l = 0; l < 32; ++l)
            if (f->mask >> l & 1)
                if (!exchange(lanes[l], l, lanes.data(), &lanes[l]->result)) return false;
        for (int l = 0; l < 32; ++l)
            if (f->mask >> l & 1) ready.push_back(lanes[l]);
    }
    return true;
}

// Nothing can run: find the threads that may go on, or explain why none can.
static bool release(std::vector<Fiber*>& ready)
{
    if (!release_warps(ready)) return false;
    if (ready.empty()) {
        std::vector<int> at_barrier, at_warp, gone;
        for (Fiber* f : L.waiting) (f->state == State::barrier ? at_barrier : at_warp).push_back(f->thread);
        for (int t = 0; t < L.threads; ++t)
            if (L.returned[t]) gone.push_back(t);
        if (!at_warp.empty()) {
            Fiber* f = *std::find_if(L.waiting.begin(), L.waiting.end(),
                                     [](Fiber* g) { return g->state == State::warp; });
            return fail("deadlock: threads " + thread_list(at_warp) + " wait at " + where(f) +
                        ", which the other lanes of their mask never reach" +
                        (at_barrier.empty() ? "" : " (threads " + thread_list(at_barrier) +
                         " wait at __syncthreads)"));
        }
        const Fiber* first = L.waiting[0];
        for (Fiber* f : L.waiting)
            if (f->line != first->line || (f->file != first->file && strcmp(f->file, first->file) != 0))
                return fail("threads wait at two different barriers, " + where(first) + " and " +
                            where(f) + ": a barrier must be reached by every thread of the block "
                            "at the same place");
        if (!gone.empty())
            return fail(where(first) + " is reached by " +
                        std::to_string(at_barrier.size()) + " of " + std::to_string(L.threads) +
                        " threads; threads " + thread_list(gone) + " returned without reaching it. "
                        "Every thread of a block must reach every barrier (return after it, not before)");
        ready = L.waiting;
    }
    for (Fiber* f : ready) f->state = State::running;
    L.waiting.erase(std::remove_if(L.waiting.begin(), L.waiting.end(),
                                   [](Fiber* f) { return f->state == State::running; }),
                    L.waiting.end());
    auto order = [](Fiber* a, Fiber* b) { return L.reverse ? a->thread > b->thread : a->thread < b->thread; };
    if (!std::is_sorted(ready.begin(), ready.end(), order)) std::sort(ready.begin(), ready.end(), order);
    return true;
}

static bool run_block()
{
    ++block_serial;
    L.started = 0;
    L.returned.assign(L.threads, 0);
    for (;;) {
        if (L.started < L.threads) {
            resume(new_fiber());
            continue;
        }
        if (L.waiting.empty()) return true;
        std::vector<Fiber*> ready;
        if (!release(ready)) return false;
        for (Fiber* f : ready) resume(f);
    }
}

// ---------------------------------------------------------------- the table of kernels

// One kernel instantiation, e.g. im2col<float>: its address, how to call it with an array of
// pointers to its arguments, and its parameter types as text, for the launch checks.
struct Entry {
    const char* name;
    void (*kernel)();
    void (*invoke)(void (*)(), void**);
    std::string signature;
};

template <class T> struct type_name { static std::string get() { return "?"; } };
#define MTS_TYPE_NAME(T) template <> struct type_name<T> { static std::string get() { return #T; } };
MTS_TYPE_NAME(bool) MTS_TYPE_NAME(char) MTS_TYPE_NAME(signed char) MTS_TYPE_NAME(unsigned char)
MTS_TYPE_NAME(short) MTS_TYPE_NAME(unsigned short) MTS_TYPE_NAME(int) MTS_TYPE_NAME(unsigned int)
MTS_TYPE_NAME(long) MTS_TYPE_NAME(unsigned long) MTS_TYPE_NAME(long long)
MTS_TYPE_NAME(unsigned long long) MTS_TYPE_NAME(float) MTS_TYPE_NAME(double)
template <class T> struct type_name<const T> { static std::string get() { return "const " + type_name<T>::get(); } };
template <class T> struct type_name<T*> { static std::string get() { return type_name<T>::get() + "*"; } };

template <class... A, size_t... I>
void invoke_with(void (*kernel)(A...), void** args, std::index_sequence<I...>)
{
    kernel(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <class... A>
void invoke(void (*kernel)(), void** args)
{
    invoke_with(reinterpret_cast<void (*)(A...)>(kernel), args, std::index_sequence_for<A...>{});
}

template <class... A>
Entry entry(const char* name, void (*kernel)(A...))
{
    std::string signature;
    ((signature += (signature.empty() ? "" : ",") + type_name<A>::get()), ...);
    return {name, reinterpret_cast<void (*)()>(kernel), &invoke<A...>, signature};
}

}  // namespace mts

extern const mts::Entry mts_entries[];
extern const int mts_entry_count;

extern "C" {

int mts_count() { return mts_entry_count; }
const char* mts_name(int k) { return mts_entries[k].name; }
const char* mts_signature(int k) { return mts_entries[k].signature.c_str(); }

// Run kernel k over grid x block with args (each a pointer to one argument's value).
// Returns 0, or 1 with the reason in err.
int mts_launch(int k, const unsigned* grid, const unsigned* block, void** args, int reverse,
               char* err, int err_size)
{
    using namespace mts;
    L.kernel_name = mts_entries[k].name;
    L.kernel = mts_entries[k].kernel;
    L.invoke = mts_entries[k].invoke;
    L.args = args;
    L.reverse = reverse != 0;
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    L.threads = block[0] * block[1] * block[2];
    const long long blocks = (long long)grid[0] * grid[1] * grid[2];
    bool ok = true;
    for (long long b = 0; b < blocks && ok; ++b) {
        const long long id = L.reverse ? blocks - 1 - b : b;
        blockIdx = {unsigned(id % grid[0]), unsigned(id / grid[0] % grid[1]),
                    unsigned(id / ((long long)grid[0] * grid[1]))};
        ok = run_block();
    }
    fflush(stdout);  // a kernel's printf appears before what Python prints next
    if (ok) return 0;
    for (Fiber* f : L.waiting) {  // abandon the stopped threads: their fibers start afresh
        f->started = false;
        L.idle.push_back(f);
    }
    L.waiting.clear();
    snprintf(err, err_size, "%s", L.error.c_str());
    return 1;
}

}  // extern "C"
