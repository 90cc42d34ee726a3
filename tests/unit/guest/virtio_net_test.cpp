// VirtioNetDevice driven by the test-side virtio-net driver (tests/support/virtio_driver.hpp):
// feature negotiation, TX layouts and header checks, RX merging and back-pressure, segmentation in
// the device, interrupts, hostile rings, stop/resume, and an echo run with the driver on a thread.
#include "slipway/guest/virtio_net.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "guest_test_util.hpp"
#include "slipway/core/bytes.hpp"
#include "slipway/core/checksum.hpp"
#include "virtio_driver.hpp"

namespace slipway::virtio {
// Readable failure messages for header comparisons.
void PrintTo(const NetHdr& h, std::ostream* os);
void PrintTo(const NetHdr& h, std::ostream* os) {
    *os << "{flags " << unsigned{h.flags} << " gso_type " << unsigned{h.gso_type} << " hdr_len "
        << h.hdr_len << " gso_size " << h.gso_size << " csum " << h.csum_start << "+"
        << h.csum_offset << " num_buffers " << h.num_buffers << "}";
}
}  // namespace slipway::virtio

namespace slipway::guest {
namespace {

namespace vt = ::slipway::testing;
using test::Bytes;
using test::make_frame;
using namespace std::chrono_literals;

constexpr std::size_t kRamSize = std::size_t{64} << 20;  // sparse memfd: only touched pages count
constexpr std::uint64_t kAll = kOfferedFeatures;
constexpr std::uint64_t kNoEventIdx = kOfferedFeatures & ~vfeat::event_idx;
constexpr std::uint16_t kPortId = 7;
constexpr std::size_t kV1 = virtio::kNetHdrV1Len;

// The owner a real attachment would be: the SwitchPort that forwards egress to the device.
class DevicePort final : public SwitchPort {
  public:
    DevicePort(IoContext& io, PacketPool& pool, std::uint32_t mtu)
        : SwitchPort("vnet0", PortKind::guest, PortCaps{}), dev(io, pool, *this, "vnet0", mtu) {}
    void on_frames_from_switch() noexcept override { dev.on_egress(); }
    VirtioNetDevice dev;
};

struct SwFrame {
    Bytes bytes;
    virtio::NetHdr vnet;
    std::uint16_t in_port = 0;
};

struct RxFrame {
    virtio::NetHdr hdr;
    Bytes bytes;
};

// ---- frame builders ---------------------------------------------------------------------------

constexpr Ipv4Addr kSrcIp = Ipv4Addr::from_octets(10, 0, 2, 15);
constexpr Ipv4Addr kDstIp = Ipv4Addr::from_octets(10, 0, 2, 2);
constexpr std::size_t kL3 = 14, kIpHdr = 20, kL4 = kL3 + kIpHdr;
constexpr std::uint32_t kSeq = 1000;

struct L4Frame {
    Bytes bytes;
    virtio::NetHdr hdr;    // NEEDS_CSUM over the L4 checksum, GSO as asked
    std::size_t hdrs = 0;  // Ethernet + IPv4 + L4 header bytes
};

// An IPv4 TCP or UDP frame as a Linux guest hands a GSO super-frame to virtio-net (virtio 1.2
// §5.1.6.2): IP lengths covering all the payload, a valid IP header checksum, the L4 checksum field
// seeded with the pseudo-header sum and NEEDS_CSUM pointing at it.
L4Frame make_ipv4(bool tcp, std::size_t payload, std::uint8_t gso_type, std::uint16_t gso_size,
                  std::uint8_t seed) {
    L4Frame out;
    const std::size_t l4h = tcp ? 20 : 8;
    out.hdrs = kL4 + l4h;
    out.bytes.assign(out.hdrs + payload, std::byte{0});
    std::byte* p = out.bytes.data();
    const std::uint8_t dst[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
    const std::uint8_t src[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
    for (std::size_t i = 0; i < 6; ++i) {
        p[i] = std::byte{dst[i]};
        p[6 + i] = std::byte{src[i]};
    }
    store_be16(p + 12, 0x0800);
    const auto l4_len = static_cast<std::uint16_t>(l4h + payload);
    store_u8(p + kL3, 0x45);
    store_be16(p + kL3 + 2, static_cast<std::uint16_t>(kIpHdr + l4_len));
    store_be16(p + kL3 + 4, 0x1234);
    store_be16(p + kL3 + 6, 0x4000);  // DF
    store_u8(p + kL3 + 8, 64);
    store_u8(p + kL3 + 9, tcp ? 6 : 17);
    kSrcIp.store(p + kL3 + 12);
    kDstIp.store(p + kL3 + 16);
    store_be16(p + kL3 + 10, csum_finish(csum_partial(ByteView(p + kL3, kIpHdr))));
    store_be16(p + kL4, 40000);
    store_be16(p + kL4 + 2, tcp ? 80 : 53);
    std::uint16_t csum_off = 6;
    if (tcp) {
        store_be32(p + kL4 + 4, kSeq);
        store_be32(p + kL4 + 8, 1);
        store_u8(p + kL4 + 12, 0x50);  // data offset 5 words
        store_u8(p + kL4 + 13, 0x18);  // ACK | PSH
        store_be16(p + kL4 + 14, 65535);
        csum_off = 16;
    } else {
        store_be16(p + kL4 + 4, l4_len);
    }
    for (std::size_t i = 0; i < payload; ++i)
        p[out.hdrs + i] = static_cast<std::byte>((i * 7 + i / 251 + seed) & 0xff);
    const std::uint32_t ps =
        pseudo_header_sum_v4(kSrcIp, kDstIp, tcp ? IpProto::tcp : IpProto::udp, l4_len);
    store_be16(p + kL4 + csum_off, csum_fold(ps));
    out.hdr.flags = virtio::kNetHdrFNeedsCsum;
    out.hdr.gso_type = gso_type;
    out.hdr.gso_size = gso_type == virtio::kGsoNone ? 0 : gso_size;
    out.hdr.hdr_len = static_cast<std::uint16_t>(out.hdrs);
    out.hdr.csum_start = static_cast<std::uint16_t>(kL4);
    out.hdr.csum_offset = csum_off;
    return out;
}

// What software segmentation must have produced from `orig`: frames of at most the MTU, no GSO
// left, valid IP and L4 checksums, TCP sequence numbers advancing by the MSS, and the payloads in
// order adding up to the original payload.
void expect_segments(const L4Frame& orig, const std::vector<RxFrame>& segs, bool tcp) {
    const std::size_t mss = orig.hdr.gso_size;
    const std::size_t payload = orig.bytes.size() - orig.hdrs;
    ASSERT_EQ(segs.size(), (payload + mss - 1) / mss);
    Bytes joined;
    for (std::size_t i = 0; i < segs.size(); ++i) {
        SCOPED_TRACE(i);
        const Bytes& s = segs[i].bytes;
        ASSERT_GT(s.size(), orig.hdrs);
        EXPECT_LE(s.size(), orig.hdrs + mss);
        EXPECT_LE(s.size(), 1514u);
        EXPECT_FALSE(segs[i].hdr.is_gso());
        const std::byte* p = s.data();
        EXPECT_EQ(load_be16(p + kL3 + 2), s.size() - kL3);
        EXPECT_EQ(csum_fold(csum_partial(ByteView(p + kL3, kIpHdr))), 0xffff);
        const auto l4_len = static_cast<std::uint16_t>(s.size() - kL4);
        if (!segs[i].hdr.needs_csum()) {
            const std::uint32_t ps =
                pseudo_header_sum_v4(kSrcIp, kDstIp, tcp ? IpProto::tcp : IpProto::udp, l4_len);
            EXPECT_EQ(csum_fold(csum_partial(ByteView(p + kL4, l4_len), ps)), 0xffff);
        }
        if (tcp)
            EXPECT_EQ(load_be32(p + kL4 + 4), kSeq + i * mss);
        else
            EXPECT_EQ(load_be16(p + kL4 + 4), l4_len);
        joined.insert(joined.end(), s.begin() + static_cast<std::ptrdiff_t>(orig.hdrs), s.end());
    }
    EXPECT_TRUE(joined == Bytes(orig.bytes.begin() + static_cast<std::ptrdiff_t>(orig.hdrs),
                                orig.bytes.end()));
}

// A header asking for a partial checksum somewhere inside a frame of `len` bytes (>= 22).
virtio::NetHdr csum_hdr() {
    virtio::NetHdr h;
    h.flags = virtio::kNetHdrFNeedsCsum;
    h.hdr_len = 14;
    h.csum_start = 14;
    h.csum_offset = 6;
    return h;
}

// ---- fixture ----------------------------------------------------------------------------------

class VirtioNetTest : public ::testing::Test {
  protected:
    // Device with `features` negotiated, a driver with queues of `qsize`, and the queues started
    // as asked. Memory and driver exist either way.
    ::testing::AssertionResult setup(std::uint64_t features, std::uint16_t qsize = 256,
                                     bool start_rx = true, bool start_tx = true,
                                     std::uint32_t mtu = 1500) {
        auto r = vt::GuestRam::create(kRamSize, err);
        if (!r) return ::testing::AssertionFailure() << "guest RAM: " << err;
        ram = std::move(*r);
        if (!mem.add(ram->region())) return ::testing::AssertionFailure() << "mem.add";
        port = std::make_unique<DevicePort>(io, pool, mtu);
        port->bind(kPortId, [this](SwitchPort&) {
            ++notifies;
            if (ingress_hook) ingress_hook();
        });
        if (auto s = dev().set_features(features); !s)
            return ::testing::AssertionFailure() << "set_features: " << to_string(s.error());
        auto d = vt::NetDriver::create(*ram, features, qsize, err);
        if (!d) return ::testing::AssertionFailure() << "driver: " << err;
        drv = std::move(*d);
        dev().set_memory(&mem);
        if (start_rx) {
            if (auto s = start(VirtioNetDevice::kRxQueue); !s) return s;
        }
        if (start_tx) {
            if (auto s = start(VirtioNetDevice::kTxQueue); !s) return s;
        }
        settle();
        return ::testing::AssertionSuccess();
    }

    // Starts device queue q on the driver's rings (what SET_VRING_* would describe).
    ::testing::AssertionResult start(unsigned q, std::uint16_t last_avail = 0) {
        vt::DriverQueue& dq = drv->queue(q);
        VirtqueueSetup s;
        s.size = dq.size();
        s.desc = dq.desc_gpa();
        s.avail = dq.avail_gpa();
        s.used = dq.used_gpa();
        s.last_avail = last_avail;
        s.kick = UniqueFd(::fcntl(dq.kick_fd(), F_DUPFD_CLOEXEC, 0));
        s.call = UniqueFd(::fcntl(dq.call_fd(), F_DUPFD_CLOEXEC, 0));
        std::string e;
        if (auto r = dev().start_queue(q, std::move(s), e); !r)
            return ::testing::AssertionFailure() << "start_queue " << q << ": " << e;
        return ::testing::AssertionSuccess();
    }

    VirtioNetDevice& dev() { return port->dev; }
    const VirtioNetCounters& vc() { return port->dev.counters(); }
    PortCounters& pc() { return port->counters(); }

    // Runs ready handlers one at a time until the loop has been idle a few polls in a row. A
    // device that keeps re-posting itself (a busy loop) never gets there: that fails the test
    // instead of hanging it.
    bool settle() {
        int idle = 0;
        for (int i = 0; i < 20000; ++i) {
            io.restart();
            if (io.poll_one() != 0) {
                idle = 0;
            } else if (++idle == 3) {
                return true;
            }
        }
        ADD_FAILURE() << "the loop never went idle: a handler keeps re-posting itself";
        return false;
    }

    ::testing::AssertionResult send(const virtio::NetHdr& h, const Bytes& f,
                                    vt::TxShape shape = vt::TxShape::two, bool indirect = false) {
        if (auto r = drv->send(h, ByteView(f), shape, indirect, 1000ms); !r)
            return ::testing::AssertionFailure() << "send: " << drv->error();
        return ::testing::AssertionSuccess();
    }

    // Puts a frame into the port's ring as the switch would.
    bool push(const Bytes& f, const virtio::NetHdr& vnet = {}) {
        auto r = pool.try_alloc(f.size());
        if (!r) return false;
        std::memcpy(r->data().data(), f.data(), f.size());
        r->meta().vnet = vnet;
        return port->to_port().try_push(std::move(*r));
    }
    // The switch's wake-up after pushing, then the loop.
    void deliver() {
        port->on_frames_from_switch();
        settle();
    }

    // Everything the guest can receive now (recv reposts buffers and kicks).
    std::vector<RxFrame> recv_all() {
        std::vector<RxFrame> out;
        for (;;) {
            RxFrame f;
            auto r = drv->recv(f.hdr, f.bytes, 0ms);
            if (!r) {
                ADD_FAILURE() << "recv: " << drv->error();
                break;
            }
            if (!*r) break;
            out.push_back(std::move(f));
        }
        return out;
    }

    std::vector<SwFrame> take_switch() {
        std::vector<SwFrame> out;
        PacketRef f;
        while (port->to_switch().try_pop(f)) {
            out.push_back(SwFrame{test::to_bytes(f.data()), f.meta().vnet, f.meta().in_port});
            f.reset();
        }
        return out;
    }

    // Consumes a pending interrupt on the driver's call eventfd.
    static bool take_call(vt::DriverQueue& q) {
        std::uint64_t v = 0;
        return ::read(q.call_fd(), &v, sizeof v) == static_cast<ssize_t>(sizeof v);
    }
    // Writes used_event (§2.7.10: the u16 after the available ring) as a driver would.
    void set_used_event(vt::DriverQueue& q, std::uint16_t v) {
        store_le16(ram->at(q.avail_gpa() + 4 + 2 * std::uint64_t{q.size()}, 2), v);
    }

    std::pair<std::uint32_t, std::uint32_t> pool_free() {
        pool.flush_thread_cache();
        return {pool.global_free_approx(SizeClass::small),
                pool.global_free_approx(SizeClass::large)};
    }

    IoContext io;
    PacketPool pool{PoolConfig{1024, 64, kDefaultHeadroom}};
    std::unique_ptr<vt::GuestRam> ram;
    virtio::GuestMemory mem;
    std::unique_ptr<DevicePort> port;
    std::unique_ptr<vt::NetDriver> drv;
    std::size_t notifies = 0;
    std::function<void()> ingress_hook;
    std::string err;
};

// ---- features ---------------------------------------------------------------------------------

TEST_F(VirtioNetTest, SetFeaturesRejectsBitsNotOffered) {
    ASSERT_TRUE(setup(kAll, 256, false, false));
    for (const std::uint64_t bad :
         {vfeat::guest_ufo, vfeat::host_ufo, vfeat::guest_ecn, vfeat::host_ecn, vfeat::ctrl_vq,
          vfeat::mq, vfeat::mac, std::uint64_t{1} << 40, std::uint64_t{1} << 63}) {
        SCOPED_TRACE(bad);
        auto r = dev().set_features(vfeat::version_1 | bad);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), Errc::invalid_argument);
        EXPECT_EQ(dev().features(), kAll);  // unchanged
    }
    // Bit 30 (VHOST_USER_F_PROTOCOL_FEATURES) is the transport's: accepted, not kept.
    ASSERT_TRUE(dev().set_features(vfeat::version_1 | (std::uint64_t{1} << 30)));
    EXPECT_EQ(dev().features(), vfeat::version_1);
    ASSERT_TRUE(dev().set_features(0));
    EXPECT_EQ(dev().features(), 0u);
}

TEST_F(VirtioNetTest, CapsFollowTheNegotiatedFeatures) {
    using namespace vfeat;
    struct Case {
        std::uint64_t f;
        bool gso, partial;
    };
    const Case cases[] = {
        {guest_tso4 | guest_tso6 | guest_csum, true, true},
        {guest_tso4 | guest_csum, false, true},  // one flag covers v4 and v6: both needed
        {guest_tso6 | guest_csum, false, true},
        {guest_tso4 | guest_tso6, false, false},  // GSO frames carry partial checksums
        {guest_csum, false, true},
        {csum | host_tso4 | host_tso6, false, false},  // what the guest sends says nothing
        {0, false, false},
        {kAll, true, true},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.f);
        const PortCaps caps = caps_for_features(c.f, 1500);
        EXPECT_EQ(caps.gso, c.gso);
        EXPECT_EQ(caps.partial_csum, c.partial);
        EXPECT_EQ(caps.max_frame, 1514u);
    }
    EXPECT_EQ(caps_for_features(kAll, 9000).max_frame, 9014u);
    EXPECT_EQ(caps_for_features(0, 68).max_frame, 82u);

