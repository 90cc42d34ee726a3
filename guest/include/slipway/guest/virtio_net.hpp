// The virtio-net device data path over one RX/TX virtqueue pair (virtio 1.2 §5.1), shared by the
// vhost-user attachment and the embedding API's in-process virtqueues.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "slipway/core/event_loop.hpp"
#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/switch_port.hpp"
#include "slipway/core/unix_socket.hpp"
#include "slipway/core/virtio/virtqueue.hpp"

namespace slipway::guest {

// Feature bits (virtio 1.2 §5.1.3 for the device, §6 for the transport-independent ones).
namespace vfeat {
inline constexpr std::uint64_t csum = 1ull << 0;  // VIRTIO_NET_F_CSUM: guest sends partial csums
inline constexpr std::uint64_t guest_csum = 1ull << 1;  // guest takes partial checksums
inline constexpr std::uint64_t mtu = 1ull << 3;         // config space carries the MTU
inline constexpr std::uint64_t mac = 1ull << 5;
inline constexpr std::uint64_t guest_tso4 = 1ull << 7;  // guest takes TCPv4 GSO frames
inline constexpr std::uint64_t guest_tso6 = 1ull << 8;
inline constexpr std::uint64_t guest_ecn = 1ull << 9;
inline constexpr std::uint64_t guest_ufo = 1ull << 10;
inline constexpr std::uint64_t host_tso4 = 1ull << 11;  // guest may send TCPv4 GSO frames
inline constexpr std::uint64_t host_tso6 = 1ull << 12;
inline constexpr std::uint64_t host_ecn = 1ull << 13;
inline constexpr std::uint64_t host_ufo = 1ull << 14;
inline constexpr std::uint64_t mrg_rxbuf = 1ull << 15;
inline constexpr std::uint64_t status = 1ull << 16;
inline constexpr std::uint64_t ctrl_vq = 1ull << 17;
inline constexpr std::uint64_t mq = 1ull << 22;
inline constexpr std::uint64_t indirect_desc = 1ull << 28;  // VIRTIO_RING_F_INDIRECT_DESC
inline constexpr std::uint64_t event_idx = 1ull << 29;      // VIRTIO_RING_F_EVENT_IDX
inline constexpr std::uint64_t version_1 = 1ull << 32;      // VIRTIO_F_VERSION_1
}  // namespace vfeat

// What slipway offers a virtio-net driver (issue 8): VERSION_1, MRG_RXBUF, CSUM, GUEST_CSUM,
// HOST/GUEST_TSO4/6, EVENT_IDX, INDIRECT_DESC, MTU, STATUS.
inline constexpr std::uint64_t kOfferedFeatures =
    vfeat::csum | vfeat::guest_csum | vfeat::mtu | vfeat::guest_tso4 | vfeat::guest_tso6 |
    vfeat::host_tso4 | vfeat::host_tso6 | vfeat::mrg_rxbuf | vfeat::status | vfeat::indirect_desc |
    vfeat::event_idx | vfeat::version_1;

// The switch-port capabilities that follow from what the driver negotiated (DESIGN §1): GSO
// frames to the guest only with GUEST_TSO4 and GUEST_TSO6 (one flag covers both, so both are
// required), partial checksums only with GUEST_CSUM, ordinary frames up to mtu + 14.
[[nodiscard]] PortCaps caps_for_features(std::uint64_t features, std::uint32_t mtu) noexcept;

// One queue as the VMM describes it. Ring addresses are guest physical unless `user_addrs`
// (vhost-user gives them in the VMM's virtual address space).
struct VirtqueueSetup {
    std::uint32_t size = 0;
    std::uint64_t desc = 0, avail = 0, used = 0;
    bool user_addrs = false;
    std::uint16_t last_avail = 0;  // resume point (0 for a fresh queue)
    UniqueFd kick;                 // eventfd the driver writes when it adds buffers
    UniqueFd call;                 // eventfd slipway writes to interrupt the driver (may be empty)
};

// Counters of the device beyond the port's own (PortCounters).
struct VirtioNetCounters {
    Counter tx_chains, rx_chains;  // chains consumed from the TX / RX queue
    Counter tx_bad_hdr;            // TX header invalid or asking for an offload not negotiated
    Counter tx_bad_len;            // TX chain not header + 14..65,550-byte frame
    Counter rx_no_buffers;         // times a frame waited for the guest to post RX buffers
    Counter rx_too_big;            // frame larger than the guest's buffers could ever take
    Counter kicks, interrupts;     // kicks taken, interrupts sent
    Counter queue_broken;          // queues marked broken (hostile or buggy driver)

