// libFuzzer target: nat::TcpEngine driven by a script of guest segments, socket events, timer
// ticks and link changes, against the fakes of tests/unit/nat/fake_net.hpp.
//
// Input: two configuration bytes, then operations (see Harness::step()). Five guest 5-tuples (two
// guest addresses; a remote host, the host alias, and the gateway itself, which is refused).
// Invariants, checked at every frame the engine dispatches and after every step (trap or abort on
// violation):
//   - every frame parses, with valid IPv4 and TCP/ICMP checksums (partial checksums seeded with
//     the pseudo-header sum; GSO frames re-segmented by segment_gso() into valid frames), goes
//     from the gateway's MAC to the guest's, and carries partial checksums or GSO only for a
//     guest that takes them;
//   - a SYN-ACK only once the host connect succeeded, acknowledging the guest's ISN;
//   - the ACK number never acknowledges guest bytes the socket did not take
//     (ack - ISN - 1 <= bytes written, +1 once shutdown_write took the FIN);
//   - the window offered is never above the socket's free send space;
//   - host data only after the SYN-ACK, byte-identical to the socket's stream at that offset,
//     never beyond the right edge the guest announced (highest ack + window of any guest segment
//     whose ack lies within what the engine sent), in frames of at most one MSS unless GSO;
//   - the socket receives exactly the guest's bytes (a pattern of the sequence number), never
//     discards more than the guest acknowledged, and the HostSockets contract holds (fake_net.hpp
//     aborts on any breach: peek offsets, discards of unpeeked bytes, writes after shutdown, use
//     of a closed fd, ...);
//   - live flows == open sockets == flow-table entries; after reset_all() none is left, every
//     socket was closed exactly once, and every pool buffer is back.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../unit/nat/fake_net.hpp"
#include "fuzz_util.hpp"

namespace {

using namespace slipway;
using namespace slipway::nat;
using namespace slipway::nat::fake;
namespace tf = wire::tcp_flag;

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "fuzz_tcp_engine: invariant broken: %s %s\n", what, detail.c_str());
    std::abort();
}
void need(bool ok, const char* what, const std::string& detail = {}) {
    if (!ok) fail(what, detail);
}

PacketPool& pool() {
    static PacketPool p(PoolConfig{.small_buffers = 2048, .large_buffers = 64});
    return p;
}

class Reader {
  public:
    Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    [[nodiscard]] bool empty() const { return i_ >= n_; }
    std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }
    std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }

  private:
    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t i_ = 0;
};

constexpr MacAddr kGuestMac2{{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}};
constexpr Ipv4Addr kGuestIp2 = Ipv4Addr::from_octets(192, 168, 127, 3);
constexpr int kErrs[] = {0, 0, 0, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT};
constexpr int kSockErrs[] = {ECONNRESET, EPIPE, ETIMEDOUT};
constexpr std::uint32_t kMtus[] = {1500, 576, 9000, 65520};

bool seq_le(std::uint32_t a, std::uint32_t b) {
    return TcpSeq{a} <= TcpSeq{b};
}

// One flow incarnation: a host socket the engine opened for a guest SYN.
struct Inc {
    int tuple = 0;
    std::uint32_t gisn = 0;
    std::optional<std::uint8_t> syn_ws;  // as the engine parsed it
    std::uint16_t syn_mss = 536;
    std::uint16_t syn_window = 0;
    bool synack = false;
    std::uint32_t hisn = 0;
    std::uint8_t gws = 0;     // the guest's window shift, if both SYNs carried the option
    std::uint8_t eng_ws = 0;  // ours
    std::uint32_t right_edge = 0;
    std::uint32_t snd_max = 0;    // end of the highest sequence the engine sent
    std::uint32_t acked_max = 0;  // highest acceptable ack the guest sent
    std::size_t checked = 0;      // written bytes already compared with the guest pattern
};

struct Tuple {
    Endpoint guest, remote;
    MacAddr mac;
    std::uint32_t isn = 0;
    std::vector<int> fds;
    std::uint32_t gack = 0;   // highest ack the engine sent (the guest's snd_una)
    std::uint32_t gsent = 0;  // end of what the guest sent
};

