// The WebSocket opening handshake on the server side (RFC 6455 §4.2): a
// request head in, a decision out, no socket, no I/O.
//
// decide_upgrade() parses a complete request head with Beast's HTTP parser
// and checks every requirement of §4.2.1, in a fixed order, each failure with
// the status and short body an operator expects (405 with Allow, 400s, 426
// with Sec-WebSocket-Version, 404 for another path, 403 for an origin not
// allowed, 431 for a head over max_header_bytes). An accepted request yields
// what the 101 needs: the Sec-WebSocket-Accept value, the subprotocol chosen
// and the extension offers, left to the caller to negotiate.
// accept_response() and reject_response() build the bytes to send.
//
// RequestHeadEnd finds where a request head ends in bytes that arrive in
// pieces, so that a session takes exactly the head and leaves the first
// frames that followed it in the same segment for the frame engine. A head
// that has not ended within max_header_bytes is the session's to refuse
// (kRequestHeaderTooLarge), since only it knows how many bytes came.
//
// Owned by: protocol/ (pure code). Sessions call it once per connection.
// Thread safety: the functions keep no state and may be called from any
// thread. A RequestHeadEnd belongs to one connection and is used by the one
// thread that reads it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/config.hpp"  // WebSocketConfig

namespace shoal {

// A request the server upgrades.
struct UpgradeAccept {
  std::string accept;                   // Sec-WebSocket-Accept value (base64 SHA-1 of key+GUID)
  std::string subprotocol;              // chosen, empty when none
  std::vector<std::string> extensions;  // every Sec-WebSocket-Extensions value, in order
  std::string target;                   // request target as sent (path?query)
};

// A request the server refuses, with an HTTP error and the end of the
// connection. The views refer to static strings.
struct UpgradeReject {
  // Which of the listener's rejection counters it counts in.
  enum class Why : std::uint8_t { handshake_failed, origin };
  unsigned status;
  std::string_view phrase;         // "Bad Request" ...
  std::string_view body;           // short text, e.g. "Upgrade: websocket is required"
  std::string_view extra_headers;  // e.g. "Allow: GET\r\n" or "Sec-WebSocket-Version: 13\r\n"
  Why why = Why::handshake_failed;
};

using UpgradeDecision = std::variant<UpgradeAccept, UpgradeReject>;

// The refusal of a head that has not ended within max_header_bytes (the
// session's to send), the same that decide_upgrade() gives a complete head
// over the limit.
inline constexpr UpgradeReject kRequestHeaderTooLarge{431,
                                                      "Request Header Fields Too Large",
                                                      "request header too large",
                                                      {},
                                                      UpgradeReject::Why::handshake_failed};

// `request`: the complete request head, up to and including its blank line
// (bytes after it are read as a body, which an upgrade request may not
// have).
// - HTTP versions: RFC 6455 asks for "1.1 or higher", but Beast 1.81's
//   parser reads only HTTP/1.0 and HTTP/1.1; any other version is a
//   malformed request (400), as it has always been for shoald.
// - max_header_bytes is Beast's header_limit, which Beast applies to the
//   request line and then to the fields (through the blank line) each on
//   its own: a head up to one request line longer than the limit can pass
//   here. A session that refuses a head not ended within the limit
//   (kRequestHeaderTooLarge) never passes such a head.
UpgradeDecision decide_upgrade(std::string_view request, const WebSocketConfig& config);

// The 101 response; `extensions` is the Sec-WebSocket-Extensions value to
// send (empty: none).
std::string accept_response(const UpgradeAccept& accept, std::string_view extensions = {});

// The error response: status line, Server: shoal, Content-Type: text/plain,
// Connection: close, the extra headers, Content-Length, then the body and a
// newline.
std::string reject_response(const UpgradeReject& reject);

// RFC 6455 §4.2.2: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string websocket_accept_key(std::string_view key);

// Finds the end of a request head, the first "\r\n\r\n", in bytes fed in
// any number of pieces (the match may span pieces).
class RequestHeadEnd {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  // Looks through `bytes`, the piece that follows those fed before. Returns
  // the offset in `bytes` just past the blank line when the head ends in
  // this piece (what follows it is not part of the head), npos when it has
  // not ended yet. Once the end has been found the head is over: later
  // pieces are not looked at and give 0.
  std::size_t feed(std::string_view bytes) noexcept;

  bool found() const noexcept { return state_ == kFound; }

  // For a new head (not needed between the pieces of one).
  void reset() noexcept { state_ = 0; }

 private:
  // How much of "\r\n\r\n" the bytes so far end with; kFound once it came.
  static constexpr std::uint8_t kFound = 4;
  std::uint8_t state_ = 0;
};

}  // namespace shoal