    // set_features() puts them on the port.
    ASSERT_TRUE(setup(kAll, 256, false, false, 9000));
    EXPECT_TRUE(port->caps().gso);
    EXPECT_TRUE(port->caps().partial_csum);
    EXPECT_EQ(port->caps().max_frame, 9014u);
    ASSERT_TRUE(dev().set_features(vfeat::version_1 | vfeat::guest_csum));
    EXPECT_FALSE(port->caps().gso);
    EXPECT_TRUE(port->caps().partial_csum);
    ASSERT_TRUE(dev().set_features(vfeat::version_1));
    EXPECT_FALSE(port->caps().partial_csum);
    EXPECT_EQ(port->caps().max_frame, 9014u);
}

TEST_F(VirtioNetTest, StartQueueChecksItsArguments) {
    ASSERT_TRUE(setup(kAll, 256, false, false));
    vt::DriverQueue& dq = drv->rx();
    auto base = [&] {
        VirtqueueSetup s;
        s.size = dq.size();
        s.desc = dq.desc_gpa();
        s.avail = dq.avail_gpa();
        s.used = dq.used_gpa();
        s.kick = UniqueFd(::fcntl(dq.kick_fd(), F_DUPFD_CLOEXEC, 0));
        return s;
    };
    std::string e;
    EXPECT_FALSE(dev().start_queue(2, base(), e));
    EXPECT_FALSE(e.empty());
    {
        VirtqueueSetup s = base();
        s.kick.reset();
        e.clear();
        auto r = dev().start_queue(VirtioNetDevice::kRxQueue, std::move(s), e);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error(), Errc::unsupported);
    }
    {
        VirtqueueSetup s = base();
        s.used = ram->base() + ram->size() - 16;  // the used ring runs past the end of RAM
        e.clear();
        EXPECT_FALSE(dev().start_queue(VirtioNetDevice::kRxQueue, std::move(s), e));
        EXPECT_FALSE(e.empty());
    }
    {
        VirtqueueSetup s = base();
        s.size = 100;  // not a power of two
        e.clear();
        EXPECT_FALSE(dev().start_queue(VirtioNetDevice::kRxQueue, std::move(s), e));
    }
    EXPECT_FALSE(dev().queue_running(VirtioNetDevice::kRxQueue));
    dev().set_memory(nullptr);
    EXPECT_FALSE(dev().start_queue(VirtioNetDevice::kRxQueue, base(), e));
    dev().set_memory(&mem);
    ASSERT_TRUE(dev().start_queue(VirtioNetDevice::kRxQueue, base(), e)) << e;
    EXPECT_TRUE(dev().queue_running(VirtioNetDevice::kRxQueue));
    EXPECT_FALSE(dev().queue_running(VirtioNetDevice::kTxQueue));
    EXPECT_FALSE(dev().broken());
}

