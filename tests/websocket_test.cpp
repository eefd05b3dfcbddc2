// Black-box tests of the WebSocket echo listener: the real shoald on
// ephemeral loopback ports, driven by a Beast client, by hand-built frames on
// a plain socket (RFC 6455 failure cases, handshake checks, timeouts) and by
// Debian's python3-websockets (tests/ws/client.py).
//
// Every blocking call is bounded: raw sockets use SO_RCVTIMEO/SO_SNDTIMEO
// with native recv/send, the Beast client runs its asynchronous operations
// under io_context::run_for.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <gtest/gtest.h>

#include "echo_client.hpp"
#include "protocol/proxy_protocol.hpp"
#include "raw_ws.hpp"
#include "shoald_process.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

// --- configuration -------------------------------------------------------------

struct WsConfig {
  std::string sharding = "reuseport";
  std::string websocket;  // lines of the listener's `websocket:` map, 6 spaces in
  std::string listener;   // more listener keys, 4 spaces in
  std::string top;        // more top-level keys
  std::string drain = "2s";
};

std::string ws_yaml(const WsConfig& c) {
  return "shards: 2\n"
         "sharding: " + c.sharding + "\n"
         "admin:\n"
         "  port: 0\n" + c.top +
         "listeners:\n"
         "  - name: ws\n"
         "    protocol: websocket-echo\n"
         "    address: 127.0.0.1\n"
         "    port: 0\n" + c.listener +
         (c.websocket.empty() ? std::string() : "    websocket:\n" + c.websocket) +
         "shutdown:\n"
         "  drain_timeout: " + c.drain + "\n";
}

// --- a Beast client, every operation bounded ------------------------------------

class BeastClient {
 public:
  explicit BeastClient(std::uint16_t port) : port_(port) {
    ws.control_callback([this](websocket::frame_type kind, beast::string_view payload) {
      if (kind == websocket::frame_type::pong) pongs.emplace_back(payload.data(), payload.size());
    });
  }

  error_code connect(const std::string& target = "/") {
    auto ec = run([&](auto done) { beast::get_lowest_layer(ws).async_connect(loopback(port_), done); });
    if (ec) return ec;
    return run([&](auto done) { ws.async_handshake(response, "127.0.0.1", target, done); });
  }
  error_code write(bool text, std::string_view payload) {
    ws.text(text);
    return run([&](auto done) { ws.async_write(asio::buffer(payload.data(), payload.size()), done); });
  }
  error_code write_some(bool fin, std::string_view payload) {
    return run([&](auto done) { ws.async_write_some(fin, asio::buffer(payload.data(), payload.size()), done); });
  }
  error_code read(std::string& out, bool& text) {
    beast::flat_buffer b;
    auto ec = run([&](auto done) { ws.async_read(b, done); });
    out = beast::buffers_to_string(b.data());
    text = ws.got_text();
    return ec;
  }
  error_code ping(std::string_view payload) {
    return run([&](auto done) { ws.async_ping(websocket::ping_data(payload.data(), payload.size()), done); });
  }
  error_code close(std::uint16_t code, std::string_view reason) {
    return run([&](auto done) {
      ws.async_close(websocket::close_reason(static_cast<websocket::close_code>(code), reason), done);
    });
  }

  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  websocket::response_type response;
  std::vector<std::string> pongs;

 private:
  template <typename Start>
  error_code run(Start&& start, std::chrono::milliseconds limit = 20s) {
    std::optional<error_code> result;
    start([&result](error_code ec, auto&&...) { result = ec; });
    ioc.restart();
    ioc.run_for(limit);
    if (!result) {
      beast::get_lowest_layer(ws).close();
      ioc.restart();
      ioc.run_for(1s);
      return asio::error::timed_out;
    }
    return *result;
  }

  std::uint16_t port_;
};

std::string ascii_text(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, ' ');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

std::string binary(std::size_t n, std::uint32_t seed) {
  const auto v = random_bytes(n, seed);
  return {v.begin(), v.end()};
}

// Parses "shard N: served M connections" lines printed at exit.
// --- echo with a Beast client, both sharding policies ---------------------------

class WebSocketEcho : public ::testing::TestWithParam<std::string> {};

TEST_P(WebSocketEcho, TextAndBinaryAtFrameLengthBoundaries) {
  ShoaldProcess shoald({.yaml = ws_yaml({.sharding = GetParam()})});
  BeastClient c(shoald.port("ws"));
  ASSERT_FALSE(c.connect());
  EXPECT_EQ(c.response.result_int(), 101);
  EXPECT_EQ(c.response[beast::http::field::server], "shoal");
  std::uint32_t seed = 1;
  for (std::size_t n : {0u, 1u, 125u, 126u, 127u, 65535u, 65536u, 1u << 20}) {
    for (bool text : {true, false}) {
      const std::string payload = text ? ascii_text(n, seed) : binary(n, seed);
      ++seed;
      ASSERT_FALSE(c.write(text, payload)) << n;
      std::string back;
      bool got_text = !text;
      ASSERT_FALSE(c.read(back, got_text)) << n;
      EXPECT_EQ(got_text, text) << n;
      EXPECT_EQ(back.size(), payload.size());
      EXPECT_TRUE(back == payload) << (text ? "text " : "binary ") << n;
    }
  }
  EXPECT_FALSE(c.close(1000, "bye"));
  EXPECT_EQ(c.ws.reason().code, 1000);
}

