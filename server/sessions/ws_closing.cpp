// WebSocket session, the endings and the deadlines.
//
// Decisions:
// - Closed by the shard (idle sweep, drain) while open and not blocked on a
//   write: a close frame 1001 (going away), then the client's close is
//   awaited under the closing deadline. Otherwise the socket closes.
// - After a completed closing handshake the socket closes at once (RFC 6455
//   §7.1.1: the server closes TCP first); over TLS our close_notify goes
//   first, best effort.
// - After failing a connection or refusing an upgrade: our last bytes, the
//   half-close (close_notify first over TLS), then a linger that reads and
//   discards until the peer's EOF or the deadline. The peer may still be
//   sending (the rest of an oversized message, a request body), and closing
//   with unread bytes would send a reset, which can destroy the close frame
//   or the error response before the peer reads it.
// - One timer per session (SessionTimer): handshake_timeout, then
//   keepalive and write_timeout while open, then the closing deadline, which
//   is as long as the opening one (Beast's rule too). A closing connection
//   has left the shard's idle list, so it is bounded even when
//   handshake_timeout is 0.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "sessions/ws_session.hpp"

namespace shoal::ws {

namespace {

template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug(fmt, std::forward<Args>(args)...);
}

}  // namespace

void WsSession::on_close(CloseReason reason) {
  if (phase_ == Phase::closing || phase_ == Phase::linger || phase_ == Phase::done) return;
  if (phase_ == Phase::open && reason == CloseReason::close_after && controls()) {
    start_ws_close(controls()->close_code(), "close_after");  // behind the echoes before it
    return;
  }
  if (phase_ == Phase::open && reason == CloseReason::slow_consumer) {
    // Behind what it has not read: the closing deadline bounds a client
    // that never reads again.
    start_ws_close(1008, "slow consumer");
    return;
  }
  if (phase_ == Phase::open && !write_blocked() &&
      (reason == CloseReason::drain || reason == CloseReason::idle_timeout)) {
    start_ws_close(1001, reason == CloseReason::drain ? "going away" : "idle timeout");
    return;
  }
  hard_close();
}

void WsSession::start_ws_close(std::uint16_t code, const char* why) {
  phase_ = Phase::closing;
  deadline_ms_ = closing_deadline();
  arm(deadline_ms_);
  count_close_code(code);
  // Then the client's close is awaited by the read in progress (the engine
  // now drops data frames), bounded by the deadline.
  engine_.closing();
  ByteBuffer frame;
  WsEchoEngine::append_close(frame, code, why);
  if (!send(frame.data(), frame.size())) return;
  if (paused_) {
    // Reading waited for delayed echoes, which are not sent now: it must
    // resume for the client's close.
    paused_ = false;
    if (controls()) controls()->drop_queue();
    read_again();  // on_ready() reads while closing
  }
}

void WsSession::finish(bool then_linger) {
  if (!finishing_) {
    finishing_ = true;
    linger_after_flush_ = then_linger;
    if (phase_ == Phase::open) {
      phase_ = Phase::closing;
      deadline_ms_ = closing_deadline();  // over ping_sent_ms_ (the union)
    } else if (deadline_ms_ == kNever) {
      // Our own close frame, or the handshake, may have set it already.
      deadline_ms_ = closing_deadline();
    }
    arm(deadline_ms_);
  }
  if (write_blocked()) {
    wait_write();  // on_writable comes back here
    return;
  }
  if (linger_after_flush_) {
    switch (io_.shutdown_send()) {
      case Transport::Io::want_write:
        wait_write();
        return;
      case Transport::Io::want_read:  // TLS wants the peer's bytes first: give up on close_notify
      case Transport::Io::failed:
      case Transport::Io::eof:
        hard_close();
        return;
      case Transport::Io::done:
        break;
    }
    linger();
    return;
  }
  // Both close frames exchanged (RFC 6455 §7.1.1). Over TLS our
  // close_notify goes first if the kernel takes it now.
  if (io_.tls()) (void)io_.shutdown_send();
  hard_close();
}

