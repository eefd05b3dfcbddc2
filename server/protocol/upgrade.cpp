#include "protocol/upgrade.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <cstring>
#include <limits>

namespace shoal {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;

constexpr UpgradeReject bad_request(std::string_view body) {
  return {400, "Bad Request", body, {}, UpgradeReject::Why::handshake_failed};
}

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Sec-WebSocket-Key: the canonical base64 of exactly 16 bytes, i.e. 22
// characters, the last of which carries 2 bits ("AQgw"), then "==".
bool valid_key(std::string_view k) {
  if (k.size() != 24 || k[22] != '=' || k[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i)
    if (!is_base64_char(k[i])) return false;
  return std::string_view("AQgw").find(k[21]) != std::string_view::npos;
}

// Across every field of that name: RFC 9110 §5.3 lets a list be split over
// repeated fields. Beast's token_list compares tokens case-insensitively.
bool has_token(const http::fields& f, http::field name, std::string_view token) {
  auto range = f.equal_range(name);
  for (auto it = range.first; it != range.second; ++it)
    if (http::token_list{it->value()}.exists(beast::string_view(token.data(), token.size())))
      return true;
  return false;
}

std::size_t count_of(const http::fields& f, http::field name) {
  return static_cast<std::size_t>(f.count(name));
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// The first of the server's subprotocols, in its order of preference, that
// the client offered (Sec-WebSocket-Protocol may be repeated and is a
// comma-separated list); empty when they share none. Names compare
// case-sensitively.
std::string choose_subprotocol(const http::fields& f, const std::vector<std::string>& ours) {
  auto range = f.equal_range(http::field::sec_websocket_protocol);
  for (const std::string& candidate : ours) {
    for (auto it = range.first; it != range.second; ++it) {
      for (auto token : http::token_list{it->value()})
        if (sv(token) == candidate) return candidate;
    }
  }
  return {};
}

}  // namespace

UpgradeDecision decide_upgrade(std::string_view request, const WebSocketConfig& config) {
  http::request_parser<http::empty_body> parser;
  // Config bounds max_header_bytes far below 4 GiB; clamping keeps a larger
  // value from wrapping into a small limit.
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::uint64_t>(config.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(request.data(), request.size()), ec);
  if (ec == http::error::header_limit) return kRequestHeaderTooLarge;
  if (ec || !parser.is_header_done()) return bad_request("malformed HTTP request");
  // A Content-Length or chunked body still to come: the session took only
  // the head, and bytes after it are frames, never a body.
  if (!parser.is_done()) return bad_request("an upgrade request has no body");
  const http::request<http::empty_body>& req = parser.get();

  // RFC 6455 §4.2.1, in order, so that each failure gets its own status.
  // A plain HTTP request (none of the upgrade's fields) is told what the
  // port is before it is told which field it lacks.
  if (req.method() != http::verb::get)
    return UpgradeReject{405, "Method Not Allowed", "a WebSocket upgrade is a GET",
                         "Allow: GET\r\n", UpgradeReject::Why::handshake_failed};
  if (req.version() < 11) return bad_request("a WebSocket upgrade needs HTTP/1.1 or higher");
  const bool upgrade_websocket = has_token(req, http::field::upgrade, "websocket");
  const bool connection_upgrade = has_token(req, http::field::connection, "upgrade");
  if (!upgrade_websocket && !connection_upgrade &&
      count_of(req, http::field::sec_websocket_key) == 0) {
    // A plain request (http_echo off, or a caller that does not tell them
    // apart): the WebSocket path needs an upgrade, there is nothing elsewhere.
    const std::string_view plain_target = sv(req.target());
    if (plain_target.substr(0, plain_target.find('?')) == config.path)
      return UpgradeReject{426, "Upgrade Required", "this port speaks WebSocket only",
                           "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
                           UpgradeReject::Why::handshake_failed};
    return UpgradeReject{404, "Not Found", "no WebSocket endpoint at this path", {},
                         UpgradeReject::Why::handshake_failed};
  }
  if (count_of(req, http::field::host) != 1) return bad_request("one Host header is required");
  if (!upgrade_websocket) return bad_request("Upgrade: websocket is required");
  if (!connection_upgrade) return bad_request("Connection: Upgrade is required");
  if (count_of(req, http::field::sec_websocket_key) != 1 ||
      !valid_key(sv(req[http::field::sec_websocket_key])))
    return bad_request("Sec-WebSocket-Key must be the base64 of 16 bytes");
  if (count_of(req, http::field::sec_websocket_version) != 1 ||
      req[http::field::sec_websocket_version] != "13")
    return UpgradeReject{426, "Upgrade Required", "this server speaks WebSocket version 13",
                         "Sec-WebSocket-Version: 13\r\n", UpgradeReject::Why::handshake_failed};
  const std::string_view target = sv(req.target());
  if (target.substr(0, target.find('?')) != config.path)
    return UpgradeReject{404,
                         "Not Found",
                         "no WebSocket endpoint at this path",
                         {},
                         UpgradeReject::Why::handshake_failed};
  if (!config.allowed_origins.empty()) {
    // One Origin, and one of the list: a client that sends two is not
    // trusted to mean either.
    bool allowed = false;
    if (count_of(req, http::field::origin) == 1) {
      const std::string_view origin = sv(req[http::field::origin]);
      allowed = std::any_of(config.allowed_origins.begin(), config.allowed_origins.end(),
                            [origin](const std::string& o) { return iequals_ascii(origin, o); });
    }
    if (!allowed)
      return UpgradeReject{403, "Forbidden", "origin not allowed", {}, UpgradeReject::Why::origin};
  }

  UpgradeAccept accept;
  accept.accept = websocket_accept_key(sv(req[http::field::sec_websocket_key]));
  accept.subprotocol = choose_subprotocol(req, config.subprotocols);
  auto extensions = req.equal_range(http::field::sec_websocket_extensions);
  for (auto it = extensions.first; it != extensions.second; ++it)
    accept.extensions.emplace_back(sv(it->value()));
  accept.target = target;
  return accept;
}

std::string accept_response(const UpgradeAccept& accept, std::string_view extensions) {
  std::string r;
  r.reserve(160 + accept.subprotocol.size() + extensions.size());
  r.append(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ");
  r.append(accept.accept).append("\r\nServer: shoal\r\n");
  if (!accept.subprotocol.empty())
    r.append("Sec-WebSocket-Protocol: ").append(accept.subprotocol).append("\r\n");
  if (!extensions.empty()) r.append("Sec-WebSocket-Extensions: ").append(extensions).append("\r\n");
  r.append("\r\n");
  return r;
}

std::string reject_response(const UpgradeReject& reject) {
  std::string r;
  r.reserve(160 + reject.body.size() + reject.extra_headers.size());
  r.append("HTTP/1.1 ").append(std::to_string(reject.status)).append(" ").append(reject.phrase);
  r.append("\r\nServer: shoal\r\nContent-Type: text/plain\r\nConnection: close\r\n");
  r.append(reject.extra_headers);
  // The body goes out with a newline, so that `curl` output ends its line.
  r.append("Content-Length: ").append(std::to_string(reject.body.size() + 1)).append("\r\n\r\n");
  r.append(reject.body).append("\n");
  return r;
}

std::string websocket_accept_key(std::string_view key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  // A valid key is 24 characters, so key and GUID fit on the stack; any
  // other length still gets its hash, through a string.
  std::array<unsigned char, 64> keyed;
  std::string longer;
  const unsigned char* input = keyed.data();
  const std::size_t n = key.size() + kGuid.size();
  if (n <= keyed.size()) {
    std::memcpy(keyed.data(), key.data(), key.size());
    std::memcpy(keyed.data() + key.size(), kGuid.data(), kGuid.size());
  } else {
    longer.reserve(n);
    longer.append(key).append(kGuid);
    input = reinterpret_cast<const unsigned char*>(longer.data());
  }
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(input, n, digest);
  // Base64 of 20 bytes: 28 characters, and EVP_EncodeBlock's NUL.
  std::array<unsigned char, 29> encoded;
  const int length = EVP_EncodeBlock(encoded.data(), digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(encoded.data()),
                     static_cast<std::size_t>(length));
}

std::size_t RequestHeadEnd::feed(std::string_view bytes) noexcept {
  if (state_ == kFound) return 0;
  // state_ counts the bytes of "\r\n\r\n" matched so far. A '\r' always
  // starts a match again (or continues one after "\r\n"), so no byte is
  // looked at twice.
  std::uint8_t s = state_;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == '\r') {
      s = s == 2 ? 3 : 1;
    } else if (c == '\n') {
      s = s == 1 ? 2 : s == 3 ? kFound : 0;
    } else {
      s = 0;
    }
    if (s == kFound) {
      state_ = s;
      return i + 1;
    }
  }
  state_ = s;
  return npos;
}

}  // namespace shoal