class Harness {
  public:
    Harness(const FakeNetOptions& o, PortCaps caps) : net(o) {
        net.socks.abort_on_violation = true;
        net.link.caps = caps;
        net.link.on_dispatch = [this](const PacketRef& f) { on_frame(f); };
        for (int i = 0; i < kTuples; ++i) {
            Tuple& t = tuples[i];
            t.guest =
                Endpoint{(i & 2) ? kGuestIp2 : kGuestIp, static_cast<std::uint16_t>(40000 + i)};
            t.remote = (i & 1) ? Endpoint{kAliasIp, 8080} : Endpoint{kRemoteIp, 80};
            t.mac = (i & 2) ? kGuestMac2 : kGuestMac;
        }
        tuples[4].remote = Endpoint{kGatewayIp, 80};  // not translatable: RST
    }

    static constexpr int kTuples = 5;
    FakeNet net;
    Tuple tuples[kTuples];
    std::map<int, Inc> incs;

    Inc* current(int tuple) {
        Tuple& t = tuples[tuple];
        if (t.fds.empty()) return nullptr;
        return &incs[t.fds.back()];
    }
    FakeSocket* sock_of(int tuple) {
        Tuple& t = tuples[tuple];
        if (t.fds.empty()) return nullptr;
        FakeSocket* s = net.socks.find(t.fds.back());
        return (s != nullptr && !s->closed) ? s : nullptr;
    }

    // ---- guest segments ------------------------------------------------------------------------

    // Sends `segs` of tuple `ti` as one burst; records a flow the engine opened for a SYN.
    void burst(int ti, const std::vector<GuestSeg>& segs) {
        Tuple& t = tuples[ti];
        std::vector<PacketRef> frames;
        if (trace)
            for (const GuestSeg& s : segs)
                std::fprintf(stderr, "  -> flags %02x seq %u ack %u win %u len %zu\n", s.flags,
                             s.seq, s.ack, s.window, s.payload.size());
        std::optional<GuestSeg> syn;
        std::optional<wire::TcpOptions> syn_opts;
        for (const GuestSeg& s : segs) {
            PacketRef f =
                build_guest_frame(net.link.pool(), t.mac, kGatewayMac, t.guest, t.remote, s);
            if (!f) continue;
            if ((s.flags & tf::syn) != 0 && (s.flags & tf::ack) == 0) {
                syn = s;
                if (auto in = segment_in(f, 1)) syn_opts = in->tcp.parse_options();
            }
            note_guest(ti, s);
            const std::uint32_t end = s.seq + static_cast<std::uint32_t>(s.payload.size());
            if (t.gsent == 0 || TcpSeq{end} > TcpSeq{t.gsent}) t.gsent = end;
            frames.push_back(std::move(f));
        }
        const std::size_t opened = net.socks.opened.size();
        net.burst(std::move(frames));
        for (std::size_t i = opened; i < net.socks.opened.size(); ++i) {
            need(syn.has_value(), "a socket opened without a SYN");
            const int fd = net.socks.opened[i];
            Inc& inc = incs[fd];
            inc.tuple = ti;
            inc.gisn = syn->seq;
            inc.syn_window = syn->window;
            inc.syn_ws = syn_opts ? syn_opts->window_scale : std::nullopt;
            inc.syn_mss = syn_opts && syn_opts->mss ? *syn_opts->mss : 536;
            t.fds.push_back(fd);
            t.isn = syn->seq;
            t.gack = syn->seq + 1;
            t.gsent = syn->seq + 1;
            const FakeSocket& s = net.socks.at(fd);
            const Ipv4Addr want =
                t.remote.ip == kAliasIp ? Ipv4Addr::from_octets(127, 0, 0, 1) : t.remote.ip;
            need(s.remote_ip() == want && s.remote_port() == t.remote.port,
                 "open_connect to the wrong address");
        }
    }
    // The right edge the guest announces with this segment (window updates count only with an
    // ack of something the engine sent).
    void note_guest(int ti, const GuestSeg& s) {
        if ((s.flags & tf::ack) == 0 || (s.flags & (tf::rst | tf::syn)) != 0) return;
        Inc* inc = current(ti);
        if (inc == nullptr || !inc->synack) return;
        if (!seq_le(inc->hisn + 1, s.ack) || !seq_le(s.ack, inc->snd_max)) return;
        const std::uint32_t edge = s.ack + (std::uint32_t{s.window} << inc->gws);
        if (TcpSeq{edge} > TcpSeq{inc->right_edge}) inc->right_edge = edge;
        if (TcpSeq{s.ack} > TcpSeq{inc->acked_max}) inc->acked_max = s.ack;
    }

