// NAT FlowTable lookups (hit and miss, single and burst of 32) and inserts at 64 Ki and 1 Mi
// flows, beside boost::unordered_flat_map and tbb::concurrent_hash_map measured in the same run.
#include <benchmark/benchmark.h>
#include <oneapi/tbb/concurrent_hash_map.h>

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <span>
#include <type_traits>
#include <vector>

#include "slipway/nat/flow_table.hpp"

namespace {

using slipway::IpProto;
using slipway::Ipv4Addr;
using slipway::nat::FlowId;
using slipway::nat::FlowKey;
using slipway::nat::FlowTable;
using slipway::nat::FlowTableConfig;
using slipway::nat::kNoFlow;

constexpr std::size_t kBurst = 32;
// Length of each precomputed lookup stream: far more than the 1024-slot cache in front of our
// table, and read in order, so only the table's own memory accesses are random.
constexpr std::size_t kStream = std::size_t{1} << 20;
static_assert(kStream % kBurst == 0);

// All three tables hash with FlowKey::hash(), so the comparison is of the tables, not the hashes.
// It ends in splitmix64's finaliser, so boost may use it as is (no extra post-mixing).
struct FlowHash {
    using is_avalanching = void;
    std::size_t operator()(const FlowKey& k) const noexcept { return k.hash(); }
};
struct FlowHashCompare {
    static std::size_t hash(const FlowKey& k) noexcept { return k.hash(); }
    static bool equal(const FlowKey& a, const FlowKey& b) noexcept { return a == b; }
};
using FlatMap = boost::unordered_flat_map<FlowKey, FlowId, FlowHash>;
using TbbMap = tbb::concurrent_hash_map<FlowKey, FlowId, FlowHashCompare>;

FlowTableConfig config(std::size_t n) {
    return FlowTableConfig{
        .capacity = static_cast<std::uint32_t>(n), .max_fd = 1024, .cache_slots = 1024};
}

// A flow as a guest behind the NAT opens it: guest in 192.168.127.2-254, any remote, random
// ports, about three TCP flows to one UDP.
FlowKey random_key(std::mt19937_64& rng) {
    const std::uint64_t a = rng();
    const std::uint64_t b = rng();
    FlowKey k;
    k.guest_ip =
        Ipv4Addr::from_octets(192, 168, 127, static_cast<std::uint8_t>(2 + (a & 0xffff) % 253));
    k.remote_ip = Ipv4Addr{static_cast<std::uint32_t>(a >> 32)};
    k.guest_port = static_cast<std::uint16_t>(b);
    k.remote_port = static_cast<std::uint16_t>(b >> 16);
    k.proto = (b >> 32) % 4 == 0 ? IpProto::udp : IpProto::tcp;
    return k;
}

// N distinct flows in insertion order, and two lookup streams: `hits` visits them in a random
// order, `misses` holds keys that none of the tables contains.
struct Dataset {
    std::vector<FlowKey> keys;
    std::vector<FlowKey> hits;
    std::vector<FlowKey> misses;

