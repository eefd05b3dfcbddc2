#include "fuzz_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>

#include "daemon/preflight.hpp"
#include "runtime/server.hpp"

namespace shoal::fuzz {

void fail(const std::string& why) {
  std::fprintf(stderr, "\n==== fuzz finding: %s\n", why.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string excerpt(std::string_view s, std::size_t max) {
  std::string r;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      r += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      r += hex;
    }
  }
  if (s.size() > max) r += "...(" + std::to_string(s.size()) + " bytes)";
  return r;
}

// --- the in-process server ---------------------------------------------------

namespace {

Config fuzz_config() {
  Config config;
  config.shards = 1;
  config.logging.level = "warn";
  ListenerConfig base;
  base.protocol = Protocol::websocket_echo;
  base.address = "127.0.0.1";
  base.port = 0;
  base.websocket.max_message_bytes = kMaxMessageBytes;

  config.listeners.assign(kListenerCount, base);
  config.listeners[kPlain].name = "plain";
  config.listeners[kDeflate].name = "deflate";
  config.listeners[kDeflate].websocket.permessage_deflate.enabled = true;
  config.listeners[kDeflate].websocket.permessage_deflate.client_max_window_bits = 10;
  ListenerConfig& s = config.listeners[kStrict];
  s.name = "strict";
  s.websocket.path = "/chat";
  // Refusals only, so that every non-upgrade answer is held to them; the
  // other listeners answer with HTTP echo.
  s.websocket.http_echo = false;
  s.websocket.allowed_origins = {"https://example.com", "http://localhost:8080"};
  s.websocket.subprotocols = {"chat.v2", "chat"};
  s.websocket.max_header_bytes = 1024;
  s.websocket.permessage_deflate.enabled = true;
  config.admin.address = "127.0.0.1";
  config.admin.port = 0;
  return config;
}

// One shard and at most 1000 connections, whatever the host allows.
PreflightResult fuzz_preflight(const Config& config) {
  PreflightResult p = run_preflight(config, read_host_limits());
  p.shards = 1;
  p.effective_max_connections = 1000;
  return p;
}

}  // namespace

struct FuzzServer::Parts {
  Config config = fuzz_config();
  Server server{config, fuzz_preflight(config)};
  AdminServer admin{config.admin, server};
};

FuzzServer& FuzzServer::get() {
  // Leaked on purpose: the shard and admin threads run until the process
  // exits, and no destructor may race them then.
  static FuzzServer* const instance = new FuzzServer();
  return *instance;
}

FuzzServer::FuzzServer() {
  spdlog::set_level(spdlog::level::warn);
  parts_ = new Parts();
  parts_->server.start();
  parts_->admin.start();
  admin_ = &parts_->admin;
  for (const auto& b : parts_->server.bound()) ws_ports_.push_back(b.endpoint.port());
  admin_port_ = parts_->admin.local_endpoint().port();
}

const WebSocketConfig& FuzzServer::ws_config(std::size_t listener) const {
  return parts_->server.listeners().at(listener).websocket;
}

void FuzzServer::check_no_handler_exception() {
  std::uint64_t n = 0;
  for (const auto& shard : parts_->server.shards()) n += shard->loop_stats().exceptions.load();
  if (n != exceptions_seen_) {
    exceptions_seen_ = n;
    fail("an exception escaped a handler on the shard (logged above)");
  }
}

// --- the client ----------------------------------------------------------------

namespace {
constexpr std::size_t kSendPiece = 4096;
}  // namespace

Reply converse(std::uint16_t port, std::string_view out,
               const std::function<bool(std::string_view)>& ready) {
  using clock = std::chrono::steady_clock;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    fail(std::string("connect: ") + std::strerror(errno));
  // Closing with a reset leaves no TIME_WAIT behind: thousands of
  // connections a second would otherwise exhaust the ephemeral ports. We
  // close only after the server has closed, so the reset loses nothing.
  const linger no_linger{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof no_linger);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

  Reply r;
  std::size_t sent = 0;
  bool eof_sent = false;  // we half-closed, or the server stopped taking bytes
  bool closed = false;    // the server closed (EOF or reset)
  bool stalled = false;   // `ready` did not hold within kStallMs
  auto progress = clock::now();
  const auto started = progress;
  std::optional<clock::time_point> all_sent_at;
  char buf[64 * 1024];

  auto half_close = [&] {
    ::shutdown(fd, SHUT_WR);
    eof_sent = true;
    progress = clock::now();
  };
  while (!closed) {
    const auto now = clock::now();
    if (!eof_sent && sent == out.size()) {
      if (!all_sent_at) all_sent_at = now;
      if (ready && !r.ready) r.ready = ready(r.bytes);
      if (!ready || r.ready) {
        half_close();
      } else if (now - *all_sent_at >= std::chrono::milliseconds(kStallMs)) {
        stalled = true;
        half_close();
      }
    }
    if (now - progress >= std::chrono::milliseconds(kHangMs))
      fail(std::string(eof_sent ? "the server neither closed nor sent anything for "
                                : "the server stopped reading for ") +
           std::to_string(kHangMs) + " ms; received so far: " + excerpt(r.bytes));
    if (now - started >= std::chrono::seconds(30))
      fail("the connection still runs after 30 s; received " + std::to_string(r.bytes.size()) + " bytes");

    pollfd p{fd, POLLIN, 0};
    if (!eof_sent && sent < out.size()) p.events |= POLLOUT;
    ::poll(&p, 1, 100);
    if (p.revents & POLLOUT) {
      // In pieces, each its own segment (TCP_NODELAY): the server then
      // often reads a request or a frame in parts, as from a real network.
      const ssize_t n = ::send(fd, out.data() + sent, std::min(out.size() - sent, kSendPiece), MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        progress = clock::now();
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        eof_sent = true;  // the server closed: read what it sent before
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          r.bytes.append(buf, static_cast<std::size_t>(n));
          progress = clock::now();
          continue;
        }
        if (n == 0) {
          closed = true;
        } else if (errno == ECONNRESET || errno == EPIPE) {
          r.reset = true;
          closed = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          fail(std::string("recv: ") + std::strerror(errno));
        }
        break;
      }
    }
  }
  ::close(fd);
  if (ready && !r.ready && !stalled) {
    // The server closed while we still sent or waited: it reacted (with
    // what it sent last), or closed first; not a stall either way.
    r.ready = ready(r.bytes);
    r.closed_before_ready = !r.ready;
  }
  return r;
}