    // ---- frames from the engine ----------------------------------------------------------------

    bool trace = false;

    void on_frame(const PacketRef& f) {
        const OutFrame o = parse_out(f, &net.link.pool(), net.cfg.mtu + 14);
        if (trace) std::fprintf(stderr, "  <- %s\n", o.str().c_str());
        need(o.ok, "frame does not check", o.why);
        need(o.eth_src == kGatewayMac, "frame not from the gateway's MAC");
        const PortCaps& caps = net.link.caps;
        need(!o.gso || caps.gso, "GSO frame to a guest without GSO");
        need(!o.needs_csum || caps.partial_csum || (o.gso && caps.gso),
             "partial checksum to a guest that does not take it");
        if (o.icmp) {
            need(o.icmp_type == 3 && o.icmp_code <= 1, "unexpected ICMP", o.str());
            need(o.ip_dst == kGuestIp || o.ip_dst == kGuestIp2, "ICMP not to a guest");
            return;
        }
        int ti = -1;
        for (int i = 0; i < kTuples; ++i) {
            const Tuple& t = tuples[i];
            if (o.ip_dst == t.guest.ip && o.dport == t.guest.port && o.ip_src == t.remote.ip &&
                o.sport == t.remote.port)
                ti = i;
        }
        need(ti >= 0, "frame for a 5-tuple no guest used", o.str());
        Tuple& t = tuples[ti];
        need(o.eth_dst == t.mac, "frame to the wrong guest MAC");
        if (o.rst()) return;
        Inc* inc = current(ti);
        need(inc != nullptr, "non-RST frame for a flow never opened", o.str());
        const FakeSocket* s = net.socks.find(t.fds.back());
        need(s != nullptr && !s->closed, "non-RST frame for a closed flow", o.str());
        if (o.syn()) {
            need(s->conn == FakeSocket::Conn::connected || s->adopted,
                 "SYN-ACK before the host connect succeeded");
            need(o.has(tf::ack) && o.ack == inc->gisn + 1, "SYN-ACK does not ack the ISN", o.str());
            need(o.payload.empty(), "data on a SYN-ACK");
            need(o.opts.mss ==
                     std::optional<std::uint16_t>(static_cast<std::uint16_t>(net.cfg.mtu - 40)),
                 "SYN-ACK MSS is not MTU - 40", o.str());
            need(!o.opts.window_scale || inc->syn_ws, "window scale answered to a SYN without it");
            if (inc->synack) {
                need(o.seq == inc->hisn, "SYN-ACK retransmitted with another ISN");
            } else {
                inc->synack = true;
                inc->hisn = o.seq;
                inc->snd_max = o.seq + 1;
                inc->acked_max = o.seq;
                const bool scaled = inc->syn_ws.has_value() && o.opts.window_scale.has_value();
                inc->gws = scaled ? *inc->syn_ws : 0;
                inc->eng_ws = scaled ? *o.opts.window_scale : 0;
                inc->right_edge = o.seq + 1 + inc->syn_window;
            }
        }
        if (o.has(tf::ack)) {
            const auto acked = static_cast<std::int32_t>(o.ack - (inc->gisn + 1));
            need(acked >= 0, "ACK below the guest's ISN + 1", o.str());
            need(static_cast<std::size_t>(acked) <= s->written.size() + (s->shut_wr ? 1 : 0),
                 "ACK of guest bytes the socket did not take", o.str());
            const std::size_t win = o.syn() ? o.window : std::size_t{o.window} << inc->eng_ws;
            need(win <= s->space(), "window above the socket's send space",
                 o.str() + " space=" + std::to_string(s->space()));
            if (TcpSeq{o.ack} > TcpSeq{t.gack}) t.gack = o.ack;
        }
        if (!o.payload.empty()) {
            need(inc->synack, "data before the SYN-ACK");
            const auto off = static_cast<std::int32_t>(o.seq - (inc->hisn + 1));
            need(off >= 0, "data before the host ISN", o.str());
            const std::size_t begin = static_cast<std::size_t>(off);
            need(begin + o.payload.size() <= s->stream.size(), "data the socket never had");
            need(std::equal(o.payload.begin(), o.payload.end(),
                            s->stream.begin() + static_cast<std::ptrdiff_t>(begin)),
                 "data differs from the socket's stream", o.str());
            const std::uint32_t end = o.seq + static_cast<std::uint32_t>(o.payload.size());
            need(seq_le(end, inc->right_edge), "data beyond the guest's window",
                 o.str() + " right edge " + std::to_string(inc->right_edge));
            const std::size_t mss =
                std::min<std::size_t>(std::max<std::size_t>(inc->syn_mss, 64), net.cfg.mtu - 40);
            if (!o.gso) need(o.payload.size() <= mss, "frame above the MSS", o.str());
            if (o.gso) need(o.gso_size <= mss, "gso_size above the MSS", o.str());
        }
        if (inc->synack && TcpSeq{o.end_seq()} > TcpSeq{inc->snd_max}) inc->snd_max = o.end_seq();
    }

