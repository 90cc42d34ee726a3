// vhost_user_peer: a test VMM and guest network stack in one process that drives slipwayd's
// `--attach vhost-user:PATH` through the test virtio driver (tests/support), one scenario a run.
//
//   vhost_user_peer SOCKET SCENARIO [--port N] [--out FILE] [--bytes N]
//                   [--no-offloads] [--no-event-idx] [--no-indirect] [--no-mrg]
//
// Scenarios: basic (ARP, ping and DHCP with the gateway), tcp-in (a TCP upload to
// 192.168.127.254:PORT as one TSO frame when HOST_TSO4 is agreed, else MSS segments; the payload
// is written to FILE and the server's "SHA BYTES" reply printed), tcp-out (a TCP download from
// 192.168.127.254:PORT into FILE, checking GSO frames arrive when GUEST_TSO4/6 are agreed and
// none otherwise), reconnect (sessions one after another, with and without GET_VRING_BASE),
// hostile-desc (descriptors a broken guest might post), hostile-msg (malformed vhost-user
// messages); after each hostile case a fresh session must still work.
//
// Every step prints one "PASS step: ..." or "FAIL step: ..." line (INFO lines add detail); the
// exit status is 0 only if every step passed. Every wait is bounded.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "slipway/core/checksum.hpp"
#include "slipway/core/types.hpp"
#include "virtio_driver.hpp"

namespace {

using namespace slipway;
using namespace slipway::testing;
using Clock = std::chrono::steady_clock;
using Frame = std::vector<std::byte>;

// ---- feature bits (virtio 1.2 §5.1.3, §6) -----------------------------------------------------
constexpr std::uint64_t kFCsum = 1ull << 0;
constexpr std::uint64_t kFGuestCsum = 1ull << 1;
constexpr std::uint64_t kFMtu = 1ull << 3;
constexpr std::uint64_t kFGuestTso4 = 1ull << 7;
constexpr std::uint64_t kFGuestTso6 = 1ull << 8;
constexpr std::uint64_t kFHostTso4 = 1ull << 11;
constexpr std::uint64_t kFHostTso6 = 1ull << 12;
constexpr std::uint64_t kFMrgRxbuf = 1ull << 15;
constexpr std::uint64_t kFStatus = 1ull << 16;
constexpr std::uint64_t kFIndirect = 1ull << 28;
constexpr std::uint64_t kFEventIdx = 1ull << 29;
constexpr std::uint64_t kFVersion1 = 1ull << 32;

// ---- addresses (gvproxy-compatible defaults, DESIGN §2) ---------------------------------------
constexpr MacAddr kOurMac{{0x52, 0x54, 0x00, 0x5c, 0x00, 0x01}};
const Ipv4Addr kOurIp = Ipv4Addr::from_octets(192, 168, 127, 2);
const Ipv4Addr kGwIp = Ipv4Addr::from_octets(192, 168, 127, 1);
const Ipv4Addr kAliasIp = Ipv4Addr::from_octets(192, 168, 127, 254);
constexpr std::size_t kEth = 14;
constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::size_t kMaxStdFrame = 1514;  // MTU 1500 + Ethernet header
constexpr std::uint16_t kOurMss = 1460;
constexpr std::uint16_t kGsoSize = 1448;  // what Linux uses with TCP timestamps on

// ---- reporting --------------------------------------------------------------------------------
int g_pass = 0, g_fail = 0;

void line(const char* kind, const std::string& step, const std::string& detail) {
    std::printf("%s %s: %s\n", kind, step.c_str(), detail.c_str());
    std::fflush(stdout);
}
bool pass(const std::string& step, const std::string& detail) {
    ++g_pass;
    line("PASS", step, detail);
    return true;
}
bool failed(const std::string& step, const std::string& detail) {
    ++g_fail;
    line("FAIL", step, detail);
    return false;
}
void info(const std::string& step, const std::string& detail) {
    line("INFO", step, detail);
}

std::string hex(std::uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
}
std::string ip_text(Ipv4Addr a) {
    return std::to_string(a.v >> 24) + "." + std::to_string((a.v >> 16) & 0xff) + "." +
           std::to_string((a.v >> 8) & 0xff) + "." + std::to_string(a.v & 0xff);
}
std::string mac_text(const MacAddr& m) {
    char b[24];
    std::snprintf(b, sizeof b, "%02x:%02x:%02x:%02x:%02x:%02x", m.b[0], m.b[1], m.b[2], m.b[3],
                  m.b[4], m.b[5]);
    return b;
}

// ---- options ----------------------------------------------------------------------------------
struct Args {
    std::string sock, scenario, out;
    std::uint16_t port = 0;
    std::size_t bytes = 0;
    bool offloads = true, event_idx = true, indirect = true, mrg = true;
};

std::uint64_t wanted_features(const Args& a) {
    std::uint64_t f = kFVersion1 | kFMtu | kFStatus | vhost::kFProtocolFeatures;
    if (a.mrg) f |= kFMrgRxbuf;
    if (a.event_idx) f |= kFEventIdx;
    if (a.indirect) f |= kFIndirect;
    // GUEST_TSO needs GUEST_CSUM and HOST_TSO needs CSUM (§5.1.3.1): take them together.
    if (a.offloads) f |= kFCsum | kFGuestCsum | kFHostTso4 | kFHostTso6 | kFGuestTso4 | kFGuestTso6;
    return f;
}

// ---- frame building ---------------------------------------------------------------------------
struct Builder {
    Frame b;
    void u8(std::uint8_t v) { b.push_back(static_cast<std::byte>(v)); }
    void u16(std::uint16_t v) {
        u8(static_cast<std::uint8_t>(v >> 8));
        u8(static_cast<std::uint8_t>(v & 0xff));
    }
    void u32(std::uint32_t v) {
        u16(static_cast<std::uint16_t>(v >> 16));
        u16(static_cast<std::uint16_t>(v & 0xffff));
    }
    void mac(const MacAddr& m) {
        for (auto x : m.b)
            u8(x);
    }
    void ip(Ipv4Addr a) { u32(a.v); }
    void bytes(ByteView v) { b.insert(b.end(), v.begin(), v.end()); }
    void zeros(std::size_t n) { b.insert(b.end(), n, std::byte{0}); }
};

void eth_header(Builder& w, const MacAddr& dst, std::uint16_t type) {
    w.mac(dst);
    w.mac(kOurMac);
    w.u16(type);
}

std::uint16_t g_ip_id = 1;

// IPv4 header (RFC 791) with its checksum; `l4_len` bytes follow.
void ipv4_header(Builder& w, Ipv4Addr src, Ipv4Addr dst, IpProto proto, std::size_t l4_len) {
    const std::size_t start = w.b.size();
    w.u8(0x45);
    w.u8(0);
    w.u16(static_cast<std::uint16_t>(20 + l4_len));
    w.u16(g_ip_id++);
    w.u16(0x4000);  // DF
    w.u8(64);
    w.u8(static_cast<std::uint8_t>(proto));
    w.u16(0);
    w.ip(src);
    w.ip(dst);
    const std::uint16_t c = csum_finish(csum_partial(ByteView(w.b.data() + start, 20)));
    store_be16(w.b.data() + start + 10, c);
}

Frame arp_frame(std::uint16_t op, const MacAddr& eth_dst, const MacAddr& tha, Ipv4Addr tpa) {
    Builder w;
    eth_header(w, eth_dst, kEtherArp);
    w.u16(1);  // Ethernet
    w.u16(kEtherIpv4);
    w.u8(6);
    w.u8(4);
    w.u16(op);
    w.mac(kOurMac);
    w.ip(kOurIp);
    w.mac(tha);
    w.ip(tpa);
    return w.b;
}

struct Ipv4View {
    Ipv4Addr src, dst;
    std::uint8_t proto = 0;
    std::size_t ihl = 0, total = 0;
    ByteView l4;  // the IP payload
    bool csum_ok = false;
};

// Parses an Ethernet frame carrying IPv4; false for anything else or a malformed header.
bool parse_ipv4(const Frame& f, Ipv4View& v) {
    if (f.size() < kEth + 20 || load_be16(f.data() + 12) != kEtherIpv4) return false;
    const std::byte* ip = f.data() + kEth;
    if ((load_u8(ip) >> 4) != 4) return false;
    v.ihl = std::size_t{load_u8(ip) & 0x0fu} * 4;
    v.total = load_be16(ip + 2);
    if (v.ihl < 20 || v.total < v.ihl || v.total > f.size() - kEth) return false;
    v.proto = load_u8(ip + 9);
    v.src = Ipv4Addr::load(ip + 12);
    v.dst = Ipv4Addr::load(ip + 16);
    v.l4 = ByteView(ip + v.ihl, v.total - v.ihl);
    v.csum_ok = csum_fold(csum_partial(ByteView(ip, v.ihl))) == 0xffff;
    return true;
}

MacAddr mac_at(const std::byte* p) {
    return MacAddr::load(p);
}

// ---- a session: one vhost-user connection, one guest ------------------------------------------
class Session {
  public:
    explicit Session(const Args& a) : args_(a) {}

