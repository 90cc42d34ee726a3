// vhost-user:PATH attachment against a hand-written front end on its real socket: feature and
// protocol feature negotiation, REPLY_ACK, SET_MEM_TABLE with a memfd, vring setup and the ring
// state machine, GET_VRING_BASE, malformed messages, fd hygiene, reconnect, a second client.
#include "slipway/guest/vhost_user.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "guest_test_util.hpp"
#include "slipway/core/bytes.hpp"
#include "slipway/guest/virtio_net.hpp"

namespace slipway::guest::test {
namespace {

namespace vu = vhost_user;

void put32(Bytes& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}
void put64(Bytes& b, std::uint64_t v) {
    put32(b, static_cast<std::uint32_t>(v & 0xffffffffu));
    put32(b, static_cast<std::uint32_t>(v >> 32));
}
std::uint32_t get32(const Bytes& b, std::size_t off) {
    std::uint32_t v = 0;
    for (std::size_t i = 4; i-- > 0;)
        v = (v << 8) | static_cast<std::uint32_t>(b[off + i]);
    return v;
}
std::uint64_t get64(const Bytes& b, std::size_t off) {
    return get32(b, off) | (static_cast<std::uint64_t>(get32(b, off + 4)) << 32);
}
Bytes u64(std::uint64_t v) {
    Bytes b;
    put64(b, v);
    return b;
}
Bytes vring_state(std::uint32_t index, std::uint32_t num) {
    Bytes b;
    put32(b, index);
    put32(b, num);
    return b;
}

// Open fds of this process (the attachment runs in it too, so a leaked fd shows up here).
std::size_t open_fds() {
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr) return 0;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    return n;
}

struct Reply {
    std::uint32_t request = 0, flags = 0;
    Bytes payload;
};

// A minimal vhost-user front end: sends messages with fds, reads replies while running the loop.
class FrontEnd {
  public:
    explicit FrontEnd(const std::string& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, path.data(), path.size());
        connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0;
    }
    ~FrontEnd() { close(); }
    FrontEnd(const FrontEnd&) = delete;
    FrontEnd& operator=(const FrontEnd&) = delete;

    [[nodiscard]] bool connected() const { return connected_; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    // Raw bytes with optional fds attached to the first byte.
    bool send_raw(const Bytes& b, const std::vector<int>& fds = {}) {
        iovec iov{const_cast<std::byte*>(b.data()), b.size()};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 16)];
        if (!fds.empty()) {
            mh.msg_control = cbuf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        }
        return ::sendmsg(fd_, &mh, MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
    }
    bool send(std::uint32_t request, const Bytes& payload = {}, const std::vector<int>& fds = {},
              std::uint32_t flags = vu::kVersion) {
        Bytes m(vu::kHeaderSize + payload.size());
        const std::size_t n = vu::emit_message(request, flags, payload, m);
        if (n != m.size()) return false;
        return send_raw(m, fds);
    }
    // Reads what is there without blocking; false once the peer closed the connection.
    bool poll_read() { return read_available(fd_, in_); }
    std::optional<Reply> take_reply() {
        if (in_.size() < vu::kHeaderSize) return std::nullopt;
        const std::uint32_t size = get32(in_, 8);
        if (in_.size() < vu::kHeaderSize + size) return std::nullopt;
        Reply r;
        r.request = get32(in_, 0);
        r.flags = get32(in_, 4);
        r.payload.assign(in_.begin() + vu::kHeaderSize,
                         in_.begin() + static_cast<std::ptrdiff_t>(vu::kHeaderSize + size));
        in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(vu::kHeaderSize + size));
        return r;
    }
    std::optional<Reply> wait_reply(Env& env) {
        std::optional<Reply> r;
        env.run_until([&] {
            poll_read();
            r = take_reply();
            return r.has_value();
        });
        return r;
    }
    // Sends and waits for the reply (GET_* requests, or anything with NEED_REPLY).
    std::optional<Reply> call(Env& env, std::uint32_t request, const Bytes& payload = {},
                              const std::vector<int>& fds = {},
                              std::uint32_t flags = vu::kVersion) {
        if (!send(request, payload, fds, flags)) return std::nullopt;
        return wait_reply(env);
    }
    // The u64 ack of a request sent with NEED_REPLY (nullopt if none came).
    std::optional<std::uint64_t> ack(Env& env, std::uint32_t request, const Bytes& payload = {},
                                     const std::vector<int>& fds = {}) {
        auto r = call(env, request, payload, fds, vu::kVersion | vu::kFlagNeedReply);
        if (!r || r->request != request || r->payload.size() != 8) return std::nullopt;
        return get64(r->payload, 0);
    }
    bool wait_closed(Env& env) {
        return env.run_until([&] { return !poll_read(); });
    }
    [[nodiscard]] std::size_t buffered() const { return in_.size(); }

  private:
    int fd_ = -1;
    bool connected_ = false;
    Bytes in_;
};

