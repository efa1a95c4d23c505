// trace.cpp: the bookkeeping of memory traces (how accesses become requests: trace.h).
//
// Compiled without -fsanitize=thread and linked beside the traced kernels: the sorting and
// containers here would otherwise report their own loads and stores to the hooks.
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

namespace mts {
namespace trace {

struct Access {
    uint32_t warp, k;          // warp of the block; k-th execution of the instruction by this thread
    uint32_t pc_id;            // the access instruction, numbered in order of first sight
    uintptr_t address;
    uint8_t size, write, shared;
};

// A device array's memory; `at` is where it would start on a GPU, whose allocations begin on
// 256-byte boundaries (NumPy's host memory is aligned to 16 only, which would split sectors).
struct Range { uintptr_t begin, end, at; };

// Counts of one launch, in the order mts_trace_end hands them to Python (trace.py FIELDS).
struct Counts {
    double load_requests, load_sectors, store_requests, store_sectors,
           shared_requests, shared_wavefronts, unique_read, unique_written, block_sectors, bank_conflicts;
};

static std::vector<Range> device_ranges;       // sorted by begin
static long long block;                        // block_serial of the accesses in `accesses`
static std::vector<Access> accesses;           // of that block
// Per thread of the block: (pc, times seen) for each access instruction it executed. A kernel
// has a few dozen access instructions, so a short list searched from the front is fastest.
struct Seen { uintptr_t pc; uint32_t times, id; };
static std::vector<std::vector<Seen>> executions;
static std::vector<uintptr_t> instructions;  // of this launch: pc_id -> pc
static std::vector<Range> read_ranges, written_ranges;
// Per access instruction: the range it last added to, extended while the next thread's access
// continues it (threads run in order, so a coalesced stream becomes one range).
static std::vector<std::pair<uintptr_t, size_t>> open_read, open_written;
static Counts counts;

// The GPU address of host address a if it lies in a device array, else 0.
// Binary search over a step's hundreds of arrays on every access (the scheduler's own accesses
// included) was most of a traced run's time, so each 4 KiB page remembers its answer when the
// whole page lies in one array or in a gap between arrays.
struct Page { uintptr_t page; long index; };  // index: of the array, GAP, or MIXED (search)
constexpr long GAP = -1, MIXED = -2;
constexpr int PAGE_BITS = 12, PAGES = 1 << 14;
static Page pages[PAGES];

// How many arrays begin at or before a.
static long after(uintptr_t a)
{
    return std::upper_bound(device_ranges.begin(), device_ranges.end(), a,
                            [](uintptr_t x, const Range& r) { return x < r.begin; }) - device_ranges.begin();
}

// The array a lies in, or GAP.
static long find(uintptr_t a)
{
    const long n = after(a);
    return n > 0 && a < device_ranges[n - 1].end ? n - 1 : GAP;
}

// The GPU address of host address a if it lies in a device array, else 0.
static uintptr_t on_device(uintptr_t a)
{
    const uintptr_t page = a >> PAGE_BITS;
    Page& p = pages[page % PAGES];
    if (p.page != page) {
        const uintptr_t first = page << PAGE_BITS, last = first + (uintptr_t(1) << PAGE_BITS) - 1;
        const long i = find(first);
        const bool whole = i == find(last) && (i != GAP || after(first) == after(last));
        p = {page, whole ? i : MIXED};
    }
    const long i = p.index == MIXED ? find(a) : p.index;
    return i == GAP ? 0 : a - device_ranges[i].begin + device_ranges[i].at;
}



// One request: the accesses [first, last) of one warp to one instruction execution.
static std::vector<uintptr_t> units;  // a request's sectors or words (kept: no allocation per request)

// The distinct sectors of the block so far: a block runs on one SM, whose L1 serves its
// repeated sectors, so only these need to come from L2 (at least).
static std::vector<uintptr_t> block_sectors;

static void request(const Access* first, const Access* last)
{
    units.clear();
    if (!first->shared) {
        for (const Access* a = first; a != last; ++a)
            for (uintptr_t s = a->address >> 5; s <= (a->address + a->size - 1) >> 5; ++s) units.push_back(s);
        std::sort(units.begin(), units.end());
        const auto end = std::unique(units.begin(), units.end());
        const double sectors = end - units.begin();
        block_sectors.insert(block_sectors.end(), units.begin(), end);
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
    // A request moving more than 128 bytes (8-byte values) needs several wavefronts anyway;
    // only the ones beyond that are conflicts.
    const int by_bytes = std::max(1, int((units.size() * 4 + 127) / 128));
    counts.shared_requests += 1;
    counts.shared_wavefronts += std::max(most, by_bytes);
    counts.bank_conflicts += std::max(most, by_bytes) - by_bytes;
}

// Group the accesses of the finished block into requests. The block's accesses as (warp, instruction, execution) keys packed in 64 bits beside their
// index: sorting these is much faster than sorting the accesses themselves.
static std::vector<std::pair<uint64_t, uint32_t>> keys;
static std::vector<Access> grouped;

static void flush_block()
{
    keys.clear();
    for (size_t i = 0; i < accesses.size(); ++i) {
        const Access& a = accesses[i];
        keys.push_back({uint64_t(a.warp) << 54 | uint64_t(a.pc_id) << 40 | a.k, uint32_t(i)});
    }
    std::sort(keys.begin(), keys.end());
    size_t i = 0;
    while (i < keys.size()) {
        size_t j = i + 1;
        while (j < keys.size() && keys[j].first == keys[i].first) ++j;
        grouped.clear();
        for (size_t m = i; m < j; ++m) grouped.push_back(accesses[keys[m].second]);
        request(grouped.data(), grouped.data() + grouped.size());
        i = j;
    }
    std::sort(block_sectors.begin(), block_sectors.end());
    counts.block_sectors += std::unique(block_sectors.begin(), block_sectors.end()) - block_sectors.begin();
    block_sectors.clear();
    accesses.clear();
    for (auto& e : executions) e.clear();
}

// (how many times thread has executed pc before, the number of pc)
static std::pair<uint32_t, uint32_t> times_seen(int thread, uintptr_t pc)
{
    if (executions.size() <= (size_t)thread) executions.resize(thread + 1);
    for (Seen& e : executions[thread])
        if (e.pc == pc) return {e.times++, e.id};
    const uint32_t id = std::find(instructions.begin(), instructions.end(), pc) - instructions.begin();
    if (id == instructions.size()) instructions.push_back(pc);
    executions[thread].push_back({pc, 1, id});
    return {0, id};
}

// Add [a, a + size) to ranges, extending the range instruction pc added last when they touch.
static void add_range(std::vector<Range>& ranges, std::vector<std::pair<uintptr_t, size_t>>& open,
                      uintptr_t pc, uintptr_t a, int size)
{
    for (auto& o : open)
        if (o.first == pc) {
            Range& r = ranges[o.second];
            if (a <= r.end && a + size >= r.begin) {
                r.begin = std::min(r.begin, a), r.end = std::max(r.end, a + size);
                return;
            }
            o.second = ranges.size();
            ranges.push_back({a, a + size, 0});
            return;
        }
    open.push_back({pc, ranges.size()});
    ranges.push_back({a, a + size, 0});
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

extern "C" {

bool mts_tracing;

// One access of thread `thread` of block `serial` by instruction pc: to shared memory at offset
// a of its array, or to host address a (counted if it lies in a device array).
void mts_trace_access(int thread, long long serial, uintptr_t pc, uintptr_t a, int size, bool write, bool shared)
{
    using namespace mts::trace;
    if (!shared && (a = on_device(a)) == 0) return;
    if (block != serial) {
        flush_block();
        block = serial;
    }
    const auto [k, id] = times_seen(thread, pc);
    accesses.push_back({uint32_t(thread / 32), k, id, a, uint8_t(size), uint8_t(write), uint8_t(shared)});
    if (!shared) {
        if (write) add_range(written_ranges, open_written, pc, a, size);
        else add_range(read_ranges, open_read, pc, a, size);
    }
}

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
    for (Page& p : pages) p = {0, MIXED};  // page 0 is never a device array's
    open_read.clear();
    open_written.clear();
    instructions.clear();
    block = -1;
    mts_tracing = true;
}

// Stop tracing; the launch's counts into out (the fields of Counts, in order).
__attribute__((visibility("default"))) void mts_trace_end(double* out)
{
    using namespace mts::trace;
    flush_block();
    counts.unique_read = merged_bytes(read_ranges);
    counts.unique_written = merged_bytes(written_ranges);
    mts_tracing = false;
    memcpy(out, &counts, sizeof(counts));
}
}
