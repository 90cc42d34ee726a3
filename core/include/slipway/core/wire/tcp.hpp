// TCP segment view (RFC 9293 §3.1) with bounded option parsing, and the Repr that builds headers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "slipway/core/bytes.hpp"
#include "slipway/core/result.hpp"
#include "slipway/core/types.hpp"

namespace slipway::wire {

inline constexpr std::size_t kTcpMinHeaderLen = 20;
inline constexpr std::size_t kTcpMaxHeaderLen = 60;
inline constexpr std::size_t kTcpMaxOptionsLen = kTcpMaxHeaderLen - kTcpMinHeaderLen;
inline constexpr std::uint8_t kTcpMaxWindowScale = 14;  // RFC 7323 §2.3
inline constexpr std::size_t kTcpMaxSackBlocks = 4;     // 2 + 4 * 8 bytes fills the 40 allowed
static_assert(kTcpMinHeaderLen == 20);
static_assert(kTcpMaxHeaderLen == 15 * 4);  // data offset is four bits of 32-bit words
static_assert(2 + kTcpMaxSackBlocks * 8 <= kTcpMaxOptionsLen);

// Flag bits of header byte 13 (RFC 9293 §3.1, RFC 3168 §23.2 for ECE/CWR).
namespace tcp_flag {
inline constexpr std::uint8_t fin = 0x01;
inline constexpr std::uint8_t syn = 0x02;
inline constexpr std::uint8_t rst = 0x04;
inline constexpr std::uint8_t psh = 0x08;
inline constexpr std::uint8_t ack = 0x10;
inline constexpr std::uint8_t urg = 0x20;
inline constexpr std::uint8_t ece = 0x40;
inline constexpr std::uint8_t cwr = 0x80;
}  // namespace tcp_flag

// Option kinds (IANA "TCP Option Kind Numbers").
namespace tcp_opt {
inline constexpr std::uint8_t eol = 0;
inline constexpr std::uint8_t nop = 1;
inline constexpr std::uint8_t mss = 2;
inline constexpr std::uint8_t window_scale = 3;
inline constexpr std::uint8_t sack_permitted = 4;
inline constexpr std::uint8_t sack = 5;
inline constexpr std::uint8_t timestamps = 8;
}  // namespace tcp_opt

struct TcpTimestamps {
    std::uint32_t val = 0;
    std::uint32_t ecr = 0;
    friend constexpr bool operator==(const TcpTimestamps&, const TcpTimestamps&) = default;
};

struct TcpSackBlock {
    TcpSeq left;
    TcpSeq right;
    friend constexpr bool operator==(const TcpSackBlock&, const TcpSackBlock&) = default;
};

// The options slipway acts on. Unknown kinds are skipped; a repeated option keeps its last value.
struct TcpOptions {
    std::optional<std::uint16_t> mss;
    std::optional<std::uint8_t> window_scale;  // already capped at kTcpMaxWindowScale
    bool sack_permitted = false;
    std::optional<TcpTimestamps> timestamps;
    std::array<TcpSackBlock, kTcpMaxSackBlocks> sack_blocks{};
    std::uint8_t sack_block_count = 0;
    // A length of 0 or 1, an option running past the header, or a known kind with the wrong
    // length: parsing stopped there and the fields above hold what came before.
    bool malformed = false;

    friend bool operator==(const TcpOptions&, const TcpOptions&) = default;
};

// One raw option: kind and the bytes after kind/length (empty for NOP).
struct TcpOption {
    std::uint8_t kind = 0;
    ByteView data;
};

// Bounded walk over the options area (RFC 9293 §3.2): never reads past it, stops at EOL, and on
// a malformed length stops and sets malformed().
class TcpOptionIter {
  public:
    explicit TcpOptionIter(ByteView options) noexcept : b_(options) {}
    [[nodiscard]] std::optional<TcpOption> next() noexcept;
    [[nodiscard]] bool malformed() const noexcept { return malformed_; }

  private:
    ByteView b_;
    std::size_t off_ = 0;
    bool malformed_ = false;
};

// Validated TCP header: data offset at least 5 words and within the buffer (RFC 9293 §3.1). The
// payload runs to the end of the buffer, so hand parse() exactly the IP payload.
class TcpView {
  public:
    [[nodiscard]] static Result<TcpView> parse(ByteView segment) noexcept;