    // Connects and brings the device up. Prints one PASS/FAIL line named `step`.
    bool open(const std::string& step) {
        std::string err;
        auto ram = GuestRam::create(64u << 20, err);
        if (!ram) return failed(step, "guest RAM: " + err);
        ram_ = std::move(*ram);
        if (!fe_.connect(args_.sock, Millis{5000})) return failed(step, fe_.error());
        VhostUserFrontend::Options o;
        o.features = wanted_features(args_);
        o.mtu = 1500;
        auto f = fe_.negotiate(o);
        if (!f) return failed(step, "negotiation: " + fe_.error());
        features_ = *f;
        if ((features_ & kFVersion1) == 0)
            return failed(step,
                          "VERSION_1 not offered (offer " + hex(fe_.offered_features()) + ")");
        auto d = NetDriver::create(*ram_, features_, kQueueSize, err);
        if (!d) return failed(step, "driver: " + err);
        drv_ = std::move(*d);
        if (!fe_.start_queues(*ram_, *drv_)) return failed(step, "queue set-up: " + fe_.error());
        // Without MRG_RXBUF each buffer must hold a whole frame (§5.1.6.3.1): exactly header +
        // 1514 bytes, so a device that overruns a buffer is caught.
        const std::uint32_t buf_len =
            drv_->mergeable() ? 4096u : static_cast<std::uint32_t>(drv_->hdr_len() + kMaxStdFrame);
        if (!drv_->post_rx(kQueueSize, buf_len)) return failed(step, "post_rx: " + drv_->error());
        return pass(step, "offered " + hex(fe_.offered_features()) + " negotiated " +
                              hex(features_) + " protocol " + hex(fe_.protocol_features()) +
                              " (offered " + hex(fe_.offered_protocol_features()) + ")");
    }

    // GET_VRING_BASE for both queues once our TX chains are back (a guest sees its transmits
    // complete), then checks the resume indices against what we made available.
    bool stop(const std::string& step) {
        const auto deadline = Clock::now() + Millis{1000};
        while (drv_->tx().in_flight() != 0 && Clock::now() < deadline) {
            if (!drv_->reclaim_tx()) return failed(step, drv_->error());
            if (drv_->tx().in_flight() != 0) drv_->tx().wait_call(Millis{50});
        }
        if (drv_->tx().in_flight() != 0)
            return failed(step, std::to_string(drv_->tx().in_flight()) +
                                    " TX chains not returned within 1 s");
        auto b = fe_.stop_queues();
        if (!b) return failed(step, fe_.error());
        const std::uint16_t tx_avail = drv_->tx().avail_idx();
        const std::uint16_t rx_avail = drv_->rx().avail_idx();
        const std::uint16_t rx_used = drv_->rx().used_idx();
        const std::string d = "rx base " + std::to_string((*b)[0]) + " (used " +
                              std::to_string(rx_used) + ", avail " + std::to_string(rx_avail) +
                              "), tx base " + std::to_string((*b)[1]) + " (avail " +
                              std::to_string(tx_avail) + ")";
        // Every TX chain came back, so the device consumed all of them; on RX it consumed at
        // least what it returned and at most what we posted.
        if ((*b)[1] != tx_avail) return failed(step, "TX resume index differs: " + d);
        if (static_cast<std::uint16_t>((*b)[0] - rx_used) >
            static_cast<std::uint16_t>(rx_avail - rx_used))
            return failed(step, "RX resume index outside [used, avail]: " + d);
        return pass(step, d);
    }
    void close() { fe_.close(); }

    bool has(std::uint64_t f) const { return (features_ & f) != 0; }
    NetDriver& drv() { return *drv_; }
    GuestRam& ram() { return *ram_; }
    VhostUserFrontend& fe() { return fe_; }
    const std::string& why() const { return why_; }

    // Sends a frame; the descriptor layout rotates over every shape (and indirect when agreed).
    bool send(ByteView frame, const virtio::NetHdr& hdr = {}) {
        const unsigned r = rot_++;
        const auto shape = static_cast<TxShape>(r % 3);
        const bool ind = has(kFIndirect) && ((r / 3) % 2) == 1;
        if (auto s = drv_->send(hdr, frame, shape, ind); !s) {
            why_ = "send: " + drv_->error();
            return false;
        }
        return true;
    }

    // One frame within `timeout`: 1, 0 on timeout, -1 when the device broke a rule (why()).
    int recv(Frame& f, virtio::NetHdr& h, Millis timeout) {
        auto r = drv_->recv(h, f, timeout);
        if (!r) {
            why_ = "device: " + drv_->error();
            return -1;
        }
        if (!*r) return 0;
        if (auto v = check_header(h, f); !v.empty()) {
            why_ = v;
            return -1;
        }
        if (answer_arp(f)) return recv(f, h, Millis{0});  // not for the caller; look again
        return 1;
    }

    // Waits until `pred` accepts a frame; ARP requests for our address are answered meanwhile.
    bool wait(const std::function<bool(const Frame&, const virtio::NetHdr&)>& pred, Millis timeout,
              Frame& f, virtio::NetHdr& h) {
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
            if (left.count() <= 0) {
                why_ = "timed out";
                return false;
            }
            const int r = recv(f, h, left);
            if (r < 0) return false;
            if (r > 0 && pred(f, h)) return true;
        }
    }

    // §5.1.6.4.1: what the device may put in a receive header given what we negotiated.
    std::string check_header(const virtio::NetHdr& h, const Frame& f) const {
        if (!has(kFGuestCsum) && h.flags != 0)
            return "RX header flags " + std::to_string(h.flags) + " without GUEST_CSUM";
        if (h.is_gso()) {
            const std::uint8_t k = h.gso_kind();
            if ((k == virtio::kGsoTcpV4 && !has(kFGuestTso4)) ||
                (k == virtio::kGsoTcpV6 && !has(kFGuestTso6)) ||
                (k != virtio::kGsoTcpV4 && k != virtio::kGsoTcpV6))
                return "RX gso_type " + std::to_string(h.gso_type) + " not negotiated";
        } else if (f.size() > kMaxStdFrame) {
            return "RX frame of " + std::to_string(f.size()) + " bytes without GSO (MTU 1500)";
        }
        if (h.needs_csum() && std::size_t{h.csum_start} + h.csum_offset + 2 > f.size())
            return "RX partial checksum outside the frame";
        return {};
    }

