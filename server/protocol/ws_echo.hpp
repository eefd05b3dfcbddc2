// The WebSocket echo after the upgrade, without Beast: RFC 6455 frames from
// the client in, the server's frames out (echoes, pongs, close frames).
//
// Used for plaintext listeners without permessage-deflate, where it is the
// whole data path: the session hands it what one recv() brought and sends
// what it appended, so that many echoes leave in one send() and nothing is
// allocated per message. The upgrade before it is read, checked and
// answered by the session (websocket_session.cpp), with Beast's HTTP parser
// but without Beast's websocket::stream, which serves only TLS and
// permessage-deflate listeners.
//
// The checks are Beast's, with the same close codes: 1002 for a protocol
// error (RSV bits, a reserved opcode, an unmasked frame, a fragmented or
// oversized control frame, a non-minimal length, a continuation without a
// start or a new message inside a fragmented one, a bad close code or
// reason), 1007 for text that is not UTF-8 (found as soon as a fragment
// proves it), 1009 for a message over the limit (found from the frame
// header, before its payload is read).
//
// Thread safety: none; one per connection, used on its shard's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <utility>

namespace shoal {

// A growable byte buffer that does not zero what it grows into, and that can
// give its memory back. Holds nothing until first used.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept
      : data_(std::move(other.data_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }

  unsigned char* data() noexcept { return data_.get(); }
  const unsigned char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }

  // Room for `n` more bytes at data() + size(); returns where they go.
  unsigned char* prepare(std::size_t n) {
    if (size_ + n > capacity_) grow(size_ + n);
    return data_.get() + size_;
  }
  void commit(std::size_t n) noexcept { size_ += n; }
  void resize(std::size_t n) {
    if (n > capacity_) grow(n);
    size_ = n;
  }
  void append(const void* p, std::size_t n);
  // Drops the first `n` bytes.
  void consume(std::size_t n) noexcept;
  void clear() noexcept { size_ = 0; }
  // Empty and without memory.
  void release() noexcept {
    data_.reset();
    size_ = capacity_ = 0;
  }

 private:
  struct Free {
    void operator()(unsigned char* p) const noexcept { std::free(p); }
  };
  void grow(std::size_t at_least);

  std::unique_ptr<unsigned char, Free> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// What one feed() found.
struct WsEchoResult {
  enum class End : std::uint8_t {
    none,        // go on reading
    peer_close,  // the client's close frame: answered, the connection ends
    fail,        // a protocol error: our close frame is appended, the connection ends
  };
  std::size_t consumed = 0;  // bytes of whole frames taken from the input
  std::uint32_t messages = 0;        // data messages echoed
  std::uint64_t message_bytes = 0;   // their payload bytes
  bool ping = false;                 // a ping was answered
  bool pong = false;                 // a pong came
  End end = End::none;
  // peer_close: the code the client sent (1005 when none); fail: ours.
  std::uint16_t code = 0;
  const char* why = nullptr;  // fail: what was wrong, for the log
};

class WsEchoEngine {
 public:
  // 0: no limit on message size.
  explicit WsEchoEngine(std::uint64_t max_message_bytes) noexcept : max_(max_message_bytes) {}

  // Parses the client's frames in data[0, n) (unmasking them in place) and
  // appends the server's frames to `out`. Stops at a frame that is not
  // complete yet, and after a close frame or a failure.
  WsEchoResult feed(unsigned char* data, std::size_t n, ByteBuffer& out);

  // After the server sent its own close frame: data frames and pings are
  // dropped unanswered; feed() then only looks for the client's close.
  void closing() noexcept { closing_ = true; }

  // A message in pieces is being gathered (it holds memory).
  bool in_message() const noexcept { return opcode_ != 0; }

  // Appends a server frame (FIN set, unmasked).
  static void append_frame(ByteBuffer& out, unsigned opcode, const void* payload, std::size_t n);
  // Appends a close frame with `code` (none when 0).
  static void append_close(ByteBuffer& out, std::uint16_t code);

 private:
  WsEchoResult& fail(WsEchoResult& r, std::uint16_t code, const char* why, ByteBuffer& out);

  std::uint64_t max_;
  ByteBuffer message_;           // the fragments of a message so far, unmasked
  std::size_t utf8_checked_ = 0;  // text: message_[0, this) is valid UTF-8
  std::uint8_t opcode_ = 0;       // 1 text, 2 binary: a message in pieces; 0 none
  bool closing_ = false;
};

}  // namespace shoal
