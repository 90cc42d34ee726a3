// Shared fixtures for the guest attachment tests: a network context, a loop runner with a
// deadline, frame builders, temp dirs, and ring helpers.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/switch.hpp"
#include "slipway/guest/attachment.hpp"

namespace slipway::guest::test {

using Bytes = std::vector<std::byte>;
using namespace std::chrono_literals;

struct Env {
    IoContext io;
    PacketPool pool{PoolConfig{1024, 64, kDefaultHeadroom}};
    Switch sw{pool, SwitchConfig{}};
    AttachmentContext ctx{io, pool, sw, 1500};

    // Runs the loop until pred() holds or the deadline passes; returns pred().
    template <class Pred>
    bool run_until(Pred pred, std::chrono::milliseconds limit = 3000ms) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!pred()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            io.restart();
            io.run_for(2ms);
        }
        return true;
    }
    // Runs the loop for a while (to let things that should NOT happen have their chance).
    void run_for(std::chrono::milliseconds d) {
        const auto deadline = std::chrono::steady_clock::now() + d;
        while (std::chrono::steady_clock::now() < deadline) {
            io.restart();
            io.run_for(2ms);
        }
    }
};

// An Ethernet frame of `len` bytes: broadcast destination, a locally administered source, an
// experimental EtherType, and a payload pattern derived from `seed`.
inline Bytes make_frame(std::size_t len, std::uint8_t seed) {
    Bytes f(len);
    for (std::size_t i = 0; i < 6; ++i)
        f[i] = std::byte{0xff};
    const std::uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, seed};
    for (std::size_t i = 0; i < 6; ++i)
        f[6 + i] = std::byte{src[i]};
    f[12] = std::byte{0x88};
    f[13] = std::byte{0xb5};
    for (std::size_t i = 14; i < len; ++i)
        f[i] = static_cast<std::byte>((i * 7 + seed) & 0xff);
    return f;
}

inline Bytes to_bytes(std::span<const std::byte> s) {
    return Bytes(s.begin(), s.end());
}

// Pops everything the attachment pushed towards the switch.
inline std::vector<Bytes> drain_to_switch(SwitchPort& p) {
    std::vector<Bytes> out;
    PacketRef f;
    while (p.to_switch().try_pop(f)) {
        out.push_back(to_bytes(f.data()));
        f.reset();
    }
    return out;
}

// Puts a frame into the port's to_port() ring as the switch would.
inline bool push_to_port(Env& env, SwitchPort& p, const Bytes& frame) {
    auto r = env.pool.try_alloc(frame.size());
    if (!r) return false;
    std::memcpy(r->data().data(), frame.data(), frame.size());
    return p.to_port().try_push(std::move(*r));
}

// A gateway-kind port that records every frame the switch hands it (to test attachments with the
// real switch in between).
class SinkPort final : public SwitchPort {
  public:
    SinkPort() : SwitchPort("sink", PortKind::gateway, PortCaps{true, true, 65535}) {}
    void on_frames_from_switch() noexcept override {
        PacketRef f;
        while (to_port().try_pop(f)) {
            got.push_back(to_bytes(f.data()));
            f.reset();
        }
    }
    std::vector<Bytes> got;
};

// A private temporary directory, removed with everything in it.
class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/slw-guest-XXXXXX";
        const char* d = ::mkdtemp(tmpl);
        if (d != nullptr) path_ = d;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
    [[nodiscard]] bool ok() const { return !path_.empty(); }

  private:
    std::string path_;
};

inline std::unique_ptr<Attachment> make_started(Env& env, const std::string& spec) {
    std::string err;
    auto a = make_attachment(spec, env.ctx, err);
    EXPECT_TRUE(a.has_value()) << err;
    if (!a) return nullptr;
    auto s = (*a)->start(err);
    EXPECT_TRUE(s.has_value()) << err;
    if (!s) return nullptr;
    return std::move(*a);
}

// Appends what a non-blocking read of `fd` finds to `in`; false once the peer closed the
// connection (or a read failed with anything but EAGAIN).
inline bool read_available(int fd, Bytes& in) {
    std::byte buf[65536];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            in.insert(in.end(), buf, buf + n);
            continue;
        }
        if (n == 0) return false;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
}

}  // namespace slipway::guest::test
