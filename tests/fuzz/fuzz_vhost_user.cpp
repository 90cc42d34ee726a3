// libFuzzer target: VhostUserSession driven by random sequences of vhost-user messages, with real
// fds (a small memfd as guest memory, eventfds for kicks and calls) and a real VirtioNetDevice on
// an io_context that the input runs now and then, while the "guest" scribbles over its rings.
//
// Input: a list of operations (Harness::step()): fully random messages (request, flags, payload,
// 0-9 fds of either kind), well-formed messages with random fields (memory tables, vring setup,
// features), a canonical bring-up that gets both rings running, writes into guest memory, kicks,
// frames for the guest, loop turns and reconnects.
// Invariants (trap on violation):
//   - a reply is one whole message: version 1, REPLY set, the request it answers, a payload of 8
//     bytes at most and exactly its size field;
//   - a failed handle() (the connection would close) leaves a reason in error();
//   - after reset(): no ring running, no memory mapped, nothing negotiated;
//   - no fd leaks: after every input the process has the fds it had before;
//   - every pool buffer is back once the input is done.
#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/guest/vhost_user.hpp"
#include "slipway/guest/virtio_net.hpp"

namespace {

using namespace slipway;
using namespace slipway::guest;
namespace vu = slipway::guest::vhost_user;
using fuzz::check;

constexpr std::size_t kMemSize = 64 * 1024;
constexpr std::uint64_t kGpa = 0x10000;
constexpr std::uint64_t kUva = 0x7f0000000000ull;
constexpr std::uint32_t kQueueSize = 64;

// Ring layout of the canonical bring-up (queue q at q * 0x1000): desc, avail +0x400, used +0x600.
constexpr std::uint64_t ring_off(unsigned q) {
    return q * 0x1000ull;
}

// The process's open eventfds and guest-memory memfds, the kinds of fd the inputs hand over
// (libFuzzer itself opens pipes now and then, so those are not counted). `print`: list them.
std::size_t open_fds(bool print = false) {
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return 0;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        char target[256] = {};
        const std::string link = std::string("/proc/self/fd/") + e->d_name;
        (void)!::readlink(link.c_str(), target, sizeof target - 1);
        const std::string t(target);
        if (t != "anon_inode:[eventfd]" && t.rfind("/memfd:fuzz-vhost-user", 0) != 0) continue;
        ++n;
        if (print) std::fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
    }
    ::closedir(d);
    return n;
}

// Runs the handlers that are ready, as the network thread's loop would. With no new kick, frame
// or message, the device's work is bounded: a loop still busy after this many handlers is
// spinning (a livelock that would burn a core of slipwayd), which is reported as a failure.
void run_loop(IoContext& io) {
    constexpr int kMaxHandlers = 4096;
    io.restart();
    for (int i = 0; i < kMaxHandlers; ++i) {
        if (io.poll_one() == 0) return;
    }
    std::fprintf(stderr,
                 "fuzz_vhost_user: the loop is still busy after %d handlers with no new "
                 "input: the device spins\n",
                 kMaxHandlers);
    check(false);
}

using slipway::fuzz::Input;

