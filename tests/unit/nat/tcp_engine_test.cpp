// nat::TcpEngine against fake sockets, poller and link (fake_net.hpp), in both peek modes: the
// handshake only after the host connect, connect failures (RST, ICMP unreachable, timeout),
// untranslatable destinations and flow limits, the DNS service's adopted stream, guest data
// acknowledged only as far as the socket took it (bursts, short writes, window updates, gaps,
// overlaps, keep-alives), host data within the guest's window in MSS or GSO frames, ACKs
// discarding exactly what they cover, stale ACKs, timer and fast retransmission, zero-window
// probes, a full link, both closes, half-close lifetimes, resets either way, idle timeouts and
// RST for unknown flows (TCP.md §3-§7). Every frame is checked on the way: checksums, ACK never
// ahead of what the socket took when the frame left, window never above the socket's free space
// then, host bytes where the stream has them and never beyond the guest's window.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nat/fake_net.hpp"
#include "slipway/nat/tcp.hpp"

namespace slipway::nat {
namespace {

using namespace slipway::nat::fake;
namespace tf = wire::tcp_flag;

constexpr std::uint8_t kSynAck = tf::syn | tf::ack;

// One guest connection as the test drives it, and what it learnt from the engine.
struct Flow {
    Endpoint guest{kGuestIp, 40000};
    Endpoint remote{kRemoteIp, 80};
    std::uint32_t gisn = 0xfffff000u;  // near the wrap: sequence arithmetic must be modular
    std::optional<std::uint8_t> guest_ws = 7;
    std::uint16_t guest_mss = 1460;
    std::uint16_t syn_window = 64240;
    // Learnt from the engine.
    int fd = -1;
    FlowId id = kNoFlow;
    std::uint32_t hisn = 0;
    bool synack_seen = false;
    bool scaled = false;  // both SYNs carried window scale
    std::uint8_t eng_ws = 0;
    std::uint16_t eng_mss = 0;
    // Guest side.
    std::uint32_t gnxt = 0;        // the guest's next sequence number
    std::uint32_t right_edge = 0;  // highest ack + window the guest announced
    std::uint32_t snd_max = 0;     // highest sequence number the engine sent

    [[nodiscard]] std::uint32_t hs(std::size_t off) const {  // host stream offset -> seq
        return hisn + 1 + static_cast<std::uint32_t>(off);
    }
    [[nodiscard]] std::uint32_t gs(std::size_t off) const {  // guest stream offset -> seq
        return gisn + 1 + static_cast<std::uint32_t>(off);
    }
    [[nodiscard]] std::uint8_t gws() const { return scaled ? *guest_ws : 0; }
};

std::vector<std::uint8_t> gdata(const Flow& f, std::size_t off, std::size_t n) {
    return guest_bytes(f.gs(off), n);
}

std::string mode_name(const ::testing::TestParamInfo<PeekMode>& i) {
    return i.param == PeekMode::peek_off ? "PeekOff" : "DiscardIovec";
}

class TcpEngineTest : public ::testing::TestWithParam<PeekMode> {
  protected:
    // A socket's state at the moment a frame of its flow left.
    struct Snap {
        bool valid = false;
        std::size_t space = 0, written = 0;
        bool shut_wr = false;
    };

    void SetUp() override { make(FakeNetOptions{}); }
    void TearDown() override {
        if (!net) return;
        flows.clear();  // the test's Flow objects are gone
        net->link.on_dispatch = nullptr;
        // Shutdown resets and frees whatever is left; every socket ends closed exactly once.
        net->eng.reset_all();
        EXPECT_EQ(net->live_flows(), 0u);
        EXPECT_EQ(net->table.size(), 0u);
        EXPECT_TRUE(net->socks.all_closed());
        for (const OutFrame& o : net->take())
            EXPECT_TRUE(o.ok) << o.str();
        for (const std::string& v : net->socks.violations)
            ADD_FAILURE() << "HostSockets contract: " << v;
    }
    void make(FakeNetOptions o) {
        o.mode = GetParam();
        net = std::make_unique<FakeNet>(o);
        flows.clear();
        snaps.clear();
        // The socket's state when each frame left: what its ACK and window must respect.
        net->link.on_dispatch = [this](const PacketRef& fr) {
            Snap sn;
            const OutFrame of = parse_out(fr);
            if (const Flow* f = flow_of(of); f != nullptr && f->fd >= 0) {
                if (const FakeSocket* s = net->socks.find(f->fd)) {
                    sn.valid = !s->closed;
                    sn.space = s->space();
                    sn.written = s->written.size();
                    sn.shut_wr = s->shut_wr;
                }
            }
            snaps.push_back(sn);
        };
    }

    // ---- guest side ----------------------------------------------------------------------------

    PacketRef frame(const Flow& f, const GuestSeg& s) {
        return build_guest_frame(net->link.pool(), kGuestMac, kGatewayMac, f.guest, f.remote, s);
    }
    // The right edge the guest announces: only an ACK of something the engine sent counts (RFC
    // 9293 §3.10.7.4: SND.UNA =< SEG.ACK =< SND.NXT).
    void note_guest(Flow& f, const GuestSeg& s) {
        if ((s.flags & tf::ack) == 0 || !f.synack_seen || (s.flags & tf::rst) != 0) return;
        if (TcpSeq{s.ack} < TcpSeq{f.hisn + 1} || TcpSeq{s.ack} > TcpSeq{f.snd_max}) return;
        const std::uint32_t edge = s.ack + (std::uint32_t{s.window} << f.gws());
        if (TcpSeq{edge} > TcpSeq{f.right_edge}) f.right_edge = edge;
    }
    // One guest segment as a burst of its own.
    void send(Flow& f, const GuestSeg& s) {
        note_guest(f, s);
        std::vector<PacketRef> b;
        b.push_back(frame(f, s));
        net->burst(std::move(b));
    }
    void send_burst(Flow& f, const std::vector<GuestSeg>& segs) {
        std::vector<PacketRef> b;
        for (const GuestSeg& s : segs) {
            note_guest(f, s);
            b.push_back(frame(f, s));
        }
        net->burst(std::move(b));
    }
    GuestSeg seg(const Flow& f, std::uint8_t flags, std::uint32_t seq,
                 std::vector<std::uint8_t> payload = {}, std::uint16_t window = 65535) {
        GuestSeg s;
        s.flags = flags;
        s.seq = seq;
        s.ack = (flags & tf::ack) != 0 ? f.hisn + 1 : 0;
        s.window = window;
        s.payload = std::move(payload);
        return s;
    }
    // Guest data at guest-stream offset `off` (ACK of everything the guest got so far).
    void send_data(Flow& f, std::size_t off, std::size_t n, std::uint32_t ack,
                   std::uint16_t window = 65535, std::uint8_t extra = 0) {
        GuestSeg s = seg(f, tf::ack | tf::psh | extra, f.gs(off), gdata(f, off, n), window);
        s.ack = ack;
        send(f, s);
    }
    void send_ack(Flow& f, std::uint32_t ack, std::uint16_t window = 65535) {
        GuestSeg s = seg(f, tf::ack, f.gnxt);
        s.ack = ack;
        s.window = window;
        send(f, s);
    }
    GuestSeg syn_seg(const Flow& f) {
        GuestSeg s;
        s.flags = tf::syn;
        s.seq = f.gisn;
        s.window = f.syn_window;
        s.opts.mss = f.guest_mss;
        s.opts.window_scale = f.guest_ws;
        s.opts.sack_permitted = true;
        s.opts.timestamps = wire::TcpTimestamps{12345, 0};
        return s;
    }
    // The guest's SYN: the engine opens a socket and answers nothing yet.
    void syn(Flow& f) {
        flows.push_back(&f);
        const std::uint32_t opened = net->socks.open_calls;
        send(f, syn_seg(f));
        ASSERT_EQ(net->socks.open_calls, opened + 1) << "the SYN must start a host connect";
        f.fd = net->socks.last_opened();
        f.gnxt = f.gisn + 1;
    }
    // SYN, connect success, SYN-ACK checked, the guest's ACK: an established flow.
    void establish(Flow& f, std::uint16_t ack_window = 65535) {
        syn(f);
        ASSERT_GE(f.fd, 0);
        EXPECT_TRUE(take(f).empty()) << "nothing may reach the guest before the connect is done";
        net->socks.complete_connect(f.fd, 0);
        net->pump();
        const auto out = take(f);
        ASSERT_EQ(out.size(), 1u) << "exactly one SYN-ACK once the host connection is up";
        ASSERT_EQ(out[0].flags & (tf::syn | tf::ack | tf::rst | tf::fin), kSynAck) << out[0].str();
        f.id = net->table.by_fd(f.fd);
        ASSERT_NE(f.id, kNoFlow);
        f.right_edge = f.snd_max;
        send_ack(f, f.hisn + 1, ack_window);
        EXPECT_EQ(net->socks.at(f.fd).written.size(), 0u);
    }