    template <class F>
    void for_each(F&& f) const {
        f("virtio_tx_chains", tx_chains);
        f("virtio_rx_chains", rx_chains);
        f("virtio_tx_bad_hdr", tx_bad_hdr);
        f("virtio_tx_bad_len", tx_bad_len);
        f("virtio_rx_no_buffers", rx_no_buffers);
        f("virtio_rx_too_big", rx_too_big);
        f("virtio_kicks", kicks);
        f("virtio_interrupts", interrupts);
        f("virtio_queue_broken", queue_broken);
    }
};

// The device. Runs on the network thread: kicks are eventfds watched by the network's loop, frames
// go through `port`'s rings like any attachment's. Its owner (the vhost-user attachment, the
// embedded virtio port) is the SwitchPort and forwards on_frames_from_switch() to on_egress().
class VirtioNetDevice {
  public:
    static constexpr unsigned kRxQueue = 0;
    static constexpr unsigned kTxQueue = 1;

    VirtioNetDevice(IoContext& io, PacketPool& pool, SwitchPort& port, std::string name,
                    std::uint32_t mtu);
    ~VirtioNetDevice();
    VirtioNetDevice(const VirtioNetDevice&) = delete;
    VirtioNetDevice& operator=(const VirtioNetDevice&) = delete;

    // Memory the queues live in. The owner keeps it alive and unchanged while a queue runs (stop
    // the queues before changing it).
    void set_memory(const virtio::GuestMemory* mem) noexcept { mem_ = mem; }
    // The negotiated feature bits (vhost-user's bit 30, VHOST_USER_F_PROTOCOL_FEATURES, is the
    // transport's and ignored here): the header layout (12 bytes with VERSION_1 or MRG_RXBUF, the
    // legacy 10 otherwise), which offloads the guest may use on TX and which the port accepts
    // (updates port.set_caps(), caps_for_features()). Errc::invalid_argument for bits outside
    // kOfferedFeatures. Call with the queues stopped.
    Result<void> set_features(std::uint64_t features) noexcept;
    [[nodiscard]] std::uint64_t features() const noexcept { return features_; }

    // Starts queue q (kRxQueue or kTxQueue) with memory and features already set. On failure
    // `error` says why (ring outside memory, bad size) and the queue stays stopped.
    Result<void> start_queue(unsigned q, VirtqueueSetup setup, std::string& error);
    // Stops queue q and returns its resume index (vhost-user GET_VRING_BASE). Frames the switch
    // hands a stopped RX queue are dropped (drop_io): a VM that is not reading must not pin
    // pool buffers.
    std::uint16_t stop_queue(unsigned q) noexcept;
    void stop_all() noexcept;
    // Replaces the interrupt eventfd of queue q (vhost-user SET_VRING_CALL while running).
    void set_call(unsigned q, UniqueFd call) noexcept;
    [[nodiscard]] bool queue_running(unsigned q) const noexcept;
    // True if a queue was marked broken by a hostile or buggy driver (until it is restarted).
    [[nodiscard]] bool broken() const noexcept;

    // Network thread: the switch put frames into port.to_port().
    void on_egress() noexcept;

    [[nodiscard]] const VirtioNetCounters& counters() const noexcept { return counters_; }

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    const virtio::GuestMemory* mem_ = nullptr;
    std::uint64_t features_ = 0;
    VirtioNetCounters counters_;
};

}  // namespace slipway::guest