// Guest memory: a memfd mapped here as the test's "VMM", at guest physical kGpa and VMM virtual
// kUva (distinct, so a mix-up of the two address spaces fails the test). Ring layout of each
// queue q: desc at 0x1000 + q * 0x3000, avail at +0x1000, used at +0x2000; buffers from 0x10000.
constexpr std::uint64_t kMemSize = 1 << 20;
constexpr std::uint64_t kGpa = 0x100000000ull;
constexpr std::uint64_t kUva = 0x7f0000000000ull;
constexpr std::uint32_t kQueueSize = 256;
constexpr std::uint16_t kBase = 5;

std::uint64_t desc_off(unsigned q) {
    return 0x1000 + q * 0x3000ull;
}
std::uint64_t avail_off(unsigned q) {
    return desc_off(q) + 0x1000;
}
std::uint64_t used_off(unsigned q) {
    return desc_off(q) + 0x2000;
}

class GuestRam {
  public:
    GuestRam() {
        fd_ = ::memfd_create("slw-vhost-test", MFD_CLOEXEC);
        if (fd_ >= 0 && ::ftruncate(fd_, static_cast<off_t>(kMemSize)) == 0) {
            void* p = ::mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
            if (p != MAP_FAILED) mem_ = static_cast<std::byte*>(p);
        }
        // Both available rings start where SET_VRING_BASE says the device resumes.
        for (unsigned q = 0; q < 2; ++q)
            store_le16(mem_ + avail_off(q) + 2, kBase);
    }
    ~GuestRam() {
        if (mem_ != nullptr) ::munmap(mem_, kMemSize);
        if (fd_ >= 0) ::close(fd_);
    }
    GuestRam(const GuestRam&) = delete;
    GuestRam& operator=(const GuestRam&) = delete;
    [[nodiscard]] bool ok() const { return mem_ != nullptr; }
    [[nodiscard]] int fd() const { return fd_; }
    [[nodiscard]] std::byte* at(std::uint64_t off) const { return mem_ + off; }

    static Bytes table(std::uint64_t size = kMemSize, std::uint64_t gpa = kGpa,
                       std::uint64_t uva = kUva, std::uint64_t offset = 0) {
        Bytes b;
        put32(b, 1);
        put32(b, 0);
        put64(b, gpa);
        put64(b, size);
        put64(b, uva);
        put64(b, offset);
        return b;
    }

  private:
    int fd_ = -1;
    std::byte* mem_ = nullptr;
};

struct EventFd {
    EventFd() : fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
    ~EventFd() {
        if (fd >= 0) ::close(fd);
    }
    EventFd(const EventFd&) = delete;
    EventFd& operator=(const EventFd&) = delete;
    int fd;
};

constexpr std::uint64_t kGuestFeatures = vfeat::version_1 | vfeat::csum | vfeat::guest_csum |
                                         vfeat::guest_tso4 | vfeat::guest_tso6 | vfeat::mrg_rxbuf |
                                         vu::kProtocolFeaturesBit;

class VhostUserTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(dir.ok());
        ASSERT_TRUE(ram.ok());
        path = dir.file("vhost.sock");
        att = make_started(env, "vhost-user:" + path);
        ASSERT_NE(att, nullptr);
    }
    bool wait_state(const std::string& s) {
        return env.run_until([&] { return att->state() == s; });
    }
    // What QEMU sends before the guest driver runs: features, protocol features, owner, memory.
    void negotiate(FrontEnd& fe, std::uint64_t protocol = vu::pfeat::reply_ack) {
        auto f = fe.call(env, vu::req::get_features);
        ASSERT_TRUE(f.has_value());
        if (protocol != 0) {
            auto p = fe.call(env, vu::req::get_protocol_features);
            ASSERT_TRUE(p.has_value());
            ASSERT_TRUE(fe.send(vu::req::set_protocol_features, u64(protocol)));
        }
        ASSERT_TRUE(fe.send(vu::req::set_owner));
        const std::uint64_t feats =
            protocol != 0 ? kGuestFeatures : kGuestFeatures & ~vu::kProtocolFeaturesBit;
        ASSERT_TRUE(fe.send(vu::req::set_features, u64(feats)));
        ASSERT_TRUE(fe.send(vu::req::set_mem_table, GuestRam::table(), {ram.fd()}));
    }
    void setup_ring(FrontEnd& fe, unsigned q, EventFd& kick_fd, EventFd& call_fd) {
        ASSERT_TRUE(fe.send(vu::req::set_vring_num, vring_state(q, kQueueSize)));
        ASSERT_TRUE(fe.send(vu::req::set_vring_base, vring_state(q, kBase)));
        Bytes a;
        put32(a, q);
        put32(a, 0);
        put64(a, kUva + desc_off(q));
        put64(a, kUva + used_off(q));
        put64(a, kUva + avail_off(q));
        put64(a, 0);
        ASSERT_TRUE(fe.send(vu::req::set_vring_addr, a));
        ASSERT_TRUE(fe.send(vu::req::set_vring_kick, u64(q), {kick_fd.fd}));
        ASSERT_TRUE(fe.send(vu::req::set_vring_call, u64(q), {call_fd.fd}));
    }
    void bring_up(FrontEnd& fe) {
        negotiate(fe);
        setup_ring(fe, 0, kick[0], call[0]);
        setup_ring(fe, 1, kick[1], call[1]);
        ASSERT_TRUE(fe.send(vu::req::set_vring_enable, vring_state(0, 1)));
        ASSERT_TRUE(fe.send(vu::req::set_vring_enable, vring_state(1, 1)));
        ASSERT_TRUE(wait_state("up"));
    }
    // The guest sends one frame on the TX ring: a 12-byte virtio-net header and `frame`, in one
    // descriptor at a guest physical address, published at avail slot `slot`.
    void guest_tx(const Bytes& frame, std::uint16_t slot) {
        const unsigned q = VirtioNetDevice::kTxQueue;
        const std::uint64_t buf = 0x10000 + slot * 0x1000ull;
        std::memset(ram.at(buf), 0, 12);
        std::memcpy(ram.at(buf + 12), frame.data(), frame.size());
        std::byte* d = ram.at(desc_off(q) + 16ull * (slot % kQueueSize));
        Bytes desc;
        put64(desc, kGpa + buf);
        put32(desc, static_cast<std::uint32_t>(12 + frame.size()));
        put32(desc, 0);  // flags 0, next 0
        std::memcpy(d, desc.data(), desc.size());
        store_le16(ram.at(avail_off(q) + 4 + 2ull * (slot % kQueueSize)),
                   static_cast<std::uint16_t>(slot % kQueueSize));
        __atomic_store_n(reinterpret_cast<std::uint16_t*>(ram.at(avail_off(q) + 2)),
                         static_cast<std::uint16_t>(slot + 1), __ATOMIC_RELEASE);
        const std::uint64_t one = 1;
        ASSERT_EQ(::write(kick[q].fd, &one, sizeof one), 8);
    }
    void expect_rejected(const std::string& what, const std::function<void(FrontEnd&)>& send_bad) {
        SCOPED_TRACE(what);
        const std::uint64_t before = att->counters().drop_wire.get();
        {
            FrontEnd fe(path);
            ASSERT_TRUE(fe.connected());
            ASSERT_TRUE(wait_state("connected"));
            send_bad(fe);
            EXPECT_TRUE(fe.wait_closed(env));
        }
        EXPECT_TRUE(wait_state("listening"));
        EXPECT_EQ(att->counters().drop_wire.get(), before + 1);
    }

    TempDir dir;
    Env env;
    GuestRam ram;
    EventFd kick[2], call[2];
    std::string path;
    std::unique_ptr<Attachment> att;
};

TEST(VhostUserSpec, ParsesAndRejects) {
    Env env;
    std::string err;
    auto a = make_attachment("vhost-user:/tmp/vm,1.sock", env.ctx, err);
    ASSERT_TRUE(a.has_value()) << err;
    EXPECT_EQ((*a)->spec(), "vhost-user:/tmp/vm,1.sock");
    EXPECT_EQ((*a)->state(), "stopped");
    EXPECT_EQ((*a)->kind(), PortKind::guest);
    // Until a driver negotiates offloads, the port takes plain MTU-sized frames.
    EXPECT_FALSE((*a)->caps().gso);
    EXPECT_FALSE((*a)->caps().partial_csum);
    EXPECT_EQ((*a)->caps().max_frame, 1514u);
    const std::string bad[] = {"vhost-user:", "vhost-user:/tmp/" + std::string(200, 'a'),
                               "vhostuser:/tmp/x"};
    for (const std::string& s : bad) {
        std::string e;
        auto b = make_attachment(s, env.ctx, e);
        EXPECT_FALSE(b.has_value()) << s;
        EXPECT_FALSE(e.empty());
        EXPECT_EQ(e.find('\n'), std::string::npos);
    }
    std::string e;
    (void)make_attachment("tap:/x", env.ctx, e);
    EXPECT_NE(e.find("vhost-user"), std::string::npos) << e;
}

