// virtio-net header (struct virtio_net_hdr_v1, virtio 1.2 §5.1.6): the offload fields every frame
// carries through slipway, and their little-endian wire codec.
#pragma once

#include <cstddef>
#include <cstdint>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"

namespace slipway::virtio {

// Header sizes: the legacy header without num_buffers (no VIRTIO_NET_F_MRG_RXBUF and no
// VIRTIO_F_VERSION_1), and the v1 header that always has it (virtio 1.2 §5.1.6).
inline constexpr std::size_t kNetHdrLegacyLen = 10;
inline constexpr std::size_t kNetHdrV1Len = 12;

// flags (virtio 1.2 §5.1.6)
inline constexpr std::uint8_t kNetHdrFNeedsCsum = 1;  // csum_start/csum_offset are valid
inline constexpr std::uint8_t kNetHdrFDataValid = 2;  // checksum already validated (RX only)
inline constexpr std::uint8_t kNetHdrFRscInfo = 4;    // RSC coalescing info (RX only)
inline constexpr std::uint8_t kNetHdrKnownFlags =
    kNetHdrFNeedsCsum | kNetHdrFDataValid | kNetHdrFRscInfo;

// gso_type (virtio 1.2 §5.1.6); the ECN bit may be or-ed onto the TCP types.
inline constexpr std::uint8_t kGsoNone = 0;
inline constexpr std::uint8_t kGsoTcpV4 = 1;
inline constexpr std::uint8_t kGsoUdp = 3;  // UFO, deprecated but still seen from old guests
inline constexpr std::uint8_t kGsoTcpV6 = 4;
inline constexpr std::uint8_t kGsoUdpL4 = 5;
inline constexpr std::uint8_t kGsoEcn = 0x80;

// The decoded header. A value type: frames carry it in PacketMeta, ports emit it on output.
struct NetHdr {
    std::uint8_t flags = 0;
    std::uint8_t gso_type = kGsoNone;
    std::uint16_t hdr_len = 0;  // length of headers before the payload (a hint; may be 0)
    std::uint16_t gso_size = 0;
    std::uint16_t csum_start = 0;
    std::uint16_t csum_offset = 0;
    std::uint16_t num_buffers = 0;  // only in the v1 / MRG_RXBUF layout

    [[nodiscard]] constexpr bool needs_csum() const noexcept {
        return (flags & kNetHdrFNeedsCsum) != 0;
    }
    [[nodiscard]] constexpr std::uint8_t gso_kind() const noexcept {
        return static_cast<std::uint8_t>(gso_type & ~kGsoEcn);
    }
    [[nodiscard]] constexpr bool is_gso() const noexcept { return gso_kind() != kGsoNone; }

    // Decode `hdr_len_bytes` (10 or 12) bytes. Rejects unknown flag bits and GSO types, GSO with a
    // zero segment size; frame-dependent checks live in validate_for_frame().
    static Result<NetHdr> parse(ByteView in, std::size_t hdr_len_bytes = kNetHdrV1Len) noexcept;

    // Checks the fields against the frame that follows the header: a partial checksum must lie
    // inside the frame (csum_start + csum_offset + 2 <= frame_len), as the guest's driver promised.
    [[nodiscard]] Result<void> validate_for_frame(std::size_t frame_len) const noexcept;

    // Encode into `out`; writes 10 or 12 bytes and returns the count.
    Result<std::size_t> emit(MutByteView out,
                             std::size_t hdr_len_bytes = kNetHdrV1Len) const noexcept;

    friend constexpr bool operator==(const NetHdr&, const NetHdr&) = default;
};

}  // namespace slipway::virtio
