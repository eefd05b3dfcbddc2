// RFC 6455 pieces a WebSocket client needs, so that shoal-load sees every
// byte the server sends: masked client frames, an incremental parser for
// server frames, and the opening handshake. Frame headers are written and
// decoded by the server's own codec (server/protocol/frame_codec.hpp, in
// its client role): one implementation of the framing, not two.
//
// Pure functions and a parser object owned by one connection (one thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/frame_codec.hpp"

namespace shoal::load::ws {

enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

inline bool is_control(Opcode op) { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

// Appends one frame to `out`: FIN as given, the mask bit set and `payload`
// XORed with `mask_key` (client to server frames are always masked).
void append_client_frame(std::string& out, Opcode op, std::string_view payload,
                         std::uint32_t mask_key, bool fin = true);

// Appends one unmasked frame (what a server sends); for tests and helpers.
void append_server_frame(std::string& out, Opcode op, std::string_view payload, bool fin = true);

// XORs `n` bytes at `data` with the 4-byte key, starting `offset` bytes into
// the key cycle.
void apply_mask(char* data, std::size_t n, std::uint32_t mask_key, std::size_t offset = 0);

enum class ParseError {
  none,
  masked_server_frame,   // servers must not mask (RFC 6455 5.1)
  reserved_bits,         // RSV1-3 set without a negotiated extension
  bad_opcode,            // reserved opcode
  bad_control_frame,     // fragmented control frame or payload > 125
  unexpected_continuation,
  expected_continuation,  // a new data frame while a message is unfinished
  message_too_big,
  bad_length,             // a length not in its shortest form, or over 2^63
};
const char* to_string(ParseError e);

// Incremental parser of server-to-client frames. feed() takes any split of the
// byte stream and calls, on `handler`:
//   on_message_begin(Opcode)       text or binary: first frame of a message
//   on_message_data(const char*, std::size_t)   payload bytes, in order
//   on_message_end()               after the FIN frame's payload
//   on_control(Opcode, std::string_view)  ping, pong, close, whole payload
// Control frames may arrive between the fragments of a message.
class FrameParser {
 public:
  explicit FrameParser(std::uint64_t max_message = std::uint64_t{1} << 31) : max_message_(max_message) {}

  // Consumes all `n` bytes unless an error occurs; returns it.
  template <class Handler>
  ParseError feed(const char* data, std::size_t n, Handler& handler);

  bool in_message() const { return in_message_; }

 private:
  enum class State { header, payload };
  State state_ = State::header;
  unsigned char head_[shoal::ws::max_header_size] = {};
  std::size_t head_have_ = 0;
  bool fin_ = false;
  Opcode op_ = Opcode::continuation;
  std::uint64_t remaining_ = 0;
  bool in_message_ = false;
  std::uint64_t message_size_ = 0;
  std::uint64_t max_message_;
  std::string control_;

  ParseError on_header(const shoal::ws::FrameHeader& h);
  template <class Handler>
  ParseError begin_payload(Handler& handler);
  template <class Handler>
  void end_frame(Handler& handler);
};

// Handshake helpers.
std::string base64_encode(const unsigned char* data, std::size_t n);
// base64(SHA-1(key + the RFC 6455 GUID)).
std::string accept_for_key(std::string_view key);
// A GET request that asks to upgrade `path` on `host` with `key`.
std::string upgrade_request(std::string_view host, std::string_view path, std::string_view key);

// Checks a complete response head (through "\r\n\r\n"): status 101, Upgrade:
// websocket, Connection: upgrade, and the right Sec-WebSocket-Accept. Returns
// an empty string when good, else what was wrong.
std::string check_upgrade_response(std::string_view head, std::string_view key);

// ---------------------------------------------------------------------------

template <class Handler>
ParseError FrameParser::feed(const char* data, std::size_t n, Handler& handler) {
  std::size_t i = 0;
  while (i < n) {
    switch (state_) {
      case State::header: {
        // Header bytes are gathered until the codec can decode them (2 to
        // 10 bytes: server frames carry no mask key).
        head_[head_have_++] = static_cast<unsigned char>(data[i++]);
        const shoal::ws::HeaderResult d =
            shoal::ws::decode_header(shoal::ws::Role::client, head_, head_have_);
        if (d.status == shoal::ws::Decode::need_more) break;
        head_have_ = 0;
        if (d.status == shoal::ws::Decode::error) {
          switch (d.error) {
            case shoal::ws::FrameError::bad_masking: return ParseError::masked_server_frame;
            case shoal::ws::FrameError::reserved_bits: return ParseError::reserved_bits;
            case shoal::ws::FrameError::reserved_opcode: return ParseError::bad_opcode;
            case shoal::ws::FrameError::bad_control_frame: return ParseError::bad_control_frame;
            default: return ParseError::bad_length;
          }
        }
        if (auto e = on_header(d.header); e != ParseError::none) return e;
        if (auto e = begin_payload(handler); e != ParseError::none) return e;
        break;
      }
      case State::payload: {
        const std::size_t take = static_cast<std::size_t>(
            std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(n - i)));
        if (is_control(op_)) {
          control_.append(data + i, take);
        } else {
          handler.on_message_data(data + i, take);
        }
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) end_frame(handler);
        break;
      }
    }
  }
  return ParseError::none;
}

template <class Handler>
ParseError FrameParser::begin_payload(Handler& handler) {
  if (is_control(op_)) {
    if (remaining_ > 125 || !fin_) return ParseError::bad_control_frame;
    control_.clear();
  } else {
    if (op_ == Opcode::continuation) {
      if (!in_message_) return ParseError::unexpected_continuation;
    } else {
      if (in_message_) return ParseError::expected_continuation;
      in_message_ = true;
      message_size_ = 0;
      handler.on_message_begin(op_);
    }
    message_size_ += remaining_;
    if (message_size_ > max_message_) return ParseError::message_too_big;
  }
  state_ = State::payload;
  if (remaining_ == 0) end_frame(handler);
  return ParseError::none;
}

template <class Handler>
void FrameParser::end_frame(Handler& handler) {
  state_ = State::header;
  if (is_control(op_)) {
    handler.on_control(op_, std::string_view(control_));
    return;
  }
  if (fin_) {
    in_message_ = false;
    handler.on_message_end();
  }
}

}  // namespace shoal::load::ws
