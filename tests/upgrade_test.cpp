// The WebSocket opening handshake as a pure module (protocol/upgrade.hpp):
// each requirement of RFC 6455 §4.2.1 with its status and body, the bytes of
// the 101 and of an error response, the accept key, and the search for the
// end of a request head that arrives in pieces.
#include "protocol/upgrade.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace {

using shoal::accept_response;
using shoal::decide_upgrade;
using shoal::reject_response;
using shoal::RequestHeadEnd;
using shoal::UpgradeAccept;
using shoal::UpgradeDecision;
using shoal::UpgradeReject;
using shoal::websocket_accept_key;
using shoal::WebSocketConfig;
using Why = UpgradeReject::Why;

constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 §1.3
constexpr const char* kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// A request head, valid for the default config until changed.
struct Request {
  std::string method = "GET";
  std::string target = "/";
  std::string version = "HTTP/1.1";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"Host", "example.com"},     {"Upgrade", "websocket"},        {"Connection", "Upgrade"},
      {"Sec-WebSocket-Key", kKey}, {"Sec-WebSocket-Version", "13"},
  };

  Request& erase(std::string_view name) {
    std::erase_if(fields, [&](const auto& f) { return f.first == name; });
    return *this;
  }
  Request& set(const std::string& name, const std::string& value) {
    for (auto& f : fields)
      if (f.first == name) {
        f.second = value;
        return *this;
      }
    return add(name, value);
  }
  Request& add(const std::string& name, const std::string& value) {
    fields.emplace_back(name, value);
    return *this;
  }
  std::string str() const {
    std::string s = method + " " + target + " " + version + "\r\n";
    for (const auto& [name, value] : fields) s += name + ": " + value + "\r\n";
    return s + "\r\n";
  }
};

UpgradeDecision decide(const Request& r, const WebSocketConfig& cfg = {}) {
  return decide_upgrade(r.str(), cfg);
}

// The decision, which must be an accept; `what` names the case.
UpgradeAccept accepted(const UpgradeDecision& d, std::string_view what) {
  const auto* a = std::get_if<UpgradeAccept>(&d);
  if (!a) {
    const auto& r = std::get<UpgradeReject>(d);
    ADD_FAILURE() << what << ": refused with " << r.status << " " << r.body;
    return {};
  }
  return *a;
}

UpgradeReject refused(const UpgradeDecision& d, std::string_view what) {
  const auto* r = std::get_if<UpgradeReject>(&d);
  if (!r) {
    ADD_FAILURE() << what << ": accepted";
    return {};
  }
  return *r;
}

void expect_refused(const UpgradeDecision& d, unsigned status, std::string_view body,
                    std::string_view what, std::string_view extra_headers = {},
                    Why why = Why::handshake_failed) {
  const UpgradeReject r = refused(d, what);
  EXPECT_EQ(r.status, status) << what;
  EXPECT_EQ(r.body, body) << what;
  EXPECT_EQ(r.extra_headers, extra_headers) << what;
  EXPECT_EQ(r.why, why) << what;
}

void expect_bad_request(const Request& req, std::string_view body, std::string_view what,
                        const WebSocketConfig& cfg = {}) {
  const UpgradeReject r = refused(decide(req, cfg), what);
  EXPECT_EQ(r.status, 400u) << what;
  EXPECT_EQ(r.phrase, "Bad Request") << what;
  EXPECT_EQ(r.body, body) << what;
  EXPECT_EQ(r.extra_headers, "") << what;
  EXPECT_EQ(r.why, Why::handshake_failed) << what;
}

// --- the accept key ----------------------------------------------------------

TEST(WebSocketAcceptKey, IsRfc6455sExample) {
  EXPECT_EQ(websocket_accept_key(kKey), kAccept);
  // Another key, worked by hand with `openssl sha1 -binary | base64`.
  EXPECT_EQ(websocket_accept_key("AQIDBAUGBwgJCgsMDQ4PEA=="), "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=");
  // Lengths decide_upgrade never passes still hash, not overflow.
  EXPECT_EQ(websocket_accept_key("").size(), 28u);
  EXPECT_EQ(websocket_accept_key(std::string(1000, 'k')).size(), 28u);
  EXPECT_NE(websocket_accept_key(std::string(1000, 'k')),
            websocket_accept_key(std::string(999, 'k')));
}

