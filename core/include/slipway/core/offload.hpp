// Offload fix-up: software segmentation of GSO frames and checksum completion, for ports that
// cannot take what the sender produced (DESIGN §1).
#pragma once

#include <cstddef>
#include <span>

#include "slipway/core/packet_pool.hpp"
#include "slipway/core/result.hpp"

namespace slipway {

// Completes a partial checksum (PacketMeta::vnet NEEDS_CSUM): the ones'-complement sum of
// [csum_start, end) folded into the 16-bit field at csum_start + csum_offset, which the sender
// seeded with the pseudo-header sum (virtio 1.2 §5.1.6.2). Clears NEEDS_CSUM.
// Errc::bad_length if the offsets do not lie inside the frame.
Result<void> complete_checksum(PacketRef& frame) noexcept;

// Splits a GSO frame (TCPv4, TCPv6, UDP_L4) into frames of at most gso_size payload bytes each,
// with headers replicated and fixed (IP total length / payload length, IPv4 id and header
// checksum, TCP sequence numbers and flags — FIN/PSH only on the last segment, CWR only on the
// first — UDP length) and checksums completed. Segments are allocated from `pool` into `out`;
// returns how many were produced. Errc::unsupported for GSO kinds it cannot split (UFO),
// Errc::bad_length/truncated for inconsistent headers, Errc::pool_exhausted (with no segment
// left in `out`) when buffers run out, Errc::too_large if `out` is too small.
Result<std::size_t> segment_gso(const PacketRef& frame, PacketPool& pool,
                                std::span<PacketRef> out) noexcept;

}  // namespace slipway