    explicit Dataset(std::size_t n) {
        std::mt19937_64 rng(0x5117'3a7f'00d5'eed5ULL + n);
        boost::unordered_flat_set<FlowKey, FlowHash> seen;
        seen.reserve(n);
        keys.reserve(n);
        while (keys.size() < n)
            if (const FlowKey k = random_key(rng); seen.insert(k).second) keys.push_back(k);
        hits.reserve(kStream);
        for (std::size_t i = 0; i < kStream; ++i)
            hits.push_back(keys[static_cast<std::size_t>(rng() % n)]);
        misses.reserve(kStream);
        while (misses.size() < kStream)
            if (const FlowKey k = random_key(rng); !seen.contains(k)) misses.push_back(k);
    }
};

// Datasets and filled tables are built once per size and shared by every benchmark and
// repetition: filling a 1 Mi table takes longer than measuring lookups in it.
template <class T>
T& cached(std::size_t n) {
    static std::map<std::size_t, std::unique_ptr<T>> by_size;
    auto& p = by_size[n];
    if (!p) p = std::make_unique<T>(n);
    return *p;
}

const Dataset& dataset(std::size_t n) {
    return cached<Dataset>(n);
}

std::size_t size_of(const benchmark::State& state) {
    return static_cast<std::size_t>(state.range(0));
}

// The three tables behind one interface: lookup() is a single find, lookup_burst() fills `out`
// for kBurst keys (a loop of finds for the baselines: they have no burst API), fill() inserts
// keys[i] -> i and reports whether every insert succeeded.
struct Ours {
    FlowTable table;
    explicit Ours(std::size_t n) : table(config(n)) {}
    FlowId lookup(const FlowKey& k) noexcept { return table.find(k); }
    void lookup_burst(std::span<const FlowKey> keys, std::span<FlowId> out) noexcept {
        table.find_burst(keys, out);
    }
    bool fill(const std::vector<FlowKey>& keys) noexcept {
        bool ok = true;
        for (const FlowKey& k : keys) {
            const auto r = table.insert(k);
            benchmark::DoNotOptimize(r);
            ok &= r.has_value();
        }
        return ok;
    }
};

struct Flat {
    FlatMap map;
    explicit Flat(std::size_t n) { map.reserve(n); }
    FlowId lookup(const FlowKey& k) const noexcept {
        const auto it = map.find(k);
        return it == map.end() ? kNoFlow : it->second;
    }
    void lookup_burst(std::span<const FlowKey> keys, std::span<FlowId> out) const noexcept {
        for (std::size_t i = 0; i < keys.size(); ++i)
            out[i] = lookup(keys[i]);
    }
    bool fill(const std::vector<FlowKey>& keys) {
        bool ok = true;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            const auto r = map.emplace(keys[i], static_cast<FlowId>(i));
            benchmark::DoNotOptimize(r);
            ok &= r.second;
        }
        return ok;
    }
    // Empty again with the same buckets (boost keeps them on clear()).
    void reset(std::size_t) { map.clear(); }
};

struct Tbb {
    TbbMap map;
    explicit Tbb(std::size_t n) { map.rehash(n); }
    FlowId lookup(const FlowKey& k) const {
        TbbMap::const_accessor a;
        return map.find(a, k) ? a->second : kNoFlow;
    }
    void lookup_burst(std::span<const FlowKey> keys, std::span<FlowId> out) const {
        for (std::size_t i = 0; i < keys.size(); ++i)
            out[i] = lookup(keys[i]);
    }
    bool fill(const std::vector<FlowKey>& keys) {
        bool ok = true;
        for (std::size_t i = 0; i < keys.size(); ++i) {
            const bool fresh = map.insert(TbbMap::value_type(keys[i], static_cast<FlowId>(i)));
            benchmark::DoNotOptimize(fresh);
            ok &= fresh;
        }
        return ok;
    }
    // clear() gives the buckets back, so ask for N again (the baseline's reserve).
    void reset(std::size_t n) {
        map.clear();
        map.rehash(n);
    }
};

// A table of kind T holding the dataset's N flows; nullptr (after SkipWithError) if filling it
// failed or it answers a lookup wrongly, so no figure is ever published for a broken table.
template <class T>
struct Filled {
    std::unique_ptr<T> table;
    explicit Filled(std::size_t n) : table(std::make_unique<T>(n)) {
        const Dataset& d = dataset(n);
        if (!table->fill(d.keys)) {
            table.reset();
            return;
        }
        for (std::size_t i = 0; i < kStream; ++i)
            if (table->lookup(d.hits[i]) == kNoFlow || table->lookup(d.misses[i]) != kNoFlow) {
                table.reset();
                return;
            }
    }
};

template <class T>
T* filled(benchmark::State& state) {
    T* t = cached<Filled<T>>(size_of(state)).table.get();
    if (t == nullptr) state.SkipWithError("table failed to fill or answered a lookup wrongly");
    return t;
}

// One key per iteration.
template <class T>
void run_single(benchmark::State& state, bool hit) {
    T* t = filled<T>(state);
    if (t == nullptr) return;
    const Dataset& d = dataset(size_of(state));
    const std::vector<FlowKey>& stream = hit ? d.hits : d.misses;
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(t->lookup(stream[i]));
        i = (i + 1) % kStream;
    }
    state.SetItemsProcessed(state.iterations());
}

// kBurst keys per iteration, as a frame burst from the guest would bring them.
template <class T>
void run_burst(benchmark::State& state, bool hit) {
    T* t = filled<T>(state);
    if (t == nullptr) return;
    const Dataset& d = dataset(size_of(state));
    const std::vector<FlowKey>& stream = hit ? d.hits : d.misses;
    std::array<FlowId, kBurst> out{};
    std::size_t i = 0;
    for (auto _ : state) {
        t->lookup_burst(std::span<const FlowKey>(stream.data() + i, kBurst), out);
        benchmark::DoNotOptimize(out.data());
        i = (i + kBurst) % kStream;
    }
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBurst));
}

