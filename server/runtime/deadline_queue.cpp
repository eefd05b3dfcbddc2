#include "runtime/deadline_queue.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <time.h>

#include <boost/asio/post.hpp>

namespace shoal {

namespace {
// Shard::now_ms()'s clock (shard.hpp includes this file).
std::int64_t coarse_now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

DeadlineQueue::DeadlineQueue(executor_type executor) : timer_(executor), executor_(executor) {}

DeadlineQueue::~DeadlineQueue() {
  *alive_ = false;
  // Dropping an owner may destroy a session, whose own deadline unlinks
  // itself: take each one out before letting go of what it holds.
  while (!set_.empty()) {
    Deadline& d = *set_.begin();
    set_.erase(set_.iterator_to(d));
    std::shared_ptr<void> owner = std::move(d.owner_);
  }
  // What sessions destroyed here cancel comes back to released_.
  while (!released_.empty()) {
    std::vector<std::shared_ptr<void>> released;
    released.swap(released_);
  }
}

void DeadlineQueue::arm(Deadline& d, std::int64_t at_ms, std::shared_ptr<void> owner, Deadline::Fire fire) {
  if (d.hook_.is_linked()) {
    set_.erase(set_.iterator_to(d));
    if (d.owner_ != owner) release_later(std::move(d.owner_));
  }
  d.at_ms_ = at_ms;
  d.owner_ = std::move(owner);
  d.fire_ = fire;
  set_.insert(d);
  rearm();
}

void DeadlineQueue::cancel(Deadline& d) {
  if (!d.hook_.is_linked()) return;
  set_.erase(set_.iterator_to(d));
  release_later(std::move(d.owner_));
  // The timer stays armed for what was the earliest; it finds nothing or
  // something later, and re-arms for that.
}

void DeadlineQueue::release_later(std::shared_ptr<void> owner) {
  if (owner.use_count() == 0) return;  // none, or a session the shard owns (nothing held)
  released_.push_back(std::move(owner));
  if (release_posted_) return;
  release_posted_ = true;
  boost::asio::post(executor_, [this, alive = alive_] {
    if (!*alive) return;
    release_posted_ = false;
    std::vector<std::shared_ptr<void>> released;
    released.swap(released_);
    // `released` goes here, outside every session's method. Sessions it
    // destroys may cancel again: that goes to released_, posted anew.
  });
}

void DeadlineQueue::run_due(std::int64_t now_ms) {
  while (!set_.empty()) {
    Deadline& d = *set_.begin();
    if (d.at_ms_ > now_ms) break;
    set_.erase(set_.iterator_to(d));
    std::shared_ptr<void> owner = std::move(d.owner_);
    // The owner may re-arm `d` from inside; `owner` keeps it alive until
    // the call returns.
    d.fire_(owner.get(), now_ms);
  }
}

void DeadlineQueue::rearm() {
  // An empty queue leaves a pending wait alone: it finds nothing due.
  if (set_.empty()) return;
  const std::int64_t at = set_.begin()->at_ms_;
  if (timer_at_ != 0 && timer_at_ <= at) return;
  timer_at_ = at;
  // Absolute expiries: Shard::now_ms() and steady_clock both count
  // CLOCK_MONOTONIC from the same origin. Moving the expiry aborts the
  // wait for the later one.
  timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(at)));
  timer_.async_wait([this, alive = alive_, at](const boost::system::error_code& ec) {
    if (ec || !*alive) return;  // superseded by an earlier expiry, or the queue is gone
    if (timer_at_ == at) timer_at_ = 0;
    // The timer fired at its expiry by CLOCK_MONOTONIC, which the coarse
    // clock of now_ms() may still trail by a tick: what was due is due.
    run_due(std::max(at, coarse_now_ms()));
    rearm();
  });
}

}  // namespace shoal
