// Private pieces the attachments share: handler liveness tokens, wire limits and the
// constructors make_attachment() calls. Fd ownership and unix sockets are core's
// (slipway/core/unix_socket.hpp).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <boost/asio/post.hpp>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/guest/attachment.hpp"

namespace slipway::guest::detail {

// Frames per burst on every path (DESIGN §1 kBurst).
inline constexpr std::size_t kBurst = 32;
// Hard wire limit of one length-prefixed or datagram frame: 64 KiB of payload plus an Ethernet
// header. Anything longer cannot be a frame any guest driver sends, so it means a broken peer.
inline constexpr std::size_t kMaxWireFrame = 65550;
inline constexpr std::size_t kMinFrame = 14;  // an Ethernet header

// Asio runs a cancelled wait's handler later, and a wait that completed just before a cancel still
// reports success; so a handler must not trust `this` (the attachment may be gone) nor the fd (a
// new connection may own the slot). Every handler captures the token of the fd it waited on;
// closing the fd clears the flag and the handler returns without touching anything else.
struct Liveness {
    bool alive = true;
};
using AliveToken = std::shared_ptr<Liveness>;
[[nodiscard]] inline AliveToken new_token() {
    return std::make_shared<Liveness>();
}
inline void kill_token(AliveToken& t) noexcept {
    if (t) t->alive = false;
    t.reset();
}

// Runs `fn` again once the rest of the loop has had its turn (a full burst means more may be
// waiting, and one port must not starve the others). At most one continuation is queued per
// `posted` flag; `tok` keeps a closed attachment or connection from being touched.
template <class Fn>
void continue_later(IoContext& io, bool& posted, const AliveToken& tok, Fn fn) {
    if (posted) return;
    posted = true;
    boost::asio::post(io, [&posted, tok, fn]() mutable {
        if (!tok->alive) return;  // `posted` belongs to a dead object: leave it alone
        posted = false;
        fn();
    });
}

// Hands a burst of ingress frames to the switch and wakes it. Frames the port's ring cannot take
// are dropped and counted (drop_ring_full): the switch is behind, and holding them would only
// stall the guest's socket. The switch may call back into the port (and even close it), so the
// caller re-checks its liveness token afterwards.
inline void push_burst_to_switch(SwitchPort& port, std::span<PacketRef> burst) noexcept {
    if (burst.empty()) return;
    const std::size_t pushed = port.to_switch().push_burst(burst);
    for (std::size_t i = pushed; i < burst.size(); ++i) {
        port.counters().drop_ring_full.inc();
        burst[i].reset();
    }
    port.notify_switch();
}

// Drops every frame still owed to the far side because nobody can take it (no client, no peer,
// a write error): the unsent rest of the burst being written (`burst[idx..n)`) and everything
// waiting in the port's ring. Each counts as drop_io; all buffers go back to the pool, so a ring
// that nobody drains never pins the pool. Resets idx and n.
inline void drop_pending_egress(SwitchPort& port, std::array<PacketRef, kBurst>& burst,
                                std::size_t& idx, std::size_t& n) noexcept {
    for (std::size_t i = idx; i < n; ++i)
        port.counters().drop_io.inc();
    for (std::size_t i = 0; i < n; ++i)
        burst[i].reset();
    idx = n = 0;
    std::array<PacketRef, kBurst> sink;
    for (;;) {
        const std::size_t got = port.to_port().pop_burst(sink);
        if (got == 0) break;
        port.counters().drop_io.add(got);
        for (std::size_t i = 0; i < got; ++i)
            sink[i].reset();
    }
}

std::unique_ptr<Attachment> make_netns_tap(const AttachmentContext& ctx, std::string spec,
                                           std::string path, std::string ifname);
std::unique_ptr<Attachment> make_qemu_stream(const AttachmentContext& ctx, std::string spec,
                                             std::string path);
std::unique_ptr<Attachment> make_vfkit_dgram(const AttachmentContext& ctx, std::string spec,
                                             std::string path);
std::unique_ptr<Attachment> make_vhost_user(const AttachmentContext& ctx, std::string spec,
                                            std::string path);

}  // namespace slipway::guest::detail
