// Fuzz target: the HTTP side of a WebSocket port (the opening handshake).
// The input's first byte picks the listener (modulo 3: the defaults,
// permessage-deflate, or one with a path, allowed origins, subprotocols and
// a 1 KiB header limit); the rest is everything the client sends. The
// server answers with either nothing (the client left before its request
// was complete), a well-formed refusal (a status of RFC 6455 §4.2.1, a
// Content-Length body, then the close), or a 101 followed by well-formed
// frames that echo what the client sent after its request. It answers once
// the request's blank line (or more than the header limit) has come,
// without waiting for our EOF; never a crash or a hang.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "protocol/http_echo.hpp"

using namespace shoal::fuzz;

namespace {

bool contains_token(std::string value, std::string_view token) {
  for (char& c : value) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return value.find(token) != std::string::npos;
}

bool negotiated_deflate(const HttpHead& head) {
  return contains_token(head.field("sec-websocket-extensions").value_or(""), "permessage-deflate");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  FuzzServer& server = FuzzServer::get();
  const std::size_t listener = data[0] % kListenerCount;
  const shoal::WebSocketConfig& cfg = server.ws_config(listener);
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  // The server takes the request up to its first blank line; any bytes
  // after it are the client's first frames.
  const std::size_t blank = in.find("\r\n\r\n");
  // HTTP echo (not an upgrade) reads a body after the head: one announced by
  // Content-Length or Transfer-Encoding may still be coming, and waiting
  // for it (bounded by handshake_timeout) is the right answer to no answer.
  auto has_field = [](std::string_view head, std::string_view name) {
    for (std::size_t at = head.find('\n'); at != std::string_view::npos; at = head.find('\n', at + 1)) {
      const std::string_view line = head.substr(at + 1, name.size());
      if (line.size() == name.size() &&
          std::equal(line.begin(), line.end(), name.begin(),
                     [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; }))
        return true;
    }
    return false;
  };
  const std::string_view head_part = blank != std::string_view::npos ? in.substr(0, blank + 4) : in;
  const bool body_may_follow = cfg.http_echo && blank != std::string_view::npos &&
                               !shoal::is_upgrade_attempt(head_part) &&
                               (has_field(head_part, "content-length:") ||
                                has_field(head_part, "transfer-encoding:"));
  const bool answerable =
      !body_may_follow && (blank != std::string_view::npos || in.size() > cfg.max_header_bytes);
  const std::string_view frames =
      blank != std::string_view::npos ? in.substr(blank + 4) : std::string_view{};
  // What the frames ask depends on whether the server negotiated deflate,
  // known from its 101.
  std::optional<ClientModel> client;
  auto model = [&](const HttpHead& head) -> const ClientModel& {
    if (!client)
      client = model_client(frames, negotiated_deflate(head), cfg.max_message_bytes);
    return *client;
  };
  // Wait for the answer (and, after a 101, the reaction to the frames).
  std::function<bool(std::string_view)> answered;
  if (answerable) {
    answered = [&](std::string_view got) {
      const auto head = parse_head(got);
      if (!head) return false;
      if (head->status != 101) return true;
      const auto then = reacted(model(*head), negotiated_deflate(*head), cfg.max_message_bytes);
      return !then || then(got);
    };
  }
  const Reply r = converse(server.ws_port(listener), in, answered);
  if (answerable && !r.ready && !r.closed_before_ready)
    fail("no answer within " + std::to_string(kStallMs) + " ms to a request that was complete");

  const auto head = parse_head(r.bytes);
  if (!head) {
    // Nothing, or a response cut by a reset. A server that closes without
    // answering a request it could answer is a finding.
    if (!r.reset && !r.bytes.empty()) fail("a truncated response: " + excerpt(r.bytes));
    if (!r.reset && answerable && r.bytes.empty()) fail("the server closed without answering");
    server.check_no_handler_exception();
    return 0;
  }
  if (head->status == 101) {
    if (!contains_token(head->field("upgrade").value_or(""), "websocket") ||
        !contains_token(head->field("connection").value_or(""), "upgrade") ||
        head->field("sec-websocket-accept").value_or("").size() != 28)
      fail("a 101 without the headers of RFC 6455 §4.2.2: " + excerpt(r.bytes));
    if (const auto sub = head->field("sec-websocket-protocol")) {
      bool ours = false;
      for (const auto& p : cfg.subprotocols) ours = ours || p == *sub;
      if (!ours) fail("a subprotocol the server does not speak: " + *sub);
    }
    const bool deflate = negotiated_deflate(*head);
    if (deflate && !cfg.permessage_deflate.enabled) fail("deflate negotiated on a listener without it");
    check_after_upgrade(r, head->size, model(*head), deflate, cfg.max_message_bytes);
  } else if (cfg.http_echo && head->status != 431 &&
             !contains_token(head->field("connection").value_or(""), "close")) {
    // HTTP echo (or a bad control's 400) on a connection that stays open:
    // a status a client may ask for, and a body of the length announced.
    if (head->status < 200 || head->status > 599) fail("an HTTP echo status out of range: " + excerpt(r.bytes));
    const auto length = head->field("content-length");
    const bool bodyless = head->status == 204 || head->status == 304;
    if (!bodyless && (!length || length->empty() ||
                      length->find_first_not_of("0123456789") != std::string::npos))
      fail("an HTTP echo answer without a valid Content-Length: " + excerpt(r.bytes));
  } else {
    // A refusal, or HTTP echo's last answer (Connection: close), which may
    // carry any status a client asked for with status=.
    if (cfg.http_echo ? (head->status < 200 || head->status > 599)
                      : (head->status != 400 && head->status != 403 && head->status != 404 &&
                         head->status != 405 && head->status != 413 && head->status != 426 &&
                         head->status != 431))
      fail("unexpected status " + std::to_string(head->status) + ": " + excerpt(r.bytes));
    if (!contains_token(head->field("connection").value_or(""), "close"))
      fail("a refusal without Connection: close: " + excerpt(r.bytes));
    const bool bodyless = head->status == 204 || head->status == 304;
    const auto length = head->field("content-length");
    if (!bodyless) {
      if (!length || length->empty() || length->find_first_not_of("0123456789") != std::string::npos)
        fail("a refusal without a valid Content-Length: " + excerpt(r.bytes));
      const std::size_t total = head->size + std::stoul(*length);
      if (r.bytes.size() > total) fail("bytes after the refusal's body: " + excerpt(r.bytes));
      if (!r.reset && r.bytes.size() < total) fail("a truncated refusal: " + excerpt(r.bytes));
    }
  }
  server.check_no_handler_exception();
  return 0;
}
