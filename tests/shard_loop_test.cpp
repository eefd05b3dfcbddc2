// The shard thread's loop (runtime/shard.hpp, Poller): it sleeps in its own
// epoll_wait(), so work posted from another thread must wake it, and stopping
// must too. The lag timer (every kLoopLagPeriod) wakes it anyway: a post that
// did not wake the loop would wait for that tick, half a period on average.
#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

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
    std::promise<void> ran;
    const auto t0 = Clock::now();
    s.shard->post([&ran] { ran.set_value(); });
    ASSERT_EQ(ran.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready)
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
  std::promise<int> second;
  s.shard->post([&s, &second] {
    s.shard->post([&second] { second.set_value(2); });
  });
  auto f = second.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), 2);
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