// One client per connection, all at once: connect, upgrade, echo its own
// payload, close.
struct AsyncEchoClient : std::enable_shared_from_this<AsyncEchoClient> {
  websocket::stream<tcp::socket> ws;
  std::string sent;
  beast::flat_buffer buffer;
  bool ok = false;
  std::string error;

  AsyncEchoClient(asio::io_context& ioc, std::uint32_t seed) : ws(ioc), sent(binary(64 + seed % 200, seed)) {}

  void run(const tcp::endpoint& ep, std::uint32_t index) {
    // Sources spread over 127.0.0.2-17, the port picked at connect for the
    // whole address pair: 5,000 connections do not run out of ephemeral
    // ports on a machine where other tests and benchmarks use them too.
    error_code setup;
    auto& s = ws.next_layer();
    s.open(tcp::v4(), setup);
    const int one = 1;
    if (!setup) ::setsockopt(s.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (!setup) s.bind(tcp::endpoint(asio::ip::make_address_v4(0x7f000002u + index % 16), 0), setup);
    if (setup) return fail("bind", setup);
    auto self = shared_from_this();
    s.async_connect(ep, [self](error_code ec) {
      if (ec) return self->fail("connect", ec);
      self->ws.async_handshake("127.0.0.1", "/", [self](error_code hec) {
        if (hec) return self->fail("handshake", hec);
        self->ws.binary(true);
        self->ws.async_write(asio::buffer(self->sent), [self](error_code wec, std::size_t) {
          if (wec) return self->fail("write", wec);
          self->ws.async_read(self->buffer, [self](error_code rec, std::size_t) {
            if (rec) return self->fail("read", rec);
            if (beast::buffers_to_string(self->buffer.data()) != self->sent) return self->fail("compare", {});
            self->ws.async_close(websocket::close_code::normal, [self](error_code cec) {
              if (cec) return self->fail("close", cec);
              self->ok = true;
            });
          });
        });
      });
    });
  }
  void fail(const char* what, error_code ec) { error = std::string(what) + ": " + ec.message(); }
};

TEST_P(WebSocketEcho, FiveThousandConcurrentClientsEchoTheirOwnPayloadsAcrossBothShards) {
  // 5,000 upgrades at once queue behind each other on 2 cores; in a
  // sanitizer build that takes longer than the default 10 s handshake
  // timeout, which is not what this test is about.
  ShoaldProcess shoald({.yaml = ws_yaml({.sharding = GetParam(),
                                         .websocket = "      handshake_timeout: 60s\n"})});
  const auto ep = loopback(shoald.port("ws"));
  asio::io_context ioc;
  std::vector<std::shared_ptr<AsyncEchoClient>> clients;
  constexpr int kClients = 5000;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_shared<AsyncEchoClient>(ioc, static_cast<std::uint32_t>(i + 1)));
    clients.back()->run(ep, static_cast<std::uint32_t>(i));
  }
  ioc.run_for(90s);
  int good = 0;
  std::string first_error;
  for (const auto& c : clients) {
    if (c->ok) ++good;
    else if (first_error.empty()) first_error = c->error.empty() ? "unfinished" : c->error;
  }
  EXPECT_EQ(good, kClients) << "first failure: " << first_error;
  clients.clear();

  shoald.signal(SIGTERM);
  ASSERT_EQ(shoald.wait_exit(15s), 0) << shoald.output();
  const auto served = served_per_shard(shoald.output());
  ASSERT_EQ(served.size(), 2u) << shoald.output();
  EXPECT_EQ(served[0] + served[1], static_cast<std::uint64_t>(kClients));
  EXPECT_GT(served[0], kClients / 10u);
  EXPECT_GT(served[1], kClients / 10u);
}

INSTANTIATE_TEST_SUITE_P(Policies, WebSocketEcho, ::testing::Values("reuseport", "dispatch"),
                         [](const auto& param_info) { return param_info.param; });

TEST(WebSocketFrames, FiftyFragmentsWithAPingBetweenComeBackAsOneFrameAfterThePong) {
  ShoaldProcess shoald({.yaml = ws_yaml({})});
  asio::io_context ioc;
  auto c = open_raw(ioc, shoald.port("ws"));
  std::string whole;
  std::string bytes;
  for (int i = 0; i < 50; ++i) {
    const std::string part = "fragment-" + std::to_string(i) + "|";
    whole += part;
    bytes += frame(i == 0 ? kText : kCont, part, /*fin=*/i == 49);
    if (i == 24) bytes += frame(kPing, "between fragments");
  }
  ASSERT_TRUE(c->send(bytes));
  auto pong = c->read_frame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "between fragments");
  auto echo = c->read_frame();
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->opcode, kText);
  EXPECT_TRUE(echo->fin) << "the echo is one unfragmented message";
  EXPECT_EQ(echo->rsv, 0);
  EXPECT_EQ(echo->payload, whole);

  // The same with a Beast client writing binary fragments.
  BeastClient b(shoald.port("ws"));
  ASSERT_FALSE(b.connect());
  b.ws.binary(true);
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    const std::string part = binary(100 + static_cast<std::size_t>(i), static_cast<std::uint32_t>(i));
    expected += part;
    ASSERT_FALSE(b.write_some(i == 49, part));
    if (i == 10) {
      ASSERT_FALSE(b.ping("mid-message"));
    }
  }
  std::string back;
  bool text = true;
  ASSERT_FALSE(b.read(back, text));
  EXPECT_FALSE(text);
  EXPECT_TRUE(back == expected);
  ASSERT_EQ(b.pongs.size(), 1u);
  EXPECT_EQ(b.pongs[0], "mid-message");
}