// ---- TX ---------------------------------------------------------------------------------------

struct TxCase {
    vt::TxShape shape;
    bool indirect;
};

class VirtioNetTxShapeTest : public VirtioNetTest, public ::testing::WithParamInterface<TxCase> {};

TEST_P(VirtioNetTxShapeTest, FramesReachTheSwitchByteExactWithTheirOffloadFields) {
    ASSERT_TRUE(setup(kAll));
    const TxCase c = GetParam();
    const std::size_t sizes[] = {14, 60, 1514, 4096, 4097, 9014, 12000};
    std::vector<std::pair<virtio::NetHdr, Bytes>> sent;
    for (std::size_t i = 0; i < std::size(sizes); ++i) {
        virtio::NetHdr h;
        if (i % 2 == 1) h = csum_hdr();
        Bytes f = make_frame(sizes[i], static_cast<std::uint8_t>(i + 1));
        ASSERT_TRUE(send(h, f, c.shape, c.indirect));
        sent.emplace_back(h, std::move(f));
    }
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        SCOPED_TRACE(sizes[i]);
        EXPECT_TRUE(got[i].bytes == sent[i].second);
        EXPECT_EQ(got[i].vnet, sent[i].first);
        EXPECT_EQ(got[i].in_port, kPortId);
    }
    EXPECT_GT(notifies, 0u);
    EXPECT_EQ(vc().tx_chains.get(), sent.size());
    EXPECT_EQ(vc().tx_bad_hdr.get(), 0u);
    EXPECT_EQ(vc().tx_bad_len.get(), 0u);
    EXPECT_EQ(pc().drop_wire.get(), 0u);
    EXPECT_FALSE(dev().broken());
    // Every chain came back (with length 0: nothing writable).
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
    EXPECT_EQ(drv->tx().stats().chains_used, sent.size());
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, VirtioNetTxShapeTest,
    ::testing::Values(TxCase{vt::TxShape::one, false}, TxCase{vt::TxShape::two, false},
                      TxCase{vt::TxShape::scatter, false}, TxCase{vt::TxShape::one, true},
                      TxCase{vt::TxShape::two, true}, TxCase{vt::TxShape::scatter, true}),
    [](const ::testing::TestParamInfo<TxCase>& i) {
        std::string n = i.param.shape == vt::TxShape::one   ? "One"
                        : i.param.shape == vt::TxShape::two ? "Two"
                                                            : "Scatter";
        return n + (i.param.indirect ? "Indirect" : "Direct");
    });

TEST_F(VirtioNetTest, TxGsoTcpV4IsForwardedWithHostTso4) {
    ASSERT_TRUE(setup(kAll));
    const L4Frame f = make_ipv4(true, 65535 - 40, virtio::kGsoTcpV4, 1448, 1);
    ASSERT_EQ(f.bytes.size(), 65549u);
    ASSERT_TRUE(send(f.hdr, f.bytes, vt::TxShape::scatter));
    ASSERT_TRUE(send(f.hdr, f.bytes, vt::TxShape::scatter, /*indirect=*/true));
    ASSERT_TRUE(send(f.hdr, f.bytes, vt::TxShape::one));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 3u);
    for (const SwFrame& s : got) {
        EXPECT_TRUE(s.bytes == f.bytes);
        EXPECT_EQ(s.vnet, f.hdr);
        EXPECT_EQ(s.vnet.gso_type, virtio::kGsoTcpV4);
        EXPECT_EQ(s.vnet.gso_size, 1448u);
    }
    EXPECT_EQ(vc().tx_bad_hdr.get(), 0u);
    EXPECT_EQ(pc().drop_wire.get(), 0u);
}

TEST_F(VirtioNetTest, TxGsoWithoutHostTso4IsRejectedAndTheChainReturned) {
    ASSERT_TRUE(setup(kAll & ~vfeat::host_tso4));
    const L4Frame g = make_ipv4(true, 4000, virtio::kGsoTcpV4, 1448, 2);
    const Bytes plain = make_frame(300, 3);
    ASSERT_TRUE(send(g.hdr, g.bytes));
    ASSERT_TRUE(send({}, plain));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == plain);
    EXPECT_EQ(vc().tx_bad_hdr.get(), 1u);
    EXPECT_EQ(pc().drop_wire.get(), 1u);
    EXPECT_EQ(vc().tx_chains.get(), 2u);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
    EXPECT_EQ(drv->tx().stats().chains_used, 2u);
    EXPECT_FALSE(dev().broken());
}

