// Differential fuzz target: SpscRing against std::deque under a random sequence of single and
// burst pushes and pops. Elements are heap-owning (unique_ptr) so a leak or double destroy is
// caught by ASan/LSan, and a wrong order or count by the comparison with the model.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "slipway/core/spsc_ring.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t cap_hint = 1 + (data[0] % 200);
    slipway::SpscRing<std::unique_ptr<std::uint64_t>> ring(cap_hint);
    std::deque<std::uint64_t> model;
    std::uint64_t next = 0;
    std::vector<std::unique_ptr<std::uint64_t>> buf;

    for (std::size_t i = 1; i < size; ++i) {
        const std::uint8_t op = data[i] & 3;
        const std::size_t n = data[i] >> 2;  // burst size 0..63
        switch (op) {
            case 0: {
                auto v = std::make_unique<std::uint64_t>(next);
                const bool ok = ring.try_push(std::move(v));
                if (ok != (model.size() < ring.capacity())) __builtin_trap();
                if (ok) {
                    if (v) __builtin_trap();  // moved from
                    model.push_back(next++);
                } else if (!v || *v != next) {
                    __builtin_trap();  // a refused push must leave the value alone
                }
                break;
            }
            case 1: {
                buf.clear();
                for (std::size_t k = 0; k < n; ++k)
                    buf.push_back(std::make_unique<std::uint64_t>(next + k));
                const std::size_t pushed = ring.push_burst(buf);
                const std::size_t room = ring.capacity() - model.size();
                if (pushed != (n < room ? n : room)) __builtin_trap();
                for (std::size_t k = 0; k < pushed; ++k)
                    model.push_back(next + k);
                for (std::size_t k = pushed; k < n; ++k)
                    if (!buf[k] || *buf[k] != next + k) __builtin_trap();
                next += pushed;
                break;
            }
            case 2: {
                std::unique_ptr<std::uint64_t> out;
                const bool ok = ring.try_pop(out);
                if (ok != !model.empty()) __builtin_trap();
                if (ok) {
                    if (!out || *out != model.front()) __builtin_trap();
                    model.pop_front();
                }
                break;
            }
            default: {
                buf.clear();
                buf.resize(n);
                const std::size_t got = ring.pop_burst(buf);
                if (got != (n < model.size() ? n : model.size())) __builtin_trap();
                for (std::size_t k = 0; k < got; ++k) {
                    if (!buf[k] || *buf[k] != model.front()) __builtin_trap();
                    model.pop_front();
                }
            }
        }
        if (ring.size_approx() != model.size()) __builtin_trap();
    }
    return 0;  // the ring is destroyed with elements inside: LSan checks they were freed
}
