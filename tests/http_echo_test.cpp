// Black-box tests of HTTP echo beside WebSocket echo (issue 18): the real
// shoald's websocket-echo listeners answering plain HTTP requests with a JSON
// echo of what arrived, the response controls in the query of an HTTP
// request and of a WebSocket upgrade URL, their bad values, their metrics,
// the instance name and the browser page at /.ws.
//
// Every parameterized case runs twice: over plaintext and over TLS (a small
// blocking OpenSSL client, below), each against the listener of the same
// settings with or without a `tls:` map. Answers are parsed with
// nlohmann::json. Every wait is bounded: sockets carry SO_RCVTIMEO and
// SO_SNDTIMEO, and OpenSSL on a blocking socket gives up with them.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "admin_client.hpp"
#include "protocol/proxy_protocol.hpp"
#include "raw_ws.hpp"
#include "shoald_process.hpp"
#include "test_certs.hpp"

namespace shoal::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// --- one client connection: plain TCP, or TLS through OpenSSL ------------------------

struct ConnOptions {
  bool tls = false;
  std::string before;              // bytes sent before TLS (a PROXY header)
  std::optional<std::string> sni;  // none: no server_name extension
  std::vector<std::string> alpn;   // protocols offered, in order; none: no extension
  int max_version = 0;             // e.g. TLS1_2_VERSION; 0: OpenSSL's default (1.3)
  std::chrono::milliseconds timeout = 5s;
};

// A blocking client connection (tests only). Bytes read but not yet taken
// by a parser wait in `in`.
class Conn {
 public:
  enum class Read { data, closed, timeout };

  Conn(std::uint16_t port, const ConnOptions& o) : timeout_(o.timeout) {
    fd_ = connect_loopback(port, o.timeout);
    if (fd_ < 0) return;
    if (!o.before.empty() && !send_text(fd_, o.before)) return;
    if (!o.tls) {
      ok_ = true;
      return;
    }
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    if (o.max_version) SSL_CTX_set_max_proto_version(ctx_, o.max_version);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    // SSL_set_tlsext_host_name() is a macro with a C cast.
    if (o.sni)
      SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(o.sni->c_str()));
    if (!o.alpn.empty()) {
      std::string wire;
      for (const auto& p : o.alpn) wire += static_cast<char>(p.size()) + p;
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                          static_cast<unsigned>(wire.size()));
    }
    ok_ = SSL_connect(ssl_) == 1;
  }
  ~Conn() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool ok() const { return ok_; }
  SSL* ssl() const { return ssl_; }

  std::uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t n = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n);
    return ntohs(a.sin_port);
  }

  bool send(std::string_view bytes) {
    if (!ok_) return false;
    if (!ssl_) return send_text(fd_, std::string(bytes));
    while (!bytes.empty()) {
      const int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // One read into `in`.
  Read fill() {
    if (!ok_) return Read::closed;
    char buf[16384];
    if (!ssl_) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, static_cast<std::size_t>(n));
        return Read::data;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Read::timeout;
      return Read::closed;
    }
    ERR_clear_error();
    errno = 0;
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      in.append(buf, static_cast<std::size_t>(n));
      return Read::data;
    }
    const int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Read::timeout;
    if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) return Read::timeout;
    return Read::closed;  // close_notify, EOF, reset or a TLS alert
  }

  bool fill_to(std::size_t n) {
    while (in.size() < n)
      if (fill() != Read::data) return false;
    return true;
  }

  // The server ends the connection within `timeout` with nothing more
  // before it.
  bool closed_by_peer(std::chrono::milliseconds timeout = 3s) {
    if (!in.empty()) return false;
    set_receive_timeout(timeout);
    const Read r = fill();
    set_receive_timeout(timeout_);
    return r == Read::closed;
  }

  std::string in;

 private:
  void set_receive_timeout(std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000), static_cast<suseconds_t>((t.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool ok_ = false;
};

// --- HTTP over a Conn ------------------------------------------------------------------

struct Response {
  int status = 0;  // 0: no (whole) response came
  std::string head;
  Headers headers;
  std::string body;

  std::optional<std::string> header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (lower(k) == lower(name)) return v;
    return std::nullopt;
  }
  json body_json() const { return json::parse(body, nullptr, false); }
};

// Reads one response (a 1xx counts as one). `no_body`: the answer to a HEAD.
// A body is read by Content-Length, or to the end without one.
Response read_response(Conn& c, bool no_body = false) {
  std::size_t end;
  while ((end = c.in.find("\r\n\r\n")) == std::string::npos)
    if (c.fill() != Conn::Read::data) return {};
  Response r;
  r.head = c.in.substr(0, end + 4);
  c.in.erase(0, end + 4);
  if (r.head.rfind("HTTP/1.", 0) != 0 || r.head.size() < 12) return {};
  r.status = std::stoi(r.head.substr(9, 3));
  std::size_t pos = r.head.find("\r\n") + 2;
  while (pos < end) {
    const std::size_t eol = r.head.find("\r\n", pos);
    const std::string line = r.head.substr(pos, eol - pos);
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers.emplace_back(line.substr(0, colon), line.substr(v));
    }
    pos = eol + 2;
  }
  if (no_body || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
  if (const auto len = r.header("Content-Length")) {
    const std::size_t n = std::stoul(*len);
    if (!c.fill_to(n)) return {};
    r.body = c.in.substr(0, n);
    c.in.erase(0, n);
  } else {
    while (c.fill() == Conn::Read::data) {
    }
    r.body = std::move(c.in);
    c.in.clear();
  }
  return r;
}

// A request: Host first, then `headers`, then Content-Length when there is
// a body and `headers` name neither Content-Length nor Transfer-Encoding.
std::string request(const std::string& method, const std::string& target, const Headers& headers = {},
                    const std::string& body = "", const std::string& version = "HTTP/1.1") {
  std::string s = method + " " + target + " " + version + "\r\nHost: 127.0.0.1\r\n";
  bool framed = false;
  for (const auto& [k, v] : headers) {
    s += k + ": " + v + "\r\n";
    if (lower(k) == "content-length" || lower(k) == "transfer-encoding") framed = true;
  }
  if (!body.empty() && !framed) s += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return s + "\r\n" + body;
}

Response roundtrip(Conn& c, const std::string& raw, bool no_body = false) {
  if (!c.send(raw)) return {};
  return read_response(c, no_body);
}

std::string connection_of(const Response& r) { return lower(r.header("Connection").value_or("<none>")); }

// --- WebSocket over a Conn -------------------------------------------------------------

Response ws_upgrade(Conn& c, const std::string& target) {
  Upgrade u;
  u.target = target;
  return roundtrip(c, u.str());
}

std::optional<Frame> read_frame(Conn& c) {
  if (!c.fill_to(2)) return std::nullopt;
  const auto b0 = static_cast<unsigned char>(c.in[0]);
  const auto b1 = static_cast<unsigned char>(c.in[1]);
  std::size_t header = 2;
  std::uint64_t len = b1 & 0x7f;
  if (len == 126) header += 2;
  if (len == 127) header += 8;
  if (b1 & 0x80) header += 4;  // a server must not mask; read it anyway
  if (!c.fill_to(header)) return std::nullopt;
  if (len == 126) {
    len = (static_cast<unsigned char>(c.in[2]) << 8) | static_cast<unsigned char>(c.in[3]);
  } else if (len == 127) {
    len = 0;
    for (std::size_t i = 2; i < 10; ++i) len = (len << 8) | static_cast<unsigned char>(c.in[i]);
  }
  if (!c.fill_to(header + len)) return std::nullopt;
  Frame f;
  f.fin = b0 & 0x80;
  f.rsv = (b0 >> 4) & 7;
  f.opcode = b0 & 0x0f;
  f.payload = c.in.substr(header, len);
  if (b1 & 0x80)
    for (std::size_t i = 0; i < f.payload.size(); ++i) f.payload[i] ^= c.in[header - 4 + i % 4];
  c.in.erase(0, header + len);
  return f;
}

