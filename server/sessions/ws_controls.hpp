// The response controls of one WebSocket connection (delay=, size=,
// close_after= on its upgrade URL; protocol/http_echo.hpp reads them): an
// EchoShaper the engine hands each whole message to.
//
// - size: the echo is the message repeated or cut (resize_echo()).
// - delay: echoes wait in a queue, each with its due time, and leave in
//   order when the session's one timer fires; pongs are the engine's and are
//   not delayed. The queue is bounded (kMaxQueuedBytes): above it the feed
//   stops and the session reads nothing more until echoes have left, so a
//   client that outpaces its delay is held by TCP flow control.
// - close_after: after the Nth echo the feed stops and the session closes
//   once that echo has left (after its delay).
// - One read's echoes are bounded too (kMaxBytesPerFeed): size= can turn a
//   small message into a large echo, and a read of many small messages must
//   not become gigabytes at once; the rest is fed again after the output
//   has gone.
//
// Only a connection that asked for a control has one (8 bytes in the
// session otherwise, and no cost per message).
//
// Thread safety: none; inside its session, on the shard's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "protocol/byte_buffer.hpp"
#include "protocol/http_echo.hpp"
#include "protocol/ws_echo.hpp"
#include "sessions/session_timer.hpp"  // kNever

namespace shoal::ws {

class WsControls final : public EchoShaper {
 public:
  static constexpr std::size_t kMaxQueuedBytes = 1024 * 1024;
  static constexpr std::size_t kMaxBytesPerFeed = 256 * 1024;

  explicit WsControls(const EchoControls& controls) noexcept;

  // Before each feed: the time its messages arrived.
  void begin_feed(std::int64_t now_ms) noexcept {
    now_ms_ = now_ms;
    fed_bytes_ = 0;
  }

  bool on_message(WsEchoEngine& engine, unsigned opcode, const unsigned char* message,
                  std::size_t n, ByteBuffer& out) override;

  bool delaying() const noexcept { return delay_ms_ > 0; }
  // When the first waiting echo is due; kNever when none waits.
  std::int64_t next_due() const noexcept {
    return head_ < pending_.size() ? pending_[head_].due_ms : kNever;
  }
  // Moves the echoes due by `now_ms` to the back of `out`, in order.
  void release_due(std::int64_t now_ms, ByteBuffer& out);
  bool queue_empty() const noexcept { return head_ == pending_.size(); }
  bool queue_full() const noexcept { return queued_.size() >= kMaxQueuedBytes; }
  // The client closed: what waits is not sent.
  void drop_queue() noexcept;

  // close_after reached (or 0): close once the queue is empty.
  bool close_due() const noexcept { return close_due_; }
  std::uint16_t close_code() const noexcept { return close_code_; }

 private:
  struct Pending {
    std::int64_t due_ms;
    std::size_t bytes;  // of queued_, from the front, in order
  };

  std::int64_t delay_ms_ = 0;
  std::int64_t now_ms_ = 0;
  std::uint64_t size_ = 0;
  std::uint32_t close_after_ = 0;
  std::uint32_t echoed_ = 0;
  std::size_t fed_bytes_ = 0;  // of this feed's echoes
  std::uint16_t close_code_ = 1000;
  bool sized_ = false;
  bool counting_ = false;  // close_after given
  bool close_due_ = false;
  ByteBuffer queued_;  // delayed echoes, framed
  std::vector<Pending> pending_;
  std::size_t head_ = 0;  // the first entry of pending_ still waiting
};

}  // namespace shoal::ws