// As TcpEcho.LastMessageAndFinInOneWakeUpAreEchoedThenClosed: a frame and
// the FIN behind it, seen by shoald in one wake-up, get their echo and the
// connection closed at once (the client left without a close frame), not
// after idle_timeout.
TEST(WebSocketFrames, LastFrameAndFinInOneWakeUpAreEchoedThenClosed) {
  ShoaldProcess shoald({.yaml = ws_yaml({.listener = "    idle_timeout: 5m\n"})});
  asio::io_context ioc;
  std::vector<std::unique_ptr<RawWs>> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(std::make_unique<RawWs>(ioc, shoald.port("ws"), 3s));
    ASSERT_EQ(conns.back()->upgrade({}).status, 101);
    ASSERT_EQ(conns.back()->echo("hello"), "hello");
  }
  shoald.signal(SIGSTOP);
  for (auto& c : conns) {
    ASSERT_TRUE(c->send(frame(kText, "bye!")));
    c->socket.shutdown(tcp::socket::shutdown_send);
  }
  std::this_thread::sleep_for(50ms);  // both have arrived
  shoald.signal(SIGCONT);
  for (auto& c : conns) {
    auto f = c->read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload, "bye!");
    EXPECT_TRUE(c->closed_by_peer());
  }
}

TEST(WebSocketFrames, PingIsAnsweredWithAPongCarryingTheSamePayload) {
  ShoaldProcess shoald({.yaml = ws_yaml({})});
  asio::io_context ioc;
  auto c = open_raw(ioc, shoald.port("ws"));
  for (const std::string& payload : {std::string(), std::string("hello"), std::string(125, 'p')}) {
    ASSERT_TRUE(c->send(frame(kPing, payload)));
    auto f = c->read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kPong);
    EXPECT_TRUE(f->fin);
    EXPECT_EQ(f->payload, payload);
  }
  EXPECT_EQ(c->echo("after pings"), "after pings");
}

TEST(WebSocketFrames, CloseIsAnsweredWithTheSameCodeThenTheServerClosesTcp) {
  ShoaldProcess shoald({.yaml = ws_yaml({})});
  asio::io_context ioc;
  for (std::uint16_t code : {1000, 1001, 3000, 4000, 4999}) {
    auto c = open_raw(ioc, shoald.port("ws"));
    ASSERT_TRUE(c->send(frame(kClose, close_payload(code, "bye now"))));
    EXPECT_EQ(c->read_close_code(), code);
    EXPECT_TRUE(c->closed_by_peer());
  }
  {  // A close without a code is answered with 1000.
    auto c = open_raw(ioc, shoald.port("ws"));
    ASSERT_TRUE(c->send(frame(kClose, "")));
    auto f = c->read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kClose);
    EXPECT_TRUE(f->payload.empty() || f->close_code() == 1000);
    EXPECT_TRUE(c->closed_by_peer());
  }
  // A Beast client's closing handshake completes with the code echoed.
  BeastClient b(shoald.port("ws"));
  ASSERT_FALSE(b.connect());
  EXPECT_FALSE(b.close(4001, "done here"));
  EXPECT_EQ(b.ws.reason().code, 4001);
}

// --- failing the connection (RFC 6455 §7.1.7), one connection only ---------------

struct FailureCase {
  const char* name;
  std::string bytes;
  std::uint16_t code;
};

void PrintTo(const FailureCase& c, std::ostream* os) { *os << c.name << " -> " << c.code; }

