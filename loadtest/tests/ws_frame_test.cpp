// WebSocket frames: client encoding, the incremental server-frame parser
// at every split point, and the handshake checks.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ws_frame.hpp"

namespace shoal::load::ws {
namespace {

struct Recorder {
  std::vector<std::string> events;
  std::string data;
  void on_message_begin(Opcode op) { events.push_back("begin " + std::to_string(static_cast<int>(op))); }
  void on_message_data(const char* p, std::size_t n) { data.append(p, n); }
  void on_message_end() { events.push_back("end " + std::to_string(data.size())); data.clear(); }
  void on_control(Opcode op, std::string_view payload) {
    events.push_back("control " + std::to_string(static_cast<int>(op)) + " " + std::string(payload));
  }
};

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

TEST(WsFrame, ClientFrameIsMaskedRfcExample) {
  // RFC 6455 5.7: a masked "Hello" text frame with key 37 fa 21 3d.
  std::string out;
  append_client_frame(out, Opcode::text, "Hello", 0x37fa213d);
  EXPECT_EQ(out, bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(WsFrame, LengthEncodings) {
  for (std::size_t len : {0u, 125u, 126u, 65535u, 65536u, 200000u}) {
    std::string payload(len, 'x');
    std::string out;
    append_client_frame(out, Opcode::binary, payload, 0x01020304);
    const std::size_t header = len < 126 ? 2 : len <= 65535 ? 4 : 10;
    ASSERT_EQ(out.size(), header + 4 + len) << len;
    EXPECT_EQ(static_cast<unsigned char>(out[0]), 0x82);
    EXPECT_EQ(static_cast<unsigned char>(out[1]) & 0x80, 0x80);
    // Unmasking gives the payload back.
    std::string body = out.substr(header + 4);
    apply_mask(body.data(), body.size(), 0x01020304);
    EXPECT_EQ(body, payload);
  }
}

TEST(WsFrame, ParserHandlesEverySplit) {
  std::string stream;
  append_server_frame(stream, Opcode::text, "hello", false);
  append_server_frame(stream, Opcode::ping, "p1");  // control frame inside a fragmented message
  append_server_frame(stream, Opcode::continuation, std::string(300, 'a'));
  append_server_frame(stream, Opcode::binary, std::string(70000, 'b'));
  append_server_frame(stream, Opcode::binary, "");
  append_server_frame(stream, Opcode::close, bytes({0x03, 0xe8}));
  const std::vector<std::string> want = {"begin 1", "control 9 p1", "end 305", "begin 2", "end 70000",
                                         "begin 2", "end 0", "control 8 " + bytes({0x03, 0xe8})};
  for (std::size_t split : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}, std::size_t{64},
                            std::size_t{1000}, stream.size()}) {
    FrameParser parser;
    Recorder rec;
    for (std::size_t i = 0; i < stream.size(); i += split) {
      const std::size_t n = std::min(split, stream.size() - i);
      ASSERT_EQ(parser.feed(stream.data() + i, n, rec), ParseError::none) << split;
    }
    EXPECT_EQ(rec.events, want) << "split " << split;
    EXPECT_FALSE(parser.in_message());
  }
}

TEST(WsFrame, ParserRejectsProtocolErrors) {
  auto parse = [](const std::string& s) {
    FrameParser parser;
    Recorder rec;
    return parser.feed(s.data(), s.size(), rec);
  };
  std::string masked;
  append_client_frame(masked, Opcode::text, "x", 1);
  EXPECT_EQ(parse(masked), ParseError::masked_server_frame);
  EXPECT_EQ(parse(bytes({0x83, 0x00})), ParseError::bad_opcode);
  EXPECT_EQ(parse(bytes({0xC1, 0x00})), ParseError::reserved_bits);
  EXPECT_EQ(parse(bytes({0x80, 0x00})), ParseError::unexpected_continuation);
  EXPECT_EQ(parse(bytes({0x09, 0x00})), ParseError::bad_control_frame);        // fragmented ping
  EXPECT_EQ(parse(bytes({0x89, 0x7e, 0x00, 0x7e})), ParseError::bad_control_frame);  // 126-byte ping
  std::string two;
  append_server_frame(two, Opcode::text, "a", false);
  append_server_frame(two, Opcode::text, "b");
  EXPECT_EQ(parse(two), ParseError::expected_continuation);
  FrameParser small(10);
  Recorder rec;
  std::string big;
  append_server_frame(big, Opcode::binary, std::string(11, 'z'));
  EXPECT_EQ(small.feed(big.data(), big.size(), rec), ParseError::message_too_big);
}

TEST(WsHandshake, AcceptKeyRfcExample) {
  EXPECT_EQ(accept_for_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const unsigned char raw[] = {'f', 'o', 'o', 'b', 'a'};
  EXPECT_EQ(base64_encode(raw, 5), "Zm9vYmE=");
}

TEST(WsHandshake, ResponseChecks) {
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  const std::string good =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  EXPECT_EQ(check_upgrade_response(good, key), "");
  EXPECT_NE(check_upgrade_response("HTTP/1.1 404 Not Found\r\n\r\n", key), "");
  std::string wrong = good;
  wrong.replace(wrong.find("s3pP"), 4, "AAAA");
  EXPECT_EQ(check_upgrade_response(wrong, key), "wrong Sec-WebSocket-Accept");
  EXPECT_EQ(check_upgrade_response("HTTP/1.1 101 OK\r\nConnection: upgrade\r\n\r\n", key), "no Upgrade: websocket");
  const std::string req = upgrade_request("127.0.0.1:80", "/chat", key);
  EXPECT_NE(req.find("GET /chat HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(req.find("Sec-WebSocket-Key: " + key + "\r\n"), std::string::npos);
  EXPECT_EQ(req.substr(req.size() - 4), "\r\n\r\n");
}

}  // namespace
}  // namespace shoal::load::ws
