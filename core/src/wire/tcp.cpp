// TCP header parsing, option parsing and emission.
#include "slipway/core/wire/tcp.hpp"

#include <algorithm>

namespace slipway::wire {

Result<TcpView> TcpView::parse(ByteView segment) noexcept {
    if (segment.size() < kTcpMinHeaderLen) return fail(Errc::truncated);
    // RFC 9293 §3.1: Data Offset counts 32-bit words; five is the bare header.
    const std::size_t hlen = std::size_t{load_u8(segment.data() + 12)} / 16 * 4;
    if (hlen < kTcpMinHeaderLen) return fail(Errc::bad_length);
    if (hlen > segment.size()) return fail(Errc::truncated);
    return TcpView{segment, hlen};
}

std::optional<TcpOption> TcpOptionIter::next() noexcept {
    while (off_ < b_.size() && !malformed_) {
        const std::uint8_t kind = load_u8(b_.data() + off_);
        // RFC 9293 §3.2: End of Option List ends the list, NOP is a single byte.
        if (kind == tcp_opt::eol) {
            off_ = b_.size();
            return std::nullopt;
        }
        if (kind == tcp_opt::nop) {
            ++off_;
            return TcpOption{kind, {}};
        }
        // Every other option has a length byte counting kind and length themselves; 0 or 1
        // would loop forever or underflow, so they end parsing as malformed.
        if (b_.size() - off_ < 2) break;
        const std::size_t len = load_u8(b_.data() + off_ + 1);
        if (len < 2 || len > b_.size() - off_) break;
        const ByteView data = b_.subspan(off_ + 2, len - 2);
        off_ += len;
        return TcpOption{kind, data};
    }
    if (off_ < b_.size()) malformed_ = true;
    off_ = b_.size();
    return std::nullopt;
}

TcpOptions TcpView::parse_options() const noexcept {
    TcpOptions o;
    TcpOptionIter it = option_iter();
    while (auto opt = it.next()) {
        const ByteView d = opt->data;
        switch (opt->kind) {
            case tcp_opt::nop:
                break;
            case tcp_opt::mss:  // RFC 9293 §3.2: length 4
                if (d.size() != 2) {
                    o.malformed = true;
                    return o;
                }
                o.mss = load_be16(d.data());
                break;
            case tcp_opt::window_scale:  // RFC 7323 §2.2: length 3
                if (d.size() != 1) {
                    o.malformed = true;
                    return o;
                }
                // RFC 7323 §2.3: a shift above 14 is treated as 14.
                o.window_scale = std::min(load_u8(d.data()), kTcpMaxWindowScale);
                break;
            case tcp_opt::sack_permitted:  // RFC 2018 §2: length 2
                if (!d.empty()) {
                    o.malformed = true;
                    return o;
                }
                o.sack_permitted = true;
                break;
            case tcp_opt::sack: {  // RFC 2018 §3: 8 bytes per block
                if (d.empty() || d.size() % 8 != 0) {
                    o.malformed = true;
                    return o;
                }
                const std::size_t n = d.size() / 8;  // <= 4: the options area is at most 40
                // A repeated SACK option replaces the earlier one whole: no stale blocks stay
                // behind the new count (found by fuzz_frame_parse).
                o.sack_blocks = {};
                o.sack_block_count = static_cast<std::uint8_t>(n);
                for (std::size_t i = 0; i < n; ++i)
                    o.sack_blocks[i] = {TcpSeq{load_be32(d.data() + i * 8)},
                                        TcpSeq{load_be32(d.data() + i * 8 + 4)}};
                break;
            }
            case tcp_opt::timestamps:  // RFC 7323 §3.2: length 10
                if (d.size() != 8) {
                    o.malformed = true;
                    return o;
                }
                o.timestamps = TcpTimestamps{load_be32(d.data()), load_be32(d.data() + 4)};
                break;
            default:
                break;  // RFC 9293 §3.1: unknown options are skipped by their length
        }
    }
    if (it.malformed()) o.malformed = true;
    return o;
}

TcpRepr TcpRepr::from(const TcpView& v) noexcept {
    TcpRepr r;
    r.src_port = v.src_port();
    r.dst_port = v.dst_port();
    r.seq = v.seq();
    r.ack = v.ack();
    r.flags = v.flags();
    r.reserved_bits = v.reserved_bits();
    r.window = v.window();
    r.checksum = v.checksum();
    r.urgent_ptr = v.urgent_ptr();
    r.options = v.parse_options();
    r.options.malformed = false;
    return r;
}

std::size_t TcpRepr::options_len() const noexcept {
    std::size_t n = 0;
    if (options.mss) n += 4;
    if (options.sack_permitted || options.timestamps)
        n += options.timestamps ? std::size_t{12} : std::size_t{4};
    if (options.window_scale) n += 4;
    if (options.sack_block_count != 0) n += 4 + std::size_t{options.sack_block_count} * 8;
    return n;
}

Result<std::size_t> TcpRepr::emit(MutByteView out) const noexcept {
    if (reserved_bits > 0x0fu || options.sack_block_count > kTcpMaxSackBlocks)
        return fail(Errc::invalid_argument);
    const std::size_t olen = options_len();
    if (olen > kTcpMaxOptionsLen) return fail(Errc::invalid_argument);
    const std::size_t hlen = kTcpMinHeaderLen + olen;
    if (out.size() < hlen) return fail(Errc::too_large);
    std::byte* p = out.data();
    store_be16(p, src_port.v);
    store_be16(p + 2, dst_port.v);
    store_be32(p + 4, seq.v);
    store_be32(p + 8, ack.v);
    store_u8(p + 12, static_cast<std::uint8_t>(((hlen / 4) << 4) | reserved_bits));
    store_u8(p + 13, flags);
    store_be16(p + 14, window);
    store_be16(p + 16, checksum);
    store_be16(p + 18, urgent_ptr);

    std::byte* q = p + kTcpMinHeaderLen;
    auto put = [&q](std::uint8_t v) noexcept { store_u8(q++, v); };
    if (options.mss) {
        put(tcp_opt::mss);
        put(4);
        store_be16(q, *options.mss);
        q += 2;
    }
    // Each group is padded with NOPs to a 32-bit boundary (RFC 9293 §3.1: header is whole words).
    if (options.timestamps) {
        if (options.sack_permitted) {
            put(tcp_opt::sack_permitted);
            put(2);
        } else {
            put(tcp_opt::nop);
            put(tcp_opt::nop);
        }
        put(tcp_opt::timestamps);
        put(10);
        store_be32(q, options.timestamps->val);
        store_be32(q + 4, options.timestamps->ecr);
        q += 8;
    } else if (options.sack_permitted) {
        put(tcp_opt::nop);
        put(tcp_opt::nop);
        put(tcp_opt::sack_permitted);
        put(2);
    }
    if (options.window_scale) {
        put(tcp_opt::nop);
        put(tcp_opt::window_scale);
        put(3);
        put(*options.window_scale);
    }
    if (options.sack_block_count != 0) {
        put(tcp_opt::nop);
        put(tcp_opt::nop);
        put(tcp_opt::sack);
        put(static_cast<std::uint8_t>(2 + options.sack_block_count * 8));
        for (std::size_t i = 0; i < options.sack_block_count; ++i) {
            store_be32(q, options.sack_blocks[i].left.v);
            store_be32(q + 4, options.sack_blocks[i].right.v);
            q += 8;
        }
    }
    return hlen;
}

}  // namespace slipway::wire