// --- HTTP ----------------------------------------------------------------------

std::optional<std::string> HttpHead::field(std::string_view name) const {
  std::optional<std::string> v;
  for (const auto& [n, value] : fields) {
    if (n != name) continue;
    if (v) fail("response repeats " + std::string(name));
    v = value;
  }
  return v;
}

std::optional<HttpHead> parse_head(std::string_view s) {
  const std::size_t end = s.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  HttpHead h;
  h.size = end + 4;
  std::string_view head = s.substr(0, end + 2);
  auto next_line = [&head] {
    const std::size_t eol = head.find("\r\n");
    const std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    return line;
  };
  const std::string_view status_line = next_line();
  if (status_line.size() < 13 || (status_line.substr(0, 9) != "HTTP/1.1 " && status_line.substr(0, 9) != "HTTP/1.0 ") ||
      status_line[12] != ' ' || !std::all_of(status_line.begin() + 9, status_line.begin() + 12,
                                             [](char c) { return c >= '0' && c <= '9'; }))
    fail("malformed status line: " + excerpt(status_line));
  h.status = std::stoi(std::string(status_line.substr(9, 3)));
  for (char c : status_line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) fail("control byte in the status line");
  auto is_tchar = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  };
  while (!head.empty()) {
    const std::string_view line = next_line();
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), is_tchar))
      fail("malformed header line: " + excerpt(line));
    std::string_view value = line.substr(colon + 1);
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        fail("control byte in a header value: " + excerpt(line));
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    h.fields.emplace_back(std::move(name), std::string(value));
  }
  return h;
}

// --- WebSocket -----------------------------------------------------------------