TEST_F(VirtioNetTest, TxNeedsCsumWithoutCsumIsRejected) {
    ASSERT_TRUE(setup(vfeat::version_1 | vfeat::mrg_rxbuf | vfeat::guest_csum));
    const Bytes f = make_frame(100, 4);
    ASSERT_TRUE(send(csum_hdr(), f));
    ASSERT_TRUE(send({}, f));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_FALSE(got[0].vnet.needs_csum());
    EXPECT_EQ(vc().tx_bad_hdr.get(), 1u);
    EXPECT_EQ(pc().drop_wire.get(), 1u);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
}

TEST_F(VirtioNetTest, TxHeadersAskingForWhatWasNotNegotiatedAreRejected) {
    ASSERT_TRUE(setup(kAll));
    const L4Frame tcp = make_ipv4(true, 3000, virtio::kGsoTcpV4, 1448, 5);
    virtio::NetHdr no_csum = tcp.hdr;  // GSO must come with a partial checksum
    no_csum.flags = 0;
    no_csum.csum_start = no_csum.csum_offset = 0;
    virtio::NetHdr ecn = tcp.hdr;  // HOST_ECN is not offered
    ecn.gso_type = static_cast<std::uint8_t>(virtio::kGsoTcpV4 | virtio::kGsoEcn);
    const L4Frame udp = make_ipv4(false, 3000, virtio::kGsoUdpL4, 1000, 6);  // USO not offered
    virtio::NetHdr ufo = udp.hdr;
    ufo.gso_type = virtio::kGsoUdp;
    virtio::NetHdr outside = csum_hdr();  // checksum field past the end of the frame
    outside.csum_start = 50;
    outside.csum_offset = 16;
    const Bytes small = make_frame(60, 7);

    ASSERT_TRUE(send(no_csum, tcp.bytes));
    ASSERT_TRUE(send(ecn, tcp.bytes));
    ASSERT_TRUE(send(udp.hdr, udp.bytes));
    ASSERT_TRUE(send(ufo, udp.bytes));
    ASSERT_TRUE(send(outside, small));
    ASSERT_TRUE(send(tcp.hdr, tcp.bytes));  // the one good frame
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == tcp.bytes);
    EXPECT_EQ(vc().tx_bad_hdr.get(), 5u);
    EXPECT_EQ(pc().drop_wire.get(), 5u);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
}

TEST_F(VirtioNetTest, TxChainShorterThanHeaderPlusEthernetIsCountedShort) {
    ASSERT_TRUE(setup(kAll));
    const Bytes b13(13, std::byte{0xab});
    ASSERT_TRUE(send({}, b13, vt::TxShape::two));
    ASSERT_TRUE(send({}, b13, vt::TxShape::one));
    ASSERT_TRUE(send({}, Bytes{}, vt::TxShape::two));  // the header alone
    const Bytes b14 = make_frame(14, 8);
    ASSERT_TRUE(send({}, b14, vt::TxShape::one));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == b14);
    EXPECT_EQ(vc().tx_bad_len.get(), 3u);
    EXPECT_EQ(pc().drop_wire.get(), 3u);
    EXPECT_EQ(vc().tx_bad_hdr.get(), 0u);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
}

TEST_F(VirtioNetTest, TxFrameBeyondTheWireLimitIsDropped) {
    ASSERT_TRUE(setup(kAll));
    const Bytes big = make_frame(65551, 9);  // one byte past 64 KiB + Ethernet header + 1
    ASSERT_TRUE(send({}, big, vt::TxShape::scatter));
    settle();
    EXPECT_TRUE(take_switch().empty());
    EXPECT_EQ(pc().drop_wire.get(), 1u);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);
}

TEST_F(VirtioNetTest, LegacyTenByteHeaderWithoutVersion1OrMrgRxbuf) {
    ASSERT_TRUE(setup(vfeat::csum | vfeat::guest_csum | vfeat::indirect_desc));
    ASSERT_EQ(drv->hdr_len(), virtio::kNetHdrLegacyLen);
    // TX: a 12-byte reading would shift the frame by two bytes and garble the header.
    const Bytes f = make_frame(100, 10);
    virtio::NetHdr h = csum_hdr();
    ASSERT_TRUE(send(h, f, vt::TxShape::two));
    ASSERT_TRUE(send(h, f, vt::TxShape::one, true));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 2u);
    for (const SwFrame& s : got) {
        EXPECT_TRUE(s.bytes == f);
        EXPECT_EQ(s.vnet, h);
    }
    // RX: header of 10 bytes, then the frame.
    ASSERT_TRUE(drv->post_rx(16, 2048)) << drv->error();
    settle();
    const Bytes r = make_frame(200, 11);
    virtio::NetHdr rh = csum_hdr();
    rh.csum_offset = 16;
    ASSERT_TRUE(push(r, rh));
    deliver();
    const auto in = recv_all();
    ASSERT_EQ(in.size(), 1u);
    EXPECT_TRUE(in[0].bytes == r);
    EXPECT_TRUE(in[0].hdr.needs_csum());
    EXPECT_EQ(in[0].hdr.csum_start, 14u);
    EXPECT_EQ(in[0].hdr.csum_offset, 16u);
}

TEST_F(VirtioNetTest, TxBurstsLongerThanOnePassAllArriveInOrder) {
    ASSERT_TRUE(setup(kAll));
    std::vector<Bytes> sent;
    for (std::size_t i = 0; i < 100; ++i) {
        sent.push_back(make_frame(60 + i * 13, static_cast<std::uint8_t>(i)));
        ASSERT_TRUE(send({}, sent.back()));
    }
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(got[i].bytes == sent[i]) << i;
}

// ---- RX ---------------------------------------------------------------------------------------

TEST_F(VirtioNetTest, RxSmallFrameTakesOneBuffer) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(64, 4096)) << drv->error();
    settle();
    const Bytes f = make_frame(60, 12);
    ASSERT_TRUE(push(f));
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == f);
    EXPECT_EQ(got[0].hdr.num_buffers, 1u);
    EXPECT_EQ(got[0].hdr.flags, 0u);
    EXPECT_FALSE(got[0].hdr.is_gso());
    EXPECT_EQ(vc().rx_chains.get(), 1u);
    EXPECT_EQ(drv->stats().rx_merged, 0u);
    EXPECT_TRUE(port->to_port().empty_approx());
}

TEST_F(VirtioNetTest, RxWithoutMrgRxbufWritesNumBuffersOne) {
    ASSERT_TRUE(setup(vfeat::version_1 | vfeat::guest_csum));
    ASSERT_TRUE(drv->post_rx(16, 2048)) << drv->error();
    settle();
    std::vector<Bytes> sent = {make_frame(60, 1), make_frame(1514, 2), make_frame(1000, 3)};
    for (const Bytes& f : sent)
        ASSERT_TRUE(push(f));
    deliver();
    const auto got = recv_all();  // the driver fails a num_buffers other than 1
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_TRUE(got[i].bytes == sent[i]) << i;
        EXPECT_EQ(got[i].hdr.num_buffers, 1u);
    }
}

TEST_F(VirtioNetTest, RxPartialChecksumReachesAGuestWithGuestCsum) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(16, 2048)) << drv->error();
    settle();
    const L4Frame f = make_ipv4(true, 500, virtio::kGsoNone, 0, 13);
    ASSERT_TRUE(push(f.bytes, f.hdr));
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == f.bytes);
    virtio::NetHdr want = f.hdr;
    want.num_buffers = 1;
    EXPECT_EQ(got[0].hdr, want);
}

