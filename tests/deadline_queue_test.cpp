// The shard's deadline queue (runtime/deadline_queue.hpp): deadlines run in
// expiry order from the one timer, move when re-armed, never run once
// cancelled or destroyed with their session, and are disarmed when the queue
// goes.
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include "runtime/deadline_queue.hpp"
#include "runtime/shard.hpp"

namespace shoal {
namespace {

struct Owner {
  Deadline deadline;
  std::vector<int>* log = nullptr;
  int id = 0;
  std::int64_t fired_at = 0;
  static void fire(void* self, std::int64_t now) {
    auto* o = static_cast<Owner*>(self);
    o->fired_at = now;
    o->log->push_back(o->id);
  }
};

std::unique_ptr<Owner> make_owner(std::vector<int>& log, int id) {
  auto o = std::make_unique<Owner>();
  o->log = &log;
  o->id = id;
  return o;
}

TEST(DeadlineQueue, RunsDueDeadlinesInExpiryOrderAndLeavesLaterOnes) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1), b = make_owner(log, 2), c = make_owner(log, 3);
  q.arm(a->deadline, 300, a.get(), &Owner::fire);
  q.arm(b->deadline, 100, b.get(), &Owner::fire);
  q.arm(c->deadline, 200, c.get(), &Owner::fire);
  q.run_due(250);
  EXPECT_EQ(log, (std::vector<int>{2, 3}));
  EXPECT_EQ(b->fired_at, 250);
  EXPECT_FALSE(b->deadline.armed());
  EXPECT_TRUE(a->deadline.armed());
  EXPECT_EQ(q.size(), 1u);
}

TEST(DeadlineQueue, ReArmingMovesTheDeadline) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1), b = make_owner(log, 2);
  q.arm(a->deadline, 100, a.get(), &Owner::fire);
  q.arm(b->deadline, 200, b.get(), &Owner::fire);
  q.arm(a->deadline, 300, a.get(), &Owner::fire);  // later now
  q.run_due(250);
  EXPECT_EQ(log, (std::vector<int>{2}));
  EXPECT_EQ(q.size(), 1u);
}

TEST(DeadlineQueue, ADestroyedSessionsDeadlineNeverRuns) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1), b = make_owner(log, 2);
  q.arm(a->deadline, 100, a.get(), &Owner::fire);
  q.arm(b->deadline, 200, b.get(), &Owner::fire);
  a.reset();  // the session is deleted: its deadline unlinks itself
  EXPECT_EQ(q.size(), 1u);
  q.run_due(1000);
  EXPECT_EQ(log, (std::vector<int>{2}));
}

TEST(DeadlineQueue, ACancelledDeadlineNeverRuns) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1);
  q.arm(a->deadline, 100, a.get(), &Owner::fire);
  q.cancel(a->deadline);
  EXPECT_FALSE(a->deadline.armed());
  q.cancel(a->deadline);  // twice is once
  q.run_due(1000);
  EXPECT_TRUE(log.empty());
}

TEST(DeadlineQueue, TheTimerFiresAtTheEarliestExpiry) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto late = make_owner(log, 1), soon = make_owner(log, 2);
  const std::int64_t now = Shard::now_ms();
  q.arm(late->deadline, now + 400, late.get(), &Owner::fire);
  q.arm(soon->deadline, now + 30, soon.get(), &Owner::fire);  // earlier: the timer moves
  const auto t0 = std::chrono::steady_clock::now();
  while (log.empty() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2)) {
    ioc.run_one_for(std::chrono::milliseconds(50));
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  ASSERT_EQ(log, (std::vector<int>{2}));
  EXPECT_GE(soon->fired_at, now + 30);  // never early
  EXPECT_LT(waited.count(), 300);       // and not at the later expiry
  while (log.size() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
    ioc.run_one_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(log, (std::vector<int>{2, 1}));
  EXPECT_GE(late->fired_at, now + 400);
}

TEST(DeadlineQueue, DestroyingTheQueueDisarmsEveryDeadline) {
  boost::asio::io_context ioc;
  std::vector<int> log;
  std::vector<std::unique_ptr<Owner>> owners;
  {
    DeadlineQueue q(ioc.get_executor());
    for (int i = 0; i < 100; ++i) {
      owners.push_back(make_owner(log, i));
      q.arm(owners.back()->deadline, 1000 + i, owners.back().get(), &Owner::fire);
    }
  }
  for (auto& o : owners) EXPECT_FALSE(o->deadline.armed());
  owners.clear();  // sessions going after the queue: nothing to unlink from
  EXPECT_TRUE(log.empty());
}

}  // namespace
}  // namespace shoal