// Sends one message and reads the next frame.
std::optional<Frame> ws_echo(Conn& c, int opcode, std::string_view payload) {
  if (!c.send(frame(opcode, payload))) return std::nullopt;
  return read_frame(c);
}

// --- the shoald under test -------------------------------------------------------------

constexpr const char* kInstance = "echo-test.1";

// The settings every "ws" listener shares: upgrades on /ws, a small body
// limit and control caps, and a short wait between requests.
constexpr const char* kWsSettings =
    "      path: /ws\n"
    "      handshake_timeout: 1s\n"
    "      max_body_bytes: 4096\n"
    "      controls: {max_delay: 2s, max_size: 100000}\n";

std::string listener(const std::string& name, const CertFiles& cert, const std::string& websocket,
                     const std::string& keys = "") {
  std::string s = loopback_listener(name, "websocket-echo", keys + "    websocket:\n" + websocket);
  std::string t = loopback_listener(name + "-tls", "websocket-echo",
                                    keys + "    websocket:\n" + websocket +
                                        "    tls:\n"
                                        "      certificate: " + cert.certificate + "\n"
                                        "      private_key: " + cert.private_key + "\n");
  return s + t;
}

// Each listener twice: NAME (plaintext) and NAME-tls.
std::string echo_yaml(const CertFiles& cert, const std::string& top, std::uint16_t admin) {
  return "shards: 2\n" + top +
         "admin: {address: 127.0.0.1, port: " + std::to_string(admin) + "}\n"
         "shutdown: {drain_timeout: 1s}\n"
         "listeners:\n" +
         listener("ws", cert, kWsSettings) +
         listener("proxied", cert, kWsSettings, "    proxy_protocol: any\n") +
         listener("off", cert, "      path: /ws\n      http_echo: false\n") +
         listener("nocontrols", cert, "      path: /ws\n      controls: {enabled: false}\n") +
         listener("nobody", cert, "      path: /ws\n      max_body_bytes: 0\n");
}

struct Server {
  TempDir dir;
  CertFiles cert = make_cert(dir, "echo");
  std::unique_ptr<ShoaldProcess> shoald = start_with_admin_port([this](std::uint16_t admin) {
    return echo_yaml(cert, std::string("instance: ") + kInstance + "\n", admin);
  });
};

// One shoald for every test of a suite (each ctest entry runs one test, so
// in practice one per test; run by hand, one per suite).
class EchoFixture : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    if (!server_) server_ = new Server();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

 protected:
  static ShoaldProcess& shoald() { return *server_->shoald; }
  static std::uint16_t port_of(const std::string& name) { return shoald().port(name); }

  static Server* server_;
};
Server* EchoFixture::server_ = nullptr;

// The same case over plaintext (false) and TLS (true).
class Transported : public EchoFixture, public ::testing::WithParamInterface<bool> {
 protected:
  static bool tls() { return GetParam(); }
  // The listener `base` of this transport: "ws" or "ws-tls".
  static std::string name(const std::string& base) { return tls() ? base + "-tls" : base; }
  static std::uint16_t port(const std::string& base) { return port_of(name(base)); }
  static std::unique_ptr<Conn> open(const std::string& base, ConnOptions o = {}) {
    o.tls = tls();
    auto c = std::make_unique<Conn>(port(base), o);
    EXPECT_TRUE(c->ok()) << "connect" << (tls() ? " and TLS handshake" : "") << " to " << name(base);
    return c;
  }
};

std::string transport_name(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "tls" : "plain";
}

#define SHOAL_TRANSPORTS(suite) \
  INSTANTIATE_TEST_SUITE_P(Transports, suite, ::testing::Values(false, true), transport_name)

// --- every field of the echo -----------------------------------------------------------

class HttpEcho : public Transported {};
SHOAL_TRANSPORTS(HttpEcho);

TEST_P(HttpEcho, GetEchoesEveryFieldAndTheResponseHeaders) {
  auto c = open("ws", {.sni = "localhost", .alpn = {"h2", "http/1.1"}});
  const Headers sent = {{"Host", "127.0.0.1:" + std::to_string(port("ws"))},
                        {"User-Agent", "shoal-test/1.0"},
                        {"X-MiXeD-Case", "Value With Spaces"},
                        {"accept", "*/*"},
                        {"X-Dup", "one"},
                        {"X-Dup", "two"}};
  std::string raw = "GET /a%20b/c?x=1&r=1&r=2 HTTP/1.1\r\n";
  for (const auto& [k, v] : sent) raw += k + ": " + v + "\r\n";
  const Response r = roundtrip(*c, raw + "\r\n");
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("Server"), "shoal") << r.head;
  EXPECT_EQ(r.header("Content-Type"), "application/json") << r.head;
  EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size())) << r.head;
  EXPECT_EQ(r.header("X-Shoal-Instance"), kInstance) << r.head;
  EXPECT_EQ(connection_of(r), "keep-alive") << r.head;
  ASSERT_FALSE(r.body.empty());
  EXPECT_EQ(r.body.back(), '\n') << "one JSON object, then a newline";
  json j = r.body_json();
  ASSERT_FALSE(j.is_discarded()) << r.body;
  ASSERT_TRUE(j.is_object()) << r.body;

  EXPECT_EQ(j.value("method", ""), "GET");
  EXPECT_EQ(j.value("path", ""), "/a%20b/c") << "the path as sent, not decoded";
  EXPECT_EQ(j["query"], json({{"x", "1"}, {"r", {"1", "2"}}}));
  EXPECT_EQ(j.value("http_version", ""), "1.1");
  json headers = json::array();
  for (const auto& [k, v] : sent) headers.push_back({k, v});
  EXPECT_EQ(j["headers"], headers) << "in arrival order, names as sent";
  EXPECT_EQ(j["body"], "");
  EXPECT_EQ(j["body_encoding"], "utf-8");
  EXPECT_EQ(j["client"], json({{"address", "127.0.0.1"}, {"port", c->local_port()}}));
  ASSERT_TRUE(j["server"].is_object()) << r.body;
  EXPECT_EQ(j["server"]["instance"], kInstance);
  EXPECT_EQ(j["server"]["hostname"], host_name());
  EXPECT_EQ(j["server"]["listener"], name("ws"));
  ASSERT_TRUE(j["server"]["shard"].is_number_integer()) << r.body;
  EXPECT_GE(j["server"]["shard"].get<int>(), 0);
  EXPECT_LT(j["server"]["shard"].get<int>(), 2) << "shards: 2";

  if (!tls()) {
    EXPECT_FALSE(j.contains("tls")) << "tls only on TLS listeners: " << r.body;
    return;
  }
  ASSERT_TRUE(j["tls"].is_object()) << r.body;
  EXPECT_EQ(j["tls"]["version"], "TLSv1.3");
  EXPECT_EQ(j["tls"]["version"], SSL_get_version(c->ssl()));
  EXPECT_EQ(j["tls"]["cipher"], SSL_get_cipher_name(c->ssl()));
  EXPECT_EQ(j["tls"]["sni"], "localhost");
  EXPECT_EQ(j["tls"]["alpn"], "http/1.1");
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(c->ssl(), &alpn, &alpn_len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(alpn), alpn_len), "http/1.1")
      << "the server selects http/1.1 when it is offered";
}

