// The shard's deadline queue (runtime/deadline_queue.hpp): deadlines run in
// expiry order from the one timer, move when re-armed, hold their owner until
// they fire or until the turn after a cancel, and let go of it when the
// queue goes.
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

std::shared_ptr<Owner> make_owner(std::vector<int>& log, int id) {
  auto o = std::make_shared<Owner>();
  o->log = &log;
  o->id = id;
  return o;
}

TEST(DeadlineQueue, RunsDueDeadlinesInExpiryOrderAndLeavesLaterOnes) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1), b = make_owner(log, 2), c = make_owner(log, 3);
  q.arm(a->deadline, 300, a, &Owner::fire);
  q.arm(b->deadline, 100, b, &Owner::fire);
  q.arm(c->deadline, 200, c, &Owner::fire);
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
  q.arm(a->deadline, 100, a, &Owner::fire);
  q.arm(b->deadline, 200, b, &Owner::fire);
  q.arm(a->deadline, 300, a, &Owner::fire);  // later now
  q.run_due(250);
  EXPECT_EQ(log, (std::vector<int>{2}));
  EXPECT_EQ(q.size(), 1u);
}

TEST(DeadlineQueue, HoldsItsOwnerUntilItFires) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1);
  std::weak_ptr<Owner> watch = a;
  Deadline& d = a->deadline;  // before the move: argument order is unspecified
  q.arm(d, 100, std::move(a), &Owner::fire);
  EXPECT_FALSE(watch.expired());  // only the deadline holds it
  q.run_due(100);
  EXPECT_EQ(log, (std::vector<int>{1}));
  EXPECT_TRUE(watch.expired());  // released once it ran
}

TEST(DeadlineQueue, ACancelledOwnerIsReleasedOnTheNextTurnNotInsideTheCall) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto a = make_owner(log, 1);
  std::weak_ptr<Owner> watch = a;
  Owner* raw = a.get();
  q.arm(raw->deadline, 100, std::move(a), &Owner::fire);
  q.cancel(raw->deadline);
  EXPECT_FALSE(watch.expired());  // the caller may be inside the owner
  EXPECT_FALSE(raw->deadline.armed());
  ioc.poll();
  EXPECT_TRUE(watch.expired());
  q.run_due(1000);
  EXPECT_TRUE(log.empty());  // a cancelled deadline never fires
}

TEST(DeadlineQueue, TheTimerFiresAtTheEarliestExpiry) {
  boost::asio::io_context ioc;
  DeadlineQueue q(ioc.get_executor());
  std::vector<int> log;
  auto late = make_owner(log, 1), soon = make_owner(log, 2);
  const std::int64_t now = Shard::now_ms();
  q.arm(late->deadline, now + 400, late, &Owner::fire);
  q.arm(soon->deadline, now + 30, soon, &Owner::fire);  // earlier: the timer moves
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

TEST(DeadlineQueue, DestroyingTheQueueReleasesEveryOwner) {
  boost::asio::io_context ioc;
  std::vector<int> log;
  std::vector<std::weak_ptr<Owner>> watch;
  {
    DeadlineQueue q(ioc.get_executor());
    for (int i = 0; i < 100; ++i) {
      auto o = make_owner(log, i);
      watch.push_back(o);
      Deadline& d = o->deadline;
      q.arm(d, 1000 + i, std::move(o), &Owner::fire);
    }
  }
  for (auto& w : watch) EXPECT_TRUE(w.expired());
  EXPECT_TRUE(log.empty());
}

}  // namespace
}  // namespace shoal