    // ---- the engine's frames, checked -------------------------------------------------------

    Flow* flow_of(const OutFrame& o) {
        for (Flow* f : flows)
            if (o.tcp && o.dport == f->guest.port && o.sport == f->remote.port) return f;
        return nullptr;
    }
    // Takes every frame the engine emitted and checks each against the invariants.
    std::vector<OutFrame> take_all() {
        auto out = net->take();
        std::vector<Snap> sn;
        sn.swap(snaps);
        EXPECT_EQ(sn.size(), out.size());
        sn.resize(out.size());
        for (std::size_t i = 0; i < out.size(); ++i) {
            const OutFrame& o = out[i];
            EXPECT_TRUE(o.ok) << o.str();
            if (!o.ok) continue;
            EXPECT_EQ(o.eth_src, kGatewayMac);
            EXPECT_EQ(o.eth_dst, kGuestMac);
            EXPECT_EQ(o.ip_dst.v & 0xffffff00u, kGuestIp.v & 0xffffff00u) << "not to the guest net";
            EXPECT_TRUE(!o.needs_csum || net->link.caps.partial_csum) << o.str();
            EXPECT_TRUE(!o.gso || net->link.caps.gso) << o.str();
            Flow* f = flow_of(o);
            if (f != nullptr) check(*f, o, sn[i]);
        }
        return out;
    }
    // The frames of flow `f` only.
    std::vector<OutFrame> take(Flow& f) {
        std::vector<OutFrame> mine;
        for (OutFrame& o : take_all())
            if (flow_of(o) == &f) mine.push_back(std::move(o));
        return mine;
    }
    void check(Flow& f, const OutFrame& o, const Snap& sn) {
        EXPECT_EQ(o.ip_src, f.remote.ip) << o.str();
        EXPECT_EQ(o.ip_dst, f.guest.ip) << o.str();
        if (o.rst()) return;
        const FakeSocket* s = f.fd >= 0 ? net->socks.find(f.fd) : nullptr;
        if (o.syn()) {
            EXPECT_TRUE(s != nullptr && s->conn == FakeSocket::Conn::connected)
                << "SYN-ACK before the host connection is up: " << o.str();
            EXPECT_EQ(o.ack, f.gisn + 1) << o.str();
            f.synack_seen = true;
            f.hisn = o.seq;
            f.snd_max = o.seq + 1;
            f.scaled = f.guest_ws.has_value() && o.opts.window_scale.has_value();
            f.eng_ws = f.scaled ? *o.opts.window_scale : 0;
            f.eng_mss = o.opts.mss.value_or(536);
            f.right_edge = o.seq + 1 + f.syn_window;
        }
        if (s == nullptr) return;
        if (o.has(tf::ack) && sn.valid) {
            // TCP.md §4: acknowledged only as far as the socket took the bytes (+1 for a FIN
            // once shutdown_write happened), at the moment the frame left.
            const auto acked = static_cast<std::int32_t>(o.ack - (f.gisn + 1));
            const std::size_t limit = sn.written + (sn.shut_wr ? 1 : 0);
            EXPECT_GE(acked, 0) << o.str();
            EXPECT_LE(static_cast<std::size_t>(std::max(acked, 0)), limit)
                << "ACK beyond what the socket took: " << o.str();
            // The window offered is the socket's free send space, never more.
            const std::size_t win = o.syn() ? o.window : std::size_t{o.window} << f.eng_ws;
            EXPECT_LE(win, sn.space) << "window above send space: " << o.str();
        }
        if (!f.synack_seen) {
            ADD_FAILURE() << "frame before the SYN-ACK: " << o.str();
            return;
        }
        if (!o.payload.empty()) {
            if (!o.gso) {
                EXPECT_LE(o.payload.size(), f.eng_mss) << o.str();
            }
            const auto off = static_cast<std::int32_t>(o.seq - (f.hisn + 1));
            ASSERT_GE(off, 0) << o.str();
            const auto uoff = static_cast<std::size_t>(off);
            ASSERT_LE(uoff + o.payload.size(), s->stream.size()) << o.str();
            EXPECT_TRUE(std::equal(o.payload.begin(), o.payload.end(),
                                   s->stream.begin() + static_cast<std::ptrdiff_t>(uoff)))
                << "payload differs from the host stream at offset " << uoff << ": " << o.str();
            const std::uint32_t end = o.seq + static_cast<std::uint32_t>(o.payload.size());
            EXPECT_TRUE(TcpSeq{end} <= TcpSeq{f.right_edge})
                << "data beyond the guest's window (right edge " << f.right_edge
                << "): " << o.str();
        }
        if (TcpSeq{o.end_seq()} > TcpSeq{f.snd_max}) f.snd_max = o.end_seq();
    }

    static std::size_t payload_total(const std::vector<OutFrame>& v) {
        std::size_t n = 0;
        for (const OutFrame& o : v)
            n += o.payload.size();
        return n;
    }
    static std::vector<OutFrame> data_frames(const std::vector<OutFrame>& v) {
        std::vector<OutFrame> d;
        for (const OutFrame& o : v)
            if (!o.payload.empty()) d.push_back(o);
        return d;
    }
    static const OutFrame* last_ack(const std::vector<OutFrame>& v) {
        for (auto it = v.rbegin(); it != v.rend(); ++it)
            if (it->tcp && it->has(tf::ack) && !it->rst()) return &*it;
        return nullptr;
    }
    const FakeSocket& sock(const Flow& f) { return net->socks.at(f.fd); }
    const TcpCounters& counters() { return net->eng.counters(); }