    // Resolves `ip` by ARP (the gateway answers for itself and the host alias).
    bool arp(Ipv4Addr ip, MacAddr& mac, const std::string& step) {
        const Frame req = arp_frame(1, MacAddr::broadcast(), MacAddr{}, ip);
        for (int attempt = 0; attempt < 3; ++attempt) {
            if (!send(req)) return failed(step, why_);
            Frame f;
            virtio::NetHdr h;
            const bool ok = wait(
                [&](const Frame& x, const virtio::NetHdr&) {
                    return x.size() >= kEth + 28 && load_be16(x.data() + 12) == kEtherArp &&
                           load_be16(x.data() + kEth + 6) == 2 &&
                           Ipv4Addr::load(x.data() + kEth + 14) == ip;
                },
                Millis{1000}, f, h);
            if (!ok && why_ != "timed out") return failed(step, why_);
            if (!ok) continue;
            mac = mac_at(f.data() + kEth + 8);
            const MacAddr eth_src = mac_at(f.data() + 6);
            const MacAddr eth_dst = mac_at(f.data());
            const MacAddr tha = mac_at(f.data() + kEth + 18);
            const Ipv4Addr tpa = Ipv4Addr::load(f.data() + kEth + 24);
            if (mac.is_zero() || mac.is_multicast() || eth_src != mac)
                return failed(step,
                              "reply names MAC " + mac_text(mac) + " from " + mac_text(eth_src));
            if (eth_dst != kOurMac || tha != kOurMac || tpa != kOurIp)
                return failed(step, "reply not addressed to us: eth dst " + mac_text(eth_dst) +
                                        ", target " + mac_text(tha) + " " + ip_text(tpa));
            return pass(step, ip_text(ip) + " is-at " + mac_text(mac));
        }
        return failed(step, "no ARP reply for " + ip_text(ip) + " in 3 tries");
    }

  private:
    static constexpr std::uint16_t kQueueSize = 256;

    // A guest answers ARP requests for its own address; returns true if `f` was one.
    bool answer_arp(const Frame& f) {
        if (f.size() < kEth + 28 || load_be16(f.data() + 12) != kEtherArp) return false;
        if (load_be16(f.data() + kEth + 6) != 1 || Ipv4Addr::load(f.data() + kEth + 24) != kOurIp)
            return false;
        const MacAddr sha = mac_at(f.data() + kEth + 8);
        Frame rep = arp_frame(2, sha, sha, Ipv4Addr::load(f.data() + kEth + 14));
        (void)send(rep);
        return true;
    }

    const Args& args_;
    std::unique_ptr<GuestRam> ram_;
    std::unique_ptr<NetDriver> drv_;
    VhostUserFrontend fe_;
    std::uint64_t features_ = 0;
    unsigned rot_ = 0;
    std::string why_;
};

// ---- ICMP echo --------------------------------------------------------------------------------
bool ping(Session& s, const MacAddr& gw_mac, std::uint16_t seq, const std::string& step) {
    const std::uint16_t id = static_cast<std::uint16_t>(0x5300 + (::getpid() & 0xff));
    Frame payload(56);
    for (std::size_t i = 0; i < payload.size(); ++i)
        payload[i] = static_cast<std::byte>((i * 7 + seq) & 0xff);
    Builder w;
    eth_header(w, gw_mac, kEtherIpv4);
    ipv4_header(w, kOurIp, kGwIp, IpProto::icmp, 8 + payload.size());
    const std::size_t icmp = w.b.size();
    w.u8(8);  // echo request (RFC 792)
    w.u8(0);
    w.u16(0);
    w.u16(id);
    w.u16(seq);
    w.bytes(payload);
    store_be16(w.b.data() + icmp + 2,
               csum_finish(csum_partial(ByteView(w.b.data() + icmp, w.b.size() - icmp))));
    if (!s.send(w.b)) return failed(step, s.why());
    Frame f;
    virtio::NetHdr h;
    Ipv4View v;
    const bool ok = s.wait(
        [&](const Frame& x, const virtio::NetHdr&) {
            return parse_ipv4(x, v) && v.proto == 1 && v.src == kGwIp && v.l4.size() >= 8 &&
                   load_u8(v.l4.data()) == 0 && load_be16(v.l4.data() + 4) == id &&
                   load_be16(v.l4.data() + 6) == seq;
        },
        Millis{3000}, f, h);
    if (!ok) return failed(step, "no echo reply: " + s.why());
    if (v.dst != kOurIp || mac_at(f.data()) != kOurMac)
        return failed(step,
                      "reply addressed to " + ip_text(v.dst) + " / " + mac_text(mac_at(f.data())));
    if (!v.csum_ok) return failed(step, "reply has a bad IPv4 header checksum");
    if (csum_fold(csum_partial(v.l4)) != 0xffff)
        return failed(step, "reply has a bad ICMP checksum");
    if (v.l4.size() != 8 + payload.size() ||
        std::memcmp(v.l4.data() + 8, payload.data(), payload.size()) != 0)
        return failed(step,
                      "reply payload differs (" + std::to_string(v.l4.size() - 8) + " bytes)");
    return pass(step, "echo reply id " + std::to_string(id) + " seq " + std::to_string(seq) +
                          " with the same 56-byte payload");
}

// ---- DHCP (RFC 2131 / 2132) -------------------------------------------------------------------
Frame dhcp_frame(std::uint32_t xid, std::uint8_t type, Ipv4Addr requested, Ipv4Addr server) {
    Builder bootp;
    bootp.u8(1);  // BOOTREQUEST
    bootp.u8(1);  // Ethernet
    bootp.u8(6);
    bootp.u8(0);
    bootp.u32(xid);
    bootp.u16(0);
    bootp.u16(0x8000);  // broadcast: we have no address yet
    bootp.zeros(16);    // ciaddr, yiaddr, siaddr, giaddr
    bootp.mac(kOurMac);
    bootp.zeros(10 + 64 + 128);  // chaddr padding, sname, file
    bootp.u32(0x63825363);       // magic cookie
    bootp.u8(53);
    bootp.u8(1);
    bootp.u8(type);
    bootp.u8(61);  // client identifier: hardware type + MAC
    bootp.u8(7);
    bootp.u8(1);
    bootp.mac(kOurMac);
    if (type == 3) {
        bootp.u8(50);
        bootp.u8(4);
        bootp.ip(requested);
        bootp.u8(54);
        bootp.u8(4);
        bootp.ip(server);
    }
    bootp.u8(55);  // parameter request list
    bootp.u8(5);
    for (const std::uint8_t o :
         {std::uint8_t{1}, std::uint8_t{3}, std::uint8_t{6}, std::uint8_t{15}, std::uint8_t{51}})
        bootp.u8(o);
    bootp.u8(255);
    if (bootp.b.size() < 300) bootp.zeros(300 - bootp.b.size());

    Builder w;
    eth_header(w, MacAddr::broadcast(), kEtherIpv4);
    const Ipv4Addr any{0}, bcast{0xffffffffu};
    ipv4_header(w, any, bcast, IpProto::udp, 8 + bootp.b.size());
    const std::size_t udp = w.b.size();
    w.u16(68);
    w.u16(67);
    w.u16(static_cast<std::uint16_t>(8 + bootp.b.size()));
    w.u16(0);
    w.bytes(bootp.b);
    const auto len = static_cast<std::uint16_t>(w.b.size() - udp);
    std::uint16_t c = csum_finish(csum_partial(
        ByteView(w.b.data() + udp, len), pseudo_header_sum_v4(any, bcast, IpProto::udp, len)));
    if (c == 0) c = 0xffff;  // RFC 768
    store_be16(w.b.data() + udp + 6, c);
    return w.b;
}

struct DhcpReply {
    std::uint8_t type = 0;
    Ipv4Addr yiaddr, server, mask, router;
    std::vector<Ipv4Addr> dns;
    bool has_mask = false, has_router = false, has_lease = false;
};

