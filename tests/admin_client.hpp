// Test helper: a tiny blocking HTTP/1.1 client for the admin port (every
// wait bounded) and a reader of the Prometheus text format, for the
// black-box tests that scrape the real shoald's /metrics.
#pragma once

#include <arpa/inet.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shoald_process.hpp"

namespace shoal::test {

// ---- a tiny HTTP/1.1 client on a raw socket, every wait bounded ----------

struct HttpResponse {
  int status = 0;  // 0: no response
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::size_t bytes_after_headers = 0;  // what came after the blank line

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string decode_chunked(const std::string& in) {
  std::string out;
  std::size_t pos = 0;
  while (pos < in.size()) {
    const std::size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos) break;
    const std::size_t n = std::stoul(in.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) break;
    out += in.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

// Parses one response at the start of `raw`; returns the bytes it took, or 0
// when `raw` does not hold a whole response yet (needs Content-Length unless
// `to_eof`).
inline std::size_t parse_response(const std::string& raw, bool to_eof, HttpResponse& r) {
  const std::size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  std::istringstream head(raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  HttpResponse out;
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) return 0;
  out.status = std::stoi(line.substr(9, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    out.headers[lower(line.substr(0, colon))] = value;
  }
  const std::size_t body_start = end + 4;
  std::size_t taken = raw.size();
  if (to_eof) {
    out.body = raw.substr(body_start);
  } else {
    auto it = out.headers.find("content-length");
    if (it == out.headers.end()) return 0;
    const std::size_t n = std::stoul(it->second);
    if (raw.size() < body_start + n) return 0;
    out.body = raw.substr(body_start, n);
    taken = body_start + n;
  }
  out.bytes_after_headers = to_eof ? raw.size() - body_start : out.body.size();
  if (lower(out.headers["transfer-encoding"]) == "chunked") out.body = decode_chunked(out.body);
  r = std::move(out);
  return taken;
}

inline int connect_loopback(std::uint16_t port, std::chrono::milliseconds timeout,
                            const char* address = "127.0.0.1") {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, address, &addr.sin_addr);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool send_text(int fd, const std::string& text) {
  std::size_t sent = 0;
  while (sent < text.size()) {
    const ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// One request on a fresh connection with `Connection: close`, read to EOF.
inline HttpResponse http(std::uint16_t port, const std::string& method,
                         const std::string& target, const std::string& extra_headers = "",
                         std::chrono::milliseconds timeout = std::chrono::seconds(5),
                         const char* address = "127.0.0.1") {
  HttpResponse r;
  const int fd = connect_loopback(port, timeout, address);
  if (fd < 0) return r;
  const std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" +
                              std::to_string(port) + "\r\n" + extra_headers +
                              "Connection: close\r\n\r\n";
  std::string raw;
  if (send_text(fd, request)) {
    char buf[16384];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) raw.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  parse_response(raw, true, r);
  return r;
}

inline HttpResponse get(std::uint16_t port, const std::string& target,
                        const char* address = "127.0.0.1") {
  return http(port, "GET", target, "", std::chrono::seconds(5), address);
}

// ---- the text format ----------------------------------------------------

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

inline std::vector<Sample> parse_samples(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    std::size_t pos = line.find_first_of("{ ");
    s.name = line.substr(0, pos);
    if (pos != std::string::npos && line[pos] == '{') {
      const std::size_t close_brace = line.find('}', pos);
      std::string labels = line.substr(pos + 1, close_brace - pos - 1);
      std::size_t p = 0;
      while (p < labels.size()) {
        const std::size_t eq = labels.find('=', p);
        const std::size_t q2 = labels.find('"', eq + 2);
        s.labels[labels.substr(p, eq - p)] = labels.substr(eq + 2, q2 - eq - 2);
        p = q2 + 1;
        if (p < labels.size() && labels[p] == ',') ++p;
      }
      pos = close_brace + 1;
    }
    s.value = std::stod(line.substr(pos + 1));
    out.push_back(std::move(s));
  }
  return out;
}

// Sum of the samples named `name` whose labels include `match`; nullopt when
// there is none.
inline std::optional<double> value_of(const std::string& text, const std::string& name,
                                      const std::map<std::string, std::string>& match = {}) {
  std::optional<double> sum;
  for (const Sample& s : parse_samples(text)) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) ok = false;
    }
    if (ok) sum = sum.value_or(0) + s.value;
  }
  return sum;
}

// Scrapes until `pred` holds on the body (bounded); returns the last body.
inline std::string scrape_until(std::uint16_t admin,
                                const std::function<bool(const std::string&)>& pred,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string body;
  for (;;) {
    body = get(admin, "/metrics").body;
    if (pred(body) || std::chrono::steady_clock::now() > deadline) return body;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Starts shoald with the config `yaml_for(admin_port)` on a free admin port,
// trying again when another process took that port in between.
inline std::unique_ptr<ShoaldProcess> start_with_admin_port(
    const std::function<std::string(std::uint16_t admin_port)>& yaml_for) {
  for (int attempt = 0;; ++attempt) {
    try {
      auto p = std::make_unique<ShoaldProcess>(
          ShoaldProcess::Options{.yaml = yaml_for(free_loopback_port())});
      p->admin_port();
      return p;
    } catch (const std::exception&) {
      if (attempt == 2) throw;
    }
  }
}

}  // namespace shoal::test