    std::unique_ptr<FakeNet> net;
    std::vector<Flow*> flows;
    std::vector<Snap> snaps;
};

// ---- opening ----------------------------------------------------------------------------------

TEST_P(TcpEngineTest, SynAckOnlyAfterConnectSucceeds) {
    Flow f;
    syn(f);
    const FakeSocket& s = sock(f);
    EXPECT_EQ(s.remote_ip(), kRemoteIp);
    EXPECT_EQ(s.remote_port(), 80);
    EXPECT_TRUE(take(f).empty());
    EXPECT_EQ(net->eng.flows_in(TcpState::connecting), 1u);
    EXPECT_EQ(counters().syn_received.get(), 1u);
    EXPECT_TRUE(net->poller.interest(f.fd) & sock_event::out) << "connect waits for writability";

    // The guest retransmits its SYN while the connect is pending: ignored, no second socket.
    send(f, syn_seg(f));
    EXPECT_TRUE(take(f).empty());
    EXPECT_EQ(net->socks.open_calls, 1u);

    net->socks.complete_connect(f.fd, 0);
    net->pump();
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    const OutFrame& sa = out[0];
    EXPECT_EQ(sa.flags & (tf::syn | tf::ack | tf::rst | tf::fin), kSynAck) << sa.str();
    EXPECT_EQ(sa.ack, f.gisn + 1);
    EXPECT_EQ(sa.opts.mss, std::optional<std::uint16_t>(1460)) << "MSS = MTU - 40";
    EXPECT_EQ(sa.opts.window_scale, std::optional<std::uint8_t>(net->cfg.rcv_wscale));
    EXPECT_TRUE(sa.payload.empty());
    EXPECT_GT(sa.window, 0u);
    EXPECT_EQ(net->eng.flows_in(TcpState::established), 1u);
    EXPECT_EQ(counters().established.get(), 1u);

    // The guest completes the handshake: nothing to write, nothing to send.
    send_ack(f, f.hisn + 1);
    EXPECT_TRUE(take(f).empty());
    EXPECT_TRUE(sock(f).written.empty());
    f.id = net->table.by_fd(f.fd);
    EXPECT_EQ(net->poller.watched[f.fd].id, f.id);
    const auto info = net->eng.flow_info(f.id);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->fd, f.fd);
    EXPECT_EQ(info->key.guest_port, f.guest.port);
    EXPECT_EQ(info->key.remote_ip, kRemoteIp);
}

TEST_P(TcpEngineTest, NoWindowScaleUnlessTheGuestOffersIt) {
    Flow f;
    f.guest_ws.reset();
    establish(f);
    EXPECT_FALSE(f.scaled);
    // Unscaled windows: at most 65535 and never above the send space (checked in check()).
    send_data(f, 0, 1000, f.hisn + 1);
    const auto out = take(f);
    const OutFrame* a = last_ack(out);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->ack, f.gs(1000));
    EXPECT_LE(a->window, 65535u);
}

TEST_P(TcpEngineTest, MssFollowsTheMtu) {
    FakeNetOptions o;
    o.tcp.mtu = 4000;
    make(o);
    Flow f;
    f.guest_mss = 8960;
    establish(f);
    EXPECT_EQ(f.eng_mss, 3960);
}

TEST_P(TcpEngineTest, RefusedConnectResetsTheGuest) {
    Flow f;
    syn(f);
    net->socks.complete_connect(f.fd, ECONNREFUSED);
    net->pump();
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    // RFC 9293 §3.10.7.3: the guest in SYN-SENT accepts the RST only if it acknowledges its SYN.
    EXPECT_TRUE(out[0].has(tf::ack)) << out[0].str();
    EXPECT_EQ(out[0].ack, f.gisn + 1);
    EXPECT_TRUE(sock(f).closed);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
    EXPECT_EQ(counters().connect_refused.get(), 1u);
}

TEST_P(TcpEngineTest, UnreachableAnswersIcmpQuotingTheSyn) {
    // At once (open_connect fails) and later (the connect's SO_ERROR).
    for (const int err : {ENETUNREACH, EHOSTUNREACH}) {
        Flow f;
        f.guest.port = static_cast<std::uint16_t>(41000 + err);
        flows.push_back(&f);
        f.fd = -1;
        if (err == ENETUNREACH) {
            net->socks.open_script.push_back(-ENETUNREACH);
            send(f, syn_seg(f));
        } else {
            syn(f);
            net->socks.complete_connect(f.fd, err);
            net->pump();
            EXPECT_TRUE(sock(f).closed);
        }
        const auto out = take_all();
        ASSERT_EQ(out.size(), 1u);
        const OutFrame& o = out[0];
        ASSERT_TRUE(o.icmp) << o.str();
        EXPECT_EQ(o.icmp_type, 3) << "destination unreachable";
        EXPECT_EQ(o.icmp_code, err == ENETUNREACH ? 0 : 1) << "net / host unreachable";
        EXPECT_EQ(o.ip_dst, kGuestIp);
        // RFC 792: the quoted datagram's IP header and at least 8 bytes of its transport header.
        ASSERT_GE(o.icmp_body.size(), 28u);
        // Parsed by hand: the quote is cut short, its total length names the whole SYN.
        const std::vector<std::uint8_t>& q = o.icmp_body;
        EXPECT_EQ(q[0] >> 4, 4);
        const std::size_t ihl = std::size_t{q[0] & 0x0fu} * 4;
        ASSERT_GE(ihl, 20u);
        ASSERT_GE(q.size(), ihl + 8);
        std::vector<std::byte> qb(q.size());
        std::memcpy(qb.data(), q.data(), q.size());
        EXPECT_EQ(Ipv4Addr::load(qb.data() + 12), kGuestIp);
        EXPECT_EQ(Ipv4Addr::load(qb.data() + 16), kRemoteIp);
        EXPECT_EQ(q[9], static_cast<std::uint8_t>(IpProto::tcp));
        const std::byte* l4 = qb.data() + ihl;
        EXPECT_EQ(load_be16(l4), f.guest.port);
        EXPECT_EQ(load_be16(l4 + 2), 80);
        EXPECT_EQ(load_be32(l4 + 4), f.gisn);
        flows.clear();
    }
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
    EXPECT_EQ(counters().connect_unreachable.get(), 2u);
}

TEST_P(TcpEngineTest, OtherImmediateConnectFailureResetsTheGuest) {
    Flow f;
    flows.push_back(&f);
    net->socks.open_script.push_back(-EADDRNOTAVAIL);
    send(f, syn_seg(f));
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(out[0].ack, f.gisn + 1);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(counters().connect_failed.get(), 1u);
}

TEST_P(TcpEngineTest, ConnectTimeoutResetsTheGuest) {
    Flow f;
    syn(f);
    const auto timeout = static_cast<std::uint64_t>(net->cfg.connect_timeout.count());
    net->tick(timeout / 2);
    net->tick(timeout / 2 - 100);
    EXPECT_TRUE(take(f).empty()) << "no answer before the connect timeout";
    EXPECT_FALSE(sock(f).closed);
    for (int i = 0; i < 10; ++i)
        net->tick(50);
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(out[0].ack, f.gisn + 1);
    EXPECT_TRUE(sock(f).closed);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(counters().connect_timeout.get(), 1u);
}

