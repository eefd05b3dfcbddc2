// The WebSocket echo after the upgrade: RFC 6455 frames from the client in,
// the server's frames out (echoes, pongs, close frames), on the frame codec
// (frame_codec.hpp) in its server role.
//
// It serves every WebSocket listener: ws:// and wss://, with or without
// permessage-deflate. The session supplies the transport (plain TCP or its
// TLS layer), hands the engine what one read brought, and sends what it
// appended, so that many echoes leave in one write and nothing is allocated
// per message; with permessage-deflate negotiated it also supplies the
// MessageCompression (compression.hpp) that inflates and deflates whole
// messages. The upgrade before it is read, checked and answered by the
// session (websocket_session.cpp).
//
// The checks, with the close codes Autobahn|Testsuite expects of a strict
// server: 1002 for a protocol error (RSV bits the extensions do not allow, a
// reserved opcode, an unmasked frame, a fragmented or oversized control
// frame, a non-minimal length, a continuation without a start or a new
// message inside a fragmented one, a bad close code or a one-byte close
// payload), 1007 for text or a close reason that is not UTF-8 (found as soon
// as the bytes that prove it arrive, even inside a frame whose end has not
// come), or a compressed message that does not inflate, 1009 for a message
// over the limit (found from the frame header, before its payload is read;
// for a compressed message, also when it inflates past it).
//
// Thread safety: none; one per connection, used on its shard's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/byte_buffer.hpp"
#include "protocol/compression.hpp"
#include "protocol/frame_codec.hpp"
#include "protocol/utf8.hpp"

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
  std::uint64_t message_bytes = 0;   // their payload bytes (inflated, when compressed)
  bool ping = false;                 // a ping was answered
  bool pong = false;                 // a pong came
  End end = End::none;
  // The EchoShaper stopped the feed after a message: whole frames may
  // follow `consumed`, to be fed again without a read.
  bool stopped = false;
  // peer_close: the code the client sent (1005 when none); fail: ours.
  std::uint16_t code = 0;
  const char* why = nullptr;  // fail: what was wrong, for the log
};

class WsEchoEngine;

// Shapes a connection's echoes (the response controls of
// protocol/http_echo.hpp): handed each whole data message instead of the
// engine echoing it, it appends what the client gets back, now or later.
// Control frames are the engine's as ever.
class EchoShaper {
 public:
  virtual ~EchoShaper() = default;
  // `message`: the whole message, unmasked, checked, inflated when it came
  // compressed; `out`: where the read's answers go. Use
  // engine.append_message() to frame (and deflate) an echo. false: stop the
  // feed after this message.
  virtual bool on_message(WsEchoEngine& engine, unsigned opcode, const unsigned char* message,
                          std::size_t n, ByteBuffer& out) = 0;
};

class WsEchoEngine {
 public:
  using Codec = ws::ServerCodec;

  // max_message_bytes 0: no limit on message size. `compression`: the
  // negotiated permessage-deflate, or null for none; not owned, it must
  // outlive the engine.
  explicit WsEchoEngine(std::uint64_t max_message_bytes, MessageCompression* compression = nullptr) noexcept
      : max_(max_message_bytes), compression_(compression) {}

  // Sets (or with null, removes) the compression hook; between messages.
  void compression(MessageCompression* c) noexcept { compression_ = c; }
  MessageCompression* compression() const noexcept { return compression_; }

  // Parses the client's frames in data[0, n) (unmasking whole frames in
  // place) and appends the server's frames to `out`. Stops at a frame that
  // is not complete yet, and after a close frame or a failure. The next
  // call's data must begin with the bytes this one did not consume (the
  // incomplete frame, whose text may have been checked already).
  // `shaper`: null, the plain echo (the hot path, with no cost of its own);
  // else every whole data message goes to it.
  WsEchoResult feed(unsigned char* data, std::size_t n, ByteBuffer& out,
                    EchoShaper* shaper = nullptr);

  // Appends a data message as one frame, deflated when permessage-deflate
  // was agreed (for an EchoShaper).
  void append_message(ByteBuffer& out, unsigned opcode, const unsigned char* payload, std::size_t n);

  // After the server sent its own close frame: data frames and pings are
  // dropped unanswered; feed() then only looks for the client's close.
  void closing() noexcept { closing_ = true; }

  // A message in pieces is being gathered (it holds memory).
  bool in_message() const noexcept { return opcode_ != 0; }

  // Appends a server frame (FIN set, unmasked); `compressed` sets RSV1 (the
  // payload is then the MessageCompression's deflate() output).
  static void append_frame(ByteBuffer& out, unsigned opcode, const void* payload, std::size_t n,
                           bool compressed = false);
  // Appends a close frame with `code` (none when 0) and `reason` (cut to
  // 123 bytes at a UTF-8 boundary).
  static void append_close(ByteBuffer& out, std::uint16_t code, std::string_view reason = {});

 private:
  template <bool kShaped>
  WsEchoResult run(unsigned char* data, std::size_t n, ByteBuffer& out, EchoShaper* shaper);
  WsEchoResult& fail(WsEchoResult& r, std::uint16_t code, const char* why, ByteBuffer& out);
  // Checks the text of the incomplete frame at `payload` whose first
  // `have` bytes are in; false when they prove it is not UTF-8.
  bool check_partial_text(const unsigned char* payload, std::size_t have, const ws::MaskKey& key) noexcept;
  // Inflates a compressed message, checks it, and appends its echo,
  // deflated, to `out`; false (with r filled by fail()) on an error.
  bool echo_compressed(WsEchoResult& r, unsigned opcode, const unsigned char* in, std::size_t n,
                       ByteBuffer& out, EchoShaper* shaper);
  // A whole message to the shaper; false when it stopped the feed.
  bool shape(WsEchoResult& r, EchoShaper& shaper, unsigned opcode, const unsigned char* message,
             std::size_t n, ByteBuffer& out);

  std::uint64_t max_;
  MessageCompression* compression_;
  ByteBuffer message_;  // the fragments of a message so far, unmasked (compressed when compressed_)
  // The frame at the front of the input when the last feed() stopped inside
  // it: how many of its payload bytes utf8_ has seen. 32 bits, with the
  // flags below, keep the engine at 48 bytes (it is in every idle
  // connection); past 4 GiB an incomplete frame waits for its end.
  std::uint32_t frame_checked_ = 0;
  Utf8Validator utf8_;       // the current text message, so far
  std::uint8_t opcode_ = 0;  // 1 text, 2 binary: a message in pieces; 0 none
  bool compressed_ = false;  // the message in pieces has RSV1
  bool closing_ = false;
};
static_assert(sizeof(WsEchoEngine) <= 48, "WsEchoEngine grew: it is in every idle connection");

}  // namespace shoal
