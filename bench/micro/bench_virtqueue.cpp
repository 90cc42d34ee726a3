// The virtqueue path in-process: frames from one virtio-net guest's TX queue through the switch
// into another guest's RX queue, beside the same frames through two QEMU-stream unix sockets.
//
// Set-up: one slipway::Network running on its own thread (the slipway side), two guests attached
// to it, and the benchmark thread playing both guests' drivers (the front end): guest A sends,
// guest B receives, with at most kWindow frames in flight so nothing is dropped for lack of
// buffers. Only frames B receives count.
//
// Copies per frame on slipway's thread (issue 8 asks for the count):
//   virtio  2 — TX: guest A's descriptors straight into a pool buffer; RX: the pool buffer into
//           guest B's receive buffers. The switch moves the buffer, it does not copy it.
//   stream  4 — the kernel copies into the socket (A's write) and out of it (slipway's read),
//           slipway copies each frame out of its read chunk into a pool buffer, then the kernel
//           copies on writev and again on B's read: 2 of those are slipway's own syscalls' copies
//           plus its one memcpy, and the front end pays 2 more.
// The front end copies too (the test driver writes each frame into a TX buffer and copies each
// received frame out of the merged RX buffers), as a guest kernel would.
//
// Sizes: 64-byte frames (per-frame cost) and 64 KiB TCP GSO frames — which only the virtio path
// can carry (a QEMU stream has no virtio-net header); its baseline moves the same payload as
// 1514-byte frames, so compare bytes per second there.
#include <benchmark/benchmark.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "slipway/core/bytes.hpp"
#include "slipway/core/log.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/embed/network.hpp"
#include "slipway/guest/virtio_net.hpp"
#include "virtio_driver.hpp"