TEST_P(TcpEngineTest, HostAliasConnectsToLoopback) {
    Flow f;
    f.remote = Endpoint{kAliasIp, 8080};
    EXPECT_TRUE(net->eng.wants(kAliasIp, 8080));
    EXPECT_TRUE(net->eng.wants(kRemoteIp, 80));
    EXPECT_FALSE(net->eng.wants(Ipv4Addr::from_octets(192, 168, 127, 9), 80));
    syn(f);
    EXPECT_EQ(sock(f).remote_ip(), Ipv4Addr::from_octets(127, 0, 0, 1));
    EXPECT_EQ(sock(f).remote_port(), 8080);
}

TEST_P(TcpEngineTest, UntranslatableDestinationAndLimitsAnswerRst) {
    FakeNetOptions o;
    o.tcp.max_flows_per_guest = 1;
    o.table.capacity = 2;
    make(o);
    Flow gw;
    gw.remote = Endpoint{kGatewayIp, 80};  // the gateway itself is no NAT destination
    flows.push_back(&gw);
    send(gw, syn_seg(gw));
    auto out = take(gw);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst() && out[0].ack == gw.gisn + 1) << out[0].str();
    EXPECT_EQ(counters().denied.get(), 1u);

    Flow a, b, c;
    b.guest.port = 40001;
    c.guest = Endpoint{Ipv4Addr::from_octets(192, 168, 127, 3), 40002};
    syn(a);
    flows.push_back(&b);
    send(b, syn_seg(b));  // the guest's second flow: over its cap
    out = take(b);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(counters().limit_guest.get(), 1u);
    syn(c);  // another guest: fine, and the table (capacity 2) is now full
    Flow d;
    d.guest = Endpoint{Ipv4Addr::from_octets(192, 168, 127, 4), 40003};
    flows.push_back(&d);
    send(d, syn_seg(d));
    out = take(d);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(counters().limit_global.get(), 1u);
    EXPECT_EQ(net->socks.open_calls, 2u);
}

// A guest's DNS over TCP to the gateway: the DNS service's stream is the host end (adopted, not
// connected), and the flow behaves like any other.
TEST_P(TcpEngineTest, DnsStreamIsAdoptedAsTheHostEnd) {
    FakeNetOptions o;
    FakeSockets* sp = nullptr;
    o.tcp.dns_addr = kGatewayIp;
    o.tcp.open_dns_stream = [&sp] { return sp->make_connected(); };
    make(o);
    sp = &net->socks;
    EXPECT_TRUE(net->eng.wants(kGatewayIp, 53));
    Flow f;
    f.remote = Endpoint{kGatewayIp, 53};
    flows.push_back(&f);
    send(f, syn_seg(f));
    EXPECT_EQ(net->socks.open_calls, 0u);
    ASSERT_EQ(net->socks.opened.size(), 1u);
    f.fd = net->socks.last_opened();
    f.gnxt = f.gisn + 1;
    EXPECT_TRUE(sock(f).adopted);
    net->pump();
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].flags & (tf::syn | tf::ack | tf::rst), kSynAck) << out[0].str();
    send_ack(f, f.hisn + 1);
    send_data(f, 0, 40, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 40));
}

// The egress policy: a denied destination gets a RST and no socket; the gateway's own DNS service
// is not egress, so even a deny-everything policy leaves DNS over TCP alone.
TEST_P(TcpEngineTest, PolicyDeniesWithRstButNotTheGatewayDns) {
    std::string why;
    auto all = PolicyRule::parse("0.0.0.0/0", PolicyAction::deny, why);
    ASSERT_TRUE(all) << why;
    const EgressPolicy policy({*all});
    FakeNetOptions o;
    FakeSockets* sp = nullptr;
    o.tcp.policy = &policy;
    o.tcp.dns_addr = kGatewayIp;
    o.tcp.open_dns_stream = [&sp] { return sp->make_connected(); };
    make(o);
    sp = &net->socks;
    Flow f;
    flows.push_back(&f);
    send(f, syn_seg(f));
    auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(counters().denied_policy.get(), 1u);
    EXPECT_EQ(net->socks.open_calls, 0u);
    Flow d;
    d.remote = Endpoint{kGatewayIp, 53};
    flows.push_back(&d);
    send(d, syn_seg(d));
    EXPECT_EQ(net->socks.opened.size(), 1u) << "DNS over TCP to the gateway is not egress";
    EXPECT_EQ(counters().denied_policy.get(), 1u);
}

// ---- guest -> host ----------------------------------------------------------------------------

TEST_P(TcpEngineTest, GuestBurstIsOneWriteAndOneAck) {
    Flow f;
    establish(f);
    send_burst(f, {seg(f, tf::ack, f.gs(0), gdata(f, 0, 1000)),
                   seg(f, tf::ack, f.gs(1000), gdata(f, 1000, 1000)),
                   seg(f, tf::ack | tf::psh, f.gs(2000), gdata(f, 2000, 1000))});
    EXPECT_EQ(sock(f).written, gdata(f, 0, 3000));
    EXPECT_EQ(sock(f).write_calls, 1u) << "segments that continue each other: one sendmsg";
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u) << "one ACK for the burst";
    EXPECT_EQ(out[0].ack, f.gs(3000));
    EXPECT_TRUE(out[0].payload.empty());
    EXPECT_EQ(counters().bytes_to_host.get(), 3000u);
}

TEST_P(TcpEngineTest, ShortWriteLeavesTheTailUnacked) {
    Flow f;
    establish(f);
    net->socks.set_sndbuf(f.fd, 4000);
    net->pump();
    take(f);
    send_data(f, 0, 1400, f.hisn + 1);
    send_data(f, 1400, 1400, f.hisn + 1);
    send_data(f, 2800, 1400, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 4000)) << "the socket took 4000 of 4200";
    auto out = take(f);
    const OutFrame* a = last_ack(out);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->ack, f.gs(4000)) << "only what the socket took is acknowledged";
    EXPECT_EQ(a->window, 0u) << "the send queue is full";
    EXPECT_EQ(counters().short_writes.get(), 1u);

    // The guest retransmits the tail while the queue is still full: nothing more is taken.
    send_data(f, 4000, 200, f.hisn + 1);
    EXPECT_EQ(sock(f).written.size(), 4000u);
    out = take(f);
    for (const OutFrame& o : out)
        EXPECT_EQ(o.ack, f.gs(4000)) << o.str();

    // The peer acknowledges: space returns, a window update tells the guest.
    net->socks.drain(f.fd, 4000);
    net->pump();
    out = take(f);
    a = last_ack(out);
    ASSERT_NE(a, nullptr) << "a window update once send space returned";
    EXPECT_GT(a->window, 0u);
    EXPECT_EQ(a->ack, f.gs(4000));
    EXPECT_GE(counters().window_updates.get(), 1u);

    send_data(f, 4000, 200, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 4200));
    out = take(f);
    a = last_ack(out);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->ack, f.gs(4200));
}