// A BOOTREPLY for our xid and MAC; false for anything else.
bool parse_dhcp(const Frame& f, std::uint32_t xid, DhcpReply& out, std::string& why) {
    Ipv4View v;
    if (!parse_ipv4(f, v) || v.proto != 17 || v.l4.size() < 8) return false;
    const std::byte* u = v.l4.data();
    if (load_be16(u) != 67 || load_be16(u + 2) != 68) return false;
    const std::size_t ulen = load_be16(u + 4);
    if (ulen < 8 + 240 || ulen > v.l4.size()) return false;
    const std::byte* b = u + 8;
    if (load_u8(b) != 2 || load_be32(b + 4) != xid || mac_at(b + 28) != kOurMac) return false;
    if (load_be32(b + 236) != 0x63825363) {
        why = "reply without the magic cookie";
        return false;
    }
    if (!v.csum_ok) {
        why = "reply with a bad IPv4 header checksum";
        return false;
    }
    if (load_be16(u + 6) != 0 &&
        csum_fold(csum_partial(ByteView(u, ulen),
                               pseudo_header_sum_v4(v.src, v.dst, IpProto::udp,
                                                    static_cast<std::uint16_t>(ulen)))) != 0xffff) {
        why = "reply with a bad UDP checksum";
        return false;
    }
    out = DhcpReply{};
    out.yiaddr = Ipv4Addr::load(b + 16);
    std::size_t i = 240;
    const std::size_t end = ulen - 8;
    while (i < end) {
        const std::uint8_t code = load_u8(b + i);
        if (code == 0) {
            ++i;
            continue;
        }
        if (code == 255 || i + 1 >= end) break;
        const std::size_t n = load_u8(b + i + 1);
        if (i + 2 + n > end) {
            why = "option " + std::to_string(code) + " runs past the packet";
            return false;
        }
        const std::byte* o = b + i + 2;
        switch (code) {
            case 53:
                if (n == 1) out.type = load_u8(o);
                break;
            case 54:
                if (n == 4) out.server = Ipv4Addr::load(o);
                break;
            case 1:
                out.has_mask = n == 4;
                if (n == 4) out.mask = Ipv4Addr::load(o);
                break;
            case 3:
                out.has_router = n >= 4 && n % 4 == 0;
                if (n >= 4) out.router = Ipv4Addr::load(o);
                break;
            case 6:
                for (std::size_t k = 0; k + 4 <= n; k += 4)
                    out.dns.push_back(Ipv4Addr::load(o + k));
                break;
            case 51:
                out.has_lease = n == 4;
                break;
            default:
                break;
        }
        i += 2 + n;
    }
    return true;
}

bool dhcp_exchange(Session& s, std::uint32_t xid, std::uint8_t send_type, std::uint8_t want_type,
                   Ipv4Addr req, Ipv4Addr server, DhcpReply& rep, const std::string& step) {
    if (!s.send(dhcp_frame(xid, send_type, req, server))) return failed(step, s.why());
    Frame f;
    virtio::NetHdr h;
    std::string why;
    const bool ok =
        s.wait([&](const Frame& x,
                   const virtio::NetHdr&) { return parse_dhcp(x, xid, rep, why) || !why.empty(); },
               Millis{3000}, f, h);
    if (!ok) return failed(step, "no reply: " + s.why());
    if (!why.empty()) return failed(step, why);
    if (rep.type != want_type)
        return failed(step, "message type " + std::to_string(rep.type) + ", wanted " +
                                std::to_string(want_type));
    if ((rep.yiaddr.v & 0xffffff00u) != (kGwIp.v & 0xffffff00u) || (rep.yiaddr.v & 0xff) == 0 ||
        (rep.yiaddr.v & 0xff) == 0xff)
        return failed(step, "yiaddr " + ip_text(rep.yiaddr) + " outside 192.168.127.0/24");
    if (!rep.has_mask || rep.mask.v != 0xffffff00u)
        return failed(step, "option 1 (subnet mask) missing or not /24");
    if (!rep.has_router || rep.router != kGwIp)
        return failed(step, "option 3 (router) missing or not " + ip_text(kGwIp));
    if (rep.dns.empty()) return failed(step, "option 6 (DNS servers) missing");
    if (rep.server.v == 0) return failed(step, "option 54 (server identifier) missing");
    return pass(step, "yiaddr " + ip_text(rep.yiaddr) + " mask /24 router " + ip_text(rep.router) +
                          " dns " + ip_text(rep.dns[0]) + " server " + ip_text(rep.server));
}

bool dhcp(Session& s) {
    const std::uint32_t xid = 0x51700000u | static_cast<std::uint32_t>(::getpid() & 0xfffff);
    DhcpReply offer, ack;
    if (!dhcp_exchange(s, xid, 1, 2, {}, {}, offer, "dhcp DISCOVER -> OFFER")) return false;
    if (!dhcp_exchange(s, xid, 3, 5, offer.yiaddr, offer.server, ack, "dhcp REQUEST -> ACK"))
        return false;
    if (ack.yiaddr != offer.yiaddr)
        return failed("dhcp lease", "ACK yiaddr " + ip_text(ack.yiaddr) +
                                        " differs from the OFFER's " + ip_text(offer.yiaddr));
    if (!ack.has_lease) return failed("dhcp lease", "ACK without option 51 (lease time)");
    return pass("dhcp lease", ip_text(ack.yiaddr) + " acknowledged with a lease time");
}

// ---- a minimal TCP client (RFC 9293) ----------------------------------------------------------
bool seq_lt(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::int32_t>(a - b) < 0;
}
bool seq_le(std::uint32_t a, std::uint32_t b) {
    return !seq_lt(b, a);
}

constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

struct RxStats {
    std::uint64_t frames = 0, data_frames = 0, gso_frames = 0, big_gso = 0, partial = 0;
    std::uint64_t data_valid = 0, max_frame = 0, dup = 0, out_of_order = 0;
};

class TcpClient {
  public:
    TcpClient(Session& s, Ipv4Addr dst, std::uint16_t dport, const MacAddr& dst_mac)
        : s_(s), dst_(dst), dst_mac_(dst_mac), dport_(dport) {
        std::random_device rd;
        sport_ = static_cast<std::uint16_t>(40000 + rd() % 20000);
        iss_ = rd();
        snd_una_ = snd_nxt_ = iss_;
        partial_tx_ = s.has(kFCsum);
    }

    const RxStats& rx() const { return rx_; }
    const std::string& why() const { return why_; }
    std::vector<std::byte>& data() { return data_; }
    std::uint16_t peer_mss() const { return peer_mss_; }
    std::uint32_t wnd() const { return snd_wnd_; }

    bool connect() {
        // SYN options: MSS 1460, NOP, window scale 7 (RFC 9293 §3.2, RFC 7323 §2).
        const std::array<std::byte, 8> opts =
            make_bytes(2, 4, kOurMss >> 8, kOurMss & 0xff, 1, 3, 3, 7);
        const auto deadline = Clock::now() + Millis{8000};
        while (Clock::now() < deadline) {
            if (!segment(kSyn, iss_, 0, {}, opts)) return false;
            snd_nxt_ = iss_ + 1;
            const auto until = std::min(deadline, Clock::now() + Millis{1000});
            while (Clock::now() < until) {
                Frame f;
                virtio::NetHdr h;
                const int r =
                    s_.recv(f, h, std::chrono::duration_cast<Millis>(until - Clock::now()));
                if (r < 0) return fail_why(s_.why());
                if (r == 0) break;
                Seg g;
                if (!parse(f, h, g)) continue;
                if ((g.flags & kRst) != 0) return fail_why("connection refused (RST)");
                if ((g.flags & (kSyn | kAck)) != (kSyn | kAck) || g.ack != iss_ + 1) continue;
                irs_ = g.seq;
                rcv_nxt_ = g.seq + 1;
                snd_una_ = g.ack;
                peer_mss_ = g.mss != 0 ? g.mss : 536;
                wscale_ok_ = g.wscale >= 0;
                snd_wscale_ = wscale_ok_ ? static_cast<unsigned>(g.wscale) : 0;
                snd_wnd_ = g.win;  // a SYN's window is never scaled (RFC 7323 §2.2)
                return segment(kAck, snd_nxt_, rcv_nxt_, {}, {});
            }
        }
        return fail_why("no SYN-ACK within 8 s");
    }

