#include "protocol/http_echo.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <charconv>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "protocol/utf8.hpp"

namespace shoal {
namespace {

namespace http = boost::beast::http;

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding: '+' is a space, %XX a byte;
// a '%' not followed by two hex digits stays as it is.
std::string decode_component(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string_view query_of(std::string_view target) noexcept {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  if (const std::size_t hash = query.find('#'); hash != std::string_view::npos)
    query = query.substr(0, hash);
  return query;
}

// Calls f(name, value) for every parameter of the query, decoded, in order.
template <typename F>
void for_each_parameter(std::string_view query, F&& f) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      f(decode_component(item), std::string());
    } else {
      f(decode_component(item.substr(0, eq)), decode_component(item.substr(eq + 1)));
    }
  }
}

std::string shown(std::string_view value) {
  std::string out = "\"";
  for (const char c : value.substr(0, 64)) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  }
  if (value.size() > 64) out.append("...");
  return out.append("\"");
}

// A whole decimal number, no sign, no spaces.
template <typename T>
std::optional<T> read_integer(std::string_view text) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// The config's grammar: digits and ms, s, m, h or nothing (seconds).
std::optional<std::int64_t> read_duration_ms(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  std::int64_t per = 0;
  if (unit.empty() || unit == "s") per = 1000;
  else if (unit == "ms") per = 1;
  else if (unit == "m") per = 60'000;
  else if (unit == "h") per = 3'600'000;
  else return std::nullopt;
  const auto count = read_integer<std::int64_t>(text.substr(0, digits));
  if (!count || *count > std::numeric_limits<std::int64_t>::max() / per) return std::nullopt;
  return *count * per;
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string_view phrase_of(unsigned status) {
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  if (reason == "<unknown-status>") return "Status";
  return {reason.data(), reason.size()};
}

// 1xx, 204 and 304 answers never have a body (RFC 9110 §6.4.1).
bool bodyless_status(unsigned status) noexcept { return status < 200 || status == 204 || status == 304; }

std::string response(unsigned status, std::string_view content_type, std::string_view body,
                     bool head, bool close, std::string_view instance) {
  std::string r;
  r.reserve(200 + body.size());
  r.append("HTTP/1.1 ").append(std::to_string(status)).append(" ").append(phrase_of(status));
  r.append("\r\nServer: shoal\r\nX-Shoal-Instance: ").append(instance);
  r.append(close ? "\r\nConnection: close" : "\r\nConnection: keep-alive");
  if (bodyless_status(status)) return r.append("\r\n\r\n");
  r.append("\r\nContent-Type: ").append(content_type);
  r.append("\r\nContent-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  if (!head) r.append(body);
  return r;
}

nlohmann::ordered_json query_json(std::string_view target) {
  nlohmann::ordered_json query = nlohmann::ordered_json::object();
  for_each_parameter(query_of(target), [&](std::string name, std::string value) {
    auto it = query.find(name);
    if (it == query.end()) {
      query[name] = std::move(value);
    } else if (it->is_array()) {
      it->push_back(std::move(value));
    } else {
      nlohmann::ordered_json both = nlohmann::ordered_json::array({*it, value});
      *it = std::move(both);
    }
  });
  return query;
}

}  // namespace

bool is_upgrade_attempt(std::string_view head) noexcept {
  std::size_t at = head.find('\n');  // past the request line
  while (at != std::string_view::npos && at + 1 < head.size()) {
    const std::size_t start = at + 1;
    at = head.find('\n', start);
    const std::string_view line =
        head.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start);
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, colon);
    if (iequals(name, "sec-websocket-key")) return true;
    if (!iequals(name, "upgrade")) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty()) {
      const std::size_t comma = value.find(',');
      const std::string_view token = trim(value.substr(0, comma));
      if (iequals(token, "websocket")) return true;
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::string_view control_name(Control c) noexcept {
  switch (c) {
    case Control::delay: return "delay";
    case Control::status: return "status";
    case Control::size: return "size";
    case Control::close_after: return "close_after";
    case Control::close_code: return "close_code";
  }
  return "?";
}

std::variant<EchoControls, ControlError> parse_controls(std::string_view target,
                                                        const WebSocketConfig::Controls& caps,
                                                        bool websocket) {
  EchoControls c;
  if (!caps.enabled) return c;
  std::optional<ControlError> error;
  bool seen[kControlCount] = {};
  bool code_given = false;
  auto bad = [&](Control which, std::string message) {
    if (!error) error = ControlError{which, std::string(control_name(which)) + ": " + message};
  };
  for_each_parameter(query_of(target), [&](const std::string& name, const std::string& value) {
    if (error) return;
    Control which;
    if (name == "delay") which = Control::delay;
    else if (name == "size") which = Control::size;
    else if (name == "status" && !websocket) which = Control::status;
    else if (name == "close_after" && websocket) which = Control::close_after;
    else if (name == "close_code" && websocket) which = Control::close_code;
    else return;  // another parameter: only echoed
    const auto slot = static_cast<std::size_t>(which);
    if (seen[slot]) return bad(which, "given more than once");
    seen[slot] = true;
    switch (which) {
      case Control::delay: {
        const auto ms = read_duration_ms(value);
        if (!ms) return bad(which, shown(value) + " is not a duration like 250ms, 5s or 1m");
        if (*ms > caps.max_delay.count())
          return bad(which, shown(value) + " is over controls.max_delay (" +
                                format_duration(caps.max_delay) + ")");
        c.delay_ms = *ms;
        return;
      }
      case Control::status: {
        const auto code = read_integer<unsigned>(value);
        if (!code || *code < 200 || *code > 599)
          return bad(which, shown(value) + " is not an HTTP status from 200 to 599");
        c.status = *code;
        return;
      }
      case Control::size: {
        const auto size = read_integer<std::uint64_t>(value);
        if (!size) return bad(which, shown(value) + " is not a number of bytes");
        if (*size > caps.max_size)
          return bad(which, shown(value) + " is over controls.max_size (" +
                                std::to_string(caps.max_size) + ")");
        c.size = *size;
        return;
      }
      case Control::close_after: {
        const auto n = read_integer<std::uint32_t>(value);
        if (!n) return bad(which, shown(value) + " is not a count from 0 to 4294967295");
        c.close_after = *n;
        return;
      }
      case Control::close_code: {
        const auto code = read_integer<std::uint16_t>(value);
        const bool valid = code && ((*code >= 1000 && *code <= 1003) ||
                                    (*code >= 1007 && *code <= 1014) ||
                                    (*code >= 3000 && *code <= 4999));
        if (!valid)
          return bad(which, shown(value) + " is not a close code a server may send "
                                            "(1000-1003, 1007-1014, 3000-4999)");
        c.close_code = *code;
        code_given = true;
        return;
      }
    }
  });
  if (!error && code_given && !c.close_after)
    bad(Control::close_code, "needs close_after (the echoes after which to close)");
  if (error) return *error;
  return c;
}

HttpParse parse_http_request(std::string_view bytes, const WebSocketConfig& config) {
  HttpParse r;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::uint64_t>(config.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(config.max_body_bytes);
  parser.eager(true);
  boost::system::error_code ec;
  std::size_t used = 0;
  while (!parser.is_done() && used < bytes.size()) {
    const std::size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) {
      ec = {};
      break;
    }
    if (ec || n == 0) break;
  }
  if (ec == http::error::header_limit) {
    r.state = HttpParse::State::error;
    r.status = 431;
    r.reason = "request header too large";
    return r;
  }
  if (ec == http::error::body_limit) {
    r.state = HttpParse::State::error;
    r.status = 413;
    r.reason = "request body over max_body_bytes";
    return r;
  }
  // The bytes hold a whole head (the caller found its blank line), so a
  // parser still inside it has met something that is not HTTP: Beast waits
  // for eight bytes of version before it judges "x\r\n", and leading empty
  // lines are skipped as if a request were still to come.
  if (ec || !parser.is_header_done()) {
    r.state = HttpParse::State::error;
    r.status = 400;
    r.reason = "malformed HTTP request";
    return r;
  }
  if (!parser.is_done()) {
    if (parser.is_header_done()) {
      const auto expect = parser.get()[http::field::expect];
      r.expect_continue = iequals(std::string_view(expect.data(), expect.size()), "100-continue");
      // Consumed so far is the head and the body bytes Beast has taken.
      if (const auto length = parser.content_length_remaining())
        r.whole_size = used + static_cast<std::size_t>(*length);
    }
    return r;
  }
  const auto& req = parser.get();
  r.state = HttpParse::State::done;
  r.consumed = used;
  HttpRequest& out = r.request;
  const auto method = req.method_string();
  out.method.assign(method.data(), method.size());
  const auto target = req.target();
  out.target.assign(target.data(), target.size());
  out.version = req.version();
  for (const auto& field : req) {
    const auto name = field.name_string();
    const auto value = field.value();
    out.headers.emplace_back(std::string(name.data(), name.size()),
                             std::string(value.data(), value.size()));
  }
  out.keep_alive = req.keep_alive();
  out.head = out.method == "HEAD";
  out.body = std::move(parser.release().body());  // `req` is gone after this
  return r;
}

bool is_browser_page(const HttpRequest& request) noexcept {
  if (request.method != "GET" && request.method != "HEAD") return false;
  const std::string_view target = request.target;
  return target.substr(0, target.find('?')) == "/.ws";
}

std::string http_echo_response(const HttpRequest& request, const EchoContext& context,
                               const EchoControls& controls, bool close) {
  nlohmann::ordered_json echo;
  echo["method"] = request.method;
  const std::string_view target = request.target;
  echo["path"] = std::string(target.substr(0, target.find('?')));
  echo["query"] = query_json(target);
  echo["http_version"] = request.version == 10 ? "1.0" : "1.1";
  nlohmann::ordered_json headers = nlohmann::ordered_json::array();
  for (const auto& [name, value] : request.headers) headers.push_back({name, value});
  echo["headers"] = std::move(headers);
  if (check_utf8(request.body) == Utf8::valid) {
    echo["body"] = request.body;
    echo["body_encoding"] = "utf-8";
  } else {
    echo["body"] = base64(request.body);
    echo["body_encoding"] = "base64";
  }
  echo["client"] = {{"address", context.client_address}, {"port", context.client_port}};
  echo["server"] = {{"instance", context.instance},
                    {"hostname", context.hostname},
                    {"listener", context.listener},
                    {"shard", context.shard}};
  if (context.tls) {
    auto or_null = [](const std::string& s) {
      return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
    };
    echo["tls"] = {{"version", context.tls->version},
                   {"cipher", context.tls->cipher},
                   {"sni", or_null(context.tls->sni)},
                   {"alpn", or_null(context.tls->alpn)}};
  }
  // Headers and the query may hold bytes that are not UTF-8: they are shown
  // with U+FFFD rather than refused.
  std::string body = echo.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::string_view content_type = "application/json";
  if (controls.size) {
    const std::size_t want = static_cast<std::size_t>(*controls.size);
    if (want >= body.size() + 1) {
      body.append(want - body.size() - 1, ' ');
    } else {
      body.assign(want, '.');
      content_type = "text/plain";
    }
    if (body.size() < want) body.push_back('\n');
  } else {
    body.push_back('\n');
  }
  return response(controls.status.value_or(200), content_type, body, request.head, close,
                  context.instance);
}

std::string http_page_response(std::string_view html, bool head, bool close, std::string_view instance) {
  return response(200, "text/html; charset=utf-8", html, head, close, instance);
}

std::string http_error_response(unsigned status, std::string_view message,
                                std::string_view parameter, std::string_view instance, bool close) {
  nlohmann::ordered_json error;
  error["error"] = message;
  if (!parameter.empty()) error["parameter"] = parameter;
  std::string body = error.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  body.push_back('\n');
  return response(status, "application/json", body, false, close, instance);
}

void resize_echo(const unsigned char* message, std::size_t n, bool text, std::size_t size,
                 unsigned char* out) noexcept {
  if (n == 0) {
    std::memset(out, text ? ' ' : 0, size);
    return;
  }
  std::size_t at = 0;
  while (size - at >= n) {
    std::memcpy(out + at, message, n);
    at += n;
  }
  const std::size_t rest = size - at;
  // The message is whole UTF-8, so only its last, partial copy can cut a
  // character; the bytes of that character become spaces.
  const std::size_t keep = text ? utf8_prefix(message, n, rest) : rest;
  std::memcpy(out + at, message, keep);
  std::memset(out + at + keep, ' ', rest - keep);
}

}  // namespace shoal