// TCP.md §4: "send a window update as soon as space returns". With a large MTU (passt and QEMU
// guests often run 65520) one MSS can exceed the whole send buffer of a fresh socket, so a
// threshold of one MSS (or four) is never reached: the guest waits for its persist timer.
TEST_P(TcpEngineTest, WindowUpdateWhenTheSendBufferIsSmallerThanAnMss) {
    FakeNetOptions o;
    o.tcp.mtu = 9000;
    make(o);
    Flow f;
    f.guest_mss = 8960;
    establish(f);
    net->socks.set_sndbuf(f.fd, 8192);  // usable payload of a fresh Linux socket (16 KiB / 2)
    net->pump();
    take(f);
    send_data(f, 0, 8192, f.hisn + 1);
    auto out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->window, 0u);
    net->socks.drain(f.fd, 8192);  // the whole buffer is free again
    net->pump();
    for (int i = 0; i < 5; ++i)
        net->tick(5);
    out = take(f);
    const OutFrame* a = last_ack(out);
    ASSERT_NE(a, nullptr) << "no window update although the send queue is empty again";
    EXPECT_GT(a->window, 0u);
}

TEST_P(TcpEngineTest, OverlapIsTrimmedAndDuplicatesAreNotWritten) {
    Flow f;
    establish(f);
    send_data(f, 0, 1000, f.hisn + 1);
    take(f);
    // Overlaps [500, 1000), continues to 1500: only the new 500 bytes go to the socket.
    send_data(f, 500, 1000, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 1500));
    auto out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(1500));
    // A whole duplicate: nothing written, ACK of what is there.
    send_data(f, 0, 1000, f.hisn + 1);
    EXPECT_EQ(sock(f).written.size(), 1500u);
    out = take(f);
    ASSERT_NE(last_ack(out), nullptr) << "a duplicate segment is answered with an ACK";
    EXPECT_EQ(last_ack(out)->ack, f.gs(1500));
}

TEST_P(TcpEngineTest, GapIsNotWrittenAndGetsADuplicateAck) {
    Flow f;
    establish(f);
    send_data(f, 1000, 500, f.hisn + 1);
    EXPECT_TRUE(sock(f).written.empty());
    auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].ack, f.gs(0)) << "duplicate ACK for the missing piece";
    EXPECT_EQ(counters().out_of_order.get(), 1u);
    // The missing piece: written, and only it (slipway holds no out-of-order data).
    send_data(f, 0, 1000, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 1000));
    out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(1000));
}

TEST_P(TcpEngineTest, KeepAliveGetsABareAck) {
    Flow f;
    establish(f);
    send_data(f, 0, 100, f.hisn + 1);
    take(f);
    // Linux's keep-alive: one byte below rcv_nxt (garbage), and the empty variant.
    GuestSeg ka = seg(f, tf::ack, f.gs(99), {0});
    send(f, ka);
    auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].ack, f.gs(100));
    EXPECT_TRUE(out[0].payload.empty());
    send(f, seg(f, tf::ack, f.gs(99)));
    out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].ack, f.gs(100));
    EXPECT_EQ(sock(f).written, gdata(f, 0, 100)) << "a keep-alive writes nothing";
}

// ---- host -> guest ----------------------------------------------------------------------------

TEST_P(TcpEngineTest, HostDataStaysWithinTheGuestWindowInMssFrames) {
    Flow f;
    f.guest_ws = 2;
    establish(f, 1000);  // 1000 << 2 = 4000 bytes
    net->socks.push_pattern(f.fd, 10000);
    net->pump();
    auto out = take(f);
    auto d = data_frames(out);
    EXPECT_EQ(payload_total(d), 4000u) << "as far as the window allows, no further";
    std::uint32_t next = f.hs(0);
    for (const OutFrame& o : d) {
        EXPECT_FALSE(o.gso);
        EXPECT_LE(o.payload.size(), 1460u);
        EXPECT_EQ(o.seq, next) << o.str();
        next = o.seq + static_cast<std::uint32_t>(o.payload.size());
    }
    EXPECT_EQ(sock(f).consumed, 0u) << "nothing is discarded before the guest acknowledges it";

    // The guest acknowledges 2920 bytes: exactly those leave the socket, the window slides.
    send_ack(f, f.hs(2920), 1000);
    EXPECT_EQ(sock(f).consumed, 2920u);
    out = take(f);
    d = data_frames(out);
    EXPECT_EQ(payload_total(d), 2920u);
    ASSERT_FALSE(d.empty());
    EXPECT_EQ(d.front().seq, f.hs(4000));

    send_ack(f, f.hs(6920), 1000);
    EXPECT_EQ(sock(f).consumed, 6920u);
    out = take(f);
    EXPECT_EQ(payload_total(data_frames(out)), 3080u);
    send_ack(f, f.hs(10000), 1000);
    EXPECT_EQ(sock(f).consumed, 10000u);
    EXPECT_EQ(counters().bytes_to_guest.get(), 10000u);
}

TEST_P(TcpEngineTest, GuestMssBoundsTheFrames) {
    Flow f;
    f.guest_mss = 536;
    establish(f);
    net->socks.push_pattern(f.fd, 3000);
    net->pump();
    const auto d = data_frames(take(f));
    EXPECT_EQ(payload_total(d), 3000u);
    for (const OutFrame& o : d)
        EXPECT_LE(o.payload.size(), 536u) << o.str();
}

TEST_P(TcpEngineTest, GsoFramesForAGuestThatTakesThem) {
    net->link.caps = PortCaps{.gso = true, .partial_csum = true};
    Flow f;
    establish(f);
    net->socks.push_pattern(f.fd, 100000);
    net->pump();
    const auto d = data_frames(take(f));
    EXPECT_EQ(payload_total(d), 100000u);
    bool any_gso = false;
    for (const OutFrame& o : d) {
        any_gso = any_gso || o.gso;
        if (o.gso) {
            EXPECT_LE(o.gso_size, 1460u);
            EXPECT_LE(o.frame_len, kMaxFrameLen);
        }
        EXPECT_TRUE(o.needs_csum) << "partial checksums for a guest that takes them";
    }
    EXPECT_TRUE(any_gso) << "64 KiB of window and a GSO guest: super-frames expected";
}

TEST_P(TcpEngineTest, PartialChecksumsWithoutGso) {
    net->link.caps = PortCaps{.gso = false, .partial_csum = true};
    Flow f;
    establish(f);
    net->socks.push_pattern(f.fd, 5000);
    net->pump();
    const auto d = data_frames(take(f));
    EXPECT_EQ(payload_total(d), 5000u);
    for (const OutFrame& o : d) {
        EXPECT_FALSE(o.gso);
        EXPECT_LE(o.payload.size(), 1460u);
    }
}

TEST_P(TcpEngineTest, TimerRetransmitsFromSndUna) {
    Flow f;
    f.guest_ws = 0;
    establish(f, 4000);
    net->socks.push_pattern(f.fd, 4000);
    net->pump();
    EXPECT_EQ(payload_total(data_frames(take(f))), 4000u);
    send_ack(f, f.hs(1460), 4000);
    EXPECT_EQ(sock(f).consumed, 1460u);
    take(f);
    const std::uint64_t sent_at = net->now;
    // No ACK for the rest: the retransmission timer fires (200 ms floor, 1 s at the latest).
    std::vector<OutFrame> d;
    for (int i = 0; i < 100 && d.empty(); ++i) {
        net->tick(20);
        d = data_frames(take(f));
    }
    ASSERT_FALSE(d.empty()) << "no retransmission within 2 s";
    EXPECT_EQ(d.front().seq, f.hs(1460)) << "go-back from snd_una";
    EXPECT_EQ(payload_total(d), 2540u);
    EXPECT_GE(counters().retransmits.get(), 1u);
    // Exponential back-off (RFC 6298 §5.5): the second retransmission waits at least twice as
    // long as the first did.
    const std::uint64_t first = net->now - sent_at;
    const std::uint64_t again_from = net->now;
    d.clear();
    for (int i = 0; i < 300 && d.empty(); ++i) {
        net->tick(20);
        d = data_frames(take(f));
    }
    ASSERT_FALSE(d.empty()) << "no second retransmission within 6 s";
    EXPECT_EQ(d.front().seq, f.hs(1460));
    EXPECT_GE(net->now - again_from + 20, 2 * first) << "no back-off";
    send_ack(f, f.hs(4000), 4000);
    EXPECT_EQ(sock(f).consumed, 4000u);
}