TEST_F(VirtioNetTest, RxGsoFrameOf64KiBMergesAcross4KiBBuffers) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(port->caps().gso);
    ASSERT_TRUE(drv->post_rx(64, 4096)) << drv->error();
    settle();
    const L4Frame f = make_ipv4(true, 65535 - 40, virtio::kGsoTcpV4, 1448, 14);
    ASSERT_TRUE(push(f.bytes, f.hdr));
    const Bytes after = make_frame(80, 15);
    ASSERT_TRUE(push(after));
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), 2u);
    const std::size_t want_bufs = (kV1 + f.bytes.size() + 4095) / 4096;
    ASSERT_EQ(want_bufs, 17u);
    EXPECT_EQ(got[0].hdr.num_buffers, want_bufs);
    EXPECT_EQ(got[0].hdr.gso_type, virtio::kGsoTcpV4);
    EXPECT_EQ(got[0].hdr.gso_size, 1448u);
    EXPECT_EQ(got[0].hdr.hdr_len, f.hdr.hdr_len);
    EXPECT_EQ(got[0].hdr.csum_start, f.hdr.csum_start);
    EXPECT_EQ(got[0].hdr.csum_offset, f.hdr.csum_offset);
    EXPECT_TRUE(got[0].hdr.needs_csum());
    EXPECT_EQ(got[0].bytes.size(), f.bytes.size());
    EXPECT_TRUE(got[0].bytes == f.bytes);
    EXPECT_EQ(got[1].hdr.num_buffers, 1u);
    EXPECT_TRUE(got[1].bytes == after);
    EXPECT_EQ(vc().rx_chains.get(), want_bufs + 1);
    EXPECT_EQ(drv->stats().rx_merged, 1u);
    EXPECT_EQ(pc().segmented.get(), 0u);
}

TEST_F(VirtioNetTest, RxMultiDescriptorChainTakesAGsoFrameWholeWithoutMrgRxbuf) {
    // Linux's "big packets" receive layout without MRG_RXBUF: one chain of a header buffer and
    // page-sized pieces (§5.1.6.3.1: each chain must hold a whole frame).
    const std::uint64_t f =
        vfeat::version_1 | vfeat::guest_csum | vfeat::guest_tso4 | vfeat::guest_tso6;
    ASSERT_TRUE(setup(f));
    ASSERT_TRUE(port->caps().gso);
    vt::DriverQueue& rx = drv->rx();
    std::vector<vt::Buf> bufs;
    bufs.push_back(vt::Buf{ram->alloc(kV1, 64), static_cast<std::uint32_t>(kV1)});
    for (int i = 0; i < 17; ++i)
        bufs.push_back(vt::Buf{ram->alloc(4096, 4096), 4096});
    for (const vt::Buf& b : bufs)
        ASSERT_NE(b.gpa, 0u);
    auto head = rx.add_chain({}, bufs);
    ASSERT_TRUE(head);
    rx.publish();
    rx.kick(true);
    settle();
    const L4Frame g = make_ipv4(true, 65535 - 40, virtio::kGsoTcpV4, 1448, 16);
    ASSERT_TRUE(push(g.bytes, g.hdr));
    deliver();
    std::uint16_t h = 0;
    std::uint32_t len = 0;
    auto r = rx.poll_used(h, len);
    ASSERT_TRUE(r) << rx.error();
    ASSERT_TRUE(*r);
    EXPECT_EQ(h, *head);
    ASSERT_EQ(len, kV1 + g.bytes.size());
    Bytes all;
    std::size_t left = len;
    for (const vt::Buf& b : bufs) {
        const std::size_t n = std::min<std::size_t>(left, b.len);
        const std::byte* p = ram->at(b.gpa, n);
        all.insert(all.end(), p, p + n);
        left -= n;
    }
    auto hdr = virtio::NetHdr::parse(ByteView(all.data(), kV1), kV1);
    ASSERT_TRUE(hdr);
    EXPECT_EQ(hdr->num_buffers, 1u);
    EXPECT_EQ(hdr->gso_type, virtio::kGsoTcpV4);
    EXPECT_TRUE(Bytes(all.begin() + static_cast<std::ptrdiff_t>(kV1), all.end()) == g.bytes);
}

TEST_F(VirtioNetTest, RxFrameLargerThanABufferWithoutMrgRxbufIsDropped) {
    ASSERT_TRUE(setup(vfeat::version_1 | vfeat::guest_csum));
    ASSERT_TRUE(drv->post_rx(16, 1024)) << drv->error();
    settle();
    const Bytes big = make_frame(2000, 16), small = make_frame(100, 17);
    ASSERT_TRUE(push(big));
    ASSERT_TRUE(push(small));
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == small);
    EXPECT_EQ(vc().rx_too_big.get(), 1u);
    EXPECT_EQ(pc().drop_too_big.get(), 1u);
    EXPECT_TRUE(port->to_port().empty_approx());
    // The buffer the big frame was tried against went back: every buffer is posted again.
    EXPECT_EQ(drv->rx().in_flight(), 16u);
    EXPECT_EQ(vc().rx_chains.get(), 1u);
}

TEST_F(VirtioNetTest, RxMergedFrameLargerThanTheWholeQueueIsDroppedNotWaitedFor) {
    // 16 buffers of 1 KiB are all this guest can ever post: a 64 KiB frame can never fit, so it
    // must be dropped as rx_too_big (theory of operation), not wait at the head of the line.
    ASSERT_TRUE(setup(kAll, 16));
    ASSERT_TRUE(drv->post_rx(16, 1024)) << drv->error();
    settle();
    const L4Frame g = make_ipv4(true, 65535 - 40, virtio::kGsoTcpV4, 1448, 18);
    const Bytes small = make_frame(100, 19);
    ASSERT_TRUE(push(g.bytes, g.hdr));
    ASSERT_TRUE(push(small));
    deliver();
    std::vector<RxFrame> got;
    for (int i = 0; i < 2 && got.empty(); ++i) {
        got = recv_all();
        settle();
    }
    ASSERT_EQ(got.size(), 1u) << "the RX queue is stuck behind a frame that can never fit";
    EXPECT_TRUE(got[0].bytes == small);
    EXPECT_EQ(vc().rx_too_big.get(), 1u);
}

TEST_F(VirtioNetTest, RxFramesWaitForBuffersAndFlowOnceTheKickComes) {
    ASSERT_TRUE(setup(kAll));
    std::vector<Bytes> sent;
    for (std::uint8_t i = 0; i < 3; ++i) {
        sent.push_back(make_frame(100 + i, i));
        ASSERT_TRUE(push(sent.back()));
    }
    deliver();
    EXPECT_GE(vc().rx_no_buffers.get(), 1u);
    EXPECT_EQ(pc().drop_io.get(), 0u);
    EXPECT_EQ(vc().rx_too_big.get(), 0u);
    const std::uint64_t kicks = vc().kicks.get();
    ASSERT_TRUE(drv->post_rx(64, 2048)) << drv->error();  // posts and kicks
    settle();
    EXPECT_GT(vc().kicks.get(), kicks);
    const auto got = recv_all();
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(got[i].bytes == sent[i]) << i;
    EXPECT_TRUE(port->to_port().empty_approx());
}

TEST_F(VirtioNetTest, RxMergedFrameWaitingForMoreBuffersSleepsUntilTheKick) {
    // 20 buffers of 4 KiB, 10 of them filled by small frames the guest has not read yet: a 64 KiB
    // frame needs 17 and finds 10. The device must wait for the guest's kick (§2.7.10), not poll.
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(20, 4096)) << drv->error();
    settle();
    std::vector<Bytes> small;
    for (std::uint8_t i = 0; i < 10; ++i) {
        small.push_back(make_frame(100 + i, i));
        ASSERT_TRUE(push(small.back()));
    }
    deliver();
    const L4Frame g = make_ipv4(true, 65535 - 40, virtio::kGsoTcpV4, 1448, 27);
    ASSERT_TRUE(push(g.bytes, g.hdr));
    port->on_frames_from_switch();
    EXPECT_TRUE(settle()) << "the device busy-loops while the guest has too few buffers";
    EXPECT_GE(vc().rx_no_buffers.get(), 1u);
    // The guest reads the small frames and reposts their buffers (and kicks): now it fits.
    auto got = recv_all();
    ASSERT_EQ(got.size(), 10u);
    for (std::size_t i = 0; i < 10; ++i)
        EXPECT_TRUE(got[i].bytes == small[i]) << i;
    settle();
    got = recv_all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].hdr.num_buffers, 17u);
    EXPECT_TRUE(got[0].bytes == g.bytes);
    EXPECT_EQ(pc().drop_io.get() + pc().drop_too_big.get(), 0u);
}