    // Sends `payload` and waits until all of it is acknowledged. With `tso`, as few GSO frames as
    // the peer's window allows (one, normally); else MSS-sized segments.
    bool send_all(ByteView payload, bool tso, std::uint64_t& tso_frames, std::size_t& largest) {
        const std::uint32_t start = snd_nxt_;
        const std::uint32_t end = start + static_cast<std::uint32_t>(payload.size());
        const auto deadline = Clock::now() + Millis{15000};
        auto progress_at = Clock::now();
        std::uint32_t last_una = snd_una_;
        const std::size_t mss = std::min<std::size_t>(peer_mss_, kOurMss);
        while (seq_lt(snd_una_, end)) {
            if (Clock::now() > deadline)
                return fail_why("upload stalled: " + std::to_string(snd_una_ - start) + " of " +
                                std::to_string(payload.size()) + " bytes acknowledged");
            const std::uint32_t in_flight = snd_nxt_ - snd_una_;
            const std::uint32_t room = snd_wnd_ > in_flight ? snd_wnd_ - in_flight : 0;
            std::uint32_t left = end - snd_nxt_;
            std::uint32_t n = std::min(left, room);
            if (seq_lt(snd_nxt_, end) && n > 0) {
                if (tso && n > mss) {
                    n = std::min<std::uint32_t>(n, 65535 - 40);
                    const std::size_t off = snd_nxt_ - start;
                    if (!tso_segment(payload.subspan(off, n))) return false;
                    ++tso_frames;
                    largest = std::max<std::size_t>(largest, kEth + 40 + n);
                    snd_nxt_ += n;
                } else {
                    while (n > 0) {
                        const std::uint32_t k =
                            std::min<std::uint32_t>(n, static_cast<std::uint32_t>(mss));
                        const std::size_t off = snd_nxt_ - start;
                        if (!segment(kAck | kPsh, snd_nxt_, rcv_nxt_, payload.subspan(off, k), {}))
                            return false;
                        largest = std::max<std::size_t>(largest, kEth + 40 + k);
                        snd_nxt_ += k;
                        n -= k;
                    }
                }
            }
            if (!pump(Millis{50})) return false;
            if (snd_una_ != last_una) {
                last_una = snd_una_;
                progress_at = Clock::now();
            } else if (Clock::now() - progress_at > Millis{500}) {
                snd_nxt_ = snd_una_;  // go back N: resend from the first unacknowledged byte
                progress_at = Clock::now();
                ++retransmits_;
            }
        }
        return true;
    }

    // Receives until the peer's FIN (acknowledging as a guest would), or `timeout`.
    bool recv_to_fin(Millis timeout) {
        const auto deadline = Clock::now() + timeout;
        auto last_ack_sent = Clock::now();
        while (!fin_rcvd_) {
            if (Clock::now() > deadline)
                return fail_why("no FIN after " + std::to_string(data_.size()) + " bytes");
            const std::uint64_t before = unacked_;
            if (!pump(Millis{20})) return false;
            if (unacked_ > 0 && (unacked_ >= 8 || unacked_ == before || fin_rcvd_)) {
                if (!ack_now()) return false;
                last_ack_sent = Clock::now();
            } else if (Clock::now() - last_ack_sent > Millis{1000}) {
                if (!ack_now()) return false;  // a window update, in case one was lost
                last_ack_sent = Clock::now();
            }
        }
        return ack_now();
    }

    // Sends our FIN and waits for its acknowledgement.
    bool close_ours(Millis timeout) {
        if (!segment(kFin | kAck, snd_nxt_, rcv_nxt_, {}, {})) return false;
        const std::uint32_t fin_seq = snd_nxt_;
        snd_nxt_ += 1;
        const auto deadline = Clock::now() + timeout;
        auto resend = Clock::now() + Millis{1000};
        while (seq_le(snd_una_, fin_seq)) {
            if (Clock::now() > deadline) return fail_why("our FIN was not acknowledged");
            if (!pump(Millis{50})) return false;
            if (unacked_ > 0 && !ack_now()) return false;
            if (Clock::now() > resend) {
                if (!segment(kFin | kAck, fin_seq, rcv_nxt_, {}, {})) return false;
                resend = Clock::now() + Millis{1000};
            }
        }
        return true;
    }

    bool fin_received() const { return fin_rcvd_; }
    std::uint64_t retransmits() const { return retransmits_; }

  private:
    struct Seg {
        std::uint32_t seq = 0, ack = 0;
        std::uint8_t flags = 0;
        std::uint32_t win = 0;
        std::uint16_t mss = 0;
        int wscale = -1;
        ByteView payload;
    };

    bool fail_why(std::string w) {
        why_ = std::move(w);
        return false;
    }

    // Builds and sends one segment. With CSUM agreed the checksum is left partial, as Linux does:
    // the field holds the pseudo-header sum and the header says where to finish it (§5.1.6.2).
    bool segment(std::uint8_t flags, std::uint32_t seq, std::uint32_t ack, ByteView payload,
                 ByteView opts) {
        Builder w;
        eth_header(w, dst_mac_, kEtherIpv4);
        const std::size_t thl = 20 + opts.size();
        ipv4_header(w, kOurIp, dst_, IpProto::tcp, thl + payload.size());
        const std::size_t tcp = w.b.size();
        w.u16(sport_);
        w.u16(dport_);
        w.u32(seq);
        w.u32((flags & kAck) != 0 ? ack : 0);
        w.u8(static_cast<std::uint8_t>((thl / 4) << 4));
        w.u8(flags);
        w.u16(0xffff);  // with our window scale 7: 8 MiB
        w.u16(0);
        w.u16(0);
        w.bytes(opts);
        w.bytes(payload);
        virtio::NetHdr h;
        fill_csum(w.b, tcp, h, partial_tx_);
        if (!s_.send(w.b, h)) return fail_why(s_.why());
        return true;
    }

    void fill_csum(Frame& b, std::size_t tcp, virtio::NetHdr& h, bool partial) const {
        const auto len = static_cast<std::uint16_t>(b.size() - tcp);
        const std::uint32_t ph = pseudo_header_sum_v4(kOurIp, dst_, IpProto::tcp, len);
        if (partial) {
            h.flags = virtio::kNetHdrFNeedsCsum;
            h.csum_start = static_cast<std::uint16_t>(tcp);
            h.csum_offset = 16;
            store_be16(b.data() + tcp + 16, csum_fold(ph));
        } else {
            store_be16(b.data() + tcp + 16,
                       csum_finish(csum_partial(ByteView(b.data() + tcp, len), ph)));
        }
    }

    // One TSO super-frame as Linux hands it to virtio-net: gso_type TCPV4, gso_size 1448,
    // NEEDS_CSUM with the pseudo-header sum over the whole TCP length in the field.
    bool tso_segment(ByteView payload) {
        Builder w;
        eth_header(w, dst_mac_, kEtherIpv4);
        ipv4_header(w, kOurIp, dst_, IpProto::tcp, 20 + payload.size());
        const std::size_t tcp = w.b.size();
        w.u16(sport_);
        w.u16(dport_);
        w.u32(snd_nxt_);
        w.u32(rcv_nxt_);
        w.u8(5 << 4);
        w.u8(kAck | kPsh);
        w.u16(0xffff);
        w.u16(0);
        w.u16(0);
        w.bytes(payload);
        virtio::NetHdr h;
        fill_csum(w.b, tcp, h, true);
        h.gso_type = virtio::kGsoTcpV4;
        h.gso_size = kGsoSize;
        h.hdr_len = static_cast<std::uint16_t>(tcp + 20);
        if (!s_.send(w.b, h)) return fail_why(s_.why());
        return true;
    }

    bool ack_now() {
        unacked_ = 0;
        return segment(kAck, snd_nxt_, rcv_nxt_, {}, {});
    }