TEST_P(HttpEcho, QueryIsPercentDecodedWithPlusAsSpaceAndRepeatsAsArrays) {
  auto c = open("ws");
  Response r = roundtrip(*c, request("GET",
                                    "/q?a=1&b=hello+world&c=%41%2B%26%3D&r=1&r=2&r=3&flag&e=&u=%E2%82%AC"
                                    "&sp=a%20b&na%6De=v&p=x+y"));
  ASSERT_EQ(r.status, 200) << r.head;
  json j = r.body_json();
  EXPECT_EQ(j["path"], "/q");
  EXPECT_EQ(j["query"], json({{"a", "1"},
                              {"b", "hello world"},
                              {"c", "A+&="},
                              {"r", {"1", "2", "3"}},
                              {"flag", ""},
                              {"e", ""},
                              {"u", "\u20ac"},
                              {"sp", "a b"},
                              {"name", "v"},
                              {"p", "x y"}}))
      << r.body;

  // A path keeps its escapes and its '+'; no query is an empty object.
  r = roundtrip(*c, request("GET", "/x+y%2Fz"));
  ASSERT_EQ(r.status, 200) << r.head;
  j = r.body_json();
  EXPECT_EQ(j["path"], "/x+y%2Fz");
  EXPECT_EQ(j["query"], json::object()) << r.body;
}

TEST_P(HttpEcho, BodiesAreUtf8OrBase64AndEveryMethodIsEchoed) {
  auto c = open("ws");
  const std::string text = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93";
  Response r = roundtrip(*c, request("POST", "/post", {{"Content-Type", "text/plain"}}, text));
  ASSERT_EQ(r.status, 200) << r.head;
  json j = r.body_json();
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["body"], text);
  EXPECT_EQ(j["body_encoding"], "utf-8");

  // NUL is valid UTF-8.
  r = roundtrip(*c, request("PUT", "/nul", {}, std::string("a\0b", 3)));
  j = r.body_json();
  EXPECT_EQ(j["method"], "PUT");
  EXPECT_EQ(j["body"], std::string("a\0b", 3));
  EXPECT_EQ(j["body_encoding"], "utf-8");

  // Not UTF-8: a lone 0xff, a cut sequence, a UTF-16 surrogate, random bytes.
  const std::vector<std::string> binary = {
      std::string("\xff\xfe\x00\x01\x80", 5), "ok\xe2\x82", "\xed\xa0\x80",
      [] {
        const auto v = random_bytes(300, 18);
        return std::string(v.begin(), v.end()) + "\xff";
      }()};
  for (const std::string& b : binary) {
    r = roundtrip(*c, request("POST", "/bin", {{"Content-Type", "application/octet-stream"}}, b));
    ASSERT_EQ(r.status, 200) << r.head;
    j = r.body_json();
    EXPECT_EQ(j["body_encoding"], "base64") << r.body;
    EXPECT_EQ(j["body"], base64(b)) << r.body;
  }
  EXPECT_EQ(base64(std::string("\xff\xfe\x00\x01\x80", 5)), "//4AAYA=");

  for (const char* method : {"DELETE", "PATCH", "OPTIONS", "PURGE"}) {
    r = roundtrip(*c, request(method, "/m"));
    ASSERT_EQ(r.status, 200) << method << "\n" << r.head;
    EXPECT_EQ(r.body_json()["method"], method);
  }
}

TEST_P(HttpEcho, ClientIsTheTcpPeerOrThePeerNamedByAProxyHeader) {
  const tcp::endpoint dst{asio::ip::make_address("127.0.0.1"), 80};
  {
    const tcp::endpoint src{asio::ip::make_address("192.0.2.7"), 40001};
    auto c = open("proxied", {.before = make_proxy_v1(src, dst)});
    const Response r = roundtrip(*c, request("GET", "/v1"));
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body_json()["client"], json({{"address", "192.0.2.7"}, {"port", 40001}})) << r.body;
  }
  {
    const tcp::endpoint src{asio::ip::make_address("2001:db8::5"), 40002};
    const tcp::endpoint dst6{asio::ip::make_address("2001:db8::1"), 443};
    auto c = open("proxied", {.before = make_proxy_v2(&src, &dst6)});
    const Response r = roundtrip(*c, request("GET", "/v2"));
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body_json()["client"], json({{"address", "2001:db8::5"}, {"port", 40002}})) << r.body;
    // Still the header's client on the next request of the connection.
    const Response again = roundtrip(*c, request("GET", "/again"));
    EXPECT_EQ(again.body_json()["client"]["address"], "2001:db8::5");
  }
  {
    // A v2 LOCAL header (a balancer's own health check) names no client:
    // the TCP peer it is.
    auto c = open("proxied", {.before = make_proxy_v2(nullptr, nullptr)});
    const Response r = roundtrip(*c, request("GET", "/local"));
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body_json()["client"], json({{"address", "127.0.0.1"}, {"port", c->local_port()}})) << r.body;
  }
}