// Eight flows, so that the engine's random ISNs land on both halves of the sequence space
// (a recovery point left at 0 compares "after" every ISN of the upper half).
TEST_P(TcpEngineTest, ThreeDuplicateAcksFastRetransmit) {
    std::vector<Flow> fl(8);
    for (std::size_t i = 0; i < fl.size(); ++i) {
        Flow& f = fl[i];
        f.guest.port = static_cast<std::uint16_t>(40000 + i);
        establish(f);
        net->socks.push_pattern(f.fd, 4 * 1460);
        net->pump();
        EXPECT_EQ(data_frames(take(f)).size(), 4u);
        send_ack(f, f.hs(1460));
        take(f);
        send_ack(f, f.hs(1460));
        send_ack(f, f.hs(1460));
        EXPECT_TRUE(data_frames(take(f)).empty()) << "two duplicates are not yet a loss";
        send_ack(f, f.hs(1460));
        const auto d = data_frames(take(f));
        EXPECT_FALSE(d.empty()) << "the third duplicate ACK triggers a retransmission (ISN "
                                << f.hisn << ")";
        if (!d.empty()) {
            EXPECT_EQ(d.front().seq, f.hs(1460));
        }
    }
    EXPECT_EQ(counters().fast_retransmits.get(), fl.size());
    EXPECT_EQ(counters().retransmits.get(), 0u);
}

TEST_P(TcpEngineTest, ZeroWindowIsProbedAndResumes) {
    Flow f;
    f.guest_ws = 0;
    establish(f, 0);
    net->socks.push_pattern(f.fd, 1000);
    net->pump();
    EXPECT_TRUE(data_frames(take(f)).empty()) << "zero window: no data";
    std::vector<OutFrame> probes;
    for (int i = 0; i < 150 && probes.empty(); ++i) {
        net->tick(20);
        probes = take(f);
    }
    ASSERT_FALSE(probes.empty()) << "no zero-window probe within 3 s";
    EXPECT_GE(counters().window_probes.get(), 1u);
    for (const OutFrame& o : probes)
        EXPECT_LE(o.payload.size(), 1u) << "a probe carries at most one byte: " << o.str();
    // The guest opens its window: the data flows.
    send_ack(f, f.hs(0), 2000);
    const auto d = data_frames(take(f));
    ASSERT_FALSE(d.empty());
    EXPECT_EQ(d.back().seq + d.back().payload.size(), f.hs(1000));
    send_ack(f, f.hs(1000), 2000);
    EXPECT_EQ(sock(f).consumed, 1000u);
}

// RFC 9293 §3.10.7.4: the window is taken from a segment only if SND.UNA =< SEG.ACK (and the
// WL1/WL2 order); an old or bogus ACK below snd_una must not open a closed window.
TEST_P(TcpEngineTest, AnAckBelowSndUnaDoesNotOpenTheWindow) {
    Flow f;
    f.guest_ws = 0;
    establish(f, 0);  // the guest's window is closed
    net->socks.push_pattern(f.fd, 1000);
    net->pump();
    EXPECT_TRUE(data_frames(take(f)).empty());
    send_ack(f, f.hisn, 65535);  // one below snd_una: a stale ACK (the one of the SYN-ACK's SYN)
    EXPECT_TRUE(data_frames(take(f)).empty()) << "a stale ACK opened the window";
    send_ack(f, f.hisn + 1 - 100000, 65535);  // far below
    EXPECT_TRUE(data_frames(take(f)).empty()) << "a bogus ACK opened the window";
    // RFC 9293 §3.10.7.4: a segment whose sequence number is outside the receive window is
    // answered with an ACK and otherwise dropped: its ACK field and window count for nothing,
    // however "new" its sequence number looks to the SND.WL1 test.
    GuestSeg far = seg(f, tf::ack, f.gnxt + 0x10000000u);
    far.ack = f.hisn;
    far.window = 65535;
    send(f, far);
    EXPECT_TRUE(data_frames(take(f)).empty()) << "an out-of-window segment opened the window";
    send_ack(f, f.hs(0), 65535);  // the real window update
    EXPECT_EQ(payload_total(data_frames(take(f))), 1000u);
}

// RFC 9293 §3.10.7.4 (SYN-RECEIVED): a segment whose ACK does not acknowledge our SYN is not
// part of the connection: its data must not reach the socket, nor its sequence space rcv_nxt.
TEST_P(TcpEngineTest, DataBeforeTheHandshakeCompletesIsNotAccepted) {
    Flow f;
    syn(f);
    net->socks.complete_connect(f.fd, 0);
    net->pump();
    ASSERT_EQ(take(f).size(), 1u);  // the SYN-ACK
    GuestSeg d = seg(f, tf::ack | tf::psh, f.gs(0), gdata(f, 0, 500));
    d.ack = f.hisn + 1000;  // not our ISN + 1
    send(f, d);
    EXPECT_TRUE(sock(f).written.empty()) << "data of a segment that does not ACK our SYN";
    take(f);
    // The SYN-ACK goes out again (its ACK still the guest's ISN + 1: checked in check()).
    for (int i = 0; i < 20; ++i)
        net->tick(100);
    take(f);
    send_data(f, 0, 500, f.hisn + 1);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 500));
}

TEST_P(TcpEngineTest, AFullLinkLosesNothing) {
    Flow f;
    establish(f);
    net->link.room_per_call = 0;
    net->socks.push_pattern(f.fd, 30000);
    net->pump();
    EXPECT_TRUE(take(f).empty());
    net->link.room_per_call = 12;  // a nearly full ring from now on
    std::size_t got = 0;
    std::uint32_t next = f.hs(0);
    for (int i = 0; i < 200 && got < 30000; ++i) {
        net->tick(10);
        for (const OutFrame& o : data_frames(take(f))) {
            if (o.seq != next) continue;  // a retransmission of something already counted
            got += o.payload.size();
            next += static_cast<std::uint32_t>(o.payload.size());
        }
        send_ack(f, next);
    }
    EXPECT_EQ(got, 30000u) << "data the link could not take stays in the socket, sent later";
    EXPECT_EQ(sock(f).consumed, 30000u);
}