void put32(std::vector<std::byte>& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put64(std::vector<std::byte>& b, std::uint64_t v) {
    put32(b, static_cast<std::uint32_t>(v & 0xffffffffu));
    put32(b, static_cast<std::uint32_t>(v >> 32));
}

// The switch side of the device's port: frames the guest sends are dropped at the end of a step.
class Port final : public SwitchPort {
  public:
    Port() : SwitchPort("fuzz", PortKind::guest, PortCaps{}, 64) {}
    void on_frames_from_switch() noexcept override {}
    void drain() {
        PacketRef f;
        while (to_switch().try_pop(f))
            f.reset();
    }
};

// Process-wide pieces, built once.
struct World {
    World() {
        spdlog::set_level(spdlog::level::off);
        memfd = ::memfd_create("fuzz-vhost-user", MFD_CLOEXEC);
        check(memfd >= 0 && ::ftruncate(memfd, kMemSize) == 0);
        void* p = ::mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        check(p != MAP_FAILED);
        ram = static_cast<std::byte*>(p);
        // Asio creates its reactor (epoll, eventfd, timerfd) with the first watched fd; do that
        // now so the fd count taken before the first input already includes them.
        const int e = ::eventfd(0, EFD_CLOEXEC);
        check(e >= 0);
        { FdWatcher warm(io, e); }
        ::close(e);
    }
    IoContext io;
    PacketPool pool{PoolConfig{256, 8, kDefaultHeadroom}};
    int memfd = -1;
    std::byte* ram = nullptr;
};

World& world() {
    static World w;
    return w;
}

class Harness {
  public:
    explicit Harness(World& w)
        : w_(w), dev_(w.io, w.pool, port_, "fuzz", 1500), session_(dev_, "fuzz", 1500) {}
    ~Harness() {
        for (int fd : kicks_)
            ::close(fd);
    }

    void step(Input& in) {
        const std::uint8_t op = in.u8();
        switch (op % 13) {
            case 0:
            case 1:
                raw_message(in);
                break;
            case 2:
                mem_table(in);
                break;
            case 3:
            case 4:
                vring_message(in);
                break;
            case 5:
                features(in);
                break;
            case 6:
                bring_up(in);
                break;
            case 7:
                scribble(in);
                break;
            case 8:
                kick(in);
                break;
            case 9:
                to_guest(in);
                break;
            case 10:
                run();
                break;
            case 11:
                reconnect();
                break;
            case 12:
                post_chain(in);
                break;
        }
        port_.drain();
    }

    void finish() {
        reconnect();
        run();
        port_.drain();
        dev_.stop_all();
    }

  private:
    // An fd of kind `k`: a duplicate of the guest memory, or a fresh eventfd (remembered so a
    // later step can kick it).
    int make_fd(std::uint8_t k) {
        if ((k & 1) == 0) return ::fcntl(w_.memfd, F_DUPFD_CLOEXEC, 0);
        const int e = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (e < 0) return e;
        if (kicks_.size() < 16) kicks_.push_back(::fcntl(e, F_DUPFD_CLOEXEC, 0));
        last_event_.reset(::fcntl(e, F_DUPFD_CLOEXEC, 0));
        return e;
    }

    void send(std::uint32_t request, std::uint32_t flags, const std::vector<std::byte>& payload,
              std::size_t nfds, std::uint8_t kinds) {
        std::array<UniqueFd, vu::kMaxFds + 1> fds;
        for (std::size_t i = 0; i < nfds && i < fds.size(); ++i)
            fds[i].reset(make_fd(static_cast<std::uint8_t>(kinds >> (i % 8))));
        const vu::MsgHeader h{request, flags, static_cast<std::uint32_t>(payload.size())};
        auto r = session_.handle(h, ByteView(payload.data(), payload.size()),
                                 std::span<UniqueFd>(fds.data(), std::min(nfds, fds.size())));
        if (!r) {
            check(!session_.error().empty());
            reconnect();  // what the attachment does: close the connection
            return;
        }
        if (r->empty()) return;
        auto rh = vu::parse_header(r->first(std::min<std::size_t>(r->size(), vu::kHeaderSize)));
        check(rh.has_value());
        check(rh->request == request);
        check((rh->flags & ~vu::kVersionMask) == vu::kFlagReply);
        check(rh->size <= 8 && r->size() == vu::kHeaderSize + rh->size);
        fuzz::sink(r->size());
    }

    void raw_message(Input& in) {
        const std::uint8_t rb = in.u8();
        const std::uint32_t request = (rb & 0x80) != 0 ? in.u32() : rb % 42u;
        const std::uint8_t fb = in.u8();
        const std::uint32_t flags =
            (fb & 0x80) != 0 ? in.u32() : vu::kVersion | (fb & (vu::kFlagNeedReply));
        const std::size_t size = in.u8();
        std::vector<std::byte> payload(size);
        payload.resize(in.take(payload.data(), size));
        // Mostly no fds; sometimes 1 to 9 of either kind.
        const std::uint8_t nb = in.u8();
        const std::size_t nfds = nb < 160 ? 0 : std::size_t{1} + (nb - 160u) % 9;
        send(request, flags, payload, nfds, in.u8());
    }

    std::uint32_t flags(Input& in) {
        return vu::kVersion | ((in.u8() & 1) != 0 ? vu::kFlagNeedReply : 0);
    }

    void mem_table(Input& in) {
        const std::uint8_t nb = in.u8();
        const std::uint32_t n = nb % 4;
        std::vector<std::byte> p;
        put32(p, (nb & 0x80) != 0 ? n + (nb >> 5u) : n);  // sometimes a count that lies
        put32(p, 0);
        for (std::uint32_t i = 0; i < n; ++i) {
            const std::uint8_t shape = in.u8();
            if ((shape & 3) == 0) {  // anything at all
                put64(p, in.u64());
                put64(p, in.u64());
                put64(p, in.u64());
                put64(p, in.u64());
            } else {  // plausible: inside the memfd, page-ish offsets
                const std::uint64_t off = (in.u16() % (kMemSize / 256)) * 256;
                const std::uint64_t size = 1 + in.u16() % (kMemSize - off);
                put64(p, kGpa + off + i * kMemSize * (shape >> 7));
                put64(p, size);
                put64(p, kUva + off);
                put64(p, off);
            }
        }
        send(vu::req::set_mem_table, flags(in), p, n + ((nb & 0x40) != 0 ? 1 : 0), 0);
    }

    void vring_message(Input& in) {
        static constexpr std::uint32_t kReqs[] = {
            vu::req::set_vring_num,  vu::req::set_vring_addr,  vu::req::set_vring_base,
            vu::req::get_vring_base, vu::req::set_vring_kick,  vu::req::set_vring_call,
            vu::req::set_vring_err,  vu::req::set_vring_enable};
        const std::uint8_t b = in.u8();
        const std::uint32_t r = kReqs[b % 8];
        const std::uint32_t q = (b & 0x80) != 0 ? in.u8() : (b >> 3) & 1;
        std::vector<std::byte> p;
        std::size_t nfds = 0;
        switch (r) {
            case vu::req::set_vring_addr: {
                const std::uint8_t mode = in.u8();
                put32(p, q);
                put32(p, in.u8() & 1);
                for (int i = 0; i < 3; ++i)
                    put64(p, (mode & (1 << i)) != 0 ? in.u64()
                                                    : kUva + ring_off(q & 1) + in.u16() % kMemSize);
                put64(p, 0);
                break;
            }
            case vu::req::set_vring_kick:
            case vu::req::set_vring_call:
            case vu::req::set_vring_err: {
                const std::uint8_t f = in.u8();
                const bool no_fd = (f & 1) != 0;
                put64(p, q | (no_fd ? vu::kVringNoFd : 0));
                nfds = no_fd ? ((f & 2) != 0 ? 1 : 0) : ((f & 2) != 0 ? 0 : 1);
                break;
            }
            default:
                put32(p, q);
                put32(p, (in.u8() & 1) != 0 ? in.u32() : std::uint32_t{in.u16()} % 512u);
                break;
        }
        send(r, flags(in), p, nfds, (in.u8() & 7) != 0 ? 0xff : 0);  // mostly eventfds
    }

    void features(Input& in) {
        const std::uint8_t b = in.u8();
        std::vector<std::byte> p;
        if ((b & 1) != 0) {
            std::uint64_t f = in.u64();
            if ((b & 2) != 0) f &= vu::kOfferedVirtioFeatures;
            put64(p, f);
            send(vu::req::set_features, flags(in), p, 0, 0);
        } else {
            std::uint64_t f = in.u64();
            if ((b & 2) != 0) f &= vu::kOfferedProtocolFeatures;
            put64(p, f);
            send(vu::req::set_protocol_features, flags(in), p, 0, 0);
        }
    }

    // What a VMM sends to start the device, with a few fields taken from the input.
    void bring_up(Input& in) {
        const std::uint8_t b = in.u8();
        std::vector<std::byte> p;
        put64(p, vu::kOfferedProtocolFeatures);
        send(vu::req::set_protocol_features, vu::kVersion, p, 0, 0);
        p.clear();
        put64(p, (vu::kOfferedVirtioFeatures & in.u64()) | vfeat::version_1 |
                     vu::kProtocolFeaturesBit);
        send(vu::req::set_features, vu::kVersion, p, 0, 0);
        p.clear();
        put32(p, 1);
        put32(p, 0);
        put64(p, kGpa);
        put64(p, kMemSize);
        put64(p, kUva);
        put64(p, 0);
        send(vu::req::set_mem_table, vu::kVersion, p, 1, 0);
        ring_size_ = kQueueSize >> (b & 3);
        for (std::uint32_t q = 0; q < 2; ++q) {
            p.clear();
            put32(p, q);
            put32(p, ring_size_);
            send(vu::req::set_vring_num, vu::kVersion, p, 0, 0);
            p.clear();
            put32(p, q);
            put32(p, in.u16());
            send(vu::req::set_vring_base, vu::kVersion, p, 0, 0);
            p.clear();
            put32(p, q);
            put32(p, 0);
            put64(p, kUva + ring_off(q));
            put64(p, kUva + ring_off(q) + 0x600);
            put64(p, kUva + ring_off(q) + 0x400);
            put64(p, 0);
            send(vu::req::set_vring_addr, vu::kVersion, p, 0, 0);
            p.clear();
            put64(p, q);
            send(vu::req::set_vring_kick, vu::kVersion, p, 1, 1);
            ring_kick_[q] = std::move(last_event_);
            send(vu::req::set_vring_call, vu::kVersion, p, 1, 1);
            p.clear();
            put32(p, q);
            put32(p, 1);
            send(vu::req::set_vring_enable, vu::kVersion, p, 0, 0);
        }
    }

    // The guest writes descriptors, ring entries or indexes (anywhere in its memory).
    void scribble(Input& in) {
        const std::size_t off = in.u16() % kMemSize;
        const std::size_t len = std::min<std::size_t>(in.u8() % 64 + 1, kMemSize - off);
        std::array<std::byte, 64> tmp{};
        const std::size_t got = in.take(tmp.data(), len);
        std::memcpy(w_.ram + off, tmp.data(), got);
    }

    // The guest driver posts a one-descriptor chain on the canonical rings (device-writable on
    // RX) and kicks: frames and buffers the device can actually use.
    void post_chain(Input& in) {
        const std::uint8_t b = in.u8();
        const unsigned q = b & 1;
        const std::uint32_t size = ring_size_;
        const std::uint16_t head = static_cast<std::uint16_t>(in.u8() % size);
        const std::uint64_t buf = 0x2000 + in.u16() % (kMemSize - 0x2000 - 4096);
        const std::uint32_t len = (b & 2) != 0 ? in.u16() % 4096u : 12u + 60u;
        std::uint16_t flags = q == 0 ? virtio::kDescFWrite : 0;
        if ((b & 4) != 0) flags = in.u16();
        std::vector<std::byte> d;
        put64(d, kGpa + buf);
        put32(d, len);
        d.push_back(static_cast<std::byte>(flags & 0xff));
        d.push_back(static_cast<std::byte>(flags >> 8));
        const std::uint16_t next = in.u16();
        d.push_back(static_cast<std::byte>(next & 0xff));
        d.push_back(static_cast<std::byte>(next >> 8));
        std::memcpy(w_.ram + ring_off(q) + std::uint64_t{head} * 16, d.data(), d.size());
        std::byte* avail = w_.ram + ring_off(q) + 0x400;
        const std::uint16_t idx = load_le16(avail + 2);
        store_le16(avail + 4 + 2 * (idx % size), head);
        store_le16(avail + 2, static_cast<std::uint16_t>(idx + 1));
        if (ring_kick_[q].valid()) kick_fd(ring_kick_[q].get());
        run();
    }

    void kick_fd(int fd) {
        const std::uint64_t one = 1;
        (void)!::write(fd, &one, sizeof one);
    }

    void kick(Input& in) {
        if (kicks_.empty()) return;
        kick_fd(kicks_[in.u8() % kicks_.size()]);
        run();
    }

    void to_guest(Input& in) {
        const std::size_t len = 14 + in.u16() % 3000;
        auto r = w_.pool.try_alloc(len);
        if (!r) return;
        std::memset(r->data().data(), static_cast<int>(in.u8()), len);
        if (!port_.to_port().try_push(std::move(*r))) return;
        dev_.on_egress();
    }

    void run() { run_loop(w_.io); }

    void reconnect() {
        session_.reset();
        check(!session_.queues_up());
        check(!session_.ring_running(0) && !session_.ring_running(1));
        check(session_.mem_regions() == 0);
        check(session_.protocol_features() == 0 && session_.acked_features() == 0);
        // Frames owed to the guest are dropped with the connection.
        PacketRef f;
        while (port_.to_port().try_pop(f))
            f.reset();
    }

    World& w_;
    Port port_;
    VirtioNetDevice dev_;
    VhostUserSession session_;
    std::vector<int> kicks_;
    UniqueFd last_event_;                // the eventfd most recently handed over
    std::array<UniqueFd, 2> ring_kick_;  // the kicks of the last bring-up
    std::uint32_t ring_size_ = kQueueSize;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    World& w = world();
    static const std::size_t fds_at_start = open_fds();
    // Fresh guest memory for every input.
    check(::ftruncate(w.memfd, 0) == 0 && ::ftruncate(w.memfd, kMemSize) == 0);
    {
        Harness h(w);
        Input in(data, size);
        for (int steps = 0; !in.empty() && steps < 256; ++steps)
            h.step(in);
        h.finish();
    }
    // Cancelled waits of the device's watchers complete here.
    run_loop(w.io);
    if (open_fds() != fds_at_start) {
        std::fprintf(stderr, "fuzz_vhost_user: fd leak: %zu open, %zu at start\n", open_fds(),
                     fds_at_start);
        (void)open_fds(true);
        check(false);
    }
    check(fuzz::all_returned(w.pool));
    return 0;
}