std::vector<FailureCase> failure_cases() {
  return {
      {"unmasked_frame", frame(kText, "hello", true, /*mask=*/false), 1002},
      {"rsv1_without_extension", frame(kText, "hello", true, true, 4), 1002},
      {"rsv2", frame(kBinary, "hello", true, true, 2), 1002},
      {"rsv3", frame(kText, "hello", true, true, 1), 1002},
      {"rsv1_on_control_frame", frame(kPing, "p", true, true, 4), 1002},
      {"reserved_data_opcode_3", frame(3, "x"), 1002},
      {"reserved_data_opcode_7", frame(7, "x"), 1002},
      {"reserved_control_opcode_11", frame(11, ""), 1002},
      {"reserved_control_opcode_15", frame(15, "x"), 1002},
      {"ping_over_125_bytes", frame(kPing, std::string(126, 'p')), 1002},
      {"close_over_125_bytes", frame(kClose, close_payload(1000, std::string(124, 'r'))), 1002},
      {"fragmented_ping", frame(kPing, "p", /*fin=*/false), 1002},
      {"fragmented_close", frame(kClose, close_payload(1000), /*fin=*/false), 1002},
      {"continuation_without_start", frame(kCont, "orphan"), 1002},
      {"final_continuation_without_start", frame(kCont, "orphan", false), 1002},
      {"new_text_inside_fragmented_message", frame(kText, "first", false) + frame(kText, "second"), 1002},
      {"new_binary_inside_fragmented_message", frame(kBinary, "first", false) + frame(kBinary, "x"), 1002},
      {"close_code_999", frame(kClose, close_payload(999)), 1002},
      {"close_code_1004", frame(kClose, close_payload(1004)), 1002},
      {"close_code_1005", frame(kClose, close_payload(1005)), 1002},
      {"close_code_1006", frame(kClose, close_payload(1006)), 1002},
      {"close_code_1016", frame(kClose, close_payload(1016)), 1002},
      {"close_code_2999", frame(kClose, close_payload(2999)), 1002},
      {"close_code_5000", frame(kClose, close_payload(5000)), 1002},
      {"close_code_65535", frame(kClose, close_payload(65535)), 1002},
      {"close_reason_invalid_utf8", frame(kClose, close_payload(1000, "\xff bad")), 1007},
      {"close_payload_of_one_byte", frame(kClose, "\x03"), 1002},
      {"non_canonical_16_bit_length", std::string("\x81\xfe\x00\x05", 4) + std::string("\0\0\0\0hello", 9), 1002},
      {"invalid_utf8_text", frame(kText, "bad \xff\xfe bytes"), 1007},
      {"overlong_utf8_text", frame(kText, "\xc0\xaf"), 1007},
      {"utf16_surrogate_in_text", frame(kText, "\xed\xa0\x80"), 1007},
      {"invalid_utf8_split_across_fragments", frame(kText, "euro \xe2\x82", false) + frame(kCont, "\x28 no"), 1007},
      {"truncated_utf8_at_message_end", frame(kText, "cut \xe2\x82", false) + frame(kCont, ""), 1007},
      {"message_over_max_message_bytes", frame(kBinary, std::string(2000, 'b')), 1009},
      {"fragments_over_max_message_bytes",
       frame(kBinary, std::string(600, 'b'), false) + frame(kCont, std::string(600, 'b'), false) +
           frame(kCont, std::string(600, 'b')),
       1009},
      {"frame_length_over_max_message_bytes_header_only", std::string("\x82\xff\x00\x00\x00\x00\x7f\xff\xff\xff\x01\x02\x03\x04", 14), 1009},
  };
}

// Each case runs against both WebSocket engines: shoal's own (a plaintext
// listener without permessage-deflate) and Beast's stream (the same listener
// with permessage-deflate on, which these clients do not negotiate).
struct Engine {
  const char* name;
  const char* websocket_yaml;
};
void PrintTo(const Engine& e, std::ostream* os) { *os << e.name; }
const Engine kEngines[] = {
    {"own", "      max_message_bytes: 1024\n"},
    {"beast", "      max_message_bytes: 1024\n      permessage_deflate:\n        enabled: true\n"},
};

class WebSocketFailure : public ::testing::TestWithParam<std::tuple<Engine, FailureCase>> {
 protected:
  static void SetUpTestSuite() {
    for (std::size_t i = 0; i < std::size(kEngines); ++i)
      shoald_[i] = new ShoaldProcess({.yaml = ws_yaml({.websocket = kEngines[i].websocket_yaml})});
  }
  static void TearDownTestSuite() {
    for (auto*& s : shoald_) {
      delete s;
      s = nullptr;
    }
  }
  static ShoaldProcess* shoald_[2];
};
ShoaldProcess* WebSocketFailure::shoald_[2] = {nullptr, nullptr};

TEST_P(WebSocketFailure, GetsItsCloseCodeAndOnlyThatConnectionEnds) {
  const auto& [engine, fc] = GetParam();
  asio::io_context ioc;
  const auto port = shoald_[engine.name == std::string_view("own") ? 0 : 1]->port("ws");
  auto bystander = open_raw(ioc, port);
  ASSERT_EQ(bystander->echo("before"), "before");

  auto c = open_raw(ioc, port);
  ASSERT_EQ(c->echo("a good message first"), "a good message first");
  ASSERT_TRUE(c->send(fc.bytes));
  EXPECT_EQ(c->read_close_code(), fc.code) << fc.name;
  EXPECT_TRUE(c->closed_by_peer()) << "TCP closed after the close frame";

  EXPECT_EQ(bystander->echo("after"), "after");
  auto fresh = open_raw(ioc, port);
  EXPECT_EQ(fresh->echo("new connection"), "new connection");
}

INSTANTIATE_TEST_SUITE_P(Rfc6455, WebSocketFailure,
                         ::testing::Combine(::testing::ValuesIn(kEngines), ::testing::ValuesIn(failure_cases())),
                         [](const auto& param_info) {
                           return std::string(std::get<0>(param_info.param).name) + "_" +
                                  std::get<1>(param_info.param).name;
                         });

TEST(WebSocketFrames, ValidUtf8SplitAcrossFragmentsAndMaxSizeMessageAreEchoed) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      max_message_bytes: 1024\n"})});
  asio::io_context ioc;
  auto c = open_raw(ioc, shoald.port("ws"));
  ASSERT_TRUE(c->send(frame(kText, "euro \xe2\x82", false) + frame(kCont, "\xac sign")));
  auto f = c->read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, "euro \xe2\x82\xac sign");
  const std::string at_limit(1024, 'm');
  ASSERT_TRUE(c->send(frame(kBinary, at_limit)));
  f = c->read_frame();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, kBinary);
  EXPECT_EQ(f->payload, at_limit);
}

// --- the HTTP upgrade (RFC 6455 §4.2.1) --------------------------------------------

