// A WebSocket client on a plain socket (tests only): frames built and parsed
// by hand, for the cases a library would refuse to produce.
#pragma once

#include <strings.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "echo_client.hpp"

namespace shoal::test {

using namespace std::chrono_literals;

enum Opcode : int { kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10 };

// A client frame: masked unless told otherwise; `rsv` is the 3 RSV bits.
inline std::string frame(int opcode, std::string_view payload, bool fin = true, bool mask = true,
                  int rsv = 0) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  const int m = mask ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(m | static_cast<int>(n)));
  } else if (n < 65536) {
    f.push_back(static_cast<char>(m | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  if (!mask) return f + std::string(payload);
  const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  for (unsigned char k : key) f.push_back(static_cast<char>(k));
  for (std::size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<char>(static_cast<unsigned char>(payload[i]) ^ key[i % 4]));
  return f;
}

inline std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xff));
  return p + std::string(reason);
}

struct Frame {
  bool fin = false;
  int rsv = 0;
  int opcode = -1;
  std::string payload;
  std::uint16_t close_code() const {
    if (payload.size() < 2) return 1005;
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                      static_cast<unsigned char>(payload[1]));
  }
};

// --- a WebSocket upgrade request, header by header ------------------------------

struct Upgrade {
  std::string method = "GET";
  std::string target = "/";
  std::string version = "HTTP/1.1";
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Host", "127.0.0.1"},
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
      {"Sec-WebSocket-Version", "13"}};

  Upgrade& erase(const std::string& name) {
    std::erase_if(headers, [&](const auto& h) { return strcasecmp(h.first.c_str(), name.c_str()) == 0; });
    return *this;
  }
  Upgrade& set(const std::string& name, const std::string& value) {
    erase(name);
    headers.emplace_back(name, value);
    return *this;
  }
  Upgrade& add(const std::string& name, const std::string& value) {
    headers.emplace_back(name, value);
    return *this;
  }
  std::string str() const {
    std::string s = method + " " + target + " " + version + "\r\n";
    for (const auto& [k, v] : headers) s += k + ": " + v + "\r\n";
    return s + "\r\n";
  }
};

struct UpgradeResponse {
  int status = 0;
  std::string head;
  std::optional<std::string> header(const std::string& name) const {
    std::size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head.size()) {
      const std::size_t end = head.find("\r\n", pos + 2);
      const std::string line = head.substr(pos + 2, end - pos - 2);
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos && strcasecmp(line.substr(0, colon).c_str(), name.c_str()) == 0) {
        std::size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        return line.substr(v);
      }
      pos = end;
    }
    return std::nullopt;
  }
};

// A WebSocket client on a plain socket, for the cases a library would refuse
// to produce. Bytes after the response head are kept for the frame reader.
class RawWs {
 public:
  RawWs(asio::io_context& ioc, std::uint16_t port, std::chrono::milliseconds timeout = 5s)
      : socket(connect_to(ioc, port, timeout)) {}
  explicit RawWs(tcp::socket s) : socket(std::move(s)) {}

  bool send(std::string_view bytes) { return send_all(socket, bytes.data(), bytes.size()); }

  // Reads the response head (through the blank line).
  UpgradeResponse read_response() {
    UpgradeResponse r;
    std::size_t end;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill_some()) return r;
    }
    r.head = in_.substr(0, end + 4);
    in_.erase(0, end + 4);
    if (r.head.size() > 12 && r.head.compare(0, 5, "HTTP/") == 0) r.status = std::stoi(r.head.substr(9, 3));
    return r;
  }

  // Sends `request` (or the default upgrade) and reads the response head.
  UpgradeResponse upgrade(const Upgrade& request = {}) {
    if (!send(request.str())) return {};
    return read_response();
  }

  // Reads the body of a response with Content-Length.
  std::string read_body(const UpgradeResponse& r) {
    const auto len = r.header("Content-Length");
    if (!len) return {};
    const std::size_t n = std::stoul(*len);
    while (in_.size() < n)
      if (!fill_some()) break;
    std::string body = in_.substr(0, n);
    in_.erase(0, std::min(n, in_.size()));
    return body;
  }

  std::optional<Frame> read_frame() {
    if (!fill(2)) return std::nullopt;
    const auto b0 = static_cast<unsigned char>(in_[0]);
    const auto b1 = static_cast<unsigned char>(in_[1]);
    std::size_t header = 2;
    std::uint64_t len = b1 & 0x7f;
    if (len == 126) header += 2;
    if (len == 127) header += 8;
    const bool masked = b1 & 0x80;
    if (masked) header += 4;
    if (!fill(header)) return std::nullopt;
    if (len == 126) {
      len = (static_cast<unsigned char>(in_[2]) << 8) | static_cast<unsigned char>(in_[3]);
    } else if (len == 127) {
      len = 0;
      for (int i = 2; i < 10; ++i) len = (len << 8) | static_cast<unsigned char>(in_[static_cast<std::size_t>(i)]);
    }
    if (!fill(header + len)) return std::nullopt;
    Frame f;
    f.fin = b0 & 0x80;
    f.rsv = (b0 >> 4) & 7;
    f.opcode = b0 & 0x0f;
    f.payload = in_.substr(header, len);
    if (masked) {
      for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= in_[header - 4 + i % 4];
    }
    in_.erase(0, header + len);
    return f;
  }

  // Reads frames until a close frame; its code (1005 when it has none).
  std::optional<std::uint16_t> read_close_code() {
    while (auto f = read_frame()) {
      if (f->opcode == kClose) return f->close_code();
    }
    return std::nullopt;
  }

  // Sends a text message and reads the echo (a single final text frame).
  std::optional<std::string> echo(std::string_view text) {
    if (!send(frame(kText, text))) return std::nullopt;
    auto f = read_frame();
    if (!f || f->opcode != kText || !f->fin) return std::nullopt;
    return f->payload;
  }

  // The server closed the TCP connection (EOF or reset) within the timeout,
  // with no more bytes before it.
  bool closed_by_peer() {
    if (!in_.empty()) return false;
    return peer_closed(socket);
  }

  tcp::socket socket;

 private:
  bool fill_some() {
    char buf[16384];
    const ssize_t r = ::recv(socket.native_handle(), buf, sizeof buf, 0);
    if (r <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(r));
    return true;
  }
  bool fill(std::size_t need) {
    while (in_.size() < need)
      if (!fill_some()) return false;
    return true;
  }

  std::string in_;
};

// An upgraded raw connection, asserting the 101.
inline std::unique_ptr<RawWs> open_raw(asio::io_context& ioc, std::uint16_t port, const Upgrade& request = {}) {
  auto c = std::make_unique<RawWs>(ioc, port);
  const auto r = c->upgrade(request);
  EXPECT_EQ(r.status, 101) << r.head;
  return c;
}

}  // namespace shoal::test