// N inserts into an empty table with room for N. Every table starts each iteration with its
// memory already mapped (ours is built, the baselines are emptied, outside the timing), so no
// one pays first-touch page faults in the timed region; tbb's per-node allocations are its own.
template <class T>
void run_insert(benchmark::State& state) {
    const std::size_t n = size_of(state);
    const Dataset& d = dataset(n);
    bool ok = true;
    if constexpr (std::is_same_v<T, Ours>) {
        for (auto _ : state) {
            state.PauseTiming();
            auto t = std::make_unique<Ours>(n);
            state.ResumeTiming();
            ok &= t->fill(d.keys);
            state.PauseTiming();
            t.reset();
            state.ResumeTiming();
        }
    } else {
        T t(n);
        ok &= t.fill(d.keys);  // maps the memory the timed fills reuse
        for (auto _ : state) {
            state.PauseTiming();
            t.reset(n);
            state.ResumeTiming();
            ok &= t.fill(d.keys);
        }
    }
    if (!ok) state.SkipWithError("an insert failed");
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}

void BM_FlowTable_FindHit_Single(benchmark::State& s) {
    run_single<Ours>(s, true);
}
void BM_FlowTable_FindMiss_Single(benchmark::State& s) {
    run_single<Ours>(s, false);
}
void BM_FlowTable_FindHit_Burst32(benchmark::State& s) {
    run_burst<Ours>(s, true);
}
void BM_FlowTable_FindMiss_Burst32(benchmark::State& s) {
    run_burst<Ours>(s, false);
}
void BM_FlowTable_Insert(benchmark::State& s) {
    run_insert<Ours>(s);
}

void BM_FlatMap_FindHit_Single(benchmark::State& s) {
    run_single<Flat>(s, true);
}
void BM_FlatMap_FindMiss_Single(benchmark::State& s) {
    run_single<Flat>(s, false);
}
void BM_FlatMap_FindHit_Burst32(benchmark::State& s) {
    run_burst<Flat>(s, true);
}
void BM_FlatMap_FindMiss_Burst32(benchmark::State& s) {
    run_burst<Flat>(s, false);
}
void BM_FlatMap_Insert(benchmark::State& s) {
    run_insert<Flat>(s);
}

void BM_TbbHashMap_FindHit_Single(benchmark::State& s) {
    run_single<Tbb>(s, true);
}
void BM_TbbHashMap_FindMiss_Single(benchmark::State& s) {
    run_single<Tbb>(s, false);
}
void BM_TbbHashMap_FindHit_Burst32(benchmark::State& s) {
    run_burst<Tbb>(s, true);
}
void BM_TbbHashMap_FindMiss_Burst32(benchmark::State& s) {
    run_burst<Tbb>(s, false);
}
void BM_TbbHashMap_Insert(benchmark::State& s) {
    run_insert<Tbb>(s);
}

}  // namespace

// Sizes: the default --max-flows (64 Ki) and a large host's (1 Mi). A short MinTime keeps the
// binary's 5 repetitions under a minute on two cores; summarize.py ignores the name suffix.
#define SLW_FLOW_SIZES ->Arg(64 * 1024)->Arg(1024 * 1024)->MinTime(0.2)
BENCHMARK(BM_FlowTable_FindHit_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_FlatMap_FindHit_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_TbbHashMap_FindHit_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_FlowTable_FindMiss_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_FlatMap_FindMiss_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_TbbHashMap_FindMiss_Single) SLW_FLOW_SIZES;
BENCHMARK(BM_FlowTable_FindHit_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_FlatMap_FindHit_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_TbbHashMap_FindHit_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_FlowTable_FindMiss_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_FlatMap_FindMiss_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_TbbHashMap_FindMiss_Burst32) SLW_FLOW_SIZES;
BENCHMARK(BM_FlowTable_Insert) SLW_FLOW_SIZES;
BENCHMARK(BM_FlatMap_Insert) SLW_FLOW_SIZES;
BENCHMARK(BM_TbbHashMap_Insert) SLW_FLOW_SIZES;
BENCHMARK_MAIN();