namespace {

using namespace slipway;
using testing::GuestRam;
using testing::Millis;
using testing::NetDriver;

constexpr std::size_t kWindow = 64;     // frames in flight between A's send and B's receive
constexpr std::size_t kKickBatch = 16;  // virtio: frames published per kick (the stream baseline
                                        // has no equivalent: one write per frame, as QEMU does)
constexpr std::uint16_t kQueue = 256;
constexpr std::uint32_t kRxBuf = 4096;
constexpr std::size_t kGsoPayload = 65535 - 20 - 20;  // one full IPv4 TCP GSO frame
constexpr std::uint16_t kMss = 1448;

const std::array<std::uint8_t, 6> kMacA = {0x52, 0x54, 0x00, 0x00, 0x00, 0x0a};
const std::array<std::uint8_t, 6> kMacB = {0x52, 0x54, 0x00, 0x00, 0x00, 0x0b};

// An Ethernet + IPv4 + TCP frame from `src` to `dst` with `payload` bytes (the IP total length is
// that of a GSO frame's whole packet, as Linux sends them).
std::vector<std::byte> make_frame(const std::array<std::uint8_t, 6>& dst,
                                  const std::array<std::uint8_t, 6>& src, std::size_t payload) {
    std::vector<std::byte> f(14 + 20 + 20 + payload, std::byte{0x5a});
    for (std::size_t i = 0; i < 6; ++i) {
        f[i] = std::byte{dst[i]};
        f[6 + i] = std::byte{src[i]};
    }
    store_be16(&f[12], 0x0800);
    std::byte* ip = &f[14];
    ip[0] = std::byte{0x45};
    store_be16(ip + 2, static_cast<std::uint16_t>(std::min<std::size_t>(40 + payload, 65535)));
    ip[8] = std::byte{64};
    ip[9] = std::byte{6};
    const std::array<std::uint8_t, 8> addrs = {192, 168, 127, 10, 192, 168, 127, 11};
    for (std::size_t i = 0; i < 8; ++i)
        ip[12 + i] = std::byte{addrs[i]};
    std::byte* tcp = ip + 20;
    store_be16(tcp, 40000);
    store_be16(tcp + 2, 5201);
    tcp[12] = std::byte{0x50};
    tcp[13] = std::byte{0x10};  // ACK
    store_be16(tcp + 14, 65535);
    return f;
}

// A 64-byte frame (the Ethernet minimum without FCS is 60; 64 as the issue names it).
std::vector<std::byte> small_frame(const std::array<std::uint8_t, 6>& dst,
                                   const std::array<std::uint8_t, 6>& src) {
    return make_frame(dst, src, 64 - 54);
}

NetworkOptions bench_options() {
    NetworkOptions o;
    o.no_dhcp = true;
    o.no_dns = true;
    o.mac_lock = false;
    return o;
}

void quiet_logs() {
    static const bool once = [] {
        spdlog::set_level(spdlog::level::err);
        return true;
    }();
    (void)once;
}

// ---- virtio: two in-process virtqueue guests --------------------------------------------------

struct VirtioGuest {
    std::unique_ptr<GuestRam> ram;
    std::unique_ptr<NetDriver> drv;
};

bool make_guest(Network& net, const char* name, std::uint64_t features, VirtioGuest& g,
                std::string& error) {
    auto ram = GuestRam::create(64u << 20, error);
    if (!ram) return false;
    g.ram = std::move(*ram);
    auto drv = NetDriver::create(*g.ram, features, kQueue, error);
    if (!drv) return false;
    g.drv = std::move(*drv);
    if (!g.drv->post_rx(kQueue, kRxBuf)) {
        error = "post_rx: " + g.drv->error();
        return false;
    }
    VirtioAttachOptions a;
    a.name = name;
    const virtio::MemRegion r = g.ram->region();
    a.regions.push_back({r.host, r.guest_addr, r.size});
    a.features = features;
    for (unsigned q = 0; q < 2; ++q) {
        auto& dq = g.drv->queue(q);
        a.queues[q].size = dq.size();
        a.queues[q].desc = dq.desc_gpa();
        a.queues[q].avail = dq.avail_gpa();
        a.queues[q].used = dq.used_gpa();
        a.queues[q].kick_fd = dq.kick_fd();
        a.queues[q].call_fd = dq.call_fd();
    }
    return static_cast<bool>(net.attach_virtio(a, error));
}

struct Running {
    std::unique_ptr<Network> net;
    std::thread th;
    ~Running() {
        if (net) net->stop();
        if (th.joinable()) th.join();
    }
};

// Sends `frame` from A (with `hdr`) and receives on B, keeping kWindow in flight, until the
// benchmark's iterations are done. Returns false (and skips with an error) on a lost frame.
template <class Send, class Recv>
bool pump(benchmark::State& state, Send send, Recv recv) {
    std::size_t in_flight = 0;
    std::uint64_t received = 0;
    for (auto _ : state) {
        if (!send()) {
            state.SkipWithError("send failed");
            return false;
        }
        ++in_flight;
        // Take what has arrived; block only when the window is full.
        while (in_flight > 0) {
            const int r = recv(in_flight >= kWindow);
            if (r < 0) {
                state.SkipWithError("a frame was lost (receive timed out)");
                return false;
            }
            if (r == 0) break;
            --in_flight;
            ++received;
        }
    }
    while (in_flight > 0) {
        if (recv(true) <= 0) {
            state.SkipWithError("a frame was lost at the end");
            return false;
        }
        --in_flight;
        ++received;
    }
    benchmark::DoNotOptimize(received);
    return true;
}

// Reports the frames B received as items and bytes, with slipway's copies per frame; or the
// reason the run is void.
void report(benchmark::State& state, bool ok, bool bad, std::size_t frame_len, int copies) {
    if (!ok) return;  // pump() already skipped with the reason
    if (bad) {
        state.SkipWithError("B received a frame that differs from what A sent");
        return;
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(frame_len));
    state.counters["copies"] = copies;
}

void BM_Virtqueue(benchmark::State& state) {
    quiet_logs();
    const bool gso = state.range(0) != 0;
    std::string error;
    VirtioGuest a, b;  // declared first: guest memory outlives the network thread that uses it
    Running run;
    auto net = Network::create(bench_options(), error);
    if (!net) {
        state.SkipWithError(error.c_str());
        return;
    }
    run.net = std::move(*net);
    const std::uint64_t features = guest::kOfferedFeatures;
    if (!make_guest(*run.net, "vq-a", features, a, error) ||
        !make_guest(*run.net, "vq-b", features, b, error)) {
        state.SkipWithError(error.c_str());
        return;
    }
    run.th = std::thread([n = run.net.get()] { n->run(); });

    // B speaks first so the switch learns where its MAC lives (no flooding in the loop).
    virtio::NetHdr plain{};
    const auto hello = small_frame(kMacA, kMacB);
    std::vector<std::byte> rx;
    rx.reserve(NetDriver::kMaxFrame + 64);
    virtio::NetHdr rh{};
    if (!b.drv->send(plain, hello) || !a.drv->recv(rh, rx, Millis{2000}).value_or(false)) {
        state.SkipWithError("B's first frame did not reach A");
        return;
    }

    const auto frame = gso ? make_frame(kMacB, kMacA, kGsoPayload) : small_frame(kMacB, kMacA);
    virtio::NetHdr h{};
    if (gso) {
        h.flags = virtio::kNetHdrFNeedsCsum;
        h.gso_type = virtio::kGsoTcpV4;
        h.gso_size = kMss;
        h.hdr_len = 54;
        h.csum_start = 34;
        h.csum_offset = 16;
    }
    bool bad = false;
    std::size_t unkicked = 0;
    const bool ok = pump(
        state,
        [&] {
            // Kick once per kKickBatch frames, as a guest driver batching a burst does.
            const bool kick = ++unkicked == kKickBatch;
            if (kick) unkicked = 0;
            return static_cast<bool>(
                a.drv->send(h, frame, testing::TxShape::two, false, Millis{1000}, kick));
        },
        [&](bool block) -> int {
            if (block && unkicked != 0) {
                (void)a.drv->tx().kick();
                unkicked = 0;
            }
            auto r = b.drv->recv(rh, rx, block ? Millis{2000} : Millis{0});
            if (!r) return -1;
            if (!*r) return block ? -1 : 0;
            if (rx.size() != frame.size() || (gso && rh.gso_kind() != virtio::kGsoTcpV4))
                bad = true;
            return 1;
        });
    report(state, ok, bad, frame.size(), 2);
}

// ---- baseline: two QEMU-stream guests over unix sockets ----------------------------------------

// Writes one length-prefixed frame; reads length-prefixed frames. Blocking sockets.
bool write_frame(int fd, const std::vector<std::byte>& f) {
    std::array<std::byte, 4> len{};
    store_be32(len.data(), static_cast<std::uint32_t>(f.size()));
    iovec iov[2] = {{len.data(), 4}, {const_cast<std::byte*>(f.data()), f.size()}};
    std::size_t want = 4 + f.size();
    while (want > 0) {
        const ssize_t n = ::writev(fd, iov, 2);
        if (n <= 0) return false;
        want -= static_cast<std::size_t>(n);
        if (want == 0) break;
        // Partial write: finish the rest with plain writes (rare for small frames).
        std::size_t done = 4 + f.size() - want;
        while (want > 0) {
            const std::byte* p = done < 4 ? len.data() + done : f.data() + (done - 4);
            const std::size_t chunk = done < 4 ? 4 - done : want;
            const ssize_t m = ::write(fd, p, chunk);
            if (m <= 0) return false;
            done += static_cast<std::size_t>(m);
            want -= static_cast<std::size_t>(m);
        }
    }
    return true;
}

class StreamReader {
  public:
    explicit StreamReader(int fd) : fd_(fd), buf_(1 << 20) {}
    // 1: a frame of `len` bytes was consumed; 0: none complete (non-blocking); -1: error/timeout.
    int next(bool block, std::size_t& len) {
        for (;;) {
            if (have_ - off_ >= 4) {
                const std::uint32_t n = load_be32(buf_.data() + off_);
                if (have_ - off_ >= 4 + std::size_t{n}) {
                    off_ += 4 + n;
                    len = n;
                    return 1;
                }
            }
            if (off_ > 0) {
                std::memmove(buf_.data(), buf_.data() + off_, have_ - off_);
                have_ -= off_;
                off_ = 0;
            }
            const ssize_t r =
                ::recv(fd_, buf_.data() + have_, buf_.size() - have_, block ? 0 : MSG_DONTWAIT);
            if (r < 0 && !block && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
            if (r <= 0) return -1;
            have_ += static_cast<std::size_t>(r);
        }
    }

  private:
    int fd_;
    std::vector<std::byte> buf_;
    std::size_t have_ = 0, off_ = 0;
};

UniqueFd connect_unix(const std::string& path) {
    sockaddr_un sa{};
    socklen_t sl = 0;
    if (!make_unix_addr(path, sa, sl)) return {};
    for (int i = 0; i < 200; ++i) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sl) == 0) {
            timeval tv{2, 0};
            (void)::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            return fd;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return {};
}

void BM_QemuStream(benchmark::State& state) {
    quiet_logs();
    const auto frame_payload = static_cast<std::size_t>(state.range(0));
    std::string error;
    char tmpl[] = "/tmp/slipway-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
        state.SkipWithError("mkdtemp failed");
        return;
    }
    const std::string dir = tmpl;
    struct Cleanup {
        std::string d;
        ~Cleanup() {
            std::error_code ec;
            std::filesystem::remove_all(d, ec);
        }
    } cleanup{dir};
    Running run;
    auto net = Network::create(bench_options(), error);
    if (!net) {
        state.SkipWithError(error.c_str());
        return;
    }
    run.net = std::move(*net);
    if (!run.net->attach("qemu:" + dir + "/a.sock", error) ||
        !run.net->attach("qemu:" + dir + "/b.sock", error)) {
        state.SkipWithError(error.c_str());
        return;
    }
    run.th = std::thread([n = run.net.get()] { n->run(); });
    UniqueFd a = connect_unix(dir + "/a.sock");
    UniqueFd b = connect_unix(dir + "/b.sock");
    if (!a.valid() || !b.valid()) {
        state.SkipWithError("cannot connect to the stream attachments");
        return;
    }
    StreamReader ra(a.get()), rb(b.get());
    std::size_t len = 0;
    if (!write_frame(b.get(), small_frame(kMacA, kMacB)) || ra.next(true, len) != 1) {
        state.SkipWithError("B's first frame did not reach A");
        return;
    }
    const auto frame = frame_payload <= 64 ? small_frame(kMacB, kMacA)
                                           : make_frame(kMacB, kMacA, frame_payload - 54);
    bool bad = false;
    const bool ok = pump(
        state, [&] { return write_frame(a.get(), frame); },
        [&](bool block) -> int {
            const int r = rb.next(block, len);
            if (r == 1 && len != frame.size()) bad = true;
            return r;
        });
    report(state, ok, bad, frame.size(), 4);
}

}  // namespace

// Arg 0: 64-byte frames; 1: 64 KiB TCP GSO frames.
BENCHMARK(BM_Virtqueue)->ArgName("gso")->Arg(0)->Arg(1)->UseRealTime()->MinTime(1.0);
// Arg: frame size. 64 as above; 1514 carries the GSO case's payload the only way a stream can.
BENCHMARK(BM_QemuStream)->ArgName("frame")->Arg(64)->Arg(1514)->UseRealTime()->MinTime(1.0);

BENCHMARK_MAIN();