TEST_F(VirtioNetTest, RxWithFewBuffersRefillsAsTheGuestReposts) {
    ASSERT_TRUE(setup(kNoEventIdx));
    ASSERT_TRUE(drv->post_rx(4, 2048)) << drv->error();
    settle();
    std::vector<Bytes> sent;
    for (std::uint8_t i = 0; i < 20; ++i) {
        sent.push_back(make_frame(64 + i, i));
        ASSERT_TRUE(push(sent.back()));
    }
    deliver();
    std::vector<RxFrame> got;
    for (int round = 0; round < 50 && got.size() < sent.size(); ++round) {
        for (auto& f : recv_all())
            got.push_back(std::move(f));
        settle();  // the reposts' kicks
    }
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(got[i].bytes == sent[i]) << i;
    EXPECT_GE(vc().rx_no_buffers.get(), 1u);
    EXPECT_EQ(pc().drop_io.get(), 0u);
}

TEST_F(VirtioNetTest, RxBurstsLongerThanOnePassAllArriveInOrder) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(256, 2048)) << drv->error();
    settle();
    std::vector<Bytes> sent;
    for (std::size_t i = 0; i < 200; ++i) {
        sent.push_back(make_frame(60 + i, static_cast<std::uint8_t>(i)));
        ASSERT_TRUE(push(sent.back()));
    }
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        EXPECT_TRUE(got[i].bytes == sent[i]) << i;
}

TEST_F(VirtioNetTest, RxQueueNotStartedDropsFramesWithoutLeakingBuffers) {
    ASSERT_TRUE(setup(kAll, 256, /*start_rx=*/false));
    const auto before = pool_free();
    for (std::uint8_t i = 0; i < 5; ++i)
        ASSERT_TRUE(push(make_frame(100, i)));
    ASSERT_TRUE(push(make_frame(9000, 9)));  // a large buffer too
    deliver();
    EXPECT_EQ(pc().drop_io.get(), 6u);
    EXPECT_TRUE(port->to_port().empty_approx());
    EXPECT_EQ(pool_free(), before);

    // The same once a running queue is stopped.
    ASSERT_TRUE(start(VirtioNetDevice::kRxQueue));
    settle();
    (void)dev().stop_queue(VirtioNetDevice::kRxQueue);
    ASSERT_TRUE(push(make_frame(100, 20)));
    deliver();
    EXPECT_EQ(pc().drop_io.get(), 7u);
    EXPECT_EQ(pool_free(), before);
}

TEST_F(VirtioNetTest, DestroyingTheDeviceReturnsFramesStillWaiting) {
    // A guest without TSO and without buffers: a GSO frame is segmented and its segments wait.
    ASSERT_TRUE(setup(kAll & ~(vfeat::guest_tso4 | vfeat::guest_tso6)));
    const auto before = pool_free();
    const L4Frame g = make_ipv4(true, 6000, virtio::kGsoTcpV4, 1448, 21);
    ASSERT_TRUE(push(g.bytes, g.hdr));
    ASSERT_TRUE(push(make_frame(100, 22)));
    deliver();
    EXPECT_EQ(pc().segmented.get(), 1u);
    EXPECT_GE(vc().rx_no_buffers.get(), 1u);
    port.reset();
    EXPECT_EQ(pool_free(), before);
}

// ---- segmentation in the device ---------------------------------------------------------------

TEST_F(VirtioNetTest, RxGsoTcpV4ToAGuestWithoutGuestTsoIsSegmented) {
    ASSERT_TRUE(setup(kAll & ~(vfeat::guest_tso4 | vfeat::guest_tso6)));
    EXPECT_FALSE(port->caps().gso);
    ASSERT_TRUE(drv->post_rx(64, 2048)) << drv->error();
    settle();
    const L4Frame g = make_ipv4(true, 4000, virtio::kGsoTcpV4, 1448, 23);
    ASSERT_TRUE(push(g.bytes, g.hdr));
    const Bytes after = make_frame(70, 24);
    ASSERT_TRUE(push(after));
    deliver();
    auto got = recv_all();
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(pc().segmented.get(), 1u);
    EXPECT_TRUE(got.back().bytes == after);
    got.pop_back();
    expect_segments(g, got, true);
    for (const RxFrame& s : got)
        EXPECT_EQ(s.hdr.num_buffers, 1u);
}

TEST_F(VirtioNetTest, RxUdpL4GsoIsSegmentedByTheDeviceEvenForATsoGuest) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(64, 2048)) << drv->error();
    settle();
    const L4Frame u = make_ipv4(false, 3000, virtio::kGsoUdpL4, 1000, 25);
    ASSERT_TRUE(push(u.bytes, u.hdr));
    deliver();
    const auto got = recv_all();
    EXPECT_EQ(pc().segmented.get(), 1u);
    expect_segments(u, got, false);
}

// ---- interrupts -------------------------------------------------------------------------------

TEST_F(VirtioNetTest, InterruptsFollowTheNoInterruptFlag) {
    ASSERT_TRUE(setup(kNoEventIdx));
    ASSERT_TRUE(drv->post_rx(64, 2048)) << drv->error();
    settle();
    (void)take_call(drv->rx());
    (void)take_call(drv->tx());
    const std::uint64_t irq0 = vc().interrupts.get();

    // TX work interrupts the TX queue, RX work the RX queue.
    ASSERT_TRUE(send({}, make_frame(60, 1)));
    settle();
    EXPECT_TRUE(take_call(drv->tx()));
    EXPECT_FALSE(take_call(drv->rx()));
    ASSERT_TRUE(push(make_frame(60, 2)));
    deliver();
    EXPECT_TRUE(take_call(drv->rx()));
    EXPECT_FALSE(take_call(drv->tx()));
    EXPECT_EQ(recv_all().size(), 1u);
    EXPECT_EQ(vc().interrupts.get(), irq0 + 2);

    // NO_INTERRUPT: the work is done, the interrupt is not sent.
    drv->rx().disable_call();
    drv->tx().disable_call();
    ASSERT_TRUE(push(make_frame(60, 3)));
    deliver();
    ASSERT_TRUE(send({}, make_frame(60, 4)));
    settle();
    EXPECT_FALSE(take_call(drv->rx()));
    EXPECT_FALSE(take_call(drv->tx()));
    EXPECT_EQ(vc().interrupts.get(), irq0 + 2);
    EXPECT_EQ(recv_all().size(), 1u);
    EXPECT_EQ(take_switch().size(), 2u);

    // Asked again: interrupted again.
    ASSERT_TRUE(drv->reclaim_tx());
    EXPECT_FALSE(drv->rx().enable_call());
    EXPECT_FALSE(drv->tx().enable_call());
    ASSERT_TRUE(push(make_frame(60, 5)));
    deliver();
    ASSERT_TRUE(send({}, make_frame(60, 6)));
    settle();
    EXPECT_TRUE(take_call(drv->rx()));
    EXPECT_TRUE(take_call(drv->tx()));
    EXPECT_EQ(vc().interrupts.get(), irq0 + 4);
}