// A guest behind on its RX queue (the switch would drop what its port's queue cannot take): the
// engine sends no more than the queue takes, keeps the rest in the socket, and goes on when the
// guest's ACKs come, so nothing has to be sent twice.
TEST_P(TcpEngineTest, AGuestBehindOnItsQueueGetsNoMoreThanItTakes) {
    Flow f;
    establish(f);
    constexpr std::size_t kQueue = 8 + 10;  // the engine's reserve for control frames, and 10
    net->link.port_room = kQueue;
    net->socks.push_pattern(f.fd, 100000);
    net->pump();
    auto first = data_frames(take(f));
    EXPECT_EQ(first.size(), 10u) << "frames beyond the guest's queue would have been dropped";
    EXPECT_GT(counters().guest_queue_waits.get(), 0u);
    std::size_t got = 0;
    std::uint32_t next = f.hs(0);
    auto count = [&](const std::vector<OutFrame>& frames) {
        for (const OutFrame& o : frames) {
            EXPECT_EQ(o.seq, next) << "sent twice or out of order: " << o.str();
            got += o.payload.size();
            next += static_cast<std::uint32_t>(o.payload.size());
        }
    };
    count(first);
    for (int i = 0; i < 100 && got < 100000; ++i) {
        net->link.port_room = kQueue;  // the guest took every frame off its queue, and ACKs
        send_ack(f, next);
        count(data_frames(take(f)));
    }
    EXPECT_EQ(got, 100000u);
    EXPECT_EQ(net->link.port_overflows, 0u) << "frames sent into a full guest queue";
    EXPECT_EQ(counters().retransmits.get(), 0u);
    EXPECT_EQ(counters().fast_retransmits.get(), 0u);
}

TEST_P(TcpEngineTest, DiscardModeKeepsUnackedWithinMaxPeekOffset) {
    if (GetParam() != PeekMode::discard_iovec) GTEST_SKIP() << "only without SO_PEEK_OFF";
    FakeNetOptions o;
    o.discard_area = 8192;
    make(o);
    Flow f;
    establish(f);
    net->socks.push_pattern(f.fd, 50000);
    net->pump();
    const std::size_t sent = payload_total(data_frames(take(f)));
    EXPECT_GT(sent, 0u);
    EXPECT_LE(sent, 8192u) << "unacknowledged bytes must fit the discard area";
    send_ack(f, f.hs(sent));
    EXPECT_EQ(sock(f).consumed, sent);
    EXPECT_GT(payload_total(data_frames(take(f))), 0u) << "more once acknowledged";
}

// ---- closing ----------------------------------------------------------------------------------

TEST_P(TcpEngineTest, GuestFinShutsTheSocketAfterItsData) {
    Flow f;
    establish(f);
    send_data(f, 0, 1000, f.hisn + 1, 65535, tf::fin);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 1000));
    EXPECT_EQ(sock(f).shutdown_calls, 1u);
    EXPECT_EQ(sock(f).written_at_shutdown, 1000u);
    const auto out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(1001)) << "data and FIN acknowledged";
    const auto info = net->eng.flow_info(f.id);
    ASSERT_TRUE(info.has_value());
    EXPECT_TRUE(info->guest_fin);
    // Half-close: host data still flows to the guest.
    net->socks.push_pattern(f.fd, 500);
    net->pump();
    EXPECT_EQ(payload_total(data_frames(take(f))), 500u);
}

TEST_P(TcpEngineTest, GuestFinWaitsForAShortWrite) {
    Flow f;
    establish(f);
    net->socks.set_sndbuf(f.fd, 500);
    net->pump();
    take(f);
    send_data(f, 0, 1000, f.hisn + 1, 65535, tf::fin);
    EXPECT_EQ(sock(f).written.size(), 500u);
    EXPECT_EQ(sock(f).shutdown_calls, 0u) << "the FIN comes after bytes not written yet";
    auto out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(500));
    net->socks.drain(f.fd, 500);
    net->pump();
    take(f);
    send_data(f, 500, 500, f.hisn + 1, 65535, tf::fin);
    EXPECT_EQ(sock(f).written, gdata(f, 0, 1000));
    EXPECT_EQ(sock(f).shutdown_calls, 1u);
    out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(1001));
}

TEST_P(TcpEngineTest, SocketEofSendsFinAfterAllDataAndBothFinsClose) {
    Flow f;
    establish(f);
    net->socks.push_pattern(f.fd, 3000);
    net->socks.set_eof(f.fd);
    net->pump();
    std::vector<OutFrame> all = take(f);
    // Without SO_PEEK_OFF the end shows only once everything was acknowledged: acknowledge.
    send_ack(f, f.hs(3000));
    for (const OutFrame& o : take(f))
        all.push_back(o);
    std::size_t data = 0;
    const OutFrame* fin = nullptr;
    for (const OutFrame& o : all) {
        data += o.payload.size();
        if (o.fin()) {
            EXPECT_EQ(fin, nullptr) << "one FIN";
            fin = &o;
        }
    }
    EXPECT_EQ(data, 3000u);
    ASSERT_NE(fin, nullptr) << "socket EOF: FIN to the guest after the data";
    EXPECT_EQ(fin->seq + fin->payload.size(), f.hs(3000)) << "FIN after the last byte";
    auto info = net->eng.flow_info(f.id);
    ASSERT_TRUE(info.has_value());
    EXPECT_TRUE(info->fin_sent);
    // The guest acknowledges the FIN, then closes its side.
    send_ack(f, f.hs(3001));
    EXPECT_FALSE(sock(f).closed) << "the guest's side is still open";
    GuestSeg gf = seg(f, tf::fin | tf::ack, f.gs(0));
    gf.ack = f.hs(3001);
    send(f, gf);
    EXPECT_EQ(sock(f).shutdown_calls, 1u);
    const auto out = take(f);
    ASSERT_NE(last_ack(out), nullptr);
    EXPECT_EQ(last_ack(out)->ack, f.gs(1)) << "the guest's FIN acknowledged";
    EXPECT_TRUE(sock(f).closed);
    EXPECT_FALSE(sock(f).reset) << "an orderly close";
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
    EXPECT_EQ(counters().closed.get(), 1u);
    // A late retransmitted FIN of the freed flow gets a RST (TCP.md §6).
    send(f, gf);
    const auto late = take(f);
    ASSERT_EQ(late.size(), 1u);
    EXPECT_TRUE(late[0].rst());
}

TEST_P(TcpEngineTest, GuestClosesFirstThenTheHost) {
    Flow f;
    establish(f);
    send_data(f, 0, 200, f.hisn + 1, 65535, tf::fin);
    EXPECT_EQ(sock(f).shutdown_calls, 1u);
    take(f);
    net->socks.push_pattern(f.fd, 100);
    net->socks.set_eof(f.fd);
    net->pump();
    std::vector<OutFrame> all = take(f);
    GuestSeg a = seg(f, tf::ack, f.gs(201));
    a.ack = f.hs(100);
    send(f, a);
    for (const OutFrame& o : take(f))
        all.push_back(o);
    const OutFrame* fin = nullptr;
    for (const OutFrame& o : all)
        if (o.fin()) fin = &o;
    ASSERT_NE(fin, nullptr);
    EXPECT_EQ(fin->end_seq(), f.hs(101));
    a.ack = f.hs(101);
    send(f, a);
    EXPECT_TRUE(sock(f).closed);
    EXPECT_FALSE(sock(f).reset);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(net->eng.flows_in(TcpState::closing), 0u);
    EXPECT_EQ(counters().closed.get(), 1u);
}