class WebSocketHandshake : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shoald_ = new ShoaldProcess({.yaml = ws_yaml({.websocket = "      path: /chat\n"
                                                              "      subprotocols: [chat.v2, chat.v1]\n"})});
  }
  static void TearDownTestSuite() {
    delete shoald_;
    shoald_ = nullptr;
  }

  // Sends `request`; returns the response, its body, and whether the server
  // then closed the connection.
  struct Outcome {
    UpgradeResponse response;
    std::string body;
    bool closed = false;
  };
  static Outcome send(const std::string& request) {
    asio::io_context ioc;
    RawWs c(ioc, shoald_->port("ws"));
    EXPECT_TRUE(c.send(request));
    Outcome o;
    o.response = c.read_response();
    o.body = c.read_body(o.response);
    o.closed = c.closed_by_peer();
    return o;
  }
  static Upgrade chat() {
    Upgrade u;
    u.target = "/chat";
    return u;
  }
  static void expect_refused(const Upgrade& u, int status, const std::string& why) {
    const Outcome o = send(u.str());
    EXPECT_EQ(o.response.status, status) << why << "\n" << o.response.head;
    EXPECT_EQ(o.response.header("Connection"), "close") << why;
    EXPECT_FALSE(o.body.empty()) << why;
    EXPECT_TRUE(o.closed) << why << ": the connection closes after the error";
  }

  static ShoaldProcess* shoald_;
};
ShoaldProcess* WebSocketHandshake::shoald_ = nullptr;

TEST_F(WebSocketHandshake, ValidUpgradeGets101WithTheAcceptHash) {
  asio::io_context ioc;
  RawWs c(ioc, shoald_->port("ws"));
  const auto r = c.upgrade(chat());
  ASSERT_EQ(r.status, 101) << r.head;
  EXPECT_EQ(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");  // RFC 6455 §1.3
  EXPECT_TRUE(r.header("Upgrade").has_value());
  EXPECT_FALSE(r.header("Sec-WebSocket-Protocol").has_value()) << "none offered, none chosen";
  EXPECT_FALSE(r.header("Sec-WebSocket-Extensions").has_value()) << "permessage-deflate is off";
  EXPECT_EQ(c.echo("hi"), "hi");
}

// HTTP echo answers plain requests on this listener (http_echo_test.cpp);
// what is not HTTP at all is still refused.
TEST_F(WebSocketHandshake, PlainHttpGetsTheEchoAndGarbageGets400AndTheConnectionCloses) {
  const Outcome plain = send(Upgrade{.target = "/", .headers = {{"Host", "x"}, {"Connection", "close"}}}.str());
  EXPECT_EQ(plain.response.status, 200);
  EXPECT_NE(plain.body.find("\"method\":\"GET\""), std::string::npos) << plain.body;
  const Outcome garbage = send("HELLO THERE\r\n\r\n");
  EXPECT_EQ(garbage.response.status, 400);
  EXPECT_TRUE(garbage.closed);
}

TEST_F(WebSocketHandshake, EachRequirementOfRfc6455Section421IsChecked) {
  expect_refused(Upgrade(chat()).erase("Host"), 400, "no Host");
  expect_refused(Upgrade(chat()).add("Host", "other"), 400, "two Host fields");
  expect_refused(Upgrade(chat()).erase("Upgrade"), 400, "no Upgrade");
  expect_refused(Upgrade(chat()).set("Upgrade", "h2c"), 400, "Upgrade without websocket");
  expect_refused(Upgrade(chat()).erase("Connection"), 400, "no Connection");
  expect_refused(Upgrade(chat()).set("Connection", "keep-alive"), 400, "Connection without upgrade");
  expect_refused(Upgrade(chat()).erase("Sec-WebSocket-Key"), 400, "no key");
  expect_refused(Upgrade(chat()).set("Sec-WebSocket-Key", "not base64 at all!!!!!=="), 400, "key not base64");
  expect_refused(Upgrade(chat()).set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"), 400, "key of 15 bytes");
  expect_refused(Upgrade(chat()).set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA="), 400, "key of 17 bytes");
  expect_refused(Upgrade(chat()).set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 400, "key of 24 bytes");
  expect_refused(Upgrade(chat()).add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), 400, "two keys");
  {
    Upgrade post = chat();
    post.method = "POST";
    const Outcome o = send(post.str());
    EXPECT_EQ(o.response.status, 405);
    EXPECT_EQ(o.response.header("Allow"), "GET");
    EXPECT_TRUE(o.closed);
  }
  {
    Upgrade old = chat();
    old.version = "HTTP/1.0";
    expect_refused(old, 400, "HTTP/1.0");
  }
  {
    Upgrade body = chat();
    body.set("Content-Length", "5");
    const Outcome o = send(body.str() + "hello");
    EXPECT_EQ(o.response.status, 400) << "an upgrade with a body";
  }
}

TEST_F(WebSocketHandshake, WrongVersionGets426NamingVersion13) {
  for (const char* v : {"8", "12", "14", "13, 8", ""}) {
    Upgrade u = chat();
    if (*v) u.set("Sec-WebSocket-Version", v);
    else u.erase("Sec-WebSocket-Version");
    const Outcome o = send(u.str());
    EXPECT_EQ(o.response.status, 426) << "version '" << v << "'";
    EXPECT_EQ(o.response.header("Sec-WebSocket-Version"), "13");
    EXPECT_TRUE(o.closed);
  }
}

TEST_F(WebSocketHandshake, OnlyTheConfiguredPathUpgrades) {
  expect_refused(Upgrade{}, 404, "path /");
  Upgrade other = chat();
  other.target = "/chatroom";
  expect_refused(other, 404, "path /chatroom");
  Upgrade query = chat();
  query.target = "/chat?room=1";
  asio::io_context ioc;
  RawWs c(ioc, shoald_->port("ws"));
  EXPECT_EQ(c.upgrade(query).status, 101) << "a query string does not change the path";
}

TEST_F(WebSocketHandshake, TokensAreCaseInsensitiveAndListsAreAccepted) {
  asio::io_context ioc;
  RawWs c(ioc, shoald_->port("ws"));
  const auto r = c.upgrade(Upgrade(chat()).set("Upgrade", "WebSocket").set("Connection", "keep-alive, UPGRADE"));
  ASSERT_EQ(r.status, 101) << r.head;
  EXPECT_EQ(c.echo("case"), "case");
}

TEST_F(WebSocketHandshake, HeadersOverTheLimitGet431) {
  // max_header_bytes defaults to 8 KiB.
  expect_refused(Upgrade(chat()).set("X-Padding", std::string(9000, 'p')), 431, "9 KB header");
  // Just under the limit (several KiB, more than Beast's 1,536-byte buffer) is fine.
  asio::io_context ioc;
  RawWs c(ioc, shoald_->port("ws"));
  EXPECT_EQ(c.upgrade(Upgrade(chat()).set("Cookie", std::string(6000, 'c'))).status, 101);
  EXPECT_EQ(c.echo("big request"), "big request");
}

TEST_F(WebSocketHandshake, SubprotocolIsTheServersFirstChoiceAmongThoseOffered) {
  struct Case {
    std::vector<std::string> offered;
    std::optional<std::string> chosen;
  };
  const std::vector<Case> cases = {
      {{"chat.v1, chat.v2"}, "chat.v2"},
      {{"chat.v1"}, "chat.v1"},
      {{"x", "chat.v1"}, "chat.v1"},  // two header fields
      {{"mqtt, soap"}, std::nullopt},
      {{}, std::nullopt},
      {{"CHAT.V2"}, std::nullopt},  // subprotocol names are case-sensitive
  };
  for (const auto& tc : cases) {
    Upgrade u = chat();
    for (const auto& o : tc.offered) u.add("Sec-WebSocket-Protocol", o);
    asio::io_context ioc;
    RawWs c(ioc, shoald_->port("ws"));
    const auto r = c.upgrade(u);
    ASSERT_EQ(r.status, 101) << r.head;
    EXPECT_EQ(r.header("Sec-WebSocket-Protocol"), tc.chosen) << r.head;
  }
}

TEST_F(WebSocketHandshake, FirstFramesInTheSameSegmentAsTheRequestAreNotLost) {
  for (std::size_t padding : {0u, 4000u}) {  // also past Beast's 1,536-byte read buffer
    asio::io_context ioc;
    RawWs c(ioc, shoald_->port("ws"));
    const std::string request = Upgrade(chat()).set("X-Padding", std::string(padding, 'p')).str();
    ASSERT_TRUE(c.send(request + frame(kText, "early bird") + frame(kBinary, std::string(3000, 'e'))));
    ASSERT_EQ(c.read_response().status, 101);
    auto f = c.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload, "early bird");
    f = c.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload, std::string(3000, 'e'));
  }
}