    // ---- after every step ----------------------------------------------------------------------

    void check_state() {
        std::uint32_t open = 0;
        for (auto& [fd, inc] : incs) {
            const FakeSocket& s = net.socks.at(fd);
            if (!s.closed) ++open;
            for (; inc.checked < s.written.size(); ++inc.checked)
                need(s.written[inc.checked] ==
                         guest_byte(inc.gisn + 1 + static_cast<std::uint32_t>(inc.checked)),
                     "the socket got bytes the guest did not send at that offset");
            if (!inc.synack) {
                need(s.consumed == 0, "discard before the SYN-ACK");
            } else {
                const auto acked = static_cast<std::int32_t>(inc.acked_max - (inc.hisn + 1));
                need(acked >= 0 ? s.consumed <= static_cast<std::size_t>(acked) : s.consumed == 0,
                     "discarded bytes the guest never acknowledged");
            }
        }
        need(net.live_flows() == open, "live flows != open sockets");
        need(net.table.size() == open, "flow table entries != open sockets");
        // Frames were checked at dispatch; the guest's stack would consume them now.
        for (PacketRef& f : net.link.frames)
            f.reset();
        net.link.frames.clear();
        net.link.stamps.clear();
    }

    // ---- the script ----------------------------------------------------------------------------

    std::vector<std::uint8_t> pattern(std::uint32_t seq, std::size_t n) {
        return guest_bytes(seq, n);
    }
    std::uint32_t ack_for(int ti, std::uint8_t mode, Reader& in) {
        const Inc* inc = current(ti);
        const std::uint32_t una = inc && inc->synack ? inc->acked_max : 0;
        const std::uint32_t max = inc && inc->synack ? inc->snd_max : 0;
        switch (mode & 3) {
            case 0:
                return max;
            case 1: {
                const std::uint32_t span = max - una;
                return span == 0 ? una : una + in.u16() % (span + 1);
            }
            case 2:
                return in.u32();
            default:
                return una;
        }
    }
    std::uint32_t seq_for(int ti, std::uint8_t mode, Reader& in) {
        const Tuple& t = tuples[ti];
        switch (mode & 3) {
            case 0:
                return t.gack;
            case 1:
                return t.gsent;
            case 2:
                return t.gack + in.u16();
            default:
                return t.gack - in.u8();
        }
    }
    GuestSeg data_seg(int ti, std::uint32_t seq, std::size_t len, std::uint32_t ack,
                      std::uint16_t window, std::uint8_t extra) {
        GuestSeg s;
        s.flags = static_cast<std::uint8_t>(tf::ack | extra);
        s.seq = seq;
        s.ack = ack;
        s.window = window;
        s.payload = pattern(seq, len);
        (void)ti;
        return s;
    }

