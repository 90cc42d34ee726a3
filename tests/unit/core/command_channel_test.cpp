// CommandChannel: work runs on the server loop's thread, done on the client loop's, in order;
// capacity is enforced; an exception in work still completes the call; destruction with commands
// in flight frees them without running them.
#include "slipway/core/command_channel.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace slipway {
namespace {

using namespace std::chrono_literals;

// A server loop on its own thread, kept alive by a work guard until stop().
struct ServerThread {
    IoContext io{1};
    boost::asio::executor_work_guard<IoContext::executor_type> guard{io.get_executor()};
    std::thread t{[this] { io.run(); }};
    std::thread::id id() const { return t.get_id(); }
    void stop() {
        guard.reset();
        io.stop();
        t.join();
    }
};

// Runs the client loop until `cond` holds or 5 s pass.
template <class F>
bool run_until(IoContext& io, F cond) {
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (!cond() && std::chrono::steady_clock::now() < end) {
        io.run_for(10ms);
        io.restart();
    }
    return cond();
}

TEST(CommandChannel, WorkRunsOnTheServerThreadAndDoneOnTheClientThreadInOrder) {
    ServerThread server;
    IoContext client{1};
    std::vector<int> done_order;
    std::atomic<int> worked{0};
    {
        CommandChannel ch(server.io, client, 8);
        const auto client_id = std::this_thread::get_id();
        for (int i = 0; i < 100; ++i) {
            // Keep at most 8 in flight: the client loop completes the rest as they come back.
            ASSERT_TRUE(run_until(client, [&] { return ch.in_flight() < 8; }));
            auto result = std::make_shared<std::thread::id>();
            ASSERT_TRUE(ch.call(
                [&worked, result] {
                    *result = std::this_thread::get_id();
                    worked.fetch_add(1, std::memory_order_relaxed);
                },
                [&, result, i] {
                    EXPECT_EQ(*result, server.id()) << "work must run on the server thread";
                    EXPECT_EQ(std::this_thread::get_id(), client_id);
                    done_order.push_back(i);
                }));
        }
        ASSERT_TRUE(run_until(client, [&] { return done_order.size() == 100; }));
        EXPECT_EQ(ch.in_flight(), 0u);
    }
    server.stop();
    EXPECT_EQ(worked.load(), 100);
    for (int i = 0; i < 100; ++i)
        EXPECT_EQ(done_order[static_cast<std::size_t>(i)], i);
}

TEST(CommandChannel, CapacityIsEnforcedAndAThrowingWorkStillCompletes) {
    IoContext server{1};  // not running: commands queue up
    IoContext client{1};
    CommandChannel ch(server, client, 2);
    int done = 0;
    EXPECT_TRUE(ch.call([] { throw std::runtime_error("boom"); }, [&] { ++done; }));
    EXPECT_TRUE(ch.call([] {}, [&] { ++done; }));
    EXPECT_FALSE(ch.call([] {}, [&] { ++done; })) << "a third call over capacity 2 is refused";
    EXPECT_EQ(ch.in_flight(), 2u);
    server.run_for(50ms);  // the server side drains both
    ASSERT_TRUE(run_until(client, [&] { return done == 2; }));
    EXPECT_EQ(ch.in_flight(), 0u);
    EXPECT_TRUE(ch.call([] {}, [&] { ++done; })) << "room again once completed";
}

TEST(CommandChannel, DestroyedWithCommandsInFlightFreesThemUnrun) {
    IoContext server{1};
    IoContext client{1};
    auto token = std::make_shared<int>(0);
    bool ran = false;
    {
        CommandChannel ch(server, client, 4);
        EXPECT_TRUE(ch.call([token, &ran] { ran = true; }, [token] {}));
        EXPECT_EQ(token.use_count(), 3);  // held by both queued closures
    }
    EXPECT_FALSE(ran);
    EXPECT_EQ(token.use_count(), 1) << "the queued command's closures were freed";
    server.run_for(10ms);  // stale readiness handlers must not touch the freed channel
    client.run_for(10ms);
}

}  // namespace
}  // namespace slipway