TEST(WebSocketOrigin, OnlyAllowedOriginsUpgradeWhenConfigured) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      allowed_origins: [\"https://good.example\", "
                                                      "\"http://localhost:8080\"]\n"})});
  auto status = [&](std::optional<std::string> origin) {
    asio::io_context ioc;
    RawWs c(ioc, shoald.port("ws"));
    Upgrade u;
    if (origin) u.set("Origin", *origin);
    const auto r = c.upgrade(u);
    if (r.status != 101) {
      c.read_body(r);
      EXPECT_TRUE(c.closed_by_peer());
    }
    return r.status;
  };
  EXPECT_EQ(status("https://good.example"), 101);
  EXPECT_EQ(status("HTTPS://GOOD.EXAMPLE"), 101);
  EXPECT_EQ(status("http://localhost:8080"), 101);
  EXPECT_EQ(status("https://evil.example"), 403);
  EXPECT_EQ(status("https://good.example.evil"), 403);
  EXPECT_EQ(status(std::nullopt), 403);
}

TEST(WebSocketTimeouts, TricklingHandshakeIsClosedAfterHandshakeTimeoutWhileOthersAreServed) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      handshake_timeout: 500ms\n"})});
  asio::io_context ioc;
  auto good = open_raw(ioc, shoald.port("ws"));
  RawWs trickler(ioc, shoald.port("ws"));
  const std::string request = Upgrade().str();
  const auto start = Clock::now();
  std::size_t sent = 0;
  bool closed = false;
  while (Clock::now() - start < 3s) {
    // One byte every 50 ms: the request would take ~7 s.
    if (sent < request.size()) {
      if (::send(trickler.socket.native_handle(), request.data() + sent, 1, MSG_NOSIGNAL) == 1) ++sent;
    }
    pollfd p{trickler.socket.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      char c;
      const ssize_t r = ::recv(trickler.socket.native_handle(), &c, 1, 0);
      ASSERT_LE(r, 0) << "no response to a request that never completed";
      closed = true;
      break;
    }
    ASSERT_EQ(good->echo("tick"), "tick") << "others are served meanwhile";
  }
  const auto took = Clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 2000ms) << "handshake_timeout (+ scheduling slack on a shared machine)";
  EXPECT_EQ(good->echo("still here"), "still here");
}

