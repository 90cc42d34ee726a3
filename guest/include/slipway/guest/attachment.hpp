// Attachment: one guest connection point (netns TAP, QEMU stream socket, vfkit unixgram socket,
// vhost-user socket), each a SwitchPort whose far side is a guest.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/switch.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/guest/virtio_net.hpp"

namespace slipway::guest {

// What every attachment gets from the network that owns it. All of it lives on the network thread.
struct AttachmentContext {
    IoContext& io;
    PacketPool& pool;
    Switch& sw;
    std::uint32_t mtu = 1500;  // IP MTU of the network: max_frame of non-GSO ports is mtu + 14
};

class Attachment : public SwitchPort {
  public:
    using SwitchPort::SwitchPort;
    ~Attachment() override = default;

    // Opens/binds/listens. After success the attachment is "ready" (a guest may connect). On
    // failure `error` names what failed (path, errno text).
    virtual Result<void> start(std::string& error) = 0;
    // Closes everything; frames in the rings are dropped (returned to the pool).
    virtual void stop() noexcept = 0;
    // The spec it was created from, e.g. "qemu:/run/slipway/vm1.sock".
    [[nodiscard]] virtual const std::string& spec() const noexcept = 0;
    // "listening", "connected", "up", "stopped": for status output.
    [[nodiscard]] virtual std::string state() const = 0;
    // The virtio-net device's counters, for attachments that run one (vhost-user); else null.
    [[nodiscard]] virtual const VirtioNetCounters* virtio_counters() const noexcept {
        return nullptr;
    }
};

// Parses SPEC and builds the attachment (not started):
//   netns:PATH[,ifname=NAME]   TAP device NAME (default eth0) in the network namespace at PATH
//   qemu:PATH                  unix stream server, QEMU -netdev stream framing
//   vfkit:PATH                 unix datagram server, vfkit/krunkit/libkrun framing
//   vhost-user:PATH            vhost-user-net back end (unix stream server) for QEMU,
//                              cloud-hypervisor and other vhost-user front ends
// Errc::invalid_argument with `error` saying what is wrong with the spec.
Result<std::unique_ptr<Attachment>> make_attachment(std::string_view spec,
                                                    const AttachmentContext& ctx,
                                                    std::string& error);

}  // namespace slipway::guest