TEST_P(HttpEcho, Http10ClosesUnlessAskedToKeepAlive) {
  {
    auto c = open("ws");
    const Response r = roundtrip(*c, "GET /old?v=1 HTTP/1.0\r\nUser-Agent: old\r\n\r\n");
    ASSERT_EQ(r.status, 200) << r.head;
    json j = r.body_json();
    EXPECT_EQ(j["http_version"], "1.0");
    EXPECT_EQ(j["path"], "/old");
    EXPECT_EQ(j["headers"], json::array({{"User-Agent", "old"}}));
    EXPECT_EQ(connection_of(r), "close") << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
  {
    auto c = open("ws");
    const std::string req = "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    const Response first = roundtrip(*c, req);
    ASSERT_EQ(first.status, 200) << first.head;
    EXPECT_EQ(connection_of(first), "keep-alive") << first.head;
    const Response second = roundtrip(*c, req);
    ASSERT_EQ(second.status, 200) << second.head;
    EXPECT_EQ(second.body_json()["http_version"], "1.0");
  }
}

TEST_P(HttpEcho, HeadHasTheHeadersOfTheGetAndNoBody) {
  auto c = open("ws");
  const Response as_get = roundtrip(*c, request("GET", "/same"));
  ASSERT_EQ(as_get.status, 200) << as_get.head;
  const Response head = roundtrip(*c, request("HEAD", "/same"), /*no_body=*/true);
  ASSERT_EQ(head.status, 200) << head.head;
  EXPECT_EQ(head.header("Content-Type"), "application/json");
  EXPECT_EQ(head.header("Server"), "shoal");
  EXPECT_EQ(head.header("X-Shoal-Instance"), kInstance);
  // Same connection, same headers: the JSON differs only in "HEAD" against
  // "GET" (one byte).
  ASSERT_TRUE(head.header("Content-Length")) << head.head;
  const std::size_t length = std::stoul(*head.header("Content-Length"));
  EXPECT_GE(length, as_get.body.size()) << head.head;
  EXPECT_LE(length, as_get.body.size() + 1) << head.head;
  // No body bytes follow: the next answer starts right away.
  const Response after = roundtrip(*c, request("GET", "/after"));
  ASSERT_EQ(after.status, 200) << "bytes after a HEAD answer: " << after.head;
  EXPECT_EQ(after.body_json()["path"], "/after");
}

// --- connections -------------------------------------------------------------------------

class HttpEchoConnection : public Transported {};
SHOAL_TRANSPORTS(HttpEchoConnection);

TEST_P(HttpEchoConnection, KeepAliveServesTwoRequestsOnOneConnection) {
  auto c = open("ws");
  const Response a = roundtrip(*c, request("GET", "/one"));
  const Response b = roundtrip(*c, request("GET", "/two"));
  ASSERT_EQ(a.status, 200) << a.head;
  ASSERT_EQ(b.status, 200) << b.head;
  EXPECT_EQ(connection_of(a), "keep-alive");
  EXPECT_EQ(connection_of(b), "keep-alive");
  EXPECT_EQ(a.body_json()["path"], "/one");
  EXPECT_EQ(b.body_json()["path"], "/two");
  EXPECT_EQ(b.body_json()["client"]["port"], c->local_port()) << "the same connection";
}

TEST_P(HttpEchoConnection, PipelinedRequestsAreAnsweredInOrder) {
  auto c = open("ws");
  ASSERT_TRUE(c->send(request("GET", "/1") + request("POST", "/2", {}, "second body") +
                      request("GET", "/3?n=3")));
  const Response r1 = read_response(*c);
  const Response r2 = read_response(*c);
  const Response r3 = read_response(*c);
  ASSERT_EQ(r1.status, 200) << r1.head;
  ASSERT_EQ(r2.status, 200) << r2.head;
  ASSERT_EQ(r3.status, 200) << r3.head;
  EXPECT_EQ(r1.body_json()["path"], "/1");
  EXPECT_EQ(r2.body_json()["path"], "/2");
  EXPECT_EQ(r2.body_json()["body"], "second body");
  EXPECT_EQ(r3.body_json()["path"], "/3");
  EXPECT_EQ(r3.body_json()["query"], json({{"n", "3"}}));
}

TEST_P(HttpEchoConnection, ConnectionCloseClosesAfterTheResponse) {
  auto c = open("ws");
  ASSERT_EQ(roundtrip(*c, request("GET", "/first")).status, 200);
  const Response r = roundtrip(*c, request("GET", "/last", {{"Connection", "close"}}));
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(connection_of(r), "close") << r.head;
  EXPECT_EQ(r.body_json()["path"], "/last");
  EXPECT_TRUE(c->closed_by_peer());
}

TEST_P(HttpEchoConnection, AnIdleConnectionIsClosedAfterHandshakeTimeout) {
  auto c = open("ws");
  ASSERT_EQ(roundtrip(*c, request("GET", "/")).status, 200);
  const auto start = Clock::now();
  EXPECT_TRUE(c->closed_by_peer()) << "handshake_timeout is 1s";
  EXPECT_GE(ms_since(start), 700);
  EXPECT_LT(ms_since(start), 3000);
}

TEST_P(HttpEchoConnection, Expect100ContinueGetsAnInterimResponseFirst) {
  auto c = open("ws");
  ASSERT_TRUE(c->send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                      "Expect: 100-continue\r\n\r\n"));
  const Response interim = read_response(*c);
  ASSERT_EQ(interim.status, 100) << interim.head;
  EXPECT_EQ(interim.head.rfind("HTTP/1.1 100 Continue\r\n", 0), 0u) << interim.head;
  ASSERT_TRUE(c->send("hello"));
  const Response r = read_response(*c);
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body_json()["body"], "hello");
}

