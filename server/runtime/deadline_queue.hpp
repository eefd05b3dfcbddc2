// Every session deadline of one shard on one Asio timer.
//
// A session used to own a steady_timer (72 bytes in the session) and, while
// armed, Asio's wait operation with the handler that held the session (a
// 200-byte allocation, plus a slot in the timer queue's heap): about 290 bytes
// of every idle WebSocket connection, whose handshake or keepalive deadline is
// always armed. Here a deadline is a Deadline inside the session, 48 bytes:
// an intrusive red-black tree node keyed by its expiry, the session and the
// function to call. Arming and cancelling allocate nothing; the queue keeps
// one steady_timer armed at the earliest expiry, and every deadline due at a
// wakeup runs from that one wakeup. The tree rather than a hashed wheel: the earliest expiry is
// begin(), so the shard timer never wakes for nothing, a 30-second keepalive
// is not revisited on every turn of a wheel, and expiries stay exact to the
// millisecond (delay= needs that); insertion is O(log n), and sessions re-arm
// only when a deadline moves earlier (session_timer.hpp), never per message.
// nginx keeps its timers the same way.
//
// Ownership: none. Sessions belong to the shard (Connection::retire()), and
// a Deadline is part of its session: destroying the session unlinks it, so
// the queue never calls a session that is gone. ~DeadlineQueue unlinks what
// is left.
//
// Thread safety: none; the shard's thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/set.hpp>

namespace shoal {

// As in shard.hpp (which includes this file).
using executor_type = boost::asio::io_context::executor_type;
using steady_timer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, executor_type>;

class DeadlineQueue;

class Deadline {
 public:
  using Fire = void (*)(void* target, std::int64_t now_ms);

  Deadline() = default;
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() = default;  // the hook unlinks itself

  bool armed() const noexcept { return hook_.is_linked(); }
  std::int64_t at_ms() const noexcept { return at_ms_; }

 private:
  friend class DeadlineQueue;
  friend struct DeadlineKey;
  using Hook = boost::intrusive::set_member_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>,
                                                 boost::intrusive::optimize_size<true>>;
  Hook hook_;
  std::int64_t at_ms_ = 0;
  void* target_ = nullptr;
  Fire fire_ = nullptr;
};

struct DeadlineKey {
  using type = std::int64_t;
  type operator()(const Deadline& d) const noexcept { return d.at_ms_; }
};

class DeadlineQueue {
 public:
  explicit DeadlineQueue(executor_type executor);
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;
  ~DeadlineQueue();

  // Runs fire(target, now) at `at_ms` (Shard::now_ms() milliseconds). An
  // armed deadline moves to the new expiry. `d` must outlive its arming, or
  // be destroyed (which disarms it).
  void arm(Deadline& d, std::int64_t at_ms, void* target, Deadline::Fire fire);
  // Disarms.
  void cancel(Deadline& d) noexcept;

  std::size_t size() const noexcept { return set_.size(); }  // O(n): tests and metrics only
  // Runs every deadline due at `now_ms` (the timer's handler; tests call it).
  void run_due(std::int64_t now_ms);

 private:
  using Set = boost::intrusive::multiset<
      Deadline, boost::intrusive::member_hook<Deadline, Deadline::Hook, &Deadline::hook_>,
      boost::intrusive::key_of_value<DeadlineKey>, boost::intrusive::constant_time_size<false>>;

  void rearm();

  Set set_;
  steady_timer timer_;
  std::int64_t timer_at_ = 0;  // expiry the timer waits for; 0: none
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // the timer's handler checks it
};

}  // namespace shoal