TEST(VhostUserCodec, HeaderRoundTripAndLimits) {
    std::array<std::byte, 64> buf{};
    const Bytes payload = u64(0x1122334455667788ull);
    ASSERT_EQ(
        vu::emit_message(vu::req::set_features, vu::kVersion | vu::kFlagNeedReply, payload, buf),
        20u);
    auto h = vu::parse_header(ByteView(buf.data(), 12));
    ASSERT_TRUE(h.has_value());
    EXPECT_EQ(h->request, vu::req::set_features);
    EXPECT_EQ(h->flags, vu::kVersion | vu::kFlagNeedReply);
    EXPECT_EQ(h->size, 8u);
    EXPECT_EQ(static_cast<std::uint8_t>(buf[12]), 0x88);  // little-endian payload untouched

    EXPECT_EQ(vu::parse_header(ByteView(buf.data(), 11)).error(), Errc::truncated);
    vu::emit_header(vu::MsgHeader{1, 2, 0}, buf.data());
    EXPECT_EQ(vu::parse_header(ByteView(buf.data(), 12)).error(), Errc::bad_version);
    vu::emit_header(vu::MsgHeader{1, 0, 0}, buf.data());
    EXPECT_EQ(vu::parse_header(ByteView(buf.data(), 12)).error(), Errc::bad_version);
    vu::emit_header(vu::MsgHeader{1, 1, vu::kMaxPayload + 1}, buf.data());
    EXPECT_EQ(vu::parse_header(ByteView(buf.data(), 12)).error(), Errc::too_large);
    vu::emit_header(vu::MsgHeader{1, 1, vu::kMaxPayload}, buf.data());
    EXPECT_TRUE(vu::parse_header(ByteView(buf.data(), 12)).has_value());
    EXPECT_EQ(vu::emit_message(1, 1, payload, std::span<std::byte>(buf.data(), 19)), 0u);
    EXPECT_STREQ(vu::request_name(vu::req::get_vring_base), "GET_VRING_BASE");
    EXPECT_STREQ(vu::request_name(1000), "UNKNOWN");
}