TEST_P(HttpEchoConnection, ChunkedBodiesAreJoined) {
  auto c = open("ws");
  ASSERT_TRUE(c->send("POST /chunks HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  ASSERT_TRUE(c->send("5\r\nhello\r\n"));
  ASSERT_TRUE(c->send("6\r\n world\r\n"));
  ASSERT_TRUE(c->send("0\r\n\r\n"));
  const Response r = read_response(*c);
  ASSERT_EQ(r.status, 200) << r.head;
  json j = r.body_json();
  EXPECT_EQ(j["body"], "hello world") << r.body;
  EXPECT_EQ(j["body_encoding"], "utf-8");
  EXPECT_EQ(j["headers"].back(), json({"Transfer-Encoding", "chunked"}));
  // The connection goes on after a chunked body.
  EXPECT_EQ(roundtrip(*c, request("GET", "/next")).status, 200);
}

TEST_P(HttpEchoConnection, BodiesOverMaxBodyBytesGet413AndClose) {
  {
    auto c = open("ws");  // max_body_bytes: 4096
    const Response ok = roundtrip(*c, request("POST", "/fits", {}, std::string(4096, 'b')));
    ASSERT_EQ(ok.status, 200) << ok.head;
    EXPECT_EQ(ok.body_json()["body"], std::string(4096, 'b'));
    const Response r = roundtrip(*c, "POST /big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4097\r\n\r\n");
    ASSERT_EQ(r.status, 413) << r.head;
    EXPECT_EQ(r.header("Content-Type"), "application/json") << r.head;
    EXPECT_TRUE(r.body_json()["error"].is_string()) << r.body;
    EXPECT_EQ(connection_of(r), "close") << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
  {
    auto c = open("ws");
    const Response r = roundtrip(*c, "POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "800\r\n" + std::string(0x800, 'a') + "\r\n"
                                    "801\r\n" + std::string(0x801, 'a') + "\r\n");
    ASSERT_EQ(r.status, 413) << "4097 bytes in two chunks\n" << r.head;
    EXPECT_TRUE(r.body_json()["error"].is_string()) << r.body;
    EXPECT_EQ(connection_of(r), "close") << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
  {
    // max_body_bytes: 0: any body at all is too large; none is fine.
    auto c = open("nobody");
    EXPECT_EQ(roundtrip(*c, request("GET", "/")).status, 200);
    EXPECT_EQ(roundtrip(*c, request("POST", "/", {{"Content-Length", "0"}})).status, 200);
    const Response r = roundtrip(*c, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n");
    EXPECT_EQ(r.status, 413) << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
}

TEST_P(HttpEchoConnection, HeadOverMaxHeaderBytesGets431) {
  auto c = open("ws");
  const Response r = roundtrip(*c, request("GET", "/", {{"X-Big", std::string(9000, 'x')}}));
  EXPECT_EQ(r.status, 431) << r.head;
  EXPECT_TRUE(c->closed_by_peer());
  // Just under the 8 KiB default is echoed.
  auto d = open("ws");
  const Response ok = roundtrip(*d, request("GET", "/", {{"Cookie", std::string(6000, 'c')}}));
  ASSERT_EQ(ok.status, 200) << ok.head;
  EXPECT_EQ(ok.body_json()["headers"][1], json({"Cookie", std::string(6000, 'c')}));
}

TEST_P(HttpEchoConnection, MalformedRequestsGet400TextAndClose) {
  const std::vector<std::string> bad = {
      "HELLO THERE\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon in this line\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
  };
  for (const std::string& raw : bad) {
    SCOPED_TRACE(raw);
    auto c = open("ws");
    const Response r = roundtrip(*c, raw);
    EXPECT_EQ(r.status, 400) << r.head;
    EXPECT_EQ(r.header("Content-Type").value_or("").rfind("text/plain", 0), 0u) << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
}

// --- http_echo: false ----------------------------------------------------------------------

class HttpEchoOff : public Transported {};
SHOAL_TRANSPORTS(HttpEchoOff);

TEST_P(HttpEchoOff, RequestsGetTheRefusalsOfAnUpgradeOnlyPort) {
  struct Case {
    std::string method, target;
    int status;
  };
  for (const Case& k : std::vector<Case>{{"POST", "/ws", 405},
                                        {"DELETE", "/elsewhere", 405},
                                        {"GET", "/ws", 426},
                                        {"GET", "/ws?x=1", 426},
                                        {"GET", "/elsewhere", 404},
                                        {"GET", "/.ws", 404}}) {
    SCOPED_TRACE(k.method + " " + k.target);
    auto c = open("off");
    const Response r = roundtrip(*c, request(k.method, k.target));
    EXPECT_EQ(r.status, k.status) << r.head;
    EXPECT_NE(r.header("Content-Type"), "application/json") << "no echo: " << r.body;
    if (k.status == 426) {
      EXPECT_EQ(r.header("Sec-WebSocket-Version"), "13") << r.head;
    }
    EXPECT_TRUE(c->closed_by_peer());
  }
  // The WebSocket echo itself is as before.
  auto c = open("off");
  ASSERT_EQ(ws_upgrade(*c, "/ws").status, 101);
  const auto f = ws_echo(*c, kText, "still echoing");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, "still echoing");
}

// --- WebSocket beside HTTP echo --------------------------------------------------------------

class HttpEchoUpgrade : public Transported {};
SHOAL_TRANSPORTS(HttpEchoUpgrade);

TEST_P(HttpEchoUpgrade, WebSocketStillUpgradesOnThePortAlsoAfterHttpRequests) {
  {
    auto c = open("ws");
    const Response r = ws_upgrade(*c, "/ws");
    ASSERT_EQ(r.status, 101) << r.head;
    EXPECT_EQ(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const auto f = ws_echo(*c, kText, "beside http");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kText);
    EXPECT_EQ(f->payload, "beside http");
  }
  {
    auto c = open("ws");
    ASSERT_EQ(roundtrip(*c, request("GET", "/ws")).status, 200) << "a plain GET on the path is echoed";
    ASSERT_EQ(roundtrip(*c, request("POST", "/x", {}, "body")).status, 200);
    const Response r = ws_upgrade(*c, "/ws");
    ASSERT_EQ(r.status, 101) << r.head;
    const auto f = ws_echo(*c, kBinary, std::string("\x00\x01\x02", 3));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kBinary);
    EXPECT_EQ(f->payload, std::string("\x00\x01\x02", 3));
  }
}

TEST_P(HttpEchoUpgrade, WhatCountsAsAnUpgradeAttempt) {
  {
    // An upgrade to another path is still refused as an upgrade.
    auto c = open("ws");
    const Response r = ws_upgrade(*c, "/elsewhere");
    EXPECT_EQ(r.status, 404) << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
  {
    // A Sec-WebSocket-Key alone makes it an attempt, which then lacks Upgrade.
    auto c = open("ws");
    const Response r = roundtrip(*c, request("GET", "/ws", {{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                                          {"Sec-WebSocket-Version", "13"}}));
    EXPECT_EQ(r.status, 400) << r.head;
    EXPECT_TRUE(c->closed_by_peer());
  }
  {
    // Upgrade to something else is plain HTTP: echoed.
    auto c = open("ws");
    const Response r = roundtrip(*c, request("GET", "/ws", {{"Connection", "Upgrade"}, {"Upgrade", "h2c"}}));
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body_json()["headers"][2], json({"Upgrade", "h2c"}));
  }
}

// --- the browser page ------------------------------------------------------------------------

class HttpEchoPage : public Transported {};
SHOAL_TRANSPORTS(HttpEchoPage);

TEST_P(HttpEchoPage, GetDotWsReturnsTheSelfContainedPage) {
  auto c = open("ws");
  for (const char* target : {"/.ws", "/.ws?delay=100ms"}) {
    SCOPED_TRACE(target);
    const Response r = roundtrip(*c, request("GET", target));
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.header("Content-Type"), "text/html; charset=utf-8") << r.head;
    EXPECT_EQ(r.header("Content-Length"), std::to_string(r.body.size()));
    for (const char* id : {"url", "connect", "message", "send", "log", "status", "close-code", "extensions"})
      EXPECT_TRUE(std::regex_search(r.body, std::regex(std::string("id\\s*=\\s*[\"']?") + id + "[\"'\\s>]")))
          << "element #" << id;
    EXPECT_FALSE(std::regex_search(r.body, std::regex("(src|href)\\s*=\\s*[\"']?(https?:)?//", std::regex::icase)))
        << "no external assets";
  }
  const Response head = roundtrip(*c, request("HEAD", "/.ws"), /*no_body=*/true);
  EXPECT_EQ(head.status, 200) << head.head;
  EXPECT_EQ(head.header("Content-Type"), "text/html; charset=utf-8") << head.head;
  // Exactly that path: anything else is echoed.
  const Response other = roundtrip(*c, request("GET", "/.ws/x"));
  ASSERT_EQ(other.status, 200) << "no body bytes after the HEAD answer: " << other.head;
  EXPECT_EQ(other.header("Content-Type"), "application/json");
  EXPECT_EQ(other.body_json()["path"], "/.ws/x");
}

// --- TLS details -------------------------------------------------------------------------------

class HttpEchoTls : public EchoFixture {};

TEST_F(HttpEchoTls, SniAndAlpnAreNullWhenTheClientSendsNone) {
  Conn c(port_of("ws-tls"), {.tls = true});
  ASSERT_TRUE(c.ok());
  const Response r = roundtrip(c, request("GET", "/"));
  ASSERT_EQ(r.status, 200) << r.head;
  json j = r.body_json();
  ASSERT_TRUE(j["tls"].is_object()) << r.body;
  EXPECT_TRUE(j["tls"].contains("sni") && j["tls"]["sni"].is_null()) << r.body;
  EXPECT_TRUE(j["tls"].contains("alpn") && j["tls"]["alpn"].is_null()) << r.body;
}

TEST_F(HttpEchoTls, Tls12ReportsItsVersionAndCipher) {
  Conn c(port_of("ws-tls"), {.tls = true, .sni = "localhost", .max_version = TLS1_2_VERSION});
  ASSERT_TRUE(c.ok());
  const Response r = roundtrip(c, request("GET", "/"));
  ASSERT_EQ(r.status, 200) << r.head;
  json j = r.body_json();
  EXPECT_EQ(j["tls"]["version"], "TLSv1.2") << r.body;
  EXPECT_EQ(j["tls"]["cipher"], SSL_get_cipher_name(c.ssl())) << r.body;
  EXPECT_EQ(j["tls"]["sni"], "localhost") << r.body;
}

// --- HTTP response controls --------------------------------------------------------------------

class HttpEchoControls : public Transported {};
SHOAL_TRANSPORTS(HttpEchoControls);

TEST_P(HttpEchoControls, DelayHoldsTheResponseWithoutHoldingTheShard) {
  auto c = open("ws");
  auto start = Clock::now();
  Response r = roundtrip(*c, request("GET", "/?delay=250ms"));
  long long took = ms_since(start);
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 2000);
  EXPECT_EQ(r.body_json()["path"], "/");
  // A plain integer is seconds: 0 is no wait.
  start = Clock::now();
  r = roundtrip(*c, request("GET", "/?delay=0"));
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_LT(ms_since(start), 250);

  // Six delayed requests at once on two shards: a shard that slept would
  // hold at least three of them in turn (900 ms).
  std::vector<std::unique_ptr<Conn>> many;
  for (int i = 0; i < 6; ++i) many.push_back(open("ws"));
  start = Clock::now();
  for (auto& m : many) ASSERT_TRUE(m->send(request("GET", "/?delay=300ms")));
  for (auto& m : many) EXPECT_EQ(read_response(*m).status, 200);
  took = ms_since(start);
  EXPECT_GE(took, 300);
  EXPECT_LT(took, 850) << "the delays ran side by side";
}

TEST_P(HttpEchoControls, StatusSetsTheStatusAndTheBodyStays) {
  auto c = open("ws");
  for (int status : {200, 201, 299, 404, 418, 500, 503, 599}) {
    const Response r = roundtrip(*c, request("GET", "/s?status=" + std::to_string(status)));
    ASSERT_EQ(r.status, status) << r.head;
    EXPECT_EQ(r.header("Content-Type"), "application/json") << r.head;
    EXPECT_EQ(r.body_json()["query"], json({{"status", std::to_string(status)}})) << r.body;
    EXPECT_EQ(connection_of(r), "keep-alive") << "status " << status;
  }
  for (int status : {204, 304}) {
    const Response r = roundtrip(*c, request("GET", "/s?status=" + std::to_string(status)));
    ASSERT_EQ(r.status, status) << r.head;
    EXPECT_FALSE(r.header("Content-Length")) << r.head;
    // Nothing of a body follows: the next response starts at once.
    const Response next = roundtrip(*c, request("GET", "/next"));
    ASSERT_EQ(next.status, 200) << "after " << status << ": " << next.head;
    EXPECT_EQ(next.body_json()["path"], "/next");
  }
}

TEST_P(HttpEchoControls, SizePadsTheJsonOrReplacesIt) {
  auto c = open("ws");
  // Padded: the JSON, spaces, the final newline.
  Response r = roundtrip(*c, request("GET", "/sized?size=999"));
  ASSERT_EQ(r.status, 200) << r.head;
  ASSERT_EQ(r.body.size(), 999u);
  EXPECT_EQ(r.header("Content-Length"), "999");
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.body.back(), '\n');
  const std::size_t brace = r.body.rfind('}');
  ASSERT_NE(brace, std::string::npos);
  EXPECT_EQ(r.body.substr(brace + 1, r.body.size() - brace - 2), std::string(r.body.size() - brace - 2, ' '));
  json j = json::parse(r.body.substr(0, brace + 1), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.body;
  EXPECT_EQ(j["path"], "/sized");
  // The JSON and its newline: the same request with another three-digit
  // size on the same connection has just as long a JSON.
  const std::size_t natural = brace + 2;
  ASSERT_GE(natural, 100u);
  ASSERT_LT(natural, 999u);
  r = roundtrip(*c, request("GET", "/sized?size=" + std::to_string(natural)));
  ASSERT_EQ(r.body.size(), natural) << r.head;
  EXPECT_EQ(r.body.substr(r.body.size() - 2), "}\n") << "exactly the JSON, no padding";
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  r = roundtrip(*c, request("GET", "/sized?size=" + std::to_string(natural - 1)));
  EXPECT_EQ(r.body, std::string(natural - 1, '.')) << "one byte short: replaced";
  EXPECT_EQ(r.header("Content-Type").value_or("").rfind("text/plain", 0), 0u) << r.head;

  // Smaller: dots, text/plain.
  r = roundtrip(*c, request("GET", "/?size=10"));
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "..........");
  EXPECT_EQ(r.header("Content-Type").value_or("").rfind("text/plain", 0), 0u) << r.head;
  r = roundtrip(*c, request("GET", "/?size=0"));
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("Content-Length"), "0");
  EXPECT_EQ(r.body, "");
  // Up to controls.max_size.
  r = roundtrip(*c, request("GET", "/?size=100000"));
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body.size(), 100000u);
  EXPECT_EQ(r.body.back(), '\n');
  // With status and delay together.
  const auto start = Clock::now();
  r = roundtrip(*c, request("GET", "/?status=202&size=20&delay=200ms"));
  EXPECT_GE(ms_since(start), 200);
  EXPECT_EQ(r.status, 202) << r.head;
  EXPECT_EQ(r.body, std::string(20, '.'));
}

TEST_P(HttpEchoControls, CloseAfterAndCloseCodeAreIgnoredOnHttp) {
  auto c = open("ws");
  for (const char* q : {"/?close_after=1&close_code=4000", "/?close_after=abc", "/?close_code=1000"}) {
    const Response r = roundtrip(*c, request("GET", q));
    ASSERT_EQ(r.status, 200) << q << "\n" << r.head << r.body;
    EXPECT_EQ(r.header("Content-Type"), "application/json");
  }
  EXPECT_EQ(roundtrip(*c, request("GET", "/still")).status, 200);
}

TEST_P(HttpEchoControls, DisabledControlsAreOnlyEchoed) {
  auto c = open("nocontrols");
  const auto start = Clock::now();
  Response r = roundtrip(*c, request("GET", "/?delay=2s&status=500&size=10&close_after=1"));
  EXPECT_LT(ms_since(start), 1500) << "delay ignored";
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.body_json()["query"],
            json({{"delay", "2s"}, {"status", "500"}, {"size", "10"}, {"close_after", "1"}}))
      << r.body;
  // Bad values are no errors either.
  r = roundtrip(*c, request("GET", "/?delay=soon&status=999&size=-1&close_code=1"));
  EXPECT_EQ(r.status, 200) << r.head;

  auto w = open("nocontrols");
  ASSERT_EQ(ws_upgrade(*w, "/ws?size=3&close_after=1&delay=2s&close_code=4000").status, 101);
  for (const char* m : {"first message", "second message"}) {
    const auto echo_start = Clock::now();
    const auto f = ws_echo(*w, kText, m);
    ASSERT_TRUE(f) << m;
    EXPECT_EQ(f->opcode, kText) << "no close after the first echo";
    EXPECT_EQ(f->payload, m);
    EXPECT_LT(ms_since(echo_start), 1500);
  }
  auto bad = open("nocontrols");
  EXPECT_EQ(ws_upgrade(*bad, "/ws?delay=soon&close_code=1").status, 101);
}