// Keepalive on both engines: the raw frame engine (plain ws://) and Beast
// (permessage_deflate enabled, which a client need not negotiate).
struct KeepaliveCase {
  const char* name;
  const char* websocket;  // more lines of the `websocket:` map
};
void PrintTo(const KeepaliveCase& c, std::ostream* os) { *os << c.name; }

class WebSocketKeepalive : public ::testing::TestWithParam<KeepaliveCase> {
 protected:
  // shoald with pings every 200 ms and this pong_timeout.
  std::string yaml(const char* pong_timeout, std::string listener = {}) const {
    return ws_yaml({.websocket = std::string("      ping_interval: 200ms\n      pong_timeout: ") +
                                 pong_timeout + "\n" + GetParam().websocket,
                    .listener = std::move(listener)});
  }

  // A client that answers every ping at once stays connected across
  // several pings and still echoes.
  void expect_answering_peer_stays_open(const char* pong_timeout) {
    ShoaldProcess shoald({.yaml = yaml(pong_timeout)});
    asio::io_context ioc;
    auto c = open_raw(ioc, shoald.port("ws"));
    const auto start = Clock::now();
    int pings = 0;
    while (Clock::now() - start < 1200ms) {
      auto f = c->read_frame();
      ASSERT_TRUE(f) << "closed after " << pings << " pings";
      ASSERT_EQ(f->opcode, kPing);
      ++pings;
      ASSERT_TRUE(c->send(frame(kPong, f->payload)));
    }
    EXPECT_GE(pings, 3);
    EXPECT_EQ(c->echo("alive"), "alive");
  }
};

// pong_timeout 0 is "no pong deadline", not "a pong at once".
TEST_P(WebSocketKeepalive, PeerAnsweringPingsStaysOpenWithPongTimeoutZero) {
  expect_answering_peer_stays_open("0");
}

TEST_P(WebSocketKeepalive, PeerAnsweringPingsStaysOpenWithShortPongTimeout) {
  expect_answering_peer_stays_open("500ms");
}

TEST_P(WebSocketKeepalive, SilentPeerIsClosedByPongTimeout) {
  ShoaldProcess shoald({.yaml = yaml("300ms")});
  asio::io_context ioc;
  auto silent = open_raw(ioc, shoald.port("ws"));
  const auto start = Clock::now();
  int pings = 0;
  while (auto f = silent->read_frame()) {
    if (f->opcode == kPing) ++pings;
  }
  const auto took = Clock::now() - start;
  EXPECT_EQ(pings, 1);
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 1500ms) << "ping_interval + pong_timeout (+ scheduling slack)";
}

// Without a pong deadline a silent peer is pinged every ping_interval, and
// idle_timeout alone ends it.
TEST_P(WebSocketKeepalive, SilentPeerWithPongTimeoutZeroIsPingedUntilIdleTimeout) {
  ShoaldProcess shoald({.yaml = yaml("0", "    idle_timeout: 1500ms\n")});
  asio::io_context ioc;
  auto silent = open_raw(ioc, shoald.port("ws"));
  const auto start = Clock::now();
  int pings = 0;
  std::optional<std::uint16_t> code;
  while (auto f = silent->read_frame()) {
    if (f->opcode == kPing) ++pings;
    if (f->opcode == kClose) {
      code = f->close_code();
      break;
    }
  }
  const auto took = Clock::now() - start;
  EXPECT_GE(pings, 4) << "a ping every ping_interval, unanswered";
  EXPECT_EQ(code, 1001) << "closed by idle_timeout (going away)";
  EXPECT_GE(took, 1400ms);
  EXPECT_LT(took, 3000ms);
}

INSTANTIATE_TEST_SUITE_P(
    Engines, WebSocketKeepalive,
    ::testing::Values(KeepaliveCase{"raw", ""},
                      KeepaliveCase{"beast", "      permessage_deflate:\n        enabled: true\n"}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(WebSocketTimeouts, ClientThatNeverReadsIsClosedByWriteTimeoutAndShoaldStaysResponsive) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      write_timeout: 500ms\n"
                                                      "      max_message_bytes: 2097152\n",
                                         .top = "logging:\n  level: debug\n"})});
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.open(tcp::v4());
  s.set_option(asio::socket_base::receive_buffer_size(4096));
  s.connect(loopback(shoald.port("ws")));
  set_timeouts(s, 200ms);
  RawWs hog(std::move(s));
  ASSERT_EQ(hog.upgrade().status, 101);

  std::atomic<bool> stop{false};
  std::thread sender([&] {
    const std::string big = frame(kBinary, std::string(1 << 20, 'x'));
    const auto deadline = Clock::now() + 10s;
    std::size_t off = 0;
    while (!stop && Clock::now() < deadline) {
      const ssize_t w = ::send(hog.socket.native_handle(), big.data() + off, big.size() - off, MSG_NOSIGNAL);
      if (w > 0) {
        off = (off + static_cast<std::size_t>(w)) % big.size();
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        break;  // the server closed the connection
      }
    }
  });
  // Never read: wait for the server to end the connection.
  pollfd p{hog.socket.native_handle(), POLLRDHUP, 0};
  const auto start = Clock::now();
  const int ready = ::poll(&p, 1, 8000);
  const auto took = Clock::now() - start;
  stop = true;
  sender.join();
  ASSERT_EQ(ready, 1) << "not closed";
  EXPECT_TRUE(p.revents & (POLLRDHUP | POLLHUP | POLLERR));
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(shoald.wait_for_output("write timeout", 2s)) << shoald.output();

  auto fresh = open_raw(ioc, shoald.port("ws"));
  EXPECT_EQ(fresh->echo("responsive"), "responsive");
}

