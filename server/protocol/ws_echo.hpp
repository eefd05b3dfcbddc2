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

#include "protocol/byte_buffer.hpp"

namespace shoal {

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