// --- WebSocket controls ----------------------------------------------------------------------------

class HttpEchoWsControls : public Transported {};
SHOAL_TRANSPORTS(HttpEchoWsControls);

TEST_P(HttpEchoWsControls, DelayHoldsEveryEchoInOrderButNotPongs) {
  auto c = open("ws");
  ASSERT_EQ(ws_upgrade(*c, "/ws?delay=250ms").status, 101);
  auto start = Clock::now();
  ASSERT_TRUE(c->send(frame(kText, "one") + frame(kPing, "ping!")));
  auto f = read_frame(*c);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, kPong) << "the pong is not delayed behind the echo";
  EXPECT_EQ(f->payload, "ping!");
  EXPECT_LT(ms_since(start), 250);
  f = read_frame(*c);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, "one");
  EXPECT_GE(ms_since(start), 250);

  start = Clock::now();
  ASSERT_TRUE(c->send(frame(kText, "a") + frame(kBinary, "b") + frame(kText, "c")));
  std::string order;
  for (int i = 0; i < 3; ++i) {
    f = read_frame(*c);
    ASSERT_TRUE(f) << i;
    if (i == 0) {
      EXPECT_GE(ms_since(start), 250);
    }
    order += f->payload;
  }
  EXPECT_EQ(order, "abc");
  EXPECT_LT(ms_since(start), 3000);
}

TEST_P(HttpEchoWsControls, AClientCloseDropsEchoesStillWaiting) {
  auto c = open("ws");
  ASSERT_EQ(ws_upgrade(*c, "/ws?delay=300ms").status, 101);
  ASSERT_TRUE(c->send(frame(kText, "never echoed") + frame(kClose, close_payload(1000))));
  const auto f = read_frame(*c);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, kClose) << "got \"" << f->payload << "\" instead";
  EXPECT_EQ(f->close_code(), 1000);
  EXPECT_TRUE(c->closed_by_peer());
}

