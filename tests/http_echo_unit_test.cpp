// protocol/http_echo.hpp as a pure module: telling upgrades from HTTP,
// parsing whole requests from pipelined bytes, the response controls and
// their errors, the echo's shaping, and resize_echo().
#include "protocol/http_echo.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace shoal {
namespace {

using json = nlohmann::json;

WebSocketConfig config() { return WebSocketConfig{}; }

std::string body_of(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

std::string header_block(const std::string& response) {
  return response.substr(0, response.find("\r\n\r\n") + 2);
}

EchoControls controls_of(std::string_view target, bool websocket,
                         WebSocketConfig::Controls caps = {}) {
  auto r = parse_controls(target, caps, websocket);
  if (auto* e = std::get_if<ControlError>(&r)) ADD_FAILURE() << target << ": " << e->message;
  return std::get_if<EchoControls>(&r) ? std::get<EchoControls>(r) : EchoControls{};
}

ControlError error_of(std::string_view target, bool websocket, WebSocketConfig::Controls caps = {}) {
  auto r = parse_controls(target, caps, websocket);
  if (auto* e = std::get_if<ControlError>(&r)) return *e;
  ADD_FAILURE() << target << ": accepted";
  return {};
}

TEST(HttpEchoUnit, UpgradeAttemptsAreToldFromPlainRequests) {
  EXPECT_TRUE(is_upgrade_attempt("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"));
  EXPECT_TRUE(is_upgrade_attempt("GET / HTTP/1.1\r\nupgrade:  h2c, WebSocket \r\n\r\n"));
  EXPECT_TRUE(is_upgrade_attempt("GET / HTTP/1.1\r\nSec-WebSocket-Key: abc\r\n\r\n"));
  EXPECT_FALSE(is_upgrade_attempt("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n"));
  EXPECT_FALSE(is_upgrade_attempt("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n"));
  EXPECT_FALSE(is_upgrade_attempt("GET /?Upgrade:websocket HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n"));
}

TEST(HttpEchoUnit, PipelinedRequestsAreTakenOneAtATime) {
  const std::string two =
      "POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
  const HttpParse first = parse_http_request(two, config());
  ASSERT_EQ(first.state, HttpParse::State::done);
  EXPECT_EQ(first.request.method, "POST");
  EXPECT_EQ(first.request.target, "/a?x=1");
  EXPECT_EQ(first.request.body, "abc");
  const HttpParse second = parse_http_request(std::string_view(two).substr(first.consumed), config());
  ASSERT_EQ(second.state, HttpParse::State::done);
  EXPECT_EQ(second.request.target, "/b");
  EXPECT_EQ(first.consumed + second.consumed, two.size());
}

TEST(HttpEchoUnit, BodyStillComingAsksForMoreAndSays100Continue) {
  const std::string head =
      "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n";
  const HttpParse p = parse_http_request(head + "12345", config());
  EXPECT_EQ(p.state, HttpParse::State::need_more);
  EXPECT_TRUE(p.expect_continue);
  EXPECT_EQ(p.whole_size, head.size() + 10);  // parse again only once all of it can be in
  const HttpParse whole = parse_http_request(head + "1234567890", config());
  EXPECT_EQ(whole.state, HttpParse::State::done);
  EXPECT_EQ(whole.request.body, "1234567890");
}

TEST(HttpEchoUnit, ChunkedBodiesAndTheBodyLimit) {
  WebSocketConfig c = config();
  c.max_body_bytes = 8;
  const std::string chunked =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  const HttpParse ok = parse_http_request(chunked, c);
  ASSERT_EQ(ok.state, HttpParse::State::done);
  EXPECT_EQ(ok.request.body, "abcde");
  const HttpParse big =
      parse_http_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n", c);
  EXPECT_EQ(big.state, HttpParse::State::error);
  EXPECT_EQ(big.status, 413u);
  const HttpParse malformed = parse_http_request("GET / HTTP/1.1\r\nHost h\r\n\r\n", c);
  EXPECT_EQ(malformed.state, HttpParse::State::error);
  EXPECT_EQ(malformed.status, 400u);
}

TEST(HttpEchoUnit, KeepAliveFollowsVersionAndConnection) {
  EXPECT_TRUE(parse_http_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", config()).request.keep_alive);
  EXPECT_FALSE(parse_http_request("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", config())
                   .request.keep_alive);
  EXPECT_FALSE(parse_http_request("GET / HTTP/1.0\r\n\r\n", config()).request.keep_alive);
  EXPECT_TRUE(parse_http_request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", config())
                  .request.keep_alive);
}

TEST(HttpEchoUnit, ControlsAreReadWithinTheirCaps) {
  const EchoControls http = controls_of("/x?delay=250ms&status=503&size=10&close_after=3", false);
  EXPECT_EQ(http.delay_ms, 250);
  EXPECT_EQ(http.status, 503u);
  EXPECT_EQ(http.size, 10u);
  EXPECT_FALSE(http.close_after);  // a WebSocket control, ignored on HTTP
  const EchoControls ws = controls_of("/?delay=2&size=0&close_after=0&close_code=4000&status=7", true);
  EXPECT_EQ(ws.delay_ms, 2000);
  EXPECT_EQ(ws.size, 0u);
  EXPECT_EQ(ws.close_after, 0u);
  EXPECT_EQ(ws.close_code, 4000);
  EXPECT_FALSE(ws.status);  // HTTP only, ignored on an upgrade
  EXPECT_EQ(controls_of("/?delay=10s", true).delay_ms, 10000);  // at the default cap
  EXPECT_EQ(controls_of("/?size=1048576", true).size, 1048576u);
  EXPECT_FALSE(controls_of("/?other=1", true).any_websocket());
  // Disabled: nothing is read, no value is an error.
  WebSocketConfig::Controls off;
  off.enabled = false;
  EXPECT_FALSE(controls_of("/?delay=abc&size=1", false, off).size);
}

TEST(HttpEchoUnit, EveryBadControlNamesItsParameter) {
  struct Case {
    const char* target;
    bool websocket;
    Control parameter;
  };
  const Case cases[] = {
      {"/?delay=abc", false, Control::delay},     {"/?delay=5x", true, Control::delay},
      {"/?delay=-1", false, Control::delay},      {"/?delay=11s", false, Control::delay},
      {"/?delay=1s&delay=2s", true, Control::delay},
      {"/?status=199", false, Control::status},   {"/?status=600", false, Control::status},
      {"/?status=2OO", false, Control::status},   {"/?size=1048577", true, Control::size},
      {"/?size=", false, Control::size},          {"/?size=+5", true, Control::size},
      {"/?close_after=x", true, Control::close_after},
      {"/?close_after=4294967296", true, Control::close_after},
      {"/?close_after=1&close_code=1005", true, Control::close_code},
      {"/?close_after=1&close_code=2000", true, Control::close_code},
      {"/?close_after=1&close_code=5000", true, Control::close_code},
      {"/?close_code=1000", true, Control::close_code},  // without close_after
  };
  for (const Case& c : cases) {
    const ControlError e = error_of(c.target, c.websocket);
    EXPECT_EQ(e.parameter, c.parameter) << c.target;
    EXPECT_EQ(e.message.rfind(std::string(control_name(c.parameter)) + ":", 0), 0u) << e.message;
  }
}

TEST(HttpEchoUnit, EchoCarriesEveryField) {
  const HttpParse p = parse_http_request(
      "POST /p/q?a=1&b=x+y&b=%41%zz&flag HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nx-two: 2\r\n"
      "Content-Length: 2\r\n\r\n\xff\xfe",
      config());
  ASSERT_EQ(p.state, HttpParse::State::done);
  TlsDetails tls{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "", "http/1.1"};
  EchoContext ctx;
  ctx.instance = "i1";
  ctx.hostname = "host";
  ctx.listener = "ws";
  ctx.shard = 3;
  ctx.client_address = "10.1.2.3";
  ctx.client_port = 4567;
  ctx.tls = &tls;
  const std::string r = http_echo_response(p.request, ctx, {}, false);
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(header_block(r).find("X-Shoal-Instance: i1\r\n"), std::string::npos);
  EXPECT_NE(header_block(r).find("Connection: keep-alive\r\n"), std::string::npos);
  const json j = json::parse(body_of(r));
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/p/q");
  EXPECT_EQ(j["query"]["a"], "1");
  EXPECT_EQ(j["query"]["b"], json::array({"x y", "A%zz"}));
  EXPECT_EQ(j["query"]["flag"], "");
  EXPECT_EQ(j["http_version"], "1.1");
  EXPECT_EQ(j["headers"][1], json::array({"X-Two", "1"}));
  EXPECT_EQ(j["headers"][2], json::array({"x-two", "2"}));
  EXPECT_EQ(j["body"], "//4=");
  EXPECT_EQ(j["body_encoding"], "base64");
  EXPECT_EQ(j["client"]["address"], "10.1.2.3");
  EXPECT_EQ(j["client"]["port"], 4567);
  EXPECT_EQ(j["server"]["shard"], 3);
  EXPECT_EQ(j["tls"]["cipher"], "TLS_AES_128_GCM_SHA256");
  EXPECT_TRUE(j["tls"]["sni"].is_null());
  EXPECT_EQ(j["tls"]["alpn"], "http/1.1");
}

TEST(HttpEchoUnit, SizeStatusAndHeadShapeTheAnswer) {
  const HttpRequest get = parse_http_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", config()).request;
  EchoContext ctx;
  ctx.instance = "i";
  const std::string natural = body_of(http_echo_response(get, ctx, {}, false));
  EchoControls padded;
  padded.size = natural.size() + 100;
  const std::string big = body_of(http_echo_response(get, ctx, padded, false));
  EXPECT_EQ(big.size(), natural.size() + 100);
  EXPECT_EQ(json::parse(big), json::parse(natural));  // still the same JSON
  EchoControls small;
  small.size = 7;
  const std::string cut = http_echo_response(get, ctx, small, false);
  EXPECT_EQ(body_of(cut), ".......");
  EXPECT_NE(cut.find("Content-Type: text/plain"), std::string::npos);
  EchoControls none;
  none.status = 204;
  const std::string no_content = http_echo_response(get, ctx, none, true);
  EXPECT_EQ(no_content.rfind("HTTP/1.1 204 No Content\r\n", 0), 0u);
  EXPECT_EQ(no_content.find("Content-Length"), std::string::npos);
  EXPECT_TRUE(body_of(no_content).empty());
  EXPECT_NE(no_content.find("Connection: close\r\n"), std::string::npos);
  HttpRequest head = get;
  head.head = true;
  const std::string h = http_echo_response(head, ctx, {}, false);
  EXPECT_TRUE(body_of(h).empty());
  EXPECT_NE(h.find("Content-Length: " + std::to_string(natural.size())), std::string::npos);
}

TEST(HttpEchoUnit, ResizedEchoesRepeatOrCutAndKeepTextWhole) {
  std::string out(7, '?');
  resize_echo(reinterpret_cast<const unsigned char*>("abc"), 3, true, 7,
              reinterpret_cast<unsigned char*>(out.data()));
  EXPECT_EQ(out, "abcabca");
  out.assign(2, '?');
  resize_echo(reinterpret_cast<const unsigned char*>("abc"), 3, false, 2,
              reinterpret_cast<unsigned char*>(out.data()));
  EXPECT_EQ(out, "ab");
  // "é" is two bytes: five bytes of text hold two of them and a space.
  out.assign(5, '?');
  resize_echo(reinterpret_cast<const unsigned char*>("\xc3\xa9"), 2, true, 5,
              reinterpret_cast<unsigned char*>(out.data()));
  EXPECT_EQ(out, "\xc3\xa9\xc3\xa9 ");
  out.assign(3, '?');
  resize_echo(nullptr, 0, true, 3, reinterpret_cast<unsigned char*>(out.data()));
  EXPECT_EQ(out, "   ");
  out.assign(2, '?');
  resize_echo(nullptr, 0, false, 2, reinterpret_cast<unsigned char*>(out.data()));
  EXPECT_EQ(out, std::string(2, '\0'));
}

// A complete head that is not HTTP is refused at once, never waited on
// (a fuzz finding: "G tokest: x" waited for more bytes).
TEST(HttpEchoUnit, ACompleteHeadThatIsNotHttpIsA400) {
  for (const char* head : {"G tokest: x\r\n\r\n", "GET / x\r\n\r\n", "GET /\r\n\r\n", "\r\n\r\n",
                           "GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n"}) {
    const HttpParse p = parse_http_request(head, config());
    if (std::string_view(head).rfind("GET / HTTP/1.1", 0) == 0) {
      EXPECT_EQ(p.state, HttpParse::State::done) << head;
      continue;
    }
    EXPECT_EQ(p.state, HttpParse::State::error) << head;
    EXPECT_EQ(p.status, 400u) << head;
  }
}

}  // namespace
}  // namespace shoal
