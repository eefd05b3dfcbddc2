#include "runtime/deadline_queue.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <time.h>

namespace shoal {

namespace {
// Shard::now_ms()'s clock (shard.hpp includes this file).
std::int64_t coarse_now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}
}  // namespace

DeadlineQueue::DeadlineQueue(executor_type executor) : timer_(executor) {}

DeadlineQueue::~DeadlineQueue() {
  *alive_ = false;
  set_.clear();  // unlinks every deadline still armed
}

void DeadlineQueue::arm(Deadline& d, std::int64_t at_ms, void* target, Deadline::Fire fire) {
  if (d.hook_.is_linked()) set_.erase(set_.iterator_to(d));
  d.at_ms_ = at_ms;
  d.target_ = target;
  d.fire_ = fire;
  set_.insert(d);
  rearm();
}

void DeadlineQueue::cancel(Deadline& d) noexcept {
  if (!d.hook_.is_linked()) return;
  set_.erase(set_.iterator_to(d));
  // The timer stays armed for what was the earliest; it finds nothing or
  // something later, and re-arms for that.
}

void DeadlineQueue::run_due(std::int64_t now_ms) {
  while (!set_.empty()) {
    Deadline& d = *set_.begin();
    if (d.at_ms_ > now_ms) break;
    set_.erase(set_.iterator_to(d));
    // The target may re-arm `d` from inside, or retire (it is deleted on a
    // later turn, never inside this call).
    d.fire_(d.target_, now_ms);
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
