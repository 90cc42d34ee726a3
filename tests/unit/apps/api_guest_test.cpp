// GuestHandoff: socketpairs made on one thread, their far ends served on another.
#include "slipwayd/api_guest.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace slipway::apps {
namespace {

TEST(GuestHandoff, EachOpenReachesTheConsumerConnected) {
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);
    std::vector<int> served;  // io thread only until joined
    std::vector<Ipv4Addr> guests;
    GuestHandoff handoff(
        io,
        [&](int fd, Ipv4Addr guest) {
            served.push_back(fd);
            guests.push_back(guest);
        },
        8);
    std::thread consumer([&] { io.run(); });

    // The producer is this thread, as the network thread would be; a full ring is waited out.
    std::vector<int> ours;
    while (ours.size() < 100) {
        const int fd = handoff.open(Ipv4Addr::from_octets(192, 168, 127, 2));
        if (fd == -EAGAIN) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        ASSERT_GE(fd, 0);
        ours.push_back(fd);
    }
    // Each served fd is the far end of one returned fd: a byte written here arrives there.
    for (std::size_t i = 0; i < ours.size(); ++i) {
        const char c = static_cast<char>('a' + i % 26);
        ASSERT_EQ(::write(ours[i], &c, 1), 1);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::size_t n = 0;
    while (n < ours.size() && std::chrono::steady_clock::now() < deadline) {
        std::promise<std::size_t> p;
        boost::asio::post(io, [&] { p.set_value(served.size()); });
        n = p.get_future().get();
        if (n < ours.size()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    work.reset();
    io.stop();
    consumer.join();
    ASSERT_EQ(served.size(), ours.size());
    for (std::size_t i = 0; i < served.size(); ++i) {
        char c = 0;
        ASSERT_EQ(::read(served[i], &c, 1), 1);
        EXPECT_EQ(c, static_cast<char>('a' + i % 26));  // the ring keeps the order
        EXPECT_EQ(guests[i], Ipv4Addr::from_octets(192, 168, 127, 2));
        EXPECT_NE(::fcntl(served[i], F_GETFL) & O_NONBLOCK, 0);
        ::close(served[i]);
        ::close(ours[i]);
    }
}

TEST(GuestHandoff, FullRingRefusesAndDestructorClosesTheQueued) {
    boost::asio::io_context io;  // never run: nothing is picked up
    std::vector<int> returned;
    {
        GuestHandoff handoff(
            io, [](int fd, Ipv4Addr) { ::close(fd); }, 2);
        returned.push_back(handoff.open(Ipv4Addr{}));
        returned.push_back(handoff.open(Ipv4Addr{}));
        ASSERT_GE(returned[0], 0);
        ASSERT_GE(returned[1], 0);
        EXPECT_EQ(handoff.open(Ipv4Addr{}), -EAGAIN);
    }
    // The queued far ends were closed: our ends see EOF.
    for (const int fd : returned) {
        char c;
        EXPECT_EQ(::read(fd, &c, 1), 0);
        ::close(fd);
    }
}

}  // namespace
}  // namespace slipway::apps
