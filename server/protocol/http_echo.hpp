// HTTP echo and response controls for a websocket-echo listener: the answer
// to every request that is not a WebSocket upgrade, and the query
// parameters (delay=, status=, size=, close_after=, close_code=) that shape
// an HTTP answer or a WebSocket connection's echoes. Pure code: bytes in,
// bytes out, no socket, no clock.
//
// - is_upgrade_attempt() tells an upgrade from a plain request by a cheap
//   look at the head, before any parse.
// - parse_http_request() parses one whole request (head and body) from the
//   front of the bytes a connection has gathered, with Beast's parser
//   (kept in http_echo.cpp so that no session compiles Beast); need_more
//   until its body is in, so that pipelined requests are taken one at a time.
// - parse_controls() reads and checks the controls of a target's query
//   against the listener's caps: nothing is clamped, a bad value is a 400
//   naming the parameter.
// - http_echo_response() builds the whole answer: the JSON echo, shaped by
//   the controls, or the browser page for GET /.ws.
//
// Thread safety: no state; call from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "config/config.hpp"
#include "tls/tls_stream.hpp"  // TlsDetails

namespace shoal {

// Whether a complete request head asks for a WebSocket: an Upgrade header
// with the token "websocket", or a Sec-WebSocket-Key header. Such a request
// gets the upgrade's checks (decide_upgrade); any other is HTTP echo.
bool is_upgrade_attempt(std::string_view head) noexcept;

// The controls a request or an upgrade asked for. Absent: not asked.
struct EchoControls {
  std::optional<std::int64_t> delay_ms;
  std::optional<unsigned> status;           // HTTP only
  std::optional<std::uint64_t> size;
  std::optional<std::uint32_t> close_after;  // WebSocket only
  std::uint16_t close_code = 1000;           // with close_after

  bool any_websocket() const noexcept { return delay_ms || size || close_after; }
};

// The control names, in the order of the metrics' `control` label.
enum class Control : std::uint8_t { delay, status, size, close_after, close_code };
inline constexpr std::size_t kControlCount = 5;
std::string_view control_name(Control c) noexcept;

struct ControlError {
  Control parameter;
  std::string message;  // names the parameter and the value: `delay: "abc" is not a duration`
};

// Reads the controls in the query of `target` ("/path?a=1&delay=5ms").
// `websocket`: an upgrade URL (status ignored; close_after, close_code read)
// or an HTTP request (close_after, close_code ignored). With
// controls.enabled false nothing is read and no error is possible.
std::variant<EchoControls, ControlError> parse_controls(std::string_view target,
                                                        const WebSocketConfig::Controls& caps,
                                                        bool websocket);

// One request, parsed.
struct HttpRequest {
  std::string method;
  std::string target;
  unsigned version = 11;  // 10 or 11
  std::vector<std::pair<std::string, std::string>> headers;  // as sent, in order
  std::string body;
  bool keep_alive = true;
  bool head = false;  // HEAD: the answer has no body
};

struct HttpParse {
  enum class State : std::uint8_t {
    need_more,  // the request is not all here yet
    done,       // `request` is whole; `consumed` bytes were it
    error,      // `status`/`reason`: answer that and close
  };
  State state = State::need_more;
  std::size_t consumed = 0;
  HttpRequest request;
  // need_more: the head is in, it asks `Expect: 100-continue` and its body
  // is still to come (the caller sends 100 Continue once).
  bool expect_continue = false;
  // need_more with a Content-Length: the bytes the whole request takes
  // (head and body), so that the caller parses again only then; 0 when not
  // known (a chunked body).
  std::size_t whole_size = 0;
  unsigned status = 0;  // error: 400, 413 or 431
  std::string_view reason;
};

// Parses the request at the front of `bytes` (which start with a complete
// head); the body is held to max_body_bytes, the head to max_header_bytes.
HttpParse parse_http_request(std::string_view bytes, const WebSocketConfig& config);

// Who answers and to whom, for the echo's client, server and tls fields.
struct EchoContext {
  std::string_view instance;
  std::string_view hostname;
  std::string_view listener;
  unsigned shard = 0;
  std::string client_address;
  std::uint16_t client_port = 0;
  const TlsDetails* tls = nullptr;  // null: plaintext
  std::string_view ws_path = "/";   // for the browser page
};

// Whether `target` is the browser page: GET or HEAD of /.ws.
bool is_browser_page(const HttpRequest& request) noexcept;

// The complete answer to `request` (status line, headers, body unless HEAD):
// the browser page, or the JSON echo shaped by `controls`. `close`: the
// connection ends after it (Connection: close); else keep-alive.
std::string http_echo_response(const HttpRequest& request, const EchoContext& context,
                               const EchoControls& controls, bool close);

// The browser page's answer (text/html), `head`: without its body.
std::string http_page_response(std::string_view html, bool head, bool close, std::string_view instance);

// A JSON error answer: `status` with {"error": message, "parameter": name}
// (parameter left out when empty).
std::string http_error_response(unsigned status, std::string_view message,
                                std::string_view parameter, std::string_view instance, bool close);

// The echo of one WebSocket message resized to `size` bytes (size=): the
// message repeated or cut; text is cut at a code point boundary and filled
// with spaces, an empty message becomes spaces (text) or zero bytes.
void resize_echo(const unsigned char* message, std::size_t n, bool text, std::size_t size,
                 unsigned char* out) noexcept;

}  // namespace shoal
