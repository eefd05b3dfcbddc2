#include "sessions/ws_controls.hpp"

namespace shoal::ws {

namespace {

// A resized message, before it is framed: one per thread, never held
// across a feed.
ByteBuffer& resized_buffer() {
  thread_local ByteBuffer buffer;
  return buffer;
}

}  // namespace

WsControls::WsControls(const EchoControls& controls) noexcept
    : delay_ms_(controls.delay_ms.value_or(0)),
      size_(controls.size.value_or(0)),
      close_after_(controls.close_after.value_or(0)),
      close_code_(controls.close_code),
      sized_(controls.size.has_value()),
      counting_(controls.close_after.has_value()),
      close_due_(controls.close_after && *controls.close_after == 0) {}

bool WsControls::on_message(WsEchoEngine& engine, unsigned opcode, const unsigned char* message,
                            std::size_t n, ByteBuffer& out) {
  if (close_due_) return false;  // the connection closes: nothing more is echoed
  const unsigned char* payload = message;
  std::size_t length = n;
  ByteBuffer& resized = resized_buffer();
  if (sized_) {
    length = static_cast<std::size_t>(size_);
    resized.resize(length);
    resize_echo(message, n, opcode == 1, length, resized.data());
    payload = resized.data();
  }
  ByteBuffer& into = delaying() ? queued_ : out;
  const std::size_t before = into.size();
  engine.append_message(into, opcode, payload, length);
  const std::size_t framed = into.size() - before;
  if (sized_ && resized.capacity() > kMaxBytesPerFeed) resized.release();
  if (delaying()) {
    if (head_ != 0 && head_ * 2 >= pending_.size()) {  // keeps the vector to what waits
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    pending_.push_back({now_ms_ + delay_ms_, framed});
  }
  fed_bytes_ += framed;
  if (counting_ && ++echoed_ >= close_after_) {
    close_due_ = true;
    return false;
  }
  return fed_bytes_ < kMaxBytesPerFeed && !queue_full();
}

void WsControls::release_due(std::int64_t now_ms, ByteBuffer& out) {
  std::size_t bytes = 0;
  while (head_ < pending_.size() && pending_[head_].due_ms <= now_ms) bytes += pending_[head_++].bytes;
  if (bytes == 0) return;
  out.append(queued_.data(), bytes);
  queued_.consume(bytes);
  if (queue_empty()) {
    pending_.clear();
    head_ = 0;
    queued_.release();
  }
}

void WsControls::drop_queue() noexcept {
  pending_.clear();
  head_ = 0;
  queued_.release();
}

}  // namespace shoal::ws