void WsSession::linger() {
  phase_ = Phase::linger;
  on_linger_readable();
}

void WsSession::on_linger_readable() {
  // Raw bytes, TLS or not: nothing the peer sends now is answered.
  for (int round = 0; round < 4; ++round) {
    const ssize_t n = ::recv(io_.fd(), shard_.scratch(), Shard::scratch_size, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait_read();
      return;
    }
    hard_close();  // EOF (the peer closed too) or an error: done
    return;
  }
  // Still sending: come back after the shard's other handlers.
  read_again();  // on_ready() lingers on
}

void WsSession::end_with_error(const error_code& ec, const char* op) {
  if (closed()) {
    hard_close();
    return;
  }
  const CloseReason reason = classify(ec);
  if (phase_ == Phase::open && (reason == CloseReason::peer_closed || reason == CloseReason::reset))
    count_close_code(kAbnormal);  // TCP ended without a close frame
  fail(ec, op);  // on_close() closes the socket
}

void WsSession::hard_close() {
  if (phase_ == Phase::done) return;
  phase_ = Phase::done;
  timer_.cancel(shard_.deadlines());
  in_.release();
  out_.release();
  retire();
}

std::int64_t WsSession::closing_deadline() const {
  return closing_deadline_from(Shard::now_ms(), cfg().handshake_timeout);
}

void WsSession::arm(std::int64_t at_ms) {
  if (phase_ == Phase::done) return;
  timer_.arm(shard_.deadlines(), at_ms, this,
               [](void* self, std::int64_t) { static_cast<WsSession*>(self)->on_timer(error_code()); });
}

void WsSession::on_timer(const error_code& ec) {
  if (ec) return;  // re-armed or closed
  const std::int64_t now = timer_.fired();
  switch (phase_) {
    case Phase::done:
      return;
    case Phase::request:
      if (http_) {
        on_http_timer(now);
        return;
      }
      [[fallthrough]];
    case Phase::tls_handshake:
      if (now >= deadline_ms_) {
        // A client that trickles its request, or sends none.
        count_handshake_failed();
        log_debug("conn {}: handshake timeout", id_string());
        close(CloseReason::idle_timeout);
        return;
      }
      arm(deadline_ms_);
      return;
    case Phase::closing:
    case Phase::linger:
      if (now >= deadline_ms_) {
        hard_close();
        return;
      }
      arm(deadline_ms_);
      return;
    case Phase::open:
      break;
  }
  const std::int64_t write_timeout = cfg().write_timeout.count();
  if (write_timeout > 0 && write_blocked() && now - out_since_ms_ >= write_timeout) {
    log_debug("conn {}: write timeout", id_string());
    close(CloseReason::write_timeout);
    return;
  }
  const Keepalive keepalive{cfg().ping_interval.count(), cfg().pong_timeout.count()};
  switch (keepalive.due(now, last_read_ms_, ping_sent_ms_)) {
    case Keepalive::Due::ping:
      send_ping();
      break;
    case Keepalive::Due::close:
      log_debug("conn {}: no pong within {} ms", id_string(), keepalive.pong_timeout_ms);
      close(CloseReason::ping_timeout);
      return;
    case Keepalive::Due::nothing:
      break;
  }
  if (controls()) release_delayed(now);
  schedule_open_deadlines(now);
}

void WsSession::schedule_open_deadlines(std::int64_t now) {
  // Only while open (every caller may have just closed): ping_sent_ms_ is
  // the closing deadline in the other phases (the union).
  if (phase_ != Phase::open) return;
  std::int64_t next = kNever;
  const std::int64_t write_timeout = cfg().write_timeout.count();
  if (write_timeout > 0 && write_blocked()) next = out_since_ms_ + write_timeout;
  const Keepalive keepalive{cfg().ping_interval.count(), cfg().pong_timeout.count()};
  next = std::min(next, keepalive.next(last_read_ms_, ping_sent_ms_));
  if (controls()) next = std::min(next, controls()->next_due());
  if (next != kNever) arm(std::max(next, now));
}

}  // namespace shoal::ws