    void step(Reader& in) {
        const std::uint8_t op = static_cast<std::uint8_t>(in.u8() % 16);
        const int ti = in.u8() % kTuples;
        if (trace) std::fprintf(stderr, "op %u tuple %d\n", op, ti);
        Tuple& t = tuples[ti];
        switch (op) {
            case 0: {  // a new SYN
                GuestSeg s;
                s.flags = tf::syn;
                s.seq = in.u32();
                const std::uint8_t o = in.u8();
                if (o & 1) s.opts.mss = in.u16();
                if (o & 2) s.opts.window_scale = static_cast<std::uint8_t>(in.u8() % 16);
                s.opts.sack_permitted = (o & 4) != 0;
                if (o & 8) s.opts.timestamps = wire::TcpTimestamps{in.u32(), 0};
                s.window = in.u16();
                burst(ti, {s});
                break;
            }
            case 1: {  // the SYN again (same ISN)
                GuestSeg s;
                s.flags = tf::syn;
                s.seq = t.isn;
                s.window = 65535;
                s.opts.mss = 1460;
                s.opts.window_scale = 7;
                burst(ti, {s});
                break;
            }
            case 2: {  // a bare ACK
                const std::uint8_t m = in.u8();
                GuestSeg s;
                s.flags = tf::ack;
                s.seq = t.gsent;
                s.ack = ack_for(ti, m, in);
                s.window = (m & 4) ? 0 : in.u16();
                burst(ti, {s});
                break;
            }
            case 3: {  // data, maybe with FIN
                const std::uint8_t m = in.u8();
                const std::uint32_t seq = seq_for(ti, m, in);
                const std::size_t len = in.u16() % ((m & 0x40) ? 60000u : 3000u);
                const std::uint32_t ack = ack_for(ti, static_cast<std::uint8_t>(m >> 4), in);
                const std::uint8_t extra =
                    static_cast<std::uint8_t>(((m & 4) ? tf::fin : 0) | ((m & 8) ? tf::psh : 0));
                burst(ti, {data_seg(ti, seq, len, ack, in.u16(), extra)});
                break;
            }
            case 4: {  // a burst of segments that continue each other
                const std::size_t k = 1 + in.u8() % 6;
                std::uint32_t seq = t.gack;
                const std::uint32_t ack = ack_for(ti, 0, in);
                std::vector<GuestSeg> segs;
                for (std::size_t i = 0; i < k; ++i) {
                    const std::size_t len = in.u16() % 2000;
                    segs.push_back(data_seg(ti, seq, len, ack, 65535, 0));
                    seq += static_cast<std::uint32_t>(len);
                }
                burst(ti, segs);
                break;
            }
            case 5: {  // FIN
                GuestSeg s;
                s.flags = tf::fin | tf::ack;
                s.seq = t.gsent;
                s.ack = ack_for(ti, in.u8(), in);
                s.window = 65535;
                burst(ti, {s});
                break;
            }
            case 6: {  // RST
                GuestSeg s;
                s.flags = tf::rst;
                s.seq = (in.u8() & 1) ? in.u32() : t.gack;
                burst(ti, {s});
                break;
            }
            case 7: {  // anything
                GuestSeg s;
                s.flags = in.u8();
                s.seq = in.u32();
                s.ack = in.u32();
                s.window = in.u16();
                s.payload = pattern(s.seq, std::size_t{in.u8()} * 8);
                burst(ti, {s});
                break;
            }
            case 8: {  // keep-alive
                GuestSeg s;
                s.flags = tf::ack;
                s.seq = t.gack - 1;
                s.ack = ack_for(ti, 3, in);
                if (in.u8() & 1) s.payload = pattern(s.seq, 1);
                burst(ti, {s});
                break;
            }
            case 9: {  // the connect finishes
                const int err = kErrs[in.u8() % 7];
                FakeSocket* s = sock_of(ti);
                if (s != nullptr && s->conn == FakeSocket::Conn::connecting) {
                    net.socks.complete_connect(s->fd, err);
                    net.pump();
                }
                break;
            }
            case 10: {  // host data
                const std::size_t n = in.u16() % 30000;
                FakeSocket* s = sock_of(ti);
                // At most 1 MiB of host data per input: long scripts stay fast.
                if (s != nullptr && s->conn == FakeSocket::Conn::connected && !s->eof &&
                    s->stream.size() + n <= (std::size_t{1} << 20)) {
                    net.socks.push_pattern(s->fd, n);
                    net.pump();
                }
                break;
            }
            case 11: {  // the peer's FIN
                FakeSocket* s = sock_of(ti);
                if (s != nullptr && s->conn == FakeSocket::Conn::connected) {
                    net.socks.set_eof(s->fd);
                    net.pump();
                }
                break;
            }
            case 12: {  // a socket error
                const int err = kSockErrs[in.u8() % 3];
                FakeSocket* s = sock_of(ti);
                if (s != nullptr && s->conn == FakeSocket::Conn::connected) {
                    net.socks.inject_error(s->fd, err);
                    net.pump();
                }
                break;
            }
            case 13: {  // the host peer acknowledges
                const std::size_t n = std::size_t{in.u16()} * 4;
                FakeSocket* s = sock_of(ti);
                if (s != nullptr && s->conn == FakeSocket::Conn::connected) {
                    net.socks.drain(s->fd, n);
                    net.pump();
                }
                break;
            }
            case 14: {  // time passes
                const std::uint16_t v = in.u16();
                net.tick((v & 0x8000) ? std::uint64_t{v & 0x7fffu} * 4 : v % 1000u);
                break;
            }
            default: {
                const std::uint8_t sub = in.u8();
                switch (sub % 5) {
                    case 0: {
                        const std::uint8_t r = in.u8();
                        net.link.room_per_call = r == 255 ? 4096 : r;
                        break;
                    }
                    case 1:
                        if (FakeSocket* s = sock_of(ti)) net.socks.set_sndbuf(s->fd, in.u16() * 2u);
                        break;
                    case 2:
                        net.socks.open_script.push_back(-kErrs[3 + in.u8() % 4]);
                        break;
                    case 3: {
                        const std::uint8_t c = in.u8();
                        net.link.caps.gso = (c & 1) != 0;
                        net.link.caps.partial_csum = (c & 2) != 0;
                        break;
                    }
                    default:
                        net.poller.refuse = (in.u8() & 1) != 0;
                        break;
                }
                net.pump();
                break;
            }
        }
    }
};

