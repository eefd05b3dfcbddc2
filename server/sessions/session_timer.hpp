// Deadlines of one session on one timer, and the keepalive rule, shared by
// every session type (TLS echo, WebSocket over either transport).
//
// The timer only ever moves earlier: a deadline later than the armed expiry
// is found when the timer fires and the session recomputes. So traffic costs
// no timer operation unless its deadline is the earliest one. Every session
// of a shard shares the shard's one Asio timer (DeadlineQueue): the deadlines
// due at a wakeup all run from it.
//
// Thread safety: none; inside its session, on the shard's thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

#include "runtime/shard.hpp"

namespace shoal {

inline constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// The deadline of a closing handshake, a close_notify or a linger: as long
// as the opening handshake is allowed (Beast's rule too), and bounded even
// when that is 0 (no limit): a closing connection has left the shard's idle
// list.
inline constexpr std::int64_t kFallbackClosingMs = 10'000;
inline std::int64_t closing_deadline_from(std::int64_t now_ms, Duration handshake_timeout) noexcept {
  const auto t = handshake_timeout.count();
  return now_ms + (t > 0 ? t : kFallbackClosingMs);
}

// Now by the clock the timer fires by, rounded up to the millisecond: the
// start of a wait that must not end early (delay=). Shard::now_ms() is the
// coarse clock and may trail it by a tick, which would make a delay short.
inline std::int64_t precise_now_ms() noexcept {
  return std::chrono::ceil<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class SessionTimer {
 public:
  // Arms for `at_ms` unless armed for that or earlier; at expiry
  // fire(session, now) runs (the session's static trampoline to its timer
  // handler). Arming allocates nothing and holds nothing: the deadline lives
  // here, on the shard's queue (deadline_queue.hpp), and deleting the
  // session (Connection::retire()) unlinks it.
  void arm(DeadlineQueue& queue, std::int64_t at_ms, void* session, Deadline::Fire fire) {
    if (at_ms == kNever) return;
    if (deadline_.armed() && deadline_.at_ms() <= at_ms) return;
    queue.arm(deadline_, at_ms, session, fire);
  }

  // In the handler of an expiry: the time it stands for. The timer fired
  // at its expiry by CLOCK_MONOTONIC, which the coarse clock of now_ms() may
  // still trail by a tick: what was due is due.
  std::int64_t fired() const noexcept { return std::max(Shard::now_ms(), deadline_.at_ms()); }

  void cancel(DeadlineQueue& queue) noexcept { queue.cancel(deadline_); }

 private:
  Deadline deadline_;
};
static_assert(sizeof(SessionTimer) <= 48, "SessionTimer grew: it is in every connection");

// WebSocket keepalive: ping a peer silent for ping_interval; without a pong
// within pong_timeout, close. pong_timeout 0 is no pong deadline: a ping
// every ping_interval, and idle_timeout alone bounds a silent peer.
// ping_interval 0 turns keepalive off.
struct Keepalive {
  std::int64_t ping_interval_ms;
  std::int64_t pong_timeout_ms;

  enum class Due : std::uint8_t { nothing, ping, close };

  // `last_read_ms`: when the peer last sent anything; `ping_sent_ms`: when
  // our unanswered ping went (0: none). A peer that spoke after our ping has
  // answered it, whatever it sent.
  Due due(std::int64_t now, std::int64_t last_read_ms, std::int64_t& ping_sent_ms) const noexcept {
    if (ping_interval_ms <= 0) return Due::nothing;
    if (ping_sent_ms != 0 && last_read_ms > ping_sent_ms) ping_sent_ms = 0;
    if (ping_sent_ms == 0) return now - last_read_ms >= ping_interval_ms ? Due::ping : Due::nothing;
    if (pong_timeout_ms == 0) return now - ping_sent_ms >= ping_interval_ms ? Due::ping : Due::nothing;
    return now - ping_sent_ms >= pong_timeout_ms ? Due::close : Due::nothing;
  }

  // When due() next has something to say; kNever when keepalive is off.
  std::int64_t next(std::int64_t last_read_ms, std::int64_t ping_sent_ms) const noexcept {
    if (ping_interval_ms <= 0) return kNever;
    if (ping_sent_ms == 0) return last_read_ms + ping_interval_ms;
    return ping_sent_ms + (pong_timeout_ms > 0 ? pong_timeout_ms : ping_interval_ms);
  }
};

}  // namespace shoal