// --- decide_upgrade: accepted requests ---------------------------------------

TEST(DecideUpgrade, ValidRequestIsAcceptedWithItsAcceptKey) {
  const UpgradeAccept a = accepted(decide(Request{}), "the RFC's example");
  EXPECT_EQ(a.accept, kAccept);
  EXPECT_EQ(a.subprotocol, "");
  EXPECT_TRUE(a.extensions.empty());
  EXPECT_EQ(a.target, "/");
}

TEST(DecideUpgrade, TokensAreCaseInsensitiveAndMayBeInListsOrSplitOverFields) {
  accepted(decide(Request{}.set("Upgrade", "WebSocket").set("Connection", "keep-alive, UPGRADE")),
           "case and a list");
  accepted(decide(Request{}.set("Connection", "keep-alive").add("Connection", "Upgrade")),
           "Upgrade in a second Connection field");
  accepted(decide(Request{}.set("Upgrade", "h2c").add("Upgrade", "websocket")),
           "websocket in a second Upgrade field");
  accepted(decide(Request{}.set("Upgrade", "h2c, websocket")), "websocket second in a list");
  // Header names are case-insensitive too.
  Request lower;
  lower.fields = {{"host", "x"},
                  {"upgrade", "websocket"},
                  {"connection", "upgrade"},
                  {"sec-websocket-key", kKey},
                  {"sec-websocket-version", "13"}};
  EXPECT_EQ(accepted(decide(lower), "lower-case names").accept, kAccept);
}

TEST(DecideUpgrade, SubprotocolIsTheServersFirstChoiceAmongThoseOffered) {
  WebSocketConfig cfg;
  cfg.subprotocols = {"chat.v2", "chat.v1"};
  struct Case {
    std::vector<std::string> offered;  // one Sec-WebSocket-Protocol field each
    std::string chosen;
  };
  const std::vector<Case> cases = {
      {{"chat.v1, chat.v2"}, "chat.v2"},
      {{"chat.v1"}, "chat.v1"},
      {{"x", "chat.v1"}, "chat.v1"},
      {{"chat.v1", "chat.v2"}, "chat.v2"},  // across fields, still the server's order
      {{"mqtt, soap"}, ""},
      {{}, ""},
      {{"CHAT.V2"}, ""},  // names are case-sensitive
  };
  for (const Case& c : cases) {
    Request r;
    std::string what = "offered:";
    for (const auto& o : c.offered) {
      r.add("Sec-WebSocket-Protocol", o);
      what += " [" + o + "]";
    }
    EXPECT_EQ(accepted(decide(r, cfg), what).subprotocol, c.chosen) << what;
  }
  // A server with none chooses none, whatever is offered.
  EXPECT_EQ(accepted(decide(Request{}.add("Sec-WebSocket-Protocol", "chat.v1")), "no server list")
                .subprotocol,
            "");
}