TEST_P(HttpEchoWsControls, SizeRepeatsOrCutsEveryEcho) {
  auto c = open("ws");
  ASSERT_EQ(ws_upgrade(*c, "/ws?size=10").status, 101);
  struct Case {
    int opcode;
    std::string sent, echoed;
  };
  const std::vector<Case> cases = {
      {kText, "abc", "abcabcabca"},
      {kText, "abcdefghijklmnop", "abcdefghij"},
      {kText, "0123456789", "0123456789"},
      {kBinary, std::string("\x01\x02\x03", 3), std::string("\x01\x02\x03\x01\x02\x03\x01\x02\x03\x01", 10)},
      {kBinary, std::string(300, 'z'), std::string(10, 'z')},
  };
  for (const Case& k : cases) {
    const auto f = ws_echo(*c, k.opcode, k.sent);
    ASSERT_TRUE(f) << k.sent;
    EXPECT_EQ(f->opcode, k.opcode);
    EXPECT_TRUE(f->fin);
    EXPECT_EQ(f->payload, k.echoed) << "sent " << k.sent;
  }
  // Larger than a frame header's short forms.
  auto big = open("ws");
  ASSERT_EQ(ws_upgrade(*big, "/ws?size=70000").status, 101);
  const auto f = ws_echo(*big, kBinary, "xy");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload.size(), 70000u);
  EXPECT_EQ(f->payload.substr(69996), "xyxy");
}

TEST_P(HttpEchoWsControls, TextIsCutAtACodePointBoundaryAndEmptyMessagesAreFilled) {
  const std::string euro = "\xe2\x82\xac";  // three bytes
  struct Case {
    int size;
    int opcode;
    std::string sent, echoed;
  };
  const std::vector<Case> cases = {
      {4, kText, euro + euro + euro, euro + " "},
      {5, kText, euro, euro + "  "},
      {2, kText, euro, "  "},
      {5, kText, "a" + euro, "a" + euro + "a"},
      {8, kText, "ab" + euro, "ab" + euro + "ab" + " "},
      {3, kText, "", "   "},
      // "BYTES spaces (text) or zero bytes (binary)": an empty binary
      // message becomes BYTES bytes of zero.
      {3, kBinary, "", std::string(3, '\0')},
      {0, kText, "hello", ""},
      {0, kBinary, "hello", ""},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE("size=" + std::to_string(k.size) + " sent '" + k.sent + "'");
    auto c = open("ws");
    ASSERT_EQ(ws_upgrade(*c, "/ws?size=" + std::to_string(k.size)).status, 101);
    const auto f = ws_echo(*c, k.opcode, k.sent);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, k.opcode);
    EXPECT_EQ(f->payload, k.echoed);
  }
}

TEST_P(HttpEchoWsControls, CloseAfterClosesWithTheCloseCode) {
  {
    auto c = open("ws");
    ASSERT_EQ(ws_upgrade(*c, "/ws?close_after=2").status, 101);
    for (const char* m : {"1", "2"}) {
      const auto f = ws_echo(*c, kText, m);
      ASSERT_TRUE(f);
      EXPECT_EQ(f->opcode, kText);
      EXPECT_EQ(f->payload, m);
    }
    const auto f = read_frame(*c);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kClose);
    EXPECT_EQ(f->payload, close_payload(1000, "close_after")) << "default close_code 1000";
    ASSERT_TRUE(c->send(frame(kClose, close_payload(1000))));
    EXPECT_TRUE(c->closed_by_peer());
  }
  for (int code : {4000, 1003, 1014, 3000, 4999}) {
    SCOPED_TRACE(code);
    auto c = open("ws");
    ASSERT_EQ(ws_upgrade(*c, "/ws?close_after=1&close_code=" + std::to_string(code)).status, 101);
    auto f = ws_echo(*c, kBinary, "only one");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload, "only one");
    f = read_frame(*c);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, kClose);
    EXPECT_EQ(f->payload, close_payload(static_cast<std::uint16_t>(code), "close_after"));
  }
  {
    // With size, and the largest close_after: accepted.
    auto c = open("ws");
    ASSERT_EQ(ws_upgrade(*c, "/ws?size=4&close_after=1").status, 101);
    auto f = ws_echo(*c, kText, "ab");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->payload, "abab");
    f = read_frame(*c);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->close_code(), 1000);
    auto d = open("ws");
    EXPECT_EQ(ws_upgrade(*d, "/ws?close_after=4294967295").status, 101);
    auto e = open("ws");
    EXPECT_EQ(ws_upgrade(*e, "/ws?close_after=0").status, 101);
  }
}

TEST_P(HttpEchoWsControls, StatusOnAnUpgradeUrlIsIgnored) {
  auto c = open("ws");
  ASSERT_EQ(ws_upgrade(*c, "/ws?status=500").status, 101);
  const auto f = ws_echo(*c, kText, "unchanged");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, "unchanged");
  auto d = open("ws");
  EXPECT_EQ(ws_upgrade(*d, "/ws?status=abc").status, 101);
}

// --- bad control values ------------------------------------------------------------------------------

class HttpEchoBadControls : public Transported {
 protected:
  // A 400 naming `parameter`, in JSON; false when it is no 400 at all.
  static bool expect_bad(const Response& r, const std::string& parameter) {
    EXPECT_EQ(r.status, 400) << r.head << r.body;
    if (r.status != 400) return false;
    EXPECT_EQ(r.header("Content-Type"), "application/json") << r.head;
    EXPECT_EQ(r.body.empty() ? '\0' : r.body.back(), '\n') << "the JSON, then a newline";
    json j = r.body_json();
    EXPECT_TRUE(j.is_object()) << r.body;
    if (!j.is_object()) return true;
    EXPECT_EQ(j.value("parameter", ""), parameter) << r.body;
    EXPECT_TRUE(j["error"].is_string()) << r.body;
    if (j["error"].is_string()) {
      EXPECT_NE(j["error"].get<std::string>().find(parameter), std::string::npos)
          << "the message names the parameter: " << r.body;
    }
    return true;
  }
};
SHOAL_TRANSPORTS(HttpEchoBadControls);

struct BadCase {
  std::string query;
  std::string parameter;
};

TEST_P(HttpEchoBadControls, HttpGets400NamingTheParameterAndTheConnectionStays) {
  const std::vector<BadCase> cases = {
      {"delay=abc", "delay"},     {"delay=", "delay"},         {"delay=-1", "delay"},
      {"delay=1x", "delay"},      {"delay=250", "delay"},      // 250 s, over max_delay 2s
      {"delay=3s", "delay"},      {"delay=1h", "delay"},       {"delay=1ms&delay=1ms", "delay"},
      {"status=abc", "status"},   {"status=", "status"},       {"status=199", "status"},
      {"status=100", "status"},   {"status=600", "status"},    {"status=200&status=200", "status"},
      {"size=abc", "size"},       {"size=", "size"},           {"size=-1", "size"},
      {"size=100001", "size"},    {"size=99999999999999999999999", "size"},
      {"size=1&size=1", "size"},  {"x=1&status=2000&y=2", "status"},
  };
  auto c = open("ws");
  for (const BadCase& k : cases) {
    SCOPED_TRACE(k.query);
    const Response r = roundtrip(*c, request("GET", "/?" + k.query));
    if (!expect_bad(r, k.parameter)) continue;
    EXPECT_EQ(connection_of(r), "keep-alive") << r.head;
    const Response ok = roundtrip(*c, request("GET", "/ok"));
    ASSERT_EQ(ok.status, 200) << "the connection stays usable: " << ok.head;
  }
  // Nothing is clamped: the largest values are fine, one more is not.
  EXPECT_EQ(roundtrip(*c, request("GET", "/?size=100000")).status, 200);
}