// Initial sequence numbers from the input (the engine's own are random), so every crash input
// replays the same way.
std::uint32_t g_isn_seed = 0;
std::uint32_t fuzz_isn() {
    g_isn_seed = g_isn_seed * 2654435761u + 0x9e3779b9u;
    return g_isn_seed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2 || size > 8192) return 0;
    Reader in(data, size);
    const std::uint8_t c0 = in.u8();
    const std::uint8_t c1 = in.u8();
    FakeNetOptions o;
    o.mode = (c0 & 1) ? PeekMode::discard_iovec : PeekMode::peek_off;
    o.discard_area = (c0 & 2) ? 4096 : 256 * 1024;
    o.sndbuf = (std::size_t{c1 & 0x3fu} + 1) * 1024;
    o.external_pool = &pool();
    o.table = FlowTableConfig{.capacity = (c1 & 0x40) ? 2u : 8u, .max_fd = 8192, .cache_slots = 4};
    o.tcp.mtu = kMtus[(c0 >> 2) & 3];
    o.tcp.max_flows_per_guest = (c0 & 0x40) ? 1 : 0;
    o.tcp.rcv_wscale = (c0 & 0x80) ? 0 : 7;
    o.tcp.connect_timeout = std::chrono::milliseconds(3000);
    o.tcp.idle_timeout = std::chrono::milliseconds(30000);
    o.tcp.fin_timeout = std::chrono::milliseconds(10000);
    o.tcp.slice_frames = 16;
    g_isn_seed = std::uint32_t{c0} << 24 | std::uint32_t{c1} << 8;  // both halves of the space
    o.tcp.isn = fuzz_isn;
    const PortCaps caps{.gso = (c0 & 0x10) != 0, .partial_csum = (c0 & 0x20) != 0};
    {
        Harness h(o, caps);
        const char* verbose = std::getenv("FUZZ_TCP_ENGINE_VERBOSE");
        h.trace = verbose != nullptr && verbose[0] == '2';
        for (int steps = 0; steps < 400 && !in.empty(); ++steps) {
            h.step(in);
            h.check_state();
        }
        if (std::getenv("FUZZ_TCP_ENGINE_VERBOSE") != nullptr) {  // what a seed reaches
            h.net.eng.counters().for_each([](const char* name, const Counter& v) {
                if (v.get() != 0)
                    std::fprintf(stderr, "%s=%llu\n", name,
                                 static_cast<unsigned long long>(v.get()));
            });
        }
        h.net.eng.reset_all();
        h.net.pump();
        h.check_state();
        need(h.net.live_flows() == 0 && h.net.table.size() == 0, "flows left after reset_all");
        need(h.net.socks.all_closed(), "a socket not closed exactly once");
        h.net.link.on_dispatch = nullptr;
    }
    slipway::fuzz::check(slipway::fuzz::all_returned(pool()));
    return 0;
}