Frames split_frames(std::string_view s) {
  Frames out;
  std::size_t p = 0;
  auto byte = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  for (;;) {
    const std::size_t left = s.size() - p;
    if (left < 2) break;
    Frame f;
    f.fin = byte(p) & 0x80u;
    f.rsv = static_cast<std::uint8_t>((byte(p) >> 4) & 7u);
    f.opcode = byte(p) & 0x0fu;
    f.masked = byte(p + 1) & 0x80u;
    std::uint64_t len = byte(p + 1) & 0x7fu;
    std::size_t h = 2;
    if (len == 126) {
      if (left < 4) break;
      len = (std::uint64_t{byte(p + 2)} << 8) | byte(p + 3);
      h = 4;
      f.minimal_length = len >= 126;
    } else if (len == 127) {
      if (left < 10) break;
      len = 0;
      for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | byte(p + i);
      h = 10;
      f.minimal_length = len >= 65536 && (len >> 63) == 0;
    }
    const std::size_t key_at = p + h;
    if (f.masked) h += 4;
    if (left < h || len > left - h) break;
    f.length = len;
    f.payload.assign(s.substr(p + h, static_cast<std::size_t>(len)));
    if (f.masked)
      for (std::size_t i = 0; i < f.payload.size(); ++i)
        f.payload[i] = static_cast<char>(static_cast<unsigned char>(f.payload[i]) ^ byte(key_at + i % 4));
    p += h + static_cast<std::size_t>(len);
    out.frames.push_back(std::move(f));
  }
  out.consumed = p;
  return out;
}

namespace {

bool valid_close_code(std::uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

// Assembles data messages from frames; shared by both directions.
class Assembler {
 public:
  // Adds a data frame; returns why it breaks the rules, or nullptr.
  const char* add(const Frame& f, bool deflate, std::uint64_t max_message) {
    if (f.opcode == 0 && !open_) return "continuation frame outside a message";
    if (f.opcode != 0 && open_) return "new data message inside a fragmented one";
    const std::uint8_t allowed_rsv = deflate && f.opcode != 0 ? 4 : 0;
    if (f.rsv & ~allowed_rsv) return "reserved bits set";
    if (f.opcode != 0) {
      cur_ = Message{f.opcode == 1, (f.rsv & 4) != 0, {}};
      open_ = true;
    }
    if (!cur_.compressed && cur_.payload.size() + f.length > max_message) return "message above the limit";
    cur_.payload += f.payload;
    if (cur_.text && !cur_.compressed && check_utf8(cur_.payload) == Utf8::invalid)
      return "text message is not UTF-8";
    if (f.fin) {
      if (cur_.text && !cur_.compressed && check_utf8(cur_.payload) != Utf8::valid)
        return "text message ends inside a UTF-8 sequence";
      messages.push_back(std::move(cur_));
      cur_ = {};
      open_ = false;
    }
    return nullptr;
  }
  bool open() const { return open_; }

  std::vector<Message> messages;

 private:
  Message cur_;
  bool open_ = false;
};

}  // namespace

ClientModel model_client(std::string_view bytes, bool deflate, std::uint64_t max_message) {
  ClientModel m;
  const Frames fr = split_frames(bytes);
  Assembler a;
  bool valid = true, compressed = false;
  for (const Frame& f : fr.frames) {
    if (!f.masked || !f.minimal_length) {
      valid = false;
      break;
    }
    if (f.opcode & 8) {
      if (f.rsv != 0 || !f.fin || f.length > 125 || f.opcode > 10 || f.opcode == 8) {
        valid = false;  // a close ends the echo too
        break;
      }
      if (f.opcode == 9) ++m.pings;
      continue;
    }
    if (f.opcode > 2 || a.add(f, deflate, max_message) != nullptr) {
      valid = false;
      break;
    }
    compressed = compressed || (f.rsv & 4);
  }
  m.messages = std::move(a.messages);
  using E = ClientModel::Expect;
  if (!valid) {
    m.expect = E::close;
  } else if (fr.consumed == bytes.size()) {
    m.expect = compressed ? E::echo_or_close : E::echo_all;
  }
  return m;
}

ServerStream check_server_frames(std::string_view bytes, bool deflate, std::uint64_t max_message,
                                 bool complete) {
  ServerStream s;
  const Frames fr = split_frames(bytes);
  Assembler a;
  for (const Frame& f : fr.frames) {
    auto bad = [&](const std::string& why) {
      fail("server frame " + std::to_string(&f - fr.frames.data()) + ": " + why + "; server sent " +
           excerpt(bytes));
    };
    if (s.closed) bad("a frame after the close frame");
    if (f.masked) bad("masked");
    if (!f.minimal_length) bad("length not in its shortest form");
    if (f.opcode & 8) {
      if (f.opcode > 10) bad("unknown control opcode");
      if (!f.fin || f.length > 125 || f.rsv != 0) bad("control frame fragmented, long or with RSV bits");
      if (f.opcode == 8) {
        if (f.length == 1) bad("close frame with a 1-byte payload");
        if (f.length >= 2) {
          const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(f.payload[0]) << 8) |
                                                       static_cast<unsigned char>(f.payload[1]));
          if (!valid_close_code(code)) bad("close code " + std::to_string(code));
          if (check_utf8(std::string_view(f.payload).substr(2)) != Utf8::valid) bad("close reason not UTF-8");
        }
        s.closed = true;
      }
      if (f.opcode == 10) ++s.pongs;
      continue;
    }
    if (f.opcode > 2) bad("unknown data opcode");
    if (const char* why = a.add(f, deflate, max_message)) bad(why);
  }
  if (complete && fr.consumed != bytes.size())
    fail("the server closed inside a frame: " + excerpt(bytes.substr(fr.consumed)));
  if (complete && a.open()) fail("the server closed inside a fragmented message");
  s.messages = std::move(a.messages);
  return s;
}