TEST_F(VirtioNetTest, EventIdxInterruptsOnlyWhenUsedEventIsPassed) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(64, 2048)) << drv->error();
    settle();
    vt::DriverQueue& rx = drv->rx();
    (void)take_call(rx);
    auto one = [&](std::uint8_t seed) {
        EXPECT_TRUE(push(make_frame(60, seed)));
        deliver();
        return take_call(rx);
    };
    // The first publish interrupts (the device knows no earlier one to compare with).
    EXPECT_TRUE(one(1));
    EXPECT_EQ(recv_all().size(), 1u);
    // used_event is still 0 from the zeroed ring, passed long ago: no interrupt.
    EXPECT_FALSE(one(2));
    EXPECT_EQ(recv_all().size(), 1u);
    // The driver asks for the next used element.
    ASSERT_FALSE(rx.enable_call());
    EXPECT_TRUE(one(3));
    EXPECT_EQ(recv_all().size(), 1u);
    // used_event two ahead (used idx is 3): elements 3 and 4 stay quiet, element 5 interrupts.
    set_used_event(rx, 5);
    EXPECT_FALSE(one(4));
    EXPECT_FALSE(one(5));
    EXPECT_TRUE(one(6));
    EXPECT_EQ(recv_all().size(), 3u);
    // disable_call(): used_event put behind.
    rx.disable_call();
    EXPECT_FALSE(one(7));
    EXPECT_FALSE(one(8));
    EXPECT_EQ(recv_all().size(), 2u);

    // TX the same way.
    vt::DriverQueue& tx = drv->tx();
    (void)take_call(tx);
    auto sent = [&](std::uint8_t seed) {
        EXPECT_TRUE(send({}, make_frame(60, seed)));
        settle();
        return take_call(tx);
    };
    EXPECT_TRUE(sent(9));
    EXPECT_FALSE(sent(10));
    ASSERT_TRUE(drv->reclaim_tx());
    ASSERT_FALSE(tx.enable_call());
    EXPECT_TRUE(sent(11));
    EXPECT_EQ(take_switch().size(), 3u);
}

// ---- hostile drivers --------------------------------------------------------------------------

TEST_F(VirtioNetTest, TxDescriptorOutsideGuestMemoryBreaksTheQueue) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(16, 2048)) << drv->error();
    settle();
    const vt::Buf bad{0x1000, 64};  // below the guest's RAM
    ASSERT_TRUE(drv->tx().add_chain(std::span<const vt::Buf>(&bad, 1), {}));
    drv->tx().publish();
    drv->tx().kick(true);
    settle();
    EXPECT_TRUE(dev().broken());
    EXPECT_EQ(vc().queue_broken.get(), 1u);
    EXPECT_FALSE(dev().queue_running(VirtioNetDevice::kTxQueue));
    EXPECT_TRUE(dev().queue_running(VirtioNetDevice::kRxQueue));
    EXPECT_TRUE(take_switch().empty());

    // Later kicks are ignored; nothing is read from the broken ring.
    ASSERT_TRUE(send({}, make_frame(60, 1)));
    drv->tx().kick(true);
    settle();
    EXPECT_TRUE(take_switch().empty());
    EXPECT_EQ(vc().queue_broken.get(), 1u);

    // The RX queue is unaffected.
    const Bytes f = make_frame(90, 2);
    ASSERT_TRUE(push(f));
    deliver();
    const auto got = recv_all();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == f);
}

TEST_F(VirtioNetTest, TxDescriptorRunningPastTheEndOfMemoryBreaksTheQueue) {
    ASSERT_TRUE(setup(kAll));
    const vt::Buf hdr{ram->alloc(kV1), static_cast<std::uint32_t>(kV1)};
    const vt::Buf tail{ram->base() + ram->size() - 32, 64};
    const vt::Buf bufs[] = {hdr, tail};
    ASSERT_TRUE(drv->tx().add_chain(bufs, {}));
    drv->tx().publish();
    drv->tx().kick(true);
    settle();
    EXPECT_TRUE(dev().broken());
    EXPECT_EQ(vc().queue_broken.get(), 1u);
    EXPECT_TRUE(take_switch().empty());
}

TEST_F(VirtioNetTest, TxAvailableIndexRunningAheadBreaksTheQueue) {
    ASSERT_TRUE(setup(kAll, 64));
    drv->tx().poke_avail_idx(1000);
    drv->tx().kick(true);
    settle();
    EXPECT_TRUE(dev().broken());
    EXPECT_EQ(vc().queue_broken.get(), 1u);
    EXPECT_FALSE(dev().queue_running(VirtioNetDevice::kTxQueue));
}

TEST_F(VirtioNetTest, RxDescriptorOutsideGuestMemoryBreaksTheQueueAndDropsTheBacklog) {
    ASSERT_TRUE(setup(kAll));
    const auto before = pool_free();
    const vt::Buf bad{ram->base() + ram->size(), 4096};  // just past the end of RAM
    ASSERT_TRUE(drv->rx().add_chain({}, std::span<const vt::Buf>(&bad, 1)));
    drv->rx().publish();
    for (std::uint8_t i = 0; i < 3; ++i)
        ASSERT_TRUE(push(make_frame(100, i)));
    deliver();
    EXPECT_TRUE(dev().broken());
    EXPECT_EQ(vc().queue_broken.get(), 1u);
    EXPECT_FALSE(dev().queue_running(VirtioNetDevice::kRxQueue));
    EXPECT_EQ(pc().drop_io.get(), 3u);
    EXPECT_TRUE(port->to_port().empty_approx());
    ASSERT_TRUE(push(make_frame(100, 4)));
    deliver();
    EXPECT_EQ(pc().drop_io.get(), 4u);
    EXPECT_EQ(pool_free(), before);
    // TX still runs.
    ASSERT_TRUE(send({}, make_frame(60, 5)));
    settle();
    EXPECT_EQ(take_switch().size(), 1u);
}

TEST_F(VirtioNetTest, RxBufferSmallerThanTheHeaderNeverCarriesBytesFromOutsideTheFrame) {
    // §5.1.6.3.1: with MRG_RXBUF every buffer must hold at least the header. A driver that posts
    // a 4-byte first buffer breaks that; the device may drop the frame or skip the buffer, but
    // whatever it writes must be the header and the frame, nothing else.
    ASSERT_TRUE(setup(kAll));
    vt::DriverQueue& rx = drv->rx();
    std::vector<vt::Buf> posted;
    posted.push_back(vt::Buf{ram->alloc(64, 64), 4});
    for (int i = 0; i < 8; ++i)
        posted.push_back(vt::Buf{ram->alloc(2048, 64), 2048});
    std::vector<std::uint16_t> heads;
    for (const vt::Buf& b : posted) {
        auto h = rx.add_chain({}, std::span<const vt::Buf>(&b, 1));
        ASSERT_TRUE(h);
        heads.push_back(*h);
    }
    rx.publish();
    rx.kick(true);
    settle();
    const Bytes f = make_frame(1000, 26);
    ASSERT_TRUE(push(f));
    deliver();
    // What the device wrote, element by element.
    std::vector<Bytes> written;
    for (;;) {
        std::uint16_t h = 0;
        std::uint32_t len = 0;
        auto r = rx.poll_used(h, len);
        ASSERT_TRUE(r) << rx.error();
        if (!*r) break;
        std::size_t k = 0;
        while (k < heads.size() && heads[k] != h)
            ++k;
        ASSERT_LT(k, heads.size());
        const std::byte* p = ram->at(posted[k].gpa, len);
        written.emplace_back(p, p + len);
    }
    // Skip elements returned empty; the first non-empty one must start a whole header.
    std::size_t i = 0;
    while (i < written.size() && written[i].empty())
        ++i;
    if (i == written.size()) return;  // dropped: acceptable
    if (written[i].size() < kV1 && i + 1 < written.size() && written[i + 1].size() > 8 + 14) {
        EXPECT_FALSE(std::equal(f.begin(), f.begin() + 14, written[i + 1].begin() + 8))
            << "the next buffer starts with the 8 bytes in front of the frame in its pool buffer";
    }
    ASSERT_GE(written[i].size(), kV1)
        << "the device wrote a partial header into a " << written[i].size() << "-byte buffer";
    auto hdr = virtio::NetHdr::parse(ByteView(written[i].data(), kV1), kV1);
    ASSERT_TRUE(hdr);
    Bytes frame(written[i].begin() + static_cast<std::ptrdiff_t>(kV1), written[i].end());
    for (std::size_t k = 1; k < hdr->num_buffers && i + k < written.size(); ++k)
        frame.insert(frame.end(), written[i + k].begin(), written[i + k].end());
    EXPECT_TRUE(frame == f);
}