TEST(DecideUpgrade, ExtensionOffersAreCollectedInOrderFromRepeatedFields) {
  const UpgradeAccept a = accepted(
      decide(Request{}
                 .add("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
                 .add("X-Between", "1")
                 .add("Sec-WebSocket-Extensions", "x-webkit-deflate-frame, foo")),
      "two extension fields");
  EXPECT_EQ(a.extensions, (std::vector<std::string>{"permessage-deflate; client_max_window_bits",
                                                    "x-webkit-deflate-frame, foo"}));
}

TEST(DecideUpgrade, OnlyTheConfiguredPathUpgradesWhateverItsQuery) {
  WebSocketConfig cfg;
  cfg.path = "/chat";
  Request r;
  r.target = "/chat";
  EXPECT_EQ(accepted(decide(r, cfg), "/chat").target, "/chat");
  r.target = "/chat?room=1&x=/other";
  EXPECT_EQ(accepted(decide(r, cfg), "/chat?room=1").target, "/chat?room=1&x=/other");
  r.target = "/chat?";
  accepted(decide(r, cfg), "/chat? (empty query)");
  for (const char* other : {"/", "/chatroom", "/chat/", "/Chat", "/other?/chat", "*"}) {
    r.target = other;
    const UpgradeReject j = refused(decide(r, cfg), other);
    EXPECT_EQ(j.status, 404u) << other;
    EXPECT_EQ(j.phrase, "Not Found");
    EXPECT_EQ(j.body, "no WebSocket endpoint at this path");
  }
}

TEST(DecideUpgrade, OnlyHttp10And11ParseSoVersionsAbove11Get400) {
  // RFC 6455 asks for "HTTP/1.1 or higher", but Beast 1.81's parser refuses
  // any version but 1.0 and 1.1 (error::bad_version), so a later version
  // never reaches the version check: it is a malformed request, as it is
  // for the server today.
  for (const char* v : {"HTTP/1.2", "HTTP/2.0", "HTTP/9.9", "HTTP/0.9", "HTTP/1.10", "HTTP/11",
                        "HTTP/1.", "HTTP/1.x", "http/1.1", "HTTP/1.1 "}) {
    Request r;
    r.version = v;
    expect_bad_request(r, "malformed HTTP request", v);
  }
}

// --- decide_upgrade: each requirement, in order -------------------------------

TEST(DecideUpgrade, OnlyGetUpgradesAnd405SaysAllowGet) {
  for (const char* m : {"POST", "HEAD", "PUT", "OPTIONS", "CONNECT"}) {
    Request r;
    r.method = m;
    if (r.method == "CONNECT") r.target = "example.com:80";
    const UpgradeReject j = refused(decide(r), m);
    EXPECT_EQ(j.status, 405u) << m;
    EXPECT_EQ(j.phrase, "Method Not Allowed");
    EXPECT_EQ(j.body, "a WebSocket upgrade is a GET");
    EXPECT_EQ(j.extra_headers, "Allow: GET\r\n");
  }
  // The method is checked before anything else of the upgrade.
  Request post_plain;
  post_plain.method = "POST";
  post_plain.fields = {{"Host", "x"}};
  EXPECT_EQ(refused(decide(post_plain), "plain POST").status, 405u);
  // Methods are case-sensitive: "get" is an unknown method, not GET.
  Request lower;
  lower.method = "get";
  EXPECT_EQ(refused(decide(lower), "get").status, 405u);
}

TEST(DecideUpgrade, Http10IsRefused) {
  Request r;
  r.version = "HTTP/1.0";
  expect_bad_request(r, "a WebSocket upgrade needs HTTP/1.1 or higher", "HTTP/1.0");
  // After the method, before the fields.
  r.method = "POST";
  EXPECT_EQ(refused(decide(r), "POST over HTTP/1.0").status, 405u);
  r.method = "GET";
  r.fields = {};
  expect_bad_request(r, "a WebSocket upgrade needs HTTP/1.1 or higher", "HTTP/1.0, no fields");
}

// What a port without HTTP echo answers a plain request: 426 on the
// WebSocket path (naming the upgrade), 404 elsewhere.
TEST(DecideUpgrade, PlainHttpGets426OnThePathAnd404Elsewhere) {
  WebSocketConfig cfg;
  cfg.path = "/chat";
  Request plain;
  plain.target = "/chat?x=1";
  plain.fields = {{"Host", "x"}, {"Accept", "*/*"}};
  const UpgradeReject on_path = refused(decide(plain, cfg), "plain GET on the path");
  EXPECT_EQ(on_path.status, 426u);
  EXPECT_EQ(on_path.body, "this port speaks WebSocket only");
  EXPECT_NE(on_path.extra_headers.find("Upgrade: websocket\r\n"), std::string_view::npos);
  EXPECT_NE(on_path.extra_headers.find("Sec-WebSocket-Version: 13\r\n"), std::string_view::npos);
  // Even without a Host: what the port is comes first.
  plain.fields = {};
  EXPECT_EQ(refused(decide(plain, cfg), "plain GET without Host").status, 426u);
  plain.target = "/other";
  EXPECT_EQ(refused(decide(plain, cfg), "plain GET elsewhere").status, 404u);
  // One field of the upgrade is enough to be told which others are missing.
  expect_bad_request(Request{}.erase("Upgrade").erase("Connection"),
                     "Upgrade: websocket is required", "a key alone");
  expect_bad_request(Request{}.erase("Connection").erase("Sec-WebSocket-Key"),
                     "Connection: Upgrade is required", "Upgrade alone");
}

TEST(DecideUpgrade, ExactlyOneHostIsRequired) {
  expect_bad_request(Request{}.erase("Host"), "one Host header is required", "no Host");
  expect_bad_request(Request{}.add("Host", "other"), "one Host header is required", "two Host");
  // Host comes before Upgrade and Connection.
  expect_bad_request(Request{}.erase("Host").erase("Upgrade"), "one Host header is required",
                     "no Host, no Upgrade");
}

TEST(DecideUpgrade, UpgradeWebsocketIsRequired) {
  expect_bad_request(Request{}.erase("Upgrade"), "Upgrade: websocket is required", "no Upgrade");
  expect_bad_request(Request{}.set("Upgrade", "h2c"), "Upgrade: websocket is required", "h2c");
  expect_bad_request(Request{}.set("Upgrade", "websockets"), "Upgrade: websocket is required",
                     "websockets");
  expect_bad_request(Request{}.set("Upgrade", ""), "Upgrade: websocket is required", "empty");
  // Upgrade before Connection.
  expect_bad_request(Request{}.erase("Upgrade").erase("Connection"),
                     "Upgrade: websocket is required", "neither");
}

TEST(DecideUpgrade, ConnectionUpgradeIsRequired) {
  expect_bad_request(Request{}.erase("Connection"), "Connection: Upgrade is required",
                     "no Connection");
  expect_bad_request(Request{}.set("Connection", "keep-alive"), "Connection: Upgrade is required",
                     "keep-alive");
  expect_bad_request(Request{}.set("Connection", "upgraded"), "Connection: Upgrade is required",
                     "upgraded");
  // Connection before the key.
  expect_bad_request(Request{}.erase("Connection").erase("Sec-WebSocket-Key"),
                     "Connection: Upgrade is required", "no Connection, no key");
}

TEST(DecideUpgrade, KeyMustBeTheBase64OfSixteenBytes) {
  constexpr std::string_view kBadKey = "Sec-WebSocket-Key must be the base64 of 16 bytes";
  struct Case {
    const char* key;
    const char* what;
  };
  for (const Case& c : std::vector<Case>{
           {"not base64 at all!!!!!==", "not base64"},
           {"AAAAAAAAAAAAAAAAAAAA", "15 bytes"},
           {"AAAAAAAAAAAAAAAAAAAAAAA=", "17 bytes"},
           {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "24 bytes"},
           {"AAAAAAAAAAAAAAAAAAAAAB==", "last character carries bits beyond 16 bytes"},
           {"AAAAAAAAAAAAAAAAAAAAAA=", "one '='"},
           {"AAAAAAAAAAAAAAAAAAAAAA===", "three '='"},
           {"AAAAAAAAAAAAAAAAAAAA-_==", "base64url alphabet"},
           {"", "empty"},
       })
    expect_bad_request(Request{}.set("Sec-WebSocket-Key", c.key), kBadKey, c.what);
  expect_bad_request(Request{}.erase("Sec-WebSocket-Key"), kBadKey, "no key");
  expect_bad_request(Request{}.add("Sec-WebSocket-Key", kKey), kBadKey, "two keys, both valid");
  // The canonical forms of 16 bytes are accepted: the last character before
  // "==" is one of A, Q, g, w.
  for (const char* key : {"AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w==",
                          "+++++++++++++++++++++Q==", "zzzzzzzzzzzzzzzzzzzzzg=="})
    EXPECT_EQ(accepted(decide(Request{}.set("Sec-WebSocket-Key", key)), key).accept,
              websocket_accept_key(key));
}

TEST(DecideUpgrade, VersionOtherThan13Gets426NamingVersion13) {
  for (const char* v : {"8", "12", "14", "13, 8", "", "013", "13.0"}) {
    Request r;
    if (*v)
      r.set("Sec-WebSocket-Version", v);
    else
      r.erase("Sec-WebSocket-Version");
    const UpgradeDecision d = decide(r);
    const std::string what = std::string("version '") + v + "'";
    expect_refused(d, 426, "this server speaks WebSocket version 13", what,
                   "Sec-WebSocket-Version: 13\r\n");
    EXPECT_EQ(std::get<UpgradeReject>(d).phrase, "Upgrade Required");
  }
  expect_refused(decide(Request{}.add("Sec-WebSocket-Version", "13")), 426,
                 "this server speaks WebSocket version 13", "two version fields",
                 "Sec-WebSocket-Version: 13\r\n");
  // Whitespace around a field value is not part of it (RFC 9110 §5.5).
  accepted(decide(Request{}.set("Sec-WebSocket-Version", " 13 \t")), "13 with whitespace");
  // Version before path: a client of another version at another path
  // learns the version first.
  WebSocketConfig chat;
  chat.path = "/chat";
  EXPECT_EQ(refused(decide(Request{}.set("Sec-WebSocket-Version", "8"), chat), "8 at /").status,
            426u);
}

TEST(DecideUpgrade, OnlyAllowedOriginsUpgradeWhenConfigured) {
  WebSocketConfig cfg;
  cfg.allowed_origins = {"https://good.example", "http://localhost:8080"};
  for (const char* o : {"https://good.example", "HTTPS://GOOD.EXAMPLE", "http://localhost:8080"})
    accepted(decide(Request{}.set("Origin", o), cfg), o);
  auto expect_forbidden = [&](const Request& r, std::string_view what) {
    const UpgradeDecision d = decide(r, cfg);
    expect_refused(d, 403, "origin not allowed", what, {}, Why::origin);
    EXPECT_EQ(std::get<UpgradeReject>(d).phrase, "Forbidden");
  };
  expect_forbidden(Request{}, "no Origin");
  expect_forbidden(Request{}.set("Origin", "https://evil.example"), "another origin");
  expect_forbidden(Request{}.set("Origin", "https://good.example:443"), "with a port");
  expect_forbidden(Request{}.set("Origin", "https://good.example/"), "with a slash");
  expect_forbidden(Request{}.set("Origin", "null"), "null");
  expect_forbidden(
      Request{}.set("Origin", "https://good.example").add("Origin", "https://good.example"),
      "two Origin fields, both allowed");
  // Without a list any origin, or none, or several, is accepted.
  accepted(decide(Request{}.set("Origin", "https://evil.example")), "no list");
  accepted(decide(Request{}.set("Origin", "a").add("Origin", "b")), "no list, two");
  // Path before origin.
  cfg.path = "/chat";
  EXPECT_EQ(refused(decide(Request{}, cfg), "wrong path, no origin").status, 404u);
}

// --- decide_upgrade: what is not an HTTP request head ----------------------------

TEST(DecideUpgrade, MalformedHttpGets400) {
  const WebSocketConfig cfg;
  for (const std::string& bad : {
           std::string("HELLO THERE\r\n\r\n"),
           std::string("\r\n\r\n"),
           std::string("GET /\r\n\r\n"),                            // HTTP/0.9 form
           std::string("GET / HTTP/1.1\r\nHost x\r\n\r\n"),         // no colon
           std::string("GET / HTTP/1.1\r\n Host: x\r\n\r\n"),       // obsolete line folding
           std::string("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),       // two spaces
           std::string("GET / HTTP/1.1\nHost: x\n\n"),              // bare LF
           std::string("GET / HTTP/1.1\r\nHo\0st: x\r\n\r\n", 28),  // a NUL in a name
           std::string("GET / HTTP/1.1\r\nHost: x\r\n"),            // not complete
           std::string(),
       }) {
    const UpgradeReject r = refused(decide_upgrade(bad, cfg), bad);
    EXPECT_EQ(r.status, 400u) << testing::PrintToString(bad);
    EXPECT_EQ(r.body, "malformed HTTP request") << testing::PrintToString(bad);
  }
}

TEST(DecideUpgrade, ARequestWithABodyGets400) {
  expect_bad_request(Request{}.set("Content-Length", "5"), "an upgrade request has no body",
                     "Content-Length: 5");
  expect_bad_request(Request{}.set("Transfer-Encoding", "chunked"),
                     "an upgrade request has no body", "chunked");
  // Nor when the body came with it.
  const std::string with_body = Request{}.set("Content-Length", "5").str() + "hello";
  const UpgradeReject r = refused(decide_upgrade(with_body, {}), "a body after the head");
  EXPECT_EQ(r.status, 400u);
  // Content-Length: 0 is no body.
  accepted(decide(Request{}.set("Content-Length", "0")), "Content-Length: 0");
}

TEST(DecideUpgrade, AHeadOverTheLimitGets431) {
  // Beast 1.81 holds the request line, and then the fields through the
  // blank line, each to header_limit on its own: a complete head may be up
  // to a request line longer than max_header_bytes. (The session refuses a
  // head that has not ended within max_header_bytes + 1 bytes itself, so
  // through it a head that ends in time always gets here.)
  WebSocketConfig cfg;
  cfg.max_header_bytes = 1024;
  const std::string line = "GET / HTTP/1.1\r\n";
  const std::size_t base = Request{}.set("X-Padding", "").str().size() - line.size();
  auto with_fields_of = [&](std::size_t n) {
    return Request{}.set("X-Padding", std::string(n - base, 'p')).str();
  };
  const std::string at_limit = with_fields_of(1024);
  ASSERT_EQ(at_limit.size(), line.size() + 1024);
  accepted(decide_upgrade(at_limit, cfg), "fields of exactly max_header_bytes");
  const UpgradeReject r =
      refused(decide_upgrade(with_fields_of(1025), cfg), "fields one byte over");
  EXPECT_EQ(r.status, 431u);
  EXPECT_EQ(r.phrase, "Request Header Fields Too Large");
  EXPECT_EQ(r.body, "request header too large");
  EXPECT_EQ(r.extra_headers, "");
  EXPECT_EQ(r.why, Why::handshake_failed);
  Request long_line;
  long_line.target = "/" + std::string(1100, 't');
  EXPECT_EQ(refused(decide(long_line, cfg), "a request line over the limit").status, 431u);
  // The session's own refusal of a head that does not end is the same.
  EXPECT_EQ(reject_response(r), reject_response(shoal::kRequestHeaderTooLarge));
  // The default 8 KiB.
  EXPECT_EQ(refused(decide(Request{}.set("X-Padding", std::string(9000, 'p'))), "9000").status,
            431u);
  accepted(decide(Request{}.set("Cookie", std::string(6000, 'c'))), "6000 under 8 KiB");
  // Over the limit is found before what is wrong in the fields after it.
  EXPECT_EQ(
      refused(decide_upgrade(Request{}.set("X-Padding", std::string(2000, 'p')).erase("Host").str(),
                             cfg),
              "over, and no Host")
          .status,
      431u);
}

// --- the responses -----------------------------------------------------------

TEST(AcceptResponse, IsThe101WithAcceptServerAndWhatWasNegotiated) {
  UpgradeAccept a;
  a.accept = kAccept;
  EXPECT_EQ(accept_response(a),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Server: shoal\r\n"
            "\r\n");
  a.subprotocol = "chat.v2";
  EXPECT_EQ(accept_response(a, "permessage-deflate; server_max_window_bits=10"),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Server: shoal\r\n"
            "Sec-WebSocket-Protocol: chat.v2\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"
            "\r\n");
  a.subprotocol.clear();
  EXPECT_EQ(accept_response(a, "permessage-deflate"),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Server: shoal\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            "\r\n");
  // The extensions offered are not sent back unless the caller negotiated them.
  a.extensions = {"permessage-deflate"};
  EXPECT_EQ(accept_response(a).find("Extensions"), std::string::npos);
}

TEST(RejectResponse, IsTheErrorWithItsBodyAndConnectionClose) {
  EXPECT_EQ(reject_response(std::get<UpgradeReject>(decide(Request{}.erase("Upgrade")))),
            "HTTP/1.1 400 Bad Request\r\n"
            "Server: shoal\r\n"
            "Content-Type: text/plain\r\n"
            "Connection: close\r\n"
            "Content-Length: 31\r\n"
            "\r\n"
            "Upgrade: websocket is required\n");
  Request post;
  post.method = "POST";
  EXPECT_EQ(reject_response(std::get<UpgradeReject>(decide(post))),
            "HTTP/1.1 405 Method Not Allowed\r\n"
            "Server: shoal\r\n"
            "Content-Type: text/plain\r\n"
            "Connection: close\r\n"
            "Allow: GET\r\n"
            "Content-Length: 29\r\n"
            "\r\n"
            "a WebSocket upgrade is a GET\n");
  EXPECT_EQ(
      reject_response(std::get<UpgradeReject>(decide(Request{}.set("Sec-WebSocket-Version", "8")))),
      "HTTP/1.1 426 Upgrade Required\r\n"
      "Server: shoal\r\n"
      "Content-Type: text/plain\r\n"
      "Connection: close\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "Content-Length: 40\r\n"
      "\r\n"
      "this server speaks WebSocket version 13\n");
  EXPECT_EQ(reject_response(shoal::kRequestHeaderTooLarge),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "Server: shoal\r\n"
            "Content-Type: text/plain\r\n"
            "Connection: close\r\n"
            "Content-Length: 25\r\n"
            "\r\n"
            "request header too large\n");
}

// --- RequestHeadEnd ----------------------------------------------------------

TEST(RequestHeadEnd, FindsTheEndOfAHeadFedOneByteAtATime) {
  const std::string head = Request{}.str();
  RequestHeadEnd end;
  for (std::size_t i = 0; i + 1 < head.size(); ++i) {
    ASSERT_EQ(end.feed(std::string_view(head).substr(i, 1)), RequestHeadEnd::npos) << "byte " << i;
    ASSERT_FALSE(end.found());
  }
  EXPECT_EQ(end.feed(std::string_view(head).substr(head.size() - 1)), 1u);
  EXPECT_TRUE(end.found());
  // The head is over: later bytes are not looked at.
  EXPECT_EQ(end.feed("\r\n\r\n"), 0u);
  EXPECT_TRUE(end.found());
  end.reset();
  EXPECT_FALSE(end.found());
  EXPECT_EQ(end.feed(head), head.size());
}

TEST(RequestHeadEnd, EndOffsetLeavesTheFramesThatFollowInTheSameBuffer) {
  const std::string head = Request{}.str();
  // A masked text frame "hi" whose mask and payload hold "\r\n\r\n", which
  // must not move the end.
  const std::string frames =
      std::string("\x81\x82\r\n\r\n", 6) + "\r\n" + std::string("\x81\x80\0\0\0\0", 6);
  const std::string bytes = head + frames;
  {
    RequestHeadEnd end;
    const std::size_t at = end.feed(bytes);
    ASSERT_EQ(at, head.size());
    EXPECT_EQ(std::string_view(bytes).substr(at), frames);
    EXPECT_EQ(
        std::get<UpgradeAccept>(decide_upgrade(std::string_view(bytes).substr(0, at), {})).accept,
        kAccept);
  }
  // Cut at every point: the end is found in the piece that holds it, at the
  // right offset, the blank line split between pieces or not.
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    RequestHeadEnd end;
    const std::size_t first = end.feed(std::string_view(bytes).substr(0, cut));
    if (cut < head.size()) {
      ASSERT_EQ(first, RequestHeadEnd::npos) << "cut " << cut;
      ASSERT_EQ(end.feed(std::string_view(bytes).substr(cut)), head.size() - cut) << "cut " << cut;
    } else {
      ASSERT_EQ(first, head.size()) << "cut " << cut;
    }
  }
}

TEST(RequestHeadEnd, OnlyCrLfCrLfEndsAHead) {
  struct Case {
    std::string bytes;
    std::size_t end;
  };
  const std::vector<Case> cases = {
      {"\r\n\r\n", 4},
      {"a\r\n\r\nb", 5},
      {"\r\r\n\r\n", 5},
      {"\r\n\r\r\n\r\n", 7},
      {"\r\n\n\r\n\r\n", 7},
      {"\n\n", RequestHeadEnd::npos},
      {"\r\n\r", RequestHeadEnd::npos},
      {"\r\r\r\r", RequestHeadEnd::npos},
      {"\n\r\n\n", RequestHeadEnd::npos},
      {"\r\nx\r\n", RequestHeadEnd::npos},
      {"", RequestHeadEnd::npos},
  };
  for (const Case& c : cases) {
    RequestHeadEnd end;
    EXPECT_EQ(end.feed(c.bytes), c.end) << testing::PrintToString(c.bytes);
  }
  // "\r\n\r" then "\n" in another piece, and a '\r' piece between.
  RequestHeadEnd end;
  EXPECT_EQ(end.feed("x\r\n"), RequestHeadEnd::npos);
  EXPECT_EQ(end.feed("\r"), RequestHeadEnd::npos);
  EXPECT_EQ(end.feed(""), RequestHeadEnd::npos);
  EXPECT_EQ(end.feed("\nframes"), 1u);
}

}  // namespace
