#include "ws_frame.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace shoal::load::ws {

namespace {

void append_header(std::string& out, Opcode op, std::uint64_t len, bool fin, bool masked,
                   std::uint32_t mask_key) {
  unsigned char h[shoal::ws::max_header_size];
  const std::size_t n = shoal::ws::put_header(
      h, fin, false, static_cast<std::uint8_t>(op), len,
      masked ? std::optional<shoal::ws::MaskKey>(shoal::ws::MaskKey::from_u32(mask_key)) : std::nullopt);
  out.append(reinterpret_cast<const char*>(h), n);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated header value contains `token` (any case).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

void apply_mask(char* data, std::size_t n, std::uint32_t mask_key, std::size_t offset) {
  shoal::ws::apply_mask(reinterpret_cast<unsigned char*>(data), n,
                        shoal::ws::MaskKey::from_u32(mask_key), offset);
}

void append_client_frame(std::string& out, Opcode op, std::string_view payload, std::uint32_t mask_key,
                         bool fin) {
  append_header(out, op, payload.size(), fin, true, mask_key);
  const std::size_t at = out.size();
  out.append(payload);
  apply_mask(out.data() + at, payload.size(), mask_key);
}

void append_server_frame(std::string& out, Opcode op, std::string_view payload, bool fin) {
  append_header(out, op, payload.size(), fin, false, 0);
  out.append(payload);
}

const char* to_string(ParseError e) {
  switch (e) {
    case ParseError::none: return "none";
    case ParseError::masked_server_frame: return "masked frame from server";
    case ParseError::reserved_bits: return "reserved bits set";
    case ParseError::bad_opcode: return "reserved opcode";
    case ParseError::bad_control_frame: return "fragmented or oversized control frame";
    case ParseError::unexpected_continuation: return "continuation frame outside a message";
    case ParseError::expected_continuation: return "new message inside an unfinished one";
    case ParseError::message_too_big: return "message too big";
    case ParseError::bad_length: return "length not in its shortest form";
  }
  return "?";
}

// The codec has checked the header (RSV bits, opcode, masking, control
// frame rules, the length's form); what is left is the message's state.
ParseError FrameParser::on_header(const shoal::ws::FrameHeader& h) {
  fin_ = h.fin;
  op_ = static_cast<Opcode>(h.opcode);
  remaining_ = h.length;
  return ParseError::none;
}

std::string base64_encode(const unsigned char* data, std::size_t n) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (std::size_t i = 0; i < n; i += 3) {
    const std::uint32_t b0 = data[i];
    const std::uint32_t b1 = i + 1 < n ? data[i + 1] : 0;
    const std::uint32_t b2 = i + 2 < n ? data[i + 2] : 0;
    const std::uint32_t v = (b0 << 16) | (b1 << 8) | b2;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? alphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? alphabet[v & 63] : '=');
  }
  return out;
}

std::string accept_for_key(std::string_view key) {
  std::string s(key);
  s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), digest, &len, EVP_sha1(), nullptr);
  return base64_encode(digest, len);
}

std::string upgrade_request(std::string_view host, std::string_view path, std::string_view key) {
  std::string r;
  r.reserve(160 + host.size() + path.size());
  r += "GET ";
  r += path;
  r += " HTTP/1.1\r\nHost: ";
  r += host;
  r += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  r += key;
  r += "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  return r;
}

std::string check_upgrade_response(std::string_view head, std::string_view key) {
  const auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return "no status line";
  const std::string_view status = head.substr(0, line_end);
  if (status.substr(0, 9) != "HTTP/1.1 " || status.size() < 12) {
    return "bad status line: " + std::string(status.substr(0, 80));
  }
  if (status.substr(9, 3) != "101") return "status " + std::string(status.substr(9, 80));
  bool upgrade = false, connection = false, accept = false;
  const std::string want = accept_for_key(key);
  std::size_t pos = line_end + 2;
  while (pos < head.size()) {
    const auto end = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, end == std::string_view::npos ? head.size() - pos : end - pos);
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      const std::string_view name = trim(line.substr(0, colon));
      const std::string_view value = trim(line.substr(colon + 1));
      if (iequals(name, "upgrade")) upgrade = iequals(value, "websocket");
      else if (iequals(name, "connection")) connection = has_token(value, "upgrade");
      else if (iequals(name, "sec-websocket-accept")) {
        if (value != want) return "wrong Sec-WebSocket-Accept";
        accept = true;
      }
    }
    if (end == std::string_view::npos) break;
    pos = end + 2;
  }
  if (!upgrade) return "no Upgrade: websocket";
  if (!connection) return "no Connection: upgrade";
  if (!accept) return "no Sec-WebSocket-Accept";
  return {};
}

}  // namespace shoal::load::ws