    // Parses a frame of this connection and checks its checksums; false if it is not ours.
    bool parse(Frame& f, const virtio::NetHdr& h, Seg& g) {
        Ipv4View v;
        if (!parse_ipv4(f, v) || v.proto != 6 || v.src != dst_ || v.dst != kOurIp ||
            v.l4.size() < 20)
            return false;
        const std::byte* t = v.l4.data();
        if (load_be16(t) != dport_ || load_be16(t + 2) != sport_) return false;
        const std::size_t thl = std::size_t{load_u8(t + 12)} / 16 * 4;
        if (thl < 20 || thl > v.l4.size()) return bad("TCP header length " + std::to_string(thl));
        if (!v.csum_ok) return bad("bad IPv4 header checksum");
        ++rx_.frames;
        rx_.max_frame = std::max<std::uint64_t>(rx_.max_frame, f.size());
        const std::uint32_t ph = pseudo_header_sum_v4(v.src, v.dst, IpProto::tcp,
                                                      static_cast<std::uint16_t>(v.l4.size()));
        const std::size_t tcp_off = kEth + v.ihl;
        if (h.needs_csum()) {
            // Finish the partial checksum as a guest stack would, then it must verify over the
            // whole (super-)segment: the field held the pseudo-header sum over the full length.
            ++rx_.partial;
            if (h.csum_start != tcp_off || h.csum_offset != 16)
                return bad("partial checksum at " + std::to_string(h.csum_start) + "+" +
                           std::to_string(h.csum_offset) + ", expected " + std::to_string(tcp_off) +
                           "+16");
            std::byte* field = f.data() + tcp_off + 16;
            store_be16(field, csum_finish(csum_partial(ByteView(f.data() + tcp_off, v.l4.size()))));
            if (csum_fold(csum_partial(ByteView(f.data() + tcp_off, v.l4.size()), ph)) != 0xffff)
                return bad("partial TCP checksum does not hold the pseudo-header sum");
        } else if ((h.flags & virtio::kNetHdrFDataValid) != 0) {
            ++rx_.data_valid;
        } else if (csum_fold(csum_partial(v.l4, ph)) != 0xffff) {
            return bad("bad TCP checksum on a frame without NEEDS_CSUM");
        }
        if (h.is_gso()) {
            ++rx_.gso_frames;
            if (f.size() > kMaxStdFrame) ++rx_.big_gso;
            if (h.gso_size == 0 || h.gso_size > kOurMss)
                return bad("gso_size " + std::to_string(h.gso_size) + " beyond our MSS 1460");
        }
        g.seq = load_be32(t + 4);
        g.ack = load_be32(t + 8);
        g.flags = load_u8(t + 13);
        g.win = load_be16(t + 14);
        g.payload = v.l4.subspan(thl);
        for (std::size_t i = 20; i < thl;) {
            const std::uint8_t kind = load_u8(t + i);
            if (kind == 0) break;
            if (kind == 1) {
                ++i;
                continue;
            }
            if (i + 1 >= thl) break;
            const std::size_t n = load_u8(t + i + 1);
            if (n < 2 || i + n > thl) break;
            if (kind == 2 && n == 4) g.mss = load_be16(t + i + 2);
            if (kind == 3 && n == 3) g.wscale = load_u8(t + i + 2);
            i += n;
        }
        return true;
    }

    bool bad(std::string w) {
        bad_ = true;
        why_ = "frame from the gateway: " + std::move(w);
        return false;
    }

    // Processes frames for up to `t` (returns early after the first burst). False on an error.
    bool pump(Millis t) {
        Frame f;
        f.reserve(NetDriver::kMaxFrame);
        virtio::NetHdr h;
        Millis wait_for = t;
        for (int n = 0; n < 64; ++n) {
            const int r = s_.recv(f, h, wait_for);
            if (r < 0) return fail_why(s_.why());
            if (r == 0) return true;
            wait_for = Millis{0};
            Seg g;
            if (!parse(f, h, g)) {
                if (bad_) return false;
                continue;
            }
            if ((g.flags & kRst) != 0) return fail_why("reset by the peer");
            if ((g.flags & kAck) != 0 && seq_lt(snd_una_, g.ack) && seq_le(g.ack, snd_nxt_ + 1))
                snd_una_ = g.ack;
            if ((g.flags & kAck) != 0) snd_wnd_ = g.win << snd_wscale_;
            if ((g.flags & kSyn) != 0) {  // a retransmitted SYN-ACK: our ACK was lost
                ++unacked_;
                continue;
            }
            if (!g.payload.empty()) {
                ++rx_.data_frames;
                if (g.seq == rcv_nxt_) {
                    data_.insert(data_.end(), g.payload.begin(), g.payload.end());
                    rcv_nxt_ += static_cast<std::uint32_t>(g.payload.size());
                } else if (seq_lt(g.seq, rcv_nxt_)) {
                    ++rx_.dup;
                } else {
                    ++rx_.out_of_order;
                }
                ++unacked_;
            }
            if ((g.flags & kFin) != 0 && g.seq + g.payload.size() == rcv_nxt_ && !fin_rcvd_) {
                fin_rcvd_ = true;
                rcv_nxt_ += 1;
                ++unacked_;
            }
        }
        return true;
    }

    Session& s_;
    Ipv4Addr dst_;
    MacAddr dst_mac_;
    std::uint16_t dport_, sport_ = 0;
    std::uint32_t iss_ = 0, irs_ = 0, snd_una_ = 0, snd_nxt_ = 0, rcv_nxt_ = 0, snd_wnd_ = 0;
    unsigned snd_wscale_ = 0;
    bool wscale_ok_ = false, fin_rcvd_ = false, partial_tx_ = false, bad_ = false;
    std::uint16_t peer_mss_ = 536;
    std::uint64_t unacked_ = 0, retransmits_ = 0;
    RxStats rx_;
    std::vector<std::byte> data_;
    std::string why_;
};

std::string rx_summary(const RxStats& r) {
    return std::to_string(r.frames) + " frames (" + std::to_string(r.gso_frames) + " GSO, " +
           std::to_string(r.big_gso) + " over 1514 bytes, " + std::to_string(r.partial) +
           " with partial checksums, largest " + std::to_string(r.max_frame) + " bytes, " +
           std::to_string(r.dup) + " duplicate, " + std::to_string(r.out_of_order) +
           " out of order)";
}

bool write_file(const std::string& path, ByteView data) {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    return o.good();
}

// ---- scenarios --------------------------------------------------------------------------------
bool arp_and_ping(Session& s, const std::string& tag, std::uint16_t seq) {
    MacAddr gw;
    if (!s.arp(kGwIp, gw, tag + " ARP for the gateway")) return false;
    return ping(s, gw, seq, tag + " ping the gateway");
}

int scenario_basic(const Args& a) {
    Session s(a);
    if (!s.open("session")) return 1;
    MacAddr gw;
    if (s.arp(kGwIp, gw, "ARP for the gateway 192.168.127.1")) {
        ping(s, gw, 1, "ping the gateway");
        ping(s, gw, 2, "ping the gateway again");
    }
    dhcp(s);
    s.stop("GET_VRING_BASE on stop");
    s.close();
    return 0;
}

int scenario_tcp_in(const Args& a) {
    if (a.port == 0 || a.out.empty()) return failed("tcp-in", "needs --port and --out"), 1;
    Session s(a);
    if (!s.open("session")) return 1;
    MacAddr mac;
    if (!s.arp(kAliasIp, mac, "ARP for the host alias 192.168.127.254")) return 1;
    TcpClient c(s, kAliasIp, a.port, mac);
    if (!c.connect()) return failed("TCP handshake", c.why()), 1;
    pass("TCP handshake", "SYN / SYN-ACK / ACK with 192.168.127.254:" + std::to_string(a.port) +
                              ", peer MSS " + std::to_string(c.peer_mss()) + ", window " +
                              std::to_string(c.wnd()));
    const std::size_t n = a.bytes != 0 ? a.bytes : 61440;
    Frame payload(n);
    std::mt19937 rng(static_cast<unsigned>(::getpid()));
    for (auto& b : payload)
        b = static_cast<std::byte>(rng() & 0xff);
    if (!write_file(a.out, payload)) return failed("tcp-in", "cannot write " + a.out), 1;
    const bool tso = s.has(kFHostTso4);
    std::uint64_t tso_frames = 0;
    std::size_t largest = 0;
    const std::string step = tso ? "TSO frame in" : "MSS segments in (no HOST_TSO4)";
    if (!c.send_all(payload, tso, tso_frames, largest)) return failed(step, c.why()), 1;
    if (tso && (tso_frames == 0 || largest <= kMaxStdFrame))
        failed(step, "no GSO frame was sent (peer window " + std::to_string(c.wnd()) + ")");
    else
        pass(step, std::to_string(n) + " bytes acknowledged; " + std::to_string(tso_frames) +
                       " GSO frames, largest frame " + std::to_string(largest) + " bytes, " +
                       std::to_string(c.retransmits()) + " retransmissions");
    if (!c.close_ours(Millis{5000})) return failed("TCP close", c.why()), 1;
    // The sink answers "SHA256 BYTES\n" for what it read, then closes.
    if (!c.recv_to_fin(Millis{5000})) return failed("server reply", c.why()), 1;
    const std::string reply(reinterpret_cast<const char*>(c.data().data()), c.data().size());
    const auto sp = reply.find(' ');
    const std::string count =
        sp == std::string::npos ? "" : reply.substr(sp + 1, reply.find('\n') - sp - 1);
    if (count != std::to_string(n))
        failed("server reply", "'" + reply + "', expected " + std::to_string(n) + " bytes");
    else
        pass("server reply", "the server read " + count + " bytes, sha256 " + reply.substr(0, sp));
    std::printf("SERVER %s", reply.c_str());
    s.stop("GET_VRING_BASE on stop");
    s.close();
    return 0;
}