TEST_F(VhostUserTest, ListensOnAPrivateSocket) {
    EXPECT_EQ(att->state(), "listening");
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(VhostUserTest, NegotiatesFeaturesAndProtocolFeatures) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    ASSERT_TRUE(wait_state("connected"));

    auto f = fe.call(env, vu::req::get_features);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->request, vu::req::get_features);
    EXPECT_EQ(f->flags, vu::kVersion | vu::kFlagReply);
    ASSERT_EQ(f->payload.size(), 8u);
    EXPECT_EQ(get64(f->payload, 0), kOfferedFeatures | vu::kProtocolFeaturesBit);

    auto p = fe.call(env, vu::req::get_protocol_features);
    ASSERT_TRUE(p.has_value());
    ASSERT_EQ(p->payload.size(), 8u);
    const std::uint64_t proto = get64(p->payload, 0);
    EXPECT_EQ(proto, vu::kOfferedProtocolFeatures);
    EXPECT_NE(proto & vu::pfeat::reply_ack, 0u);
    EXPECT_NE(proto & vu::pfeat::net_mtu, 0u);
    EXPECT_EQ(proto & vu::pfeat::mq, 0u);
    EXPECT_EQ(proto & vu::pfeat::config, 0u);

    // Without REPLY_ACK negotiated, NEED_REPLY asks for nothing.
    ASSERT_TRUE(fe.send(vu::req::set_owner, {}, {}, vu::kVersion | vu::kFlagNeedReply));
    env.run_for(20ms);
    fe.poll_read();
    EXPECT_EQ(fe.buffered(), 0u);

    ASSERT_TRUE(fe.send(vu::req::set_protocol_features,
                        u64(vu::pfeat::reply_ack | vu::pfeat::net_mtu | vu::pfeat::status)));
    // The port's capabilities follow what the driver negotiated.
    EXPECT_EQ(fe.ack(env, vu::req::set_features, u64(kGuestFeatures)), 0u);
    EXPECT_TRUE(att->caps().gso);
    EXPECT_TRUE(att->caps().partial_csum);
    EXPECT_EQ(fe.ack(env, vu::req::set_features, u64(vfeat::version_1 | vu::kProtocolFeaturesBit)),
              0u);
    EXPECT_FALSE(att->caps().gso);
    EXPECT_FALSE(att->caps().partial_csum);

    auto q = fe.call(env, vu::req::get_queue_num);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(get64(q->payload, 0), 1u);
    EXPECT_EQ(att->state(), "connected");
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, ReplyAckSaysWhatWorked) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    ASSERT_TRUE(fe.send(vu::req::set_protocol_features,
                        u64(vu::pfeat::reply_ack | vu::pfeat::net_mtu | vu::pfeat::status)));
    EXPECT_EQ(fe.ack(env, vu::req::set_owner), 0u);
    EXPECT_EQ(fe.ack(env, vu::req::net_set_mtu, u64(1500)), 0u);
    EXPECT_EQ(fe.ack(env, vu::req::net_set_mtu, u64(1280)), 0u);
    EXPECT_NE(fe.ack(env, vu::req::net_set_mtu, u64(1501)), 0u);  // above the network's MTU
    EXPECT_NE(fe.ack(env, vu::req::net_set_mtu, u64(60)), 0u);
    EXPECT_EQ(fe.ack(env, vu::req::send_rarp, u64(0x0000020000000001ull)), 0u);
    // Polling mode instead of a kick fd is refused, the session goes on.
    EXPECT_NE(fe.ack(env, vu::req::set_vring_kick, u64(0 | vu::kVringNoFd)), 0u);
    // A call fd may be absent (the front end polls the used ring).
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_call, u64(1 | vu::kVringNoFd)), 0u);
    // Ring sizes: a power of two up to 32768.
    EXPECT_NE(fe.ack(env, vu::req::set_vring_num, vring_state(0, 100)), 0u);
    EXPECT_NE(fe.ack(env, vu::req::set_vring_num, vring_state(0, 65536)), 0u);
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_num, vring_state(0, 1024)), 0u);
    // Unsupported or unknown requests are refused without ending the session.
    EXPECT_NE(fe.ack(env, 99), 0u);
    EXPECT_NE(fe.ack(env, vu::req::set_vring_endian, vring_state(0, 0)), 0u);
    // Device status (STATUS protocol feature).
    EXPECT_EQ(fe.ack(env, vu::req::set_status, u64(0x0f)), 0u);
    auto s = fe.call(env, vu::req::get_status);
    ASSERT_TRUE(s.has_value());
    EXPECT_EQ(get64(s->payload, 0), 0x0fu);
    // A request with a reply of its own answers with it, not with an ack.
    auto f = fe.call(env, vu::req::get_features, {}, {}, vu::kVersion | vu::kFlagNeedReply);
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->request, vu::req::get_features);
    EXPECT_EQ(get64(f->payload, 0), kOfferedFeatures | vu::kProtocolFeaturesBit);
    env.run_for(10ms);
    fe.poll_read();
    EXPECT_EQ(fe.buffered(), 0u);
    EXPECT_EQ(att->state(), "connected");
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, RingsRunOnceKickedAndEnabled) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    negotiate(fe);
    setup_ring(fe, 0, kick[0], call[0]);
    setup_ring(fe, 1, kick[1], call[1]);
    // With VHOST_USER_F_PROTOCOL_FEATURES the rings wait for SET_VRING_ENABLE.
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_enable, vring_state(0, 1)), 0u);
    EXPECT_EQ(att->state(), "connected");
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_enable, vring_state(1, 1)), 0u);
    EXPECT_EQ(att->state(), "up");
    // Disable and enable again.
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_enable, vring_state(1, 0)), 0u);
    EXPECT_EQ(att->state(), "connected");
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_enable, vring_state(1, 1)), 0u);
    EXPECT_EQ(att->state(), "up");

    // GET_VRING_BASE stops the ring and says where it stopped.
    auto b = fe.call(env, vu::req::get_vring_base, vring_state(1, 0));
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->request, vu::req::get_vring_base);
    EXPECT_EQ(b->flags, vu::kVersion | vu::kFlagReply);
    ASSERT_EQ(b->payload.size(), 8u);
    EXPECT_EQ(get32(b->payload, 0), 1u);
    EXPECT_EQ(get32(b->payload, 4), kBase);
    EXPECT_EQ(att->state(), "connected");
    // A new kick restarts it.
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_kick, u64(1), {kick[1].fd}), 0u);
    EXPECT_EQ(att->state(), "up");
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, WithoutProtocolFeaturesRingsStartEnabled) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    negotiate(fe, 0);
    setup_ring(fe, 0, kick[0], call[0]);
    setup_ring(fe, 1, kick[1], call[1]);
    EXPECT_TRUE(wait_state("up"));
}

