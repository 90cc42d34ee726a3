// PcapWriter: the file is classic libpcap (checked byte by byte) and tcpdump reads it.
#include "slipway/core/pcap.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "captures/wire_captures.hpp"

namespace slipway {
namespace {

namespace cap = slipway::test_captures;

std::uint32_t le32(const std::vector<std::byte>& b, std::size_t off) {
    std::uint32_t v;
    std::memcpy(&v, b.data() + off, 4);  // the file is in the writer's (native) order
    return v;
}
std::uint16_t le16(const std::vector<std::byte>& b, std::size_t off) {
    std::uint16_t v;
    std::memcpy(&v, b.data() + off, 2);
    return v;
}

std::vector<std::byte> read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> b(c.size());
    std::memcpy(b.data(), c.data(), c.size());
    return b;
}

class Pcap : public ::testing::Test {
  protected:
    std::filesystem::path path = std::filesystem::temp_directory_path() /
                                 ("slipway-pcap-" + std::to_string(::getpid()) + ".pcap");
    void TearDown() override { std::filesystem::remove(path); }
};

TEST_F(Pcap, WritesClassicFormat) {
    // The third frame is above the snap length and must be cut to it.
    std::vector<std::byte> big(PcapWriter::kSnapLen + 1000, std::byte{0xab});
    std::memcpy(big.data(), cap::kIcmpEchoRequest.data(), 14);
    const auto before = std::chrono::system_clock::now();
    {
        PcapWriter w;
        ASSERT_TRUE(w.open(path.string()));
        EXPECT_TRUE(w.is_open());
        w.write(cap::kArpRequest);
        w.write(cap::kIcmpEchoRequest);
        w.write(big);
        EXPECT_EQ(w.frames(), 3u);
        EXPECT_EQ(w.errors(), 0u);
    }  // the destructor flushes and closes
    const auto after = std::chrono::system_clock::now();
    const auto b = read_file(path);
    const std::size_t want =
        24 + 3 * 16 + cap::kArpRequest.size() + cap::kIcmpEchoRequest.size() + PcapWriter::kSnapLen;
    ASSERT_EQ(b.size(), want);
    EXPECT_EQ(le32(b, 0), 0xa1b2c3d4u);
    // libpcap on this (little-endian) host writes the magic as d4 c3 b2 a1.
    EXPECT_EQ(b[0], std::byte{0xd4});
    EXPECT_EQ(b[3], std::byte{0xa1});
    EXPECT_EQ(le16(b, 4), 2);
    EXPECT_EQ(le16(b, 6), 4);
    EXPECT_EQ(le32(b, 8), 0u);
    EXPECT_EQ(le32(b, 12), 0u);
    EXPECT_EQ(le32(b, 16), PcapWriter::kSnapLen);
    EXPECT_EQ(le32(b, 20), 1u);

    const auto lo = std::chrono::duration_cast<std::chrono::seconds>(before.time_since_epoch());
    const auto hi = std::chrono::duration_cast<std::chrono::seconds>(after.time_since_epoch());
    std::size_t off = 24;
    const std::pair<const std::byte*, std::size_t> frames[] = {
        {cap::kArpRequest.data(), cap::kArpRequest.size()},
        {cap::kIcmpEchoRequest.data(), cap::kIcmpEchoRequest.size()},
        {big.data(), big.size()}};
    for (const auto& [data, len] : frames) {
        SCOPED_TRACE(len);
        const std::uint32_t sec = le32(b, off);
        EXPECT_GE(sec, static_cast<std::uint32_t>(lo.count()));
        EXPECT_LE(sec, static_cast<std::uint32_t>(hi.count()));
        EXPECT_LT(le32(b, off + 4), 1000000u);
        const std::uint32_t caplen = le32(b, off + 8);
        EXPECT_EQ(caplen, std::min<std::size_t>(len, PcapWriter::kSnapLen));
        EXPECT_EQ(le32(b, off + 12), len);
        ASSERT_LE(off + 16 + caplen, b.size());
        EXPECT_EQ(std::memcmp(b.data() + off + 16, data, caplen), 0);
        off += 16 + caplen;
    }
    EXPECT_EQ(off, b.size());
}

TEST_F(Pcap, TcpdumpReadsIt) {
    {
        PcapWriter w;
        ASSERT_TRUE(w.open(path.string()));
        w.write(cap::kArpRequest);
        w.write(cap::kIcmpEchoRequest);
        w.write(cap::kTcpData4);
    }
    const char* candidates[] = {"/usr/bin/tcpdump", "/usr/sbin/tcpdump", "/sbin/tcpdump"};
    const char* tcpdump = nullptr;
    for (const char* c : candidates)
        if (::access(c, X_OK) == 0) tcpdump = c;
    if (tcpdump == nullptr)
        GTEST_SKIP() << "tcpdump is not installed: file format checked above only";
    const std::string cmd = std::string(tcpdump) + " -r " + path.string() + " -nn 2>/dev/null";
    std::FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr)
        out += buf;
    EXPECT_EQ(::pclose(p), 0) << out;
    std::size_t lines = 0;
    for (char c : out)
        if (c == '\n') ++lines;
    EXPECT_EQ(lines, 3u) << out;
    EXPECT_NE(out.find("ARP, Request who-has 10.99.0.2 tell 10.99.0.1"), std::string::npos) << out;
    EXPECT_NE(out.find("ICMP echo request"), std::string::npos) << out;
    EXPECT_NE(out.find("10.99.0.1.36146 > 10.99.0.2.5555"), std::string::npos) << out;
}

TEST_F(Pcap, OpenFailureIsAnError) {
    PcapWriter w;
    auto r = w.open("/nonexistent-dir/x.pcap");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), Errc::io_error);
    EXPECT_FALSE(w.is_open());
    w.write(cap::kArpRequest);  // ignored, no crash
    w.flush();
    EXPECT_EQ(w.frames(), 0u);
}

TEST_F(Pcap, WriteErrorsAreCounted) {
    if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
    PcapWriter w;
    ASSERT_TRUE(w.open("/dev/full"));  // the header sits in the stdio buffer for now
    std::vector<std::byte> f(1500, std::byte{1});
    for (int i = 0; i < 2000; ++i)  // 3 MB: more than the buffer holds
        w.write(f);
    w.flush();
    EXPECT_GT(w.errors(), 0u);
    // The first failure ends the capture: every frame after it is an error, none is written.
    EXPECT_EQ(w.frames() + w.errors(), 2000u);
    const auto frames = w.frames();
    w.write(f);
    EXPECT_EQ(w.frames(), frames);
}

}  // namespace
}  // namespace slipway