int scenario_tcp_out(const Args& a) {
    if (a.port == 0 || a.out.empty()) return failed("tcp-out", "needs --port and --out"), 1;
    Session s(a);
    if (!s.open("session")) return 1;
    MacAddr mac;
    if (!s.arp(kAliasIp, mac, "ARP for the host alias 192.168.127.254")) return 1;
    TcpClient c(s, kAliasIp, a.port, mac);
    if (!c.connect()) return failed("TCP handshake", c.why()), 1;
    pass("TCP handshake", "with 192.168.127.254:" + std::to_string(a.port));
    const bool gso = s.has(kFGuestTso4) && s.has(kFGuestTso6);
    const bool ok = c.recv_to_fin(Millis{20000});
    const std::string sum = rx_summary(c.rx());
    if (!ok) return failed("download", c.why() + "; " + sum), 1;
    if (!write_file(a.out, c.data())) return failed("download", "cannot write " + a.out), 1;
    pass("download", std::to_string(c.data().size()) + " bytes to FIN; " + sum);
    if (gso) {
        if (c.rx().big_gso == 0)
            failed("GSO frame out", "no GSO frame over 1514 bytes arrived: " + sum);
        else
            pass("GSO frame out",
                 std::to_string(c.rx().big_gso) + " GSO TCPv4 frames over 1514 bytes");
    } else {
        if (c.rx().gso_frames != 0 || c.rx().max_frame > kMaxStdFrame || c.rx().partial != 0)
            failed("no offloads", "GSO or partial checksums without GUEST_TSO/GUEST_CSUM: " + sum);
        else
            pass("no offloads", "every frame at most 1514 bytes, fully checksummed");
    }
    if (!c.close_ours(Millis{5000})) return failed("TCP close", c.why()), 1;
    pass("TCP close", "both FINs acknowledged");
    s.stop("GET_VRING_BASE on stop");
    s.close();
    return 0;
}

int scenario_reconnect(const Args& a) {
    {
        Session s(a);
        if (!s.open("session 1")) return 1;
        arp_and_ping(s, "session 1", 1);
        s.stop("session 1 GET_VRING_BASE");
        s.close();
    }
    {
        // A fresh guest (new memory, new rings) on the same socket, as after a VMM restart.
        Session s(a);
        if (!s.open("session 2 (fresh RAM)")) return 1;
        arp_and_ping(s, "session 2", 2);
        s.close();  // no GET_VRING_BASE: the VMM just went away
    }
    {
        Session s(a);
        if (!s.open("session 3 (after an abrupt close)")) return 1;
        arp_and_ping(s, "session 3", 3);
        // Traffic still owed to a guest that vanishes mid-stream must not wedge the port.
        MacAddr gw;
        if (s.arp(kGwIp, gw, "session 3 ARP again")) {
            for (std::uint16_t i = 0; i < 8; ++i) {
                Builder w;
                eth_header(w, gw, kEtherIpv4);
                ipv4_header(w, kOurIp, kGwIp, IpProto::icmp, 8);
                const std::size_t icmp = w.b.size();
                w.u8(8);
                w.u8(0);
                w.u16(0);
                w.u16(0x7777);
                w.u16(i);
                store_be16(w.b.data() + icmp + 2,
                           csum_finish(csum_partial(ByteView(w.b.data() + icmp, 8))));
                (void)s.send(w.b);
            }
        }
        s.close();
    }
    {
        Session s(a);
        if (!s.open("session 4 (after replies were left pending)")) return 1;
        arp_and_ping(s, "session 4", 4);
        s.stop("session 4 GET_VRING_BASE");
        s.close();
    }
    return 0;
}

// A well-behaved session after a hostile one: the daemon survived and serves again.
void healthy_after(const Args& a, const std::string& what) {
    Session s(a);
    if (!s.open("session after " + what)) return;
    arp_and_ping(s, "after " + what, 9);
    s.close();
}

int scenario_hostile_desc(const Args& a) {
    struct Case {
        const char* name;
        std::function<void(Session&)> inject;
    };
    // Each case plants its fault and publishes it with a kick, as a broken guest would.
    auto publish_tx = [](Session& s) {
        s.drv().tx().publish();
        s.drv().tx().kick(true);
    };
    const std::vector<Case> cases = {
        {"TX descriptor outside guest memory",
         [&](Session& s) {
             const Buf b{s.ram().base() + s.ram().size() + 0x10000, 64};
             (void)s.drv().tx().add_chain(std::span<const Buf>(&b, 1), {});
             publish_tx(s);
         }},
        {"TX descriptor running past the end of guest memory",
         [&](Session& s) {
             const Buf b{s.ram().base() + s.ram().size() - 32, 0xffff0000u};
             (void)s.drv().tx().add_chain(std::span<const Buf>(&b, 1), {});
             publish_tx(s);
         }},
        {"TX descriptor chain looping on itself",
         [&](Session& s) {
             const Buf b{s.ram().base(), 64};
             auto h = s.drv().tx().add_chain(std::span<const Buf>(&b, 1), {});
             if (h) s.drv().tx().poke_desc(*h, b.gpa, b.len, virtio::kDescFNext, *h);
             publish_tx(s);
         }},
        {"TX avail index far ahead of the ring",
         [](Session& s) {
             s.drv().tx().poke_avail_idx(
                 static_cast<std::uint16_t>(s.drv().tx().avail_idx() + 1000));
             s.drv().tx().kick(true);
         }},
        {"TX head index beyond the queue size",
         [&](Session& s) {
             const Buf b{s.ram().base(), 64};
             auto h = s.drv().tx().add_chain(std::span<const Buf>(&b, 1), {});
             if (h)
                 s.drv().tx().poke_avail_ring(
                     static_cast<std::uint16_t>(s.drv().tx().avail_idx() - 1), 9999);
             publish_tx(s);
         }},
        {"TX indirect table outside guest memory",
         [&](Session& s) {
             const Buf b{s.ram().base(), 64};
             auto h = s.drv().tx().add_chain(std::span<const Buf>(&b, 1), {});
             if (h)
                 s.drv().tx().poke_desc(*h, s.ram().base() + (std::uint64_t{1} << 40), 32,
                                        virtio::kDescFIndirect, 0);
             publish_tx(s);
         }},
        {"RX buffers moved outside guest memory",
         [](Session& s) {
             // Every RX descriptor is with the device already; rewrite them all to point past the
             // end of memory, then ask the gateway for a frame the device must write there.
             DriverQueue& rx = s.drv().rx();
             for (std::uint16_t i = 0; i < rx.size(); ++i)
                 rx.poke_desc(i, s.ram().base() + s.ram().size() + 0x1000, 4096,
                              virtio::kDescFWrite, 0);
             (void)s.send(arp_frame(1, MacAddr::broadcast(), MacAddr{}, kGwIp));
         }},
    };
    for (const auto& c : cases) {
        Session s(a);
        if (!s.open(std::string("session for: ") + c.name)) return 1;
        MacAddr gw;
        (void)s.arp(kGwIp, gw, std::string("before: ") + c.name);
        c.inject(s);
        Frame f;
        virtio::NetHdr h;
        const int r = s.recv(f, h, Millis{300});
        const bool closed = s.fe().peer_closed(Millis{200});
        info(c.name, std::string("afterwards: ") + (r > 0 ? "a frame still arrived" : "no frame") +
                         (r < 0 ? " (" + s.why() + ")" : "") +
                         (closed ? ", the back end closed the connection" : ", connection open"));
        s.close();
        healthy_after(a, c.name);
    }
    return 0;
}