// ---- stop and resume --------------------------------------------------------------------------

TEST_F(VirtioNetTest, StopQueueReturnsTheResumeIndexAndARestartContinues) {
    ASSERT_TRUE(setup(kAll));
    ASSERT_TRUE(drv->post_rx(32, 2048)) << drv->error();
    settle();
    constexpr unsigned kTx = VirtioNetDevice::kTxQueue, kRx = VirtioNetDevice::kRxQueue;

    // TX: three chains consumed, two more made available but not yet seen by the device.
    std::vector<Bytes> sent;
    for (std::uint8_t i = 0; i < 5; ++i)
        sent.push_back(make_frame(100 + i, i));
    for (std::size_t i = 0; i < 3; ++i)
        ASSERT_TRUE(send({}, sent[i]));
    settle();
    ASSERT_EQ(take_switch().size(), 3u);
    for (std::size_t i = 3; i < 5; ++i)
        ASSERT_TRUE(send({}, sent[i]));
    EXPECT_EQ(dev().stop_queue(kTx), 3u);  // GET_VRING_BASE: the next chain to read
    EXPECT_FALSE(dev().queue_running(kTx));
    settle();
    EXPECT_TRUE(take_switch().empty());
    ASSERT_TRUE(start(kTx, 3));
    settle();
    auto got = take_switch();
    ASSERT_EQ(got.size(), 2u);  // exactly the two that waited, not the first three again
    EXPECT_TRUE(got[0].bytes == sent[3]);
    EXPECT_TRUE(got[1].bytes == sent[4]);
    ASSERT_TRUE(drv->reclaim_tx()) << drv->error();
    EXPECT_EQ(drv->tx().in_flight(), 0u);

    // RX: two frames in, stop, restart from the returned index, two more.
    std::vector<Bytes> rsent;
    for (std::uint8_t i = 0; i < 4; ++i)
        rsent.push_back(make_frame(200 + i, static_cast<std::uint8_t>(40 + i)));
    ASSERT_TRUE(push(rsent[0]));
    ASSERT_TRUE(push(rsent[1]));
    deliver();
    auto in = recv_all();
    ASSERT_EQ(in.size(), 2u);
    settle();
    const std::uint16_t rx_base = dev().stop_queue(kRx);
    EXPECT_EQ(rx_base, 2u);
    ASSERT_TRUE(start(kRx, rx_base));
    settle();
    ASSERT_TRUE(push(rsent[2]));
    ASSERT_TRUE(push(rsent[3]));
    deliver();
    for (auto& f : recv_all())
        in.push_back(std::move(f));
    ASSERT_EQ(in.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i)
        EXPECT_TRUE(in[i].bytes == rsent[i]) << i;
    EXPECT_FALSE(dev().broken());
}

TEST_F(VirtioNetTest, RestartAfterABreakClearsIt) {
    ASSERT_TRUE(setup(kAll, 64));
    drv->tx().poke_avail_idx(1000);
    drv->tx().kick(true);
    settle();
    ASSERT_TRUE(dev().broken());
    // The VMM resets the ring (here: puts the index back) and starts the queue again.
    drv->tx().poke_avail_idx(0);
    ASSERT_TRUE(start(VirtioNetDevice::kTxQueue, 0));
    EXPECT_FALSE(dev().broken());
    EXPECT_TRUE(dev().queue_running(VirtioNetDevice::kTxQueue));
    const Bytes f = make_frame(60, 1);
    ASSERT_TRUE(send({}, f));
    settle();
    const auto got = take_switch();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].bytes == f);
}

// ---- driver on its own thread -----------------------------------------------------------------

Bytes echo_frame(std::size_t i) {
    const std::size_t len = i % 50 == 7 ? 4000 : 60 + (i * 131) % 1455;
    return make_frame(len, static_cast<std::uint8_t>(i));
}

class VirtioNetThreadTest : public VirtioNetTest,
                            public ::testing::WithParamInterface<std::uint64_t> {};

// The guest sends frames from its own thread, the switch (here: an echo on the network thread)
// returns each one, the guest receives them back; kicks and interrupts are the only wake-ups.
TEST_P(VirtioNetThreadTest, EchoWithTheDriverOnAnotherThread) {
    ASSERT_TRUE(setup(GetParam()));
    ASSERT_TRUE(drv->post_rx(256, 4096)) << drv->error();
    settle();
    std::size_t echo_drops = 0;
    ingress_hook = [&] {
        PacketRef f;
        while (port->to_switch().try_pop(f)) {
            if (!port->to_port().try_push(std::move(f))) ++echo_drops;
        }
        port->on_frames_from_switch();
    };

    constexpr std::size_t kFrames = 5000, kWindow = 48;
    std::atomic<bool> done{false};
    std::string thread_error;
    std::vector<Bytes> received;
    std::size_t stalls = 0;
    std::string stall_at;
    std::thread guest([&] {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        std::vector<std::byte> buf;
        buf.reserve(vt::NetDriver::kMaxFrame);
        virtio::NetHdr h;
        std::size_t sent = 0;
        auto take = [&](vt::Millis timeout) -> int {
            auto r = drv->recv(h, buf, timeout);
            if (!r) {
                thread_error = "recv: " + drv->error();
                return -1;
            }
            if (!*r) return 0;
            received.push_back(buf);
            return 1;
        };
        while (received.size() < kFrames && std::chrono::steady_clock::now() < deadline) {
            int got = 0;
            while ((got = take(0ms)) == 1) {
            }
            if (got < 0 || received.size() == kFrames) break;
            if (sent < kFrames && sent - received.size() < kWindow) {
                const Bytes f = echo_frame(sent);
                const auto shape = static_cast<vt::TxShape>(sent % 3);
                const bool ind = drv->has(vfeat::indirect_desc) && sent % 4 == 1;
                if (auto r = drv->send({}, ByteView(f), shape, ind, 2000ms); !r) {
                    thread_error = "send: " + drv->error();
                    break;
                }
                ++sent;
                continue;
            }
            // Window full or all sent: sleep on the RX interrupt. A second's silence with frames
            // outstanding would be a lost kick or interrupt.
            got = take(1000ms);
            if (got < 0) break;
            if (got == 0) {
                ++stalls;
                stall_at =
                    "sent " + std::to_string(sent) + " received " + std::to_string(received.size());
            }
        }
        done = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!done.load() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(5ms);
    }
    guest.join();
    ingress_hook = nullptr;
    ASSERT_TRUE(thread_error.empty()) << thread_error;
    EXPECT_EQ(stalls, 0u) << "last at " << stall_at;
    EXPECT_EQ(echo_drops, 0u);
    ASSERT_EQ(received.size(), kFrames);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < kFrames && bad < 5; ++i) {
        if (received[i] != echo_frame(i)) {
            ADD_FAILURE() << "frame " << i << " differs";
            ++bad;
        }
    }
    EXPECT_FALSE(dev().broken());
    EXPECT_EQ(pc().drop_wire.get() + pc().drop_io.get() + pc().drop_no_buffer.get(), 0u);
    EXPECT_GT(vc().interrupts.get(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Features, VirtioNetThreadTest,
                         ::testing::Values(kAll, kNoEventIdx,
                                           vfeat::version_1 | vfeat::indirect_desc |
                                               vfeat::event_idx),
                         [](const ::testing::TestParamInfo<std::uint64_t>& i) {
                             return std::string(i.index == 0   ? "EventIdxMergeable"
                                                : i.index == 1 ? "FlagsMergeable"
                                                               : "EventIdxOneBuffer");
                         });

}  // namespace
}  // namespace slipway::guest