TEST_P(HttpEchoBadControls, AnUpgradeGets400NamingTheParameterAndCloses) {
  const std::vector<BadCase> cases = {
      {"delay=abc", "delay"},
      {"delay=3s", "delay"},
      {"delay=1ms&delay=2ms", "delay"},
      {"size=abc", "size"},
      {"size=100001", "size"},
      {"size=1&size=1", "size"},
      {"close_after=abc", "close_after"},
      {"close_after=-1", "close_after"},
      {"close_after=4294967296", "close_after"},
      {"close_after=1&close_after=1", "close_after"},
      {"close_code=1000", "close_code"},  // without close_after
      {"close_after=1&close_code=abc", "close_code"},
      {"close_after=1&close_code=999", "close_code"},
      {"close_after=1&close_code=1004", "close_code"},
      {"close_after=1&close_code=1005", "close_code"},
      {"close_after=1&close_code=1006", "close_code"},
      {"close_after=1&close_code=1015", "close_code"},
      {"close_after=1&close_code=2999", "close_code"},
      {"close_after=1&close_code=5000", "close_code"},
      {"close_after=1&close_code=1000&close_code=1000", "close_code"},
  };
  for (const BadCase& k : cases) {
    SCOPED_TRACE(k.query);
    auto c = open("ws");
    if (expect_bad(ws_upgrade(*c, "/ws?" + k.query), k.parameter)) {
      EXPECT_TRUE(c->closed_by_peer());
    }
  }
  for (const char* ok : {"close_after=1&close_code=1007", "close_after=1&close_code=1001",
                         "delay=2s", "size=100000"}) {
    auto c = open("ws");
    EXPECT_EQ(ws_upgrade(*c, std::string("/ws?") + ok).status, 101) << ok;
  }
}

// --- metrics, /status and the instance --------------------------------------------------------------

class HttpEchoMetrics : public Transported {};
SHOAL_TRANSPORTS(HttpEchoMetrics);

TEST_P(HttpEchoMetrics, RequestsControlsAndControlErrorsAreCounted) {
  // A shoald of its own: the counters start at zero.
  TempDir dir;
  const CertFiles cert = make_cert(dir, "echo");
  auto started = start_with_admin_port([&](std::uint16_t admin) {
    return "shards: 2\nadmin: {address: 127.0.0.1, port: " + std::to_string(admin) + "}\nlisteners:\n" +
           listener("m", cert, kWsSettings);
  });
  ShoaldProcess& own = *started;
  const std::string lname = tls() ? "m-tls" : "m";
  const auto conn = [&] {
    auto c = std::make_unique<Conn>(own.port(lname), ConnOptions{.tls = tls()});
    EXPECT_TRUE(c->ok());
    return c;
  };
  {
    auto c = conn();
    // 7 echo answers, the page among them.
    for (const char* target : {"/", "/a", "/.ws", "/?delay=1ms", "/?status=201", "/?size=10&status=200"})
      ASSERT_GT(roundtrip(*c, request("GET", target)).status, 0) << target;
    ASSERT_EQ(roundtrip(*c, request("HEAD", "/"), true).status, 200);
    // Errors are not echo answers.
    EXPECT_EQ(roundtrip(*c, request("GET", "/?delay=bogus")).status, 400);
    EXPECT_EQ(roundtrip(*c, request("GET", "/?size=100001")).status, 400);
  }
  {
    auto c = conn();
    EXPECT_EQ(roundtrip(*c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").status, 413);
  }
  {
    auto c = conn();
    ASSERT_EQ(ws_upgrade(*c, "/ws?close_after=1").status, 101);
    auto d = conn();
    ASSERT_EQ(ws_upgrade(*d, "/ws?delay=1ms&size=5").status, 101);
    auto e = conn();
    EXPECT_EQ(ws_upgrade(*e, "/ws?close_code=1000").status, 400);
  }
  const std::uint16_t admin = own.admin_port();
  const auto count = [&](const std::string& text, const std::string& metric,
                         std::map<std::string, std::string> labels) {
    labels["listener"] = lname;
    return value_of(text, metric, labels).value_or(-1);
  };
  const std::string text = scrape_until(admin, [&](const std::string& t) {
    return count(t, "shoal_http_requests_total", {}) >= 7 && count(t, "shoal_controls_total", {}) >= 7 &&
           count(t, "shoal_control_errors_total", {}) >= 3;
  });
  EXPECT_EQ(count(text, "shoal_http_requests_total", {}), 7) << text;
  EXPECT_EQ(count(text, "shoal_controls_total", {{"control", "delay"}}), 2) << text;
  EXPECT_EQ(count(text, "shoal_controls_total", {{"control", "status"}}), 2) << text;
  EXPECT_EQ(count(text, "shoal_controls_total", {{"control", "size"}}), 2) << text;
  EXPECT_EQ(count(text, "shoal_controls_total", {{"control", "close_after"}}), 1) << text;
  EXPECT_EQ(count(text, "shoal_control_errors_total", {{"control", "delay"}}), 1) << text;
  EXPECT_EQ(count(text, "shoal_control_errors_total", {{"control", "size"}}), 1) << text;
  EXPECT_EQ(count(text, "shoal_control_errors_total", {}), 3) << "and one for close_code\n" << text;
  // The other listener served nothing.
  EXPECT_LE(value_of(text, "shoal_http_requests_total", {{"listener", tls() ? "m" : "m-tls"}}).value_or(0), 0);
}

class HttpEchoInstance : public EchoFixture {};

TEST_F(HttpEchoInstance, StatusAndBuildInfoNameTheInstance) {
  const std::uint16_t admin = shoald().admin_port();
  const HttpResponse status = get(admin, "/status");
  ASSERT_EQ(status.status, 200);
  json j = json::parse(status.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << status.body;
  EXPECT_EQ(j.value("instance", ""), kInstance) << status.body;
  const std::string metrics = get(admin, "/metrics").body;
  EXPECT_EQ(value_of(metrics, "shoal_build_info", {{"instance", kInstance}}), 1) << metrics;
}

TEST(HttpEchoInstanceDefault, TheInstanceIsTheHostNameWhenNotSet) {
  auto started = start_with_admin_port([](std::uint16_t admin) {
    return "shards: 1\nadmin: {address: 127.0.0.1, port: " + std::to_string(admin) + "}\nlisteners:\n" +
           loopback_listener("ws", "websocket-echo");
  });
  ShoaldProcess& own = *started;
  const std::string host = host_name();
  Conn c(own.port("ws"), {});
  ASSERT_TRUE(c.ok());
  const Response r = roundtrip(c, request("GET", "/"));
  ASSERT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.header("X-Shoal-Instance"), host);
  json j = r.body_json();
  EXPECT_EQ(j["server"]["instance"], host) << r.body;
  EXPECT_EQ(j["server"]["hostname"], host) << r.body;
  EXPECT_EQ(j["server"]["shard"], 0) << r.body;
  json status = json::parse(get(own.admin_port(), "/status").body, nullptr, false);
  EXPECT_EQ(status.value("instance", ""), host);
  EXPECT_EQ(value_of(get(own.admin_port(), "/metrics").body, "shoal_build_info", {{"instance", host}}), 1);
}

}  // namespace
}  // namespace shoal::test