int scenario_hostile_msg(const Args& a) {
    // Each case runs on its own connection; `expect_reject` cases must not be acknowledged with 0.
    struct Case {
        const char* name;
        bool expect_reject;
        std::function<bool(VhostUserFrontend&, GuestRam&)> run;  // true if acked with 0
    };
    auto negotiate = [&](VhostUserFrontend& fe) {
        VhostUserFrontend::Options o;
        o.features = wanted_features(a);
        o.reply_timeout = Millis{1000};
        return fe.negotiate(o).has_value();
    };
    const std::vector<Case> cases = {
        {"header claiming a 256 MiB payload", false,
         [](VhostUserFrontend& fe, GuestRam&) {
             std::array<std::byte, 12> h{};
             put_le32(h.data(), vhost::kGetFeatures);
             put_le32(h.data() + 4, vhost::kVersion);
             put_le32(h.data() + 8, 256u << 20);
             (void)fe.send_raw(h);
             return false;
         }},
        {"truncated header, then close", false,
         [](VhostUserFrontend& fe, GuestRam&) {
             const auto h = make_bytes(1, 0, 0, 0, 1, 0);
             (void)fe.send_raw(h);
             return false;
         }},
        {"unknown request 250 with NEED_REPLY (REPLY_ACK agreed)", true,
         [&](VhostUserFrontend& fe, GuestRam&) {
             if (!negotiate(fe) || !fe.reply_ack()) return false;
             return fe.request_ack(250, {}, {}, true).has_value();
         }},
        {"SET_VRING_NUM for queue 200", true,
         [&](VhostUserFrontend& fe, GuestRam&) {
             if (!negotiate(fe)) return false;
             return fe.set_vring_num(200, 256).has_value();
         }},
        {"SET_VRING_ADDR with a 4-byte payload", true,
         [&](VhostUserFrontend& fe, GuestRam&) {
             if (!negotiate(fe)) return false;
             const auto p = make_bytes(0, 0, 0, 0);
             return fe.request_ack(vhost::kSetVringAddr, p, {}, true).has_value();
         }},
        {"SET_MEM_TABLE with one region and no fd", true,
         [&](VhostUserFrontend& fe, GuestRam& ram) {
             if (!negotiate(fe)) return false;
             const virtio::MemRegion r = ram.region();
             return fe.set_mem_table(std::span<const virtio::MemRegion>(&r, 1), {}).has_value();
         }},
        {"SET_MEM_TABLE with 9 regions", true,
         [&](VhostUserFrontend& fe, GuestRam& ram) {
             if (!negotiate(fe)) return false;
             std::vector<virtio::MemRegion> rs(9, ram.region());
             for (std::size_t i = 0; i < rs.size(); ++i)
                 rs[i].guest_addr += i * ram.size();
             std::vector<int> fds(8, ram.fd());
             return fe.set_mem_table(rs, fds).has_value();
         }},
        {"region larger than its file, rings in the missing part", false,
         [&](VhostUserFrontend& fe, GuestRam& ram) {
             // A back end that maps without checking the file size would take SIGBUS on the
             // first ring access.
             if (!negotiate(fe)) return false;
             virtio::MemRegion r = ram.region();
             r.size = ram.size() * 4;
             const int fd = ram.fd();
             if (!fe.set_mem_table(std::span<const virtio::MemRegion>(&r, 1),
                                   std::span<const int>(&fd, 1)))
                 return false;
             const std::uint64_t ring = r.user_addr + ram.size() * 2;
             (void)fe.set_vring_num(1, 256);
             (void)fe.set_vring_addr(1, ring, ring + 0x2000, ring + 0x1000);
             (void)fe.set_vring_base(1, 0);
             UniqueFd k(::eventfd(1, EFD_CLOEXEC));
             (void)fe.set_vring_kick(1, k.get());
             (void)fe.set_vring_enable(1, true);
             std::this_thread::sleep_for(Millis{200});
             return true;
         }},
        {"rings outside the memory table", true,
         [&](VhostUserFrontend& fe, GuestRam& ram) {
             // Accepted only if every step up to SET_VRING_ENABLE is acknowledged with 0: then
             // the back end claims a ring it cannot have started.
             if (!negotiate(fe) || !fe.set_mem_table(ram)) return false;
             const std::uint64_t bad = ram.user_addr(ram.base()) + (std::uint64_t{1} << 40);
             UniqueFd k(::eventfd(1, EFD_CLOEXEC)), c(::eventfd(0, EFD_CLOEXEC));
             return fe.set_vring_num(0, 256) &&
                    fe.set_vring_addr(0, bad, bad + 0x2000, bad + 0x1000) &&
                    fe.set_vring_base(0, 0) && fe.set_vring_call(0, c.get()) &&
                    fe.set_vring_kick(0, k.get()) && fe.set_vring_enable(0, true);
         }},
    };
    for (const auto& c : cases) {
        std::string err;
        auto ram = GuestRam::create(1u << 20, err);
        if (!ram) return failed("guest RAM", err), 1;
        VhostUserFrontend fe;
        fe.set_reply_timeout(Millis{1000});
        if (!fe.connect(a.sock, Millis{5000})) return failed(c.name, fe.error()), 1;
        const bool acked = c.run(fe, **ram);
        const bool closed = fe.peer_closed(Millis{300});
        const std::string what =
            std::string(acked ? "acknowledged with 0" : "not acknowledged (" + fe.error() + ")") +
            (closed ? ", connection closed" : ", connection open");
        if (c.expect_reject && acked)
            failed(c.name, "accepted: " + what);
        else
            info(c.name, what);
        fe.close();
        healthy_after(a, c.name);
    }
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: vhost_user_peer SOCKET basic|tcp-in|tcp-out|reconnect|hostile-desc|"
                 "hostile-msg [--port N] [--out FILE] [--bytes N] [--no-offloads] "
                 "[--no-event-idx] [--no-indirect] [--no-mrg]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    Args a;
    a.sock = argv[1];
    a.scenario = argv[2];
    for (int i = 3; i < argc; ++i) {
        const std::string o = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (o == "--port")
            a.port = static_cast<std::uint16_t>(std::strtoul(next().c_str(), nullptr, 10));
        else if (o == "--out")
            a.out = next();
        else if (o == "--bytes")
            a.bytes = std::strtoull(next().c_str(), nullptr, 10);
        else if (o == "--no-offloads")
            a.offloads = false;
        else if (o == "--no-event-idx")
            a.event_idx = false;
        else if (o == "--no-indirect")
            a.indirect = false;
        else if (o == "--no-mrg")
            a.mrg = false;
        else
            return usage();
    }
    int rc = 0;
    if (a.scenario == "basic")
        rc = scenario_basic(a);
    else if (a.scenario == "tcp-in")
        rc = scenario_tcp_in(a);
    else if (a.scenario == "tcp-out")
        rc = scenario_tcp_out(a);
    else if (a.scenario == "reconnect")
        rc = scenario_reconnect(a);
    else if (a.scenario == "hostile-desc")
        rc = scenario_hostile_desc(a);
    else if (a.scenario == "hostile-msg")
        rc = scenario_hostile_msg(a);
    else
        return usage();
    std::printf("vhost_user_peer %s: %d steps passed, %d failed\n", a.scenario.c_str(), g_pass,
                g_fail);
    return rc == 0 && g_fail == 0 && g_pass > 0 ? 0 : 1;
}