    [[nodiscard]] L4Port src_port() const noexcept { return L4Port{load_be16(b_.data())}; }
    [[nodiscard]] L4Port dst_port() const noexcept { return L4Port{load_be16(b_.data() + 2)}; }
    [[nodiscard]] TcpSeq seq() const noexcept { return TcpSeq{load_be32(b_.data() + 4)}; }
    [[nodiscard]] TcpSeq ack() const noexcept { return TcpSeq{load_be32(b_.data() + 8)}; }
    [[nodiscard]] std::size_t header_len() const noexcept { return hlen_; }
    // The four bits after data offset: reserved, and AE/NS in newer drafts. Kept for round-trips.
    [[nodiscard]] std::uint8_t reserved_bits() const noexcept {
        return static_cast<std::uint8_t>(load_u8(b_.data() + 12) & 0x0fu);
    }
    [[nodiscard]] std::uint8_t flags() const noexcept { return load_u8(b_.data() + 13); }
    [[nodiscard]] bool has_flags(std::uint8_t f) const noexcept { return (flags() & f) == f; }
    [[nodiscard]] bool is_fin() const noexcept { return has_flags(tcp_flag::fin); }
    [[nodiscard]] bool is_syn() const noexcept { return has_flags(tcp_flag::syn); }
    [[nodiscard]] bool is_rst() const noexcept { return has_flags(tcp_flag::rst); }
    [[nodiscard]] bool is_psh() const noexcept { return has_flags(tcp_flag::psh); }
    [[nodiscard]] bool is_ack() const noexcept { return has_flags(tcp_flag::ack); }
    [[nodiscard]] bool is_urg() const noexcept { return has_flags(tcp_flag::urg); }
    [[nodiscard]] bool is_ece() const noexcept { return has_flags(tcp_flag::ece); }
    [[nodiscard]] bool is_cwr() const noexcept { return has_flags(tcp_flag::cwr); }
    [[nodiscard]] std::uint16_t window() const noexcept { return load_be16(b_.data() + 14); }
    [[nodiscard]] std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 16); }
    [[nodiscard]] std::uint16_t urgent_ptr() const noexcept { return load_be16(b_.data() + 18); }
    [[nodiscard]] ByteView options() const noexcept {
        return b_.subspan(kTcpMinHeaderLen, hlen_ - kTcpMinHeaderLen);
    }
    [[nodiscard]] TcpOptionIter option_iter() const noexcept { return TcpOptionIter{options()}; }
    [[nodiscard]] TcpOptions parse_options() const noexcept;
    [[nodiscard]] ByteView header() const noexcept { return b_.first(hlen_); }
    [[nodiscard]] ByteView payload() const noexcept { return b_.subspan(hlen_); }
    [[nodiscard]] ByteView segment() const noexcept { return b_; }

  private:
    TcpView(ByteView b, std::size_t hlen) noexcept : b_(b), hlen_(hlen) {}
    ByteView b_;
    std::size_t hlen_;
};

// Builds a TCP header with options laid out as Linux does (MSS; SACK-permitted and timestamps
// sharing a word, else NOP-padded; NOP + window scale; NOP NOP + SACK blocks), so headers of
// Linux peers round-trip byte for byte. `checksum` is written as given: the caller computes it
// over the pseudo-header and payload (or leaves it for checksum offload).
struct TcpRepr {
    L4Port src_port;
    L4Port dst_port;
    TcpSeq seq;
    TcpSeq ack;
    std::uint8_t flags = 0;
    std::uint8_t reserved_bits = 0;  // low nibble of byte 12, normally zero
    std::uint16_t window = 0;
    std::uint16_t checksum = 0;
    std::uint16_t urgent_ptr = 0;
    TcpOptions options;  // `malformed` is ignored

    [[nodiscard]] static TcpRepr from(const TcpView& v) noexcept;
    [[nodiscard]] std::size_t options_len() const noexcept;
    [[nodiscard]] std::size_t header_len() const noexcept {
        return kTcpMinHeaderLen + options_len();
    }
    // Header only; the payload follows at out[header_len()]. Errc::invalid_argument if the options
    // exceed 40 bytes or reserved_bits/sack_block_count are out of range; Errc::too_large if out
    // is short.
    [[nodiscard]] Result<std::size_t> emit(MutByteView out) const noexcept;
};

}  // namespace slipway::wire