TEST_P(TcpEngineTest, GuestRstResetsThePeer) {
    Flow f;
    establish(f);
    send_data(f, 0, 100, f.hisn + 1);
    take(f);
    // Out of window: ignored (RFC 9293 §3.10.7.4, RFC 5961 §3).
    GuestSeg bad = seg(f, tf::rst, f.gs(100) + 0x40000000u);
    send(f, bad);
    EXPECT_FALSE(sock(f).closed);
    take(f);
    send(f, seg(f, tf::rst, f.gs(100)));
    EXPECT_TRUE(sock(f).closed);
    EXPECT_TRUE(sock(f).reset) << "SO_LINGER 0: the peer sees a reset";
    EXPECT_TRUE(take(f).empty()) << "a RST is never answered with a RST";
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(counters().reset_by_guest.get(), 1u);
}

TEST_P(TcpEngineTest, SocketErrorResetsTheGuest) {
    Flow f;
    establish(f);
    net->socks.push_pattern(f.fd, 300);
    net->pump();
    take(f);
    net->socks.inject_error(f.fd, ECONNRESET);
    net->pump();
    const auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst()) << out[0].str();
    EXPECT_EQ(out[0].seq, f.hs(300)) << "RST at snd_nxt, inside the guest's window";
    EXPECT_TRUE(sock(f).closed);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(counters().reset_by_host.get(), 1u);
}

TEST_P(TcpEngineTest, WriteErrorResetsTheGuest) {
    Flow f;
    establish(f);
    // The error comes out of the write, before any event about it.
    net->socks.at(f.fd).so_error = EPIPE;
    send_data(f, 0, 100, f.hisn + 1);
    const auto out = take(f);
    ASSERT_FALSE(out.empty());
    EXPECT_TRUE(out.back().rst()) << out.back().str();
    for (const OutFrame& o : out)
        if (!o.rst()) {
            EXPECT_EQ(o.ack, f.gs(0)) << "nothing acknowledged: " << o.str();
        }
    EXPECT_TRUE(sock(f).closed);
    EXPECT_EQ(net->live_flows(), 0u);
}

TEST_P(TcpEngineTest, UnknownFlowGetsRst) {
    Flow f;
    flows.push_back(&f);
    // RFC 9293 §3.10.7.1: ACK set -> <SEQ=SEG.ACK><CTL=RST>.
    GuestSeg a;
    a.flags = tf::ack;
    a.seq = 1000;
    a.ack = 5555;
    send(f, a);
    auto out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst());
    EXPECT_FALSE(out[0].has(tf::ack));
    EXPECT_EQ(out[0].seq, 5555u);
    // No ACK -> <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, the FIN counting one.
    GuestSeg b;
    b.flags = tf::fin;
    b.seq = 7000;
    b.payload = std::vector<std::uint8_t>(10, 1);
    send(f, b);
    out = take(f);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].rst() && out[0].has(tf::ack)) << out[0].str();
    EXPECT_EQ(out[0].seq, 0u);
    EXPECT_EQ(out[0].ack, 7011u);
    // A RST for no flow is dropped silently.
    GuestSeg r;
    r.flags = tf::rst;
    r.seq = 1;
    send(f, r);
    EXPECT_TRUE(take(f).empty());
    EXPECT_EQ(net->socks.open_calls, 0u);
    EXPECT_EQ(counters().rst_no_flow.get(), 2u);
}

// A half-closed flow that still moves data is not a flow stuck in a FIN state: a guest that
// sends its request and shuts its side (HTTP/1.0 clients, `nc -N`, rsh-style tools) then
// downloads for minutes must not be reset at fin_timeout. Linux itself applies tcp_fin_timeout
// only to orphaned sockets in FIN-WAIT-2, never to a connection that is still transferring.
TEST_P(TcpEngineTest, HalfClosedFlowLivesWhileDataFlows) {
    Flow f;
    establish(f);
    send_data(f, 0, 100, f.hisn + 1, 65535, tf::fin);
    EXPECT_EQ(sock(f).shutdown_calls, 1u);
    take(f);
    const auto fin_timeout = static_cast<std::uint64_t>(net->cfg.fin_timeout.count());
    std::size_t sent = 0;
    for (std::uint64_t t = 0; t < 2 * fin_timeout; t += 5000) {
        net->socks.push_pattern(f.fd, 1000);
        net->pump();
        for (const OutFrame& o : take(f)) {
            EXPECT_FALSE(o.rst()) << "reset at " << t << " ms of an active half-closed transfer";
            sent += o.payload.size();
        }
        GuestSeg a = seg(f, tf::ack, f.gs(101));
        a.ack = f.hs(sent);
        send(f, a);
        net->tick(5000);
        if (sock(f).closed) break;
    }
    EXPECT_FALSE(sock(f).closed) << "the flow was reset although data moved every 5 s";
    EXPECT_EQ(counters().timed_out.get(), 0u);
}

TEST_P(TcpEngineTest, IdleTimeoutResetsBothSides) {
    FakeNetOptions o;
    o.tcp.idle_timeout = std::chrono::milliseconds(5000);
    make(o);
    Flow f;
    establish(f);
    net->tick(4000);
    EXPECT_FALSE(sock(f).closed);
    take(f);
    for (int i = 0; i < 20; ++i)
        net->tick(100);
    const auto out = take(f);
    ASSERT_FALSE(out.empty());
    EXPECT_TRUE(out.back().rst());
    EXPECT_TRUE(sock(f).closed);
    EXPECT_TRUE(sock(f).reset);
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(counters().timed_out.get(), 1u);
}

TEST_P(TcpEngineTest, ResetAllFreesEveryFlow) {
    Flow a, b;
    b.guest.port = 40001;
    establish(a);
    establish(b);
    Flow c;
    c.guest.port = 40002;
    syn(c);
    EXPECT_EQ(net->live_flows(), 3u);
    net->eng.reset_all();
    take_all();
    EXPECT_EQ(net->live_flows(), 0u);
    EXPECT_EQ(net->table.size(), 0u);
    EXPECT_TRUE(net->socks.all_closed());
}

TEST_P(TcpEngineTest, TwoFlowsStayApart) {
    Flow a, b;
    b.guest.port = 40001;
    b.gisn = 77;
    establish(a);
    establish(b);
    EXPECT_NE(a.fd, b.fd);
    send_data(a, 0, 700, a.hisn + 1);
    send_data(b, 0, 300, b.hisn + 1);
    EXPECT_EQ(sock(a).written, gdata(a, 0, 700));
    EXPECT_EQ(sock(b).written, gdata(b, 0, 300));
    net->socks.push_pattern(a.fd, 2000);
    net->socks.push_pattern(b.fd, 1000);
    net->pump();
    std::size_t to_a = 0, to_b = 0;
    for (const OutFrame& o : take_all()) {
        if (flow_of(o) == &a) to_a += o.payload.size();
        if (flow_of(o) == &b) to_b += o.payload.size();
    }
    EXPECT_EQ(to_a, 2000u);
    EXPECT_EQ(to_b, 1000u);
}

INSTANTIATE_TEST_SUITE_P(BothPeekModes, TcpEngineTest,
                         ::testing::Values(PeekMode::peek_off, PeekMode::discard_iovec), mode_name);

}  // namespace
}  // namespace slipway::nat
