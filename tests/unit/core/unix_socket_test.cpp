// bind_unix_socket: mode 0600, stale sockets replaced, live servers and non-sockets left alone,
// every refusal one line naming the label.
#include "slipway/core/unix_socket.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace slipway {
namespace {

class UnixSocketTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/slw-unix-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        for (const char* n : {"/s", "/f"})
            ::unlink((dir_ + n).c_str());
        ::rmdir(dir_.c_str());
    }
    std::string dir_;
};

mode_t mode_of(const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
}

TEST_F(UnixSocketTest, BindsWithOwnerOnlyMode) {
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
        std::string err;
        auto fd = bind_unix_socket(dir_ + "/s", type, "--x", err);
        ASSERT_TRUE(fd) << err;
        EXPECT_TRUE(fd->valid());
        EXPECT_EQ(mode_of(dir_ + "/s"), 0600u);
        ::unlink((dir_ + "/s").c_str());
    }
}

TEST_F(UnixSocketTest, ReplacesAStaleSocketButNotALiveOne) {
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
        std::string err;
        auto first = bind_unix_socket(dir_ + "/s", type, "--x", err);
        ASSERT_TRUE(first) << err;
        if (type == SOCK_STREAM) {
            ASSERT_EQ(::listen(first->get(), 1), 0);
        }
        // A server is live there: refused, and its file stays.
        auto second = bind_unix_socket(dir_ + "/s", type, "--x " + dir_ + "/s", err);
        ASSERT_FALSE(second);
        EXPECT_NE(err.find("another server"), std::string::npos) << err;
        EXPECT_EQ(err.rfind("--x ", 0), 0u) << err;
        // The server went away without unlinking (a crash): the file is stale and replaced.
        first->reset();
        auto third = bind_unix_socket(dir_ + "/s", type, "--x", err);
        ASSERT_TRUE(third) << err;
        ::unlink((dir_ + "/s").c_str());
    }
}

TEST_F(UnixSocketTest, NeverStealsFromAServerOfTheOtherType) {
    std::string err;
    auto dgram = bind_unix_socket(dir_ + "/s", SOCK_DGRAM, "--x", err);
    ASSERT_TRUE(dgram) << err;
    EXPECT_FALSE(bind_unix_socket(dir_ + "/s", SOCK_STREAM, "--api", err));
    EXPECT_NE(err.find("another server"), std::string::npos) << err;
    dgram->reset();
    ::unlink((dir_ + "/s").c_str());
    auto stream = bind_unix_socket(dir_ + "/s", SOCK_STREAM, "--x", err);
    ASSERT_TRUE(stream) << err;
    ASSERT_EQ(::listen(stream->get(), 1), 0);
    EXPECT_FALSE(bind_unix_socket(dir_ + "/s", SOCK_DGRAM, "--x", err));
}

TEST_F(UnixSocketTest, NeverRemovesARegularFile) {
    { std::ofstream(dir_ + "/f") << "precious"; }
    std::string err;
    EXPECT_FALSE(bind_unix_socket(dir_ + "/f", SOCK_STREAM, "--api", err));
    EXPECT_NE(err.find("not a socket"), std::string::npos) << err;
    std::ifstream in(dir_ + "/f");
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
}

TEST_F(UnixSocketTest, RejectsPathsThatDoNotFit) {
    std::string err;
    EXPECT_FALSE(bind_unix_socket(dir_ + "/" + std::string(120, 'x'), SOCK_STREAM, "--api", err));
    EXPECT_NE(err.find("too long"), std::string::npos) << err;
    EXPECT_FALSE(bind_unix_socket("", SOCK_STREAM, "--api", err));
    EXPECT_NE(err.find("empty"), std::string::npos) << err;
    EXPECT_FALSE(bind_unix_socket("/nonexistent-dir/s", SOCK_STREAM, "--api", err));
    EXPECT_NE(err.find("bind"), std::string::npos) << err;
}

}  // namespace
}  // namespace slipway