TEST_F(VhostUserTest, GuestTxReachesTheSwitchAndResumesAfterRestart) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    bring_up(fe);
    const Bytes f1 = make_frame(60, 1);
    guest_tx(f1, kBase);
    std::vector<Bytes> got;
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(*att))
            got.push_back(std::move(f));
        return !got.empty();
    }));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], f1);

    // Stop TX: it reports the index after the chain it consumed; restart from there.
    auto b = fe.call(env, vu::req::get_vring_base, vring_state(1, 0));
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(get32(b->payload, 4), kBase + 1u);
    ASSERT_TRUE(fe.send(vu::req::set_vring_base, vring_state(1, kBase + 1)));
    EXPECT_EQ(fe.ack(env, vu::req::set_vring_kick, u64(1), {kick[1].fd}), 0u);
    ASSERT_EQ(att->state(), "up");

    // Replacing the memory table while running keeps the rings going.
    EXPECT_EQ(fe.ack(env, vu::req::set_mem_table, GuestRam::table(), {ram.fd()}), 0u);
    EXPECT_EQ(att->state(), "up");
    const Bytes f2 = make_frame(100, 2);
    guest_tx(f2, kBase + 1);
    got.clear();
    ASSERT_TRUE(env.run_until([&] {
        for (auto& f : drain_to_switch(*att))
            got.push_back(std::move(f));
        return !got.empty();
    }));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], f2);
}

TEST_F(VhostUserTest, RingOutsideMemoryIsRefused) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    negotiate(fe);
    ASSERT_TRUE(fe.send(vu::req::set_vring_num, vring_state(0, kQueueSize)));
    Bytes a;
    put32(a, 0);
    put32(a, 0);
    put64(a, kUva + kMemSize - 16);  // the descriptor table runs past the region
    put64(a, kUva + used_off(0));
    put64(a, kUva + avail_off(0));
    put64(a, 0);
    ASSERT_TRUE(fe.send(vu::req::set_vring_addr, a));
    ASSERT_TRUE(fe.send(vu::req::set_vring_enable, vring_state(0, 1)));
    EXPECT_NE(fe.ack(env, vu::req::set_vring_kick, u64(0), {kick[0].fd}), 0u);
    EXPECT_EQ(att->state(), "connected");
    // Guest physical addresses are not VMM addresses: the ring is refused too.
    Bytes g;
    put32(g, 0);
    put32(g, 0);
    put64(g, kGpa + desc_off(0));
    put64(g, kGpa + used_off(0));
    put64(g, kGpa + avail_off(0));
    put64(g, 0);
    EXPECT_NE(fe.ack(env, vu::req::set_vring_addr, g), 0u);
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, ResetOwnerStopsTheRings) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    bring_up(fe);
    EXPECT_EQ(fe.ack(env, vu::req::reset_owner), 0u);
    EXPECT_EQ(att->state(), "connected");
    EXPECT_FALSE(att->caps().gso);
    // REPLY_ACK survives the reset (the ack above came after it, and this one too).
    EXPECT_EQ(fe.ack(env, vu::req::set_owner), 0u);
    // The front end sets the device up again.
    bring_up(fe);
}

