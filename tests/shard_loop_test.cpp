// The shard thread's loop (runtime/shard.hpp, Poller): it sleeps in its own
// epoll_wait(), so work posted from another thread must wake it, and stopping
// must too. The lag timer (every kLoopLagPeriod) wakes it anyway: a post that
// did not wake the loop would wait for that tick, half a period on average.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "runtime/shard.hpp"

namespace shoal {
namespace {

using Clock = std::chrono::steady_clock;

struct StartedShard {
  Config config = [] {
    Config c;
    c.listeners.resize(1);
    return c;
  }();
  ListenerShared shared;
  ActiveCount process_active;
  std::unique_ptr<Shard> shard =
      std::make_unique<Shard>(0, config, std::vector<ListenerShared*>{&shared}, process_active);
  StartedShard() { shard->start(-1); }
};

TEST(ShardLoop, APostFromAnotherThreadRunsWithoutWaitingForATimer) {
  StartedShard s;
  std::vector<Clock::duration> trips;
  for (int i = 0; i < 21; ++i) {
    // Let the loop fall asleep between posts.
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    // Shared with the handler, which may still be returning from
    // set_value() when this loop goes on.
    auto ran = std::make_shared<std::promise<void>>();
    const auto t0 = Clock::now();
    s.shard->post([ran] { ran->set_value(); });
    ASSERT_EQ(ran->get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready)
        << "post " << i << " never ran";
    trips.push_back(Clock::now() - t0);
  }
  std::sort(trips.begin(), trips.end());
  // Woken by the post: well under a millisecond here. Woken by the next lag
  // tick instead: 50 ms in the median.
  EXPECT_LT(trips[trips.size() / 2], kLoopLagPeriod / 4);
}

TEST(ShardLoop, APostFromTheShardItselfRunsOnTheSameLoop) {
  StartedShard s;
  auto second = std::make_shared<std::promise<int>>();
  s.shard->post([&s, second] {
    s.shard->post([second] { second->set_value(2); });
  });
  auto f = second->get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), 2);
}

// Tells the test when its socket becomes readable.
class ReadableSession final : public Connection {
 public:
  ReadableSession(Shard& shard, std::promise<void>& readable)
      : Connection(shard, 0, nullptr), readable_(readable) {}
  using Connection::adopt_socket;
  using Connection::wait_readable;

 private:
  void on_close(CloseReason) override {}
  void on_poll_readable() override { readable_.set_value(); }
  void on_poll_writable() override {}
  std::promise<void>& readable_;
};

// Like an acceptor whose backlog never empties (a connect burst): each of
// its handlers queues the next. The sockets must still get their turn; with
// io_context::poll() running all of them, a wss burst kept every upgrade
// waiting ~0.9 s.
TEST(ShardLoop, AHandlerThatAlwaysQueuesAnotherDoesNotStarveTheSockets) {
  StartedShard s;
  namespace asio = boost::asio;
  asio::io_context client_context;
  asio::ip::tcp::acceptor acceptor(client_context, {asio::ip::address_v4::loopback(), 0});
  asio::ip::tcp::socket client(client_context);
  client.connect(acceptor.local_endpoint());
  asio::ip::tcp::socket server = acceptor.accept();

  std::promise<void> readable;
  auto adopted = std::make_shared<std::promise<bool>>();
  auto adopted_future = adopted->get_future();
  s.shard->post([&s, &server, &readable, adopted] {
    auto* session = new ReadableSession(*s.shard, readable);  // the shard deletes it
    boost::system::error_code ec;
    const bool ok = session->adopt_socket(server.release(), ec);
    if (ok) session->wait_readable();
    adopted->set_value(ok);
  });
  ASSERT_TRUE(adopted_future.get());

  std::atomic<bool> stop{false};
  std::atomic<long> spins{0};
  std::function<void()> spin = [&] {
    ++spins;
    if (!stop.load()) asio::post(s.shard->context(), spin);
  };
  s.shard->post(spin);
  // The chain runs before the byte is sent: its edge comes while the loop
  // is busy with the handlers, not in the same wake-up as the post.
  while (spins.load() < 1000) std::this_thread::yield();
  asio::write(client, asio::buffer("x", 1));
  const bool served =
      readable.get_future().wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  stop = true;
  // The chain's last handler may still be queued, holding references to
  // this test's locals: no handler runs once the loop has stopped.
  s.shard->stop_and_join();
  EXPECT_TRUE(served) << "the socket's edge waited behind the handler chain";
}

TEST(ShardLoop, StopAndJoinReturnsWhileTheLoopSleeps) {
  std::vector<Clock::duration> stops;
  for (int i = 0; i < 7; ++i) {
    StartedShard s;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const auto t0 = Clock::now();
    s.shard->stop_and_join();
    stops.push_back(Clock::now() - t0);
  }
  std::sort(stops.begin(), stops.end());
  EXPECT_LT(stops[stops.size() / 2], kLoopLagPeriod / 4);
}

}  // namespace
}  // namespace shoal