void check_echoes(const ServerStream& server, const ClientModel& client) {
  if (server.messages.size() > client.messages.size())
    fail("the server sent " + std::to_string(server.messages.size()) + " messages for " +
         std::to_string(client.messages.size()) + " valid ones from the client");
  for (std::size_t i = 0; i < server.messages.size(); ++i) {
    const Message& got = server.messages[i];
    const Message& sent = client.messages[i];
    if (got.text != sent.text) fail("echo " + std::to_string(i) + " changed the message type");
    if (!got.compressed && !sent.compressed && got.payload != sent.payload)
      fail("echo " + std::to_string(i) + " differs: sent " + excerpt(sent.payload) + ", got " +
           excerpt(got.payload));
  }
}

std::function<bool(std::string_view)> reacted(const ClientModel& client, bool deflate,
                                              std::uint64_t max_message) {
  using E = ClientModel::Expect;
  if (client.expect == E::nothing) return {};
  return [&client, deflate, max_message](std::string_view got) {
    const std::optional<HttpHead> head = parse_head(got);
    if (!head) return false;
    if (head->status != 101) return true;  // refused: nothing more to wait for
    const ServerStream s = check_server_frames(got.substr(head->size), deflate, max_message, false);
    switch (client.expect) {
      case E::echo_all:
        return s.messages.size() >= client.messages.size() && s.pongs >= client.pings;
      case E::echo_or_close:
        return s.closed || s.messages.size() >= client.messages.size();
      case E::close:
      case E::nothing:
        break;
    }
    return s.closed;
  };
}

void check_after_upgrade(const Reply& r, std::size_t head_size, const ClientModel& client, bool deflate,
                         std::uint64_t max_message) {
  using E = ClientModel::Expect;
  const std::string_view frames = std::string_view(r.bytes).substr(head_size);
  const ServerStream s = check_server_frames(frames, deflate, max_message, !r.reset);
  check_echoes(s, client);
  const std::string got = " (got " + std::to_string(s.messages.size()) + " messages, " +
                          std::to_string(s.pongs) + " pongs" + (s.closed ? ", a close" : "") +
                          " for " + std::to_string(client.messages.size()) + " messages, " +
                          std::to_string(client.pings) + " pings)";
  if (client.expect == E::nothing) return;
  if (!r.ready && !r.closed_before_ready)
    fail("the server stalled for " + std::to_string(kStallMs) + " ms before our EOF" + got);
  if (client.expect == E::echo_all && !r.ready)
    fail("the server closed a valid connection before echoing everything" + got);
  if (client.expect == E::echo_all && s.closed) fail("the server sent a close frame for valid frames" + got);
}

}  // namespace shoal::fuzz