TEST(WebSocketTimeouts, IdleTimeoutClosesAnIdleWebSocketWithGoingAway) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      ping_interval: 0\n",
                                         .listener = "    idle_timeout: 1s\n"})});
  asio::io_context ioc;
  auto idle = open_raw(ioc, shoald.port("ws"));
  auto active = open_raw(ioc, shoald.port("ws"));
  const auto start = Clock::now();
  std::optional<std::uint16_t> code;
  std::chrono::steady_clock::duration closed_after{};
  bool tcp_closed = false;
  std::thread reader([&] {
    code = idle->read_close_code();
    closed_after = Clock::now() - start;
    if (code) {
      idle->send(frame(kClose, close_payload(1000)));
      tcp_closed = idle->closed_by_peer();
    }
  });
  // The active client talks every 100 ms for 2.5 idle timeouts.
  bool active_ok = true;
  while (active_ok && Clock::now() - start < 2500ms) {
    active_ok = active->echo("tick") == "tick";
    std::this_thread::sleep_for(100ms);  // pacing the active client, not a wait
  }
  reader.join();
  EXPECT_TRUE(active_ok) << "the active connection was closed";
  EXPECT_EQ(code, 1001) << "close frame 1001 (going away)";
  EXPECT_TRUE(tcp_closed);
  EXPECT_GE(closed_after, 900ms);
  EXPECT_LT(closed_after, 2500ms);
  EXPECT_EQ(active->echo("still active"), "still active");
}

TEST(WebSocketDrain, SigtermSendsGoingAwayToOpenWebSocketsThenExits) {
  ShoaldProcess shoald({.yaml = ws_yaml({.drain = "100ms"})});
  asio::io_context ioc;
  std::vector<std::unique_ptr<RawWs>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(open_raw(ioc, shoald.port("ws")));
    ASSERT_EQ(clients.back()->echo("hi"), "hi");
  }
  shoald.signal(SIGTERM);
  for (auto& c : clients) {
    EXPECT_EQ(c->read_close_code(), 1001);
    ASSERT_TRUE(c->send(frame(kClose, close_payload(1001))));
    EXPECT_TRUE(c->closed_by_peer());
  }
  EXPECT_EQ(shoald.wait_exit(5s), 0) << shoald.output();
}

// Behind a balancer: the PROXY header comes before the HTTP upgrade (the
// accept path's tests are in proxy_test.cpp).
TEST(WebSocketProxyProtocol, TheUpgradeFollowsTheHeader) {
  ShoaldProcess shoald({.yaml = "listeners:\n" +
                                loopback_listener("ws", "websocket-echo", "    proxy_protocol: v1\n")});
  asio::io_context ioc;
  RawWs ws(ioc, shoald.port("ws"));
  const tcp::endpoint client(asio::ip::make_address("203.0.113.4"), 40000);
  ASSERT_TRUE(ws.send(make_proxy_v1(client, loopback(shoald.port("ws")))));
  const UpgradeResponse r = ws.upgrade();
  EXPECT_EQ(r.status, 101) << r.head;
  EXPECT_EQ(ws.echo("through a balancer"), "through a balancer");
}

// --- an independent client: Debian's python3-websockets ---------------------------

RunResult run_python_client(const std::string& args) {
  return run_command("timeout 120 /usr/bin/python3 " SHOAL_SOURCE_DIR "/tests/ws/client.py " + args);
}

TEST(WebSocketPython, DebianWebsocketsClientEchoesEverything) {
  ShoaldProcess shoald({.yaml = ws_yaml({})});
  const auto r = run_python_client("ws://127.0.0.1:" + std::to_string(shoald.port("ws")) +
                                   "/ --subprotocol chat --expect-subprotocol none");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ALL OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ok binary echo of 1048576 bytes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ok no extension negotiated"), std::string::npos) << r.output;
}

TEST(WebSocketPython, PermessageDeflateAndSubprotocolWhenConfigured) {
  ShoaldProcess shoald({.yaml = ws_yaml({.websocket = "      subprotocols: [chat.v2, chat.v1]\n"
                                                      "      permessage_deflate:\n"
                                                      "        enabled: true\n"
                                                      "        server_max_window_bits: 10\n"
                                                      "        client_max_window_bits: 12\n"})});
  const auto r = run_python_client("ws://127.0.0.1:" + std::to_string(shoald.port("ws")) +
                                   "/ --deflate --subprotocol chat.v1 --subprotocol chat.v2"
                                   " --expect-subprotocol chat.v2");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ALL OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ok permessage-deflate negotiated"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace shoal::test