TEST_F(VhostUserTest, MessageSplitAcrossWritesIsReassembled) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    ASSERT_TRUE(wait_state("connected"));
    Bytes m(vu::kHeaderSize + 8);
    ASSERT_EQ(vu::emit_message(vu::req::set_protocol_features, vu::kVersion,
                               u64(vu::pfeat::reply_ack), m),
              m.size());
    Bytes get(vu::kHeaderSize);
    ASSERT_EQ(vu::emit_message(vu::req::get_features, vu::kVersion, {}, get), get.size());
    m.insert(m.end(), get.begin(), get.end());
    // Byte by byte for the first header, then the rest in two uneven pieces.
    for (std::size_t i = 0; i < 7; ++i) {
        ASSERT_TRUE(fe.send_raw(Bytes{m[i]}));
        env.run_for(2ms);
    }
    ASSERT_TRUE(fe.send_raw(Bytes(m.begin() + 7, m.begin() + 15)));
    env.run_for(5ms);
    fe.poll_read();
    EXPECT_EQ(fe.buffered(), 0u);
    ASSERT_TRUE(fe.send_raw(Bytes(m.begin() + 15, m.end())));
    auto r = fe.wait_reply(env);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->request, vu::req::get_features);
    // Two messages in one write, the second with NEED_REPLY now that REPLY_ACK is on.
    Bytes two(2 * vu::kHeaderSize);
    ASSERT_EQ(vu::emit_message(vu::req::set_owner, vu::kVersion | vu::kFlagNeedReply, {},
                               std::span<std::byte>(two.data(), vu::kHeaderSize)),
              vu::kHeaderSize);
    ASSERT_EQ(vu::emit_message(vu::req::get_queue_num, vu::kVersion, {},
                               std::span<std::byte>(two.data() + vu::kHeaderSize, vu::kHeaderSize)),
              vu::kHeaderSize);
    ASSERT_TRUE(fe.send_raw(two));
    auto a1 = fe.wait_reply(env);
    auto a2 = fe.wait_reply(env);
    ASSERT_TRUE(a1.has_value());
    ASSERT_TRUE(a2.has_value());
    EXPECT_EQ(a1->request, vu::req::set_owner);
    EXPECT_EQ(get64(a1->payload, 0), 0u);
    EXPECT_EQ(a2->request, vu::req::get_queue_num);
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, MalformedMessagesCloseTheConnection) {
    using Fn = std::function<void(FrontEnd&)>;
    EventFd e1;
    const std::pair<const char*, Fn> cases[] = {
        {"version 0", [](FrontEnd& fe) { fe.send(vu::req::get_features, {}, {}, 0); }},
        {"version 2", [](FrontEnd& fe) { fe.send(vu::req::get_features, {}, {}, 2); }},
        {"sent as a reply",
         [](FrontEnd& fe) {
             fe.send(vu::req::get_features, {}, {}, vu::kVersion | vu::kFlagReply);
         }},
        {"size above the limit",
         [](FrontEnd& fe) {
             Bytes h(vu::kHeaderSize);
             vu::emit_header(vu::MsgHeader{vu::req::set_owner, vu::kVersion, 1u << 20}, h.data());
             fe.send_raw(h);
         }},
        {"GET_FEATURES with a payload",
         [](FrontEnd& fe) { fe.send(vu::req::get_features, u64(0)); }},
        {"SET_FEATURES with 4 bytes",
         [](FrontEnd& fe) { fe.send(vu::req::set_features, Bytes(4)); }},
        {"feature not offered (MQ)",
         [](FrontEnd& fe) { fe.send(vu::req::set_features, u64(vfeat::version_1 | vfeat::mq)); }},
        {"protocol feature not offered (CONFIG)",
         [](FrontEnd& fe) { fe.send(vu::req::set_protocol_features, u64(vu::pfeat::config)); }},
        {"queue index 2",
         [](FrontEnd& fe) { fe.send(vu::req::set_vring_num, vring_state(2, 256)); }},
        {"kick for queue 5",
         [&](FrontEnd& fe) { fe.send(vu::req::set_vring_kick, u64(5), {e1.fd}); }},
        {"kick without fd or no-fd flag",
         [](FrontEnd& fe) { fe.send(vu::req::set_vring_kick, u64(0)); }},
        {"kick with an fd and the no-fd flag",
         [&](FrontEnd& fe) { fe.send(vu::req::set_vring_kick, u64(vu::kVringNoFd), {e1.fd}); }},
        {"SET_OWNER with an fd", [&](FrontEnd& fe) { fe.send(vu::req::set_owner, {}, {e1.fd}); }},
        {"nine fds",
         [&](FrontEnd& fe) { fe.send(vu::req::set_owner, {}, std::vector<int>(9, e1.fd)); }},
        {"mem table: one region, no fd",
         [](FrontEnd& fe) { fe.send(vu::req::set_mem_table, GuestRam::table()); }},
        {"mem table: region larger than the file",
         [&](FrontEnd& fe) {
             fe.send(vu::req::set_mem_table, GuestRam::table(2 * kMemSize), {ram.fd()});
         }},
        {"mem table: offset past the file",
         [&](FrontEnd& fe) {
             fe.send(vu::req::set_mem_table, GuestRam::table(4096, kGpa, kUva, kMemSize),
                     {ram.fd()});
         }},
        {"mem table: guest range wraps",
         [&](FrontEnd& fe) {
             fe.send(vu::req::set_mem_table, GuestRam::table(kMemSize, ~0ull - 100), {ram.fd()});
         }},
        {"mem table: an eventfd as memory",
         [&](FrontEnd& fe) { fe.send(vu::req::set_mem_table, GuestRam::table(), {e1.fd}); }},
        {"mem table: count says 9",
         [&](FrontEnd& fe) {
             Bytes t = GuestRam::table();
             t[0] = std::byte{9};
             fe.send(vu::req::set_mem_table, t, {ram.fd()});
         }},
        {"mem table: two overlapping regions",
         [&](FrontEnd& fe) {
             Bytes t = GuestRam::table(4096);
             const Bytes again = GuestRam::table(4096, kGpa + 2048, kUva + 8192);
             t.insert(t.end(), again.begin() + 8, again.end());
             t[0] = std::byte{2};
             fe.send(vu::req::set_mem_table, t, {ram.fd(), ram.fd()});
         }},
        {"GET_CONFIG (CONFIG not offered)",
         [](FrontEnd& fe) { fe.send(vu::req::get_config, Bytes(12)); }},
        {"GET_STATUS without STATUS negotiated",
         [](FrontEnd& fe) { fe.send(vu::req::get_status); }},
    };
    const std::size_t fds_before = open_fds();
    for (const auto& [what, fn] : cases)
        expect_rejected(what, fn);
    // Every fd those messages brought was closed with the connection.
    env.run_for(5ms);
    EXPECT_EQ(open_fds(), fds_before);

    // The listener is fine afterwards.
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    EXPECT_TRUE(fe.call(env, vu::req::get_features).has_value());
}

TEST_F(VhostUserTest, FdsNotKeptAreClosed) {
    const std::size_t before = open_fds();
    {
        FrontEnd fe(path);
        ASSERT_TRUE(fe.connected());
        bring_up(fe);
        {
            EventFd e;
            // Refused requests that carry an fd: the fd is closed, the session goes on.
            EXPECT_NE(fe.ack(env, vu::req::set_log_fd, {}, {e.fd}), 0u);
            EXPECT_NE(fe.ack(env, 77, u64(0), {e.fd}), 0u);
            // Replacing kick, call and err fds drops the old ones.
            EXPECT_EQ(fe.ack(env, vu::req::set_vring_err, u64(0), {e.fd}), 0u);
            EXPECT_EQ(fe.ack(env, vu::req::set_vring_err, u64(0), {e.fd}), 0u);
            EXPECT_EQ(fe.ack(env, vu::req::set_vring_call, u64(0), {e.fd}), 0u);
            EXPECT_EQ(fe.ack(env, vu::req::set_vring_call, u64(0), {call[0].fd}), 0u);
        }
        EXPECT_EQ(att->state(), "up");
        const std::size_t during = open_fds();
        EXPECT_EQ(fe.ack(env, vu::req::set_vring_err, u64(0 | vu::kVringNoFd)), 0u);
        EXPECT_EQ(open_fds(), during - 1);
    }
    ASSERT_TRUE(wait_state("listening"));
    env.run_for(5ms);
    // The connection, the memory mapping's fd, kick/call/err copies: all gone.
    EXPECT_EQ(open_fds(), before);
}

TEST_F(VhostUserTest, DisconnectDropsQueuedFramesAndAVmmReconnects) {
    SinkPort sink;
    env.sw.add_port(sink);
    env.sw.add_port(*att);
    {
        FrontEnd fe(path);
        ASSERT_TRUE(fe.connected());
        bring_up(fe);
        guest_tx(make_frame(60, 0x11), kBase);
        ASSERT_TRUE(env.run_until([&] { return sink.got.size() == 1; }));
        EXPECT_TRUE(att->caps().gso);
    }
    ASSERT_TRUE(wait_state("listening"));
    EXPECT_FALSE(att->caps().gso);
    // Nobody attached: egress is dropped and counted.
    ASSERT_TRUE(push_to_port(env, *att, make_frame(60, 1)));
    att->on_frames_from_switch();
    EXPECT_EQ(att->counters().drop_io.get(), 1u);

    // The "restarted VMM" comes back with fresh rings (the guest driver reset them).
    for (unsigned q = 0; q < 2; ++q) {
        std::memset(ram.at(desc_off(q)), 0, 0x3000);
        store_le16(ram.at(avail_off(q) + 2), kBase);
    }
    FrontEnd fe2(path);
    ASSERT_TRUE(fe2.connected());
    bring_up(fe2);
    // Another MAC is accepted after the reconnect (the switch reset the port's MAC lock).
    guest_tx(make_frame(60, 0x22), kBase);
    EXPECT_TRUE(env.run_until([&] { return sink.got.size() == 2; }));
    env.sw.remove_port(*att);
    env.sw.remove_port(sink);
}

TEST_F(VhostUserTest, SecondConcurrentFrontEndIsRefused) {
    FrontEnd a(path);
    ASSERT_TRUE(a.connected());
    ASSERT_TRUE(wait_state("connected"));
    FrontEnd b(path);
    ASSERT_TRUE(b.connected());  // the kernel completes the connect; the attachment closes it
    EXPECT_TRUE(b.wait_closed(env));
    EXPECT_EQ(att->state(), "connected");
    EXPECT_TRUE(a.call(env, vu::req::get_features).has_value());
    EXPECT_EQ(att->counters().drop_wire.get(), 0u);
}

TEST_F(VhostUserTest, StopClosesTheFrontEndAndRemovesTheSocket) {
    FrontEnd fe(path);
    ASSERT_TRUE(fe.connected());
    bring_up(fe);
    att->stop();
    EXPECT_EQ(att->state(), "stopped");
    EXPECT_TRUE(fe.wait_closed(env));
    struct stat st {};
    EXPECT_NE(::stat(path.c_str(), &st), 0);
}

}  // namespace
}  // namespace slipway::guest::test
