// WsEchoEngine, the WebSocket echo without Beast, fed bytes directly: how it
// treats frames cut anywhere by a read, and what it answers. The checks a
// client sees end to end (every close code) are in websocket_test.cpp.
#include "protocol/ws_echo.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <tuple>
#include <string>
#include <vector>

namespace shoal {
namespace {

constexpr unsigned kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;

// A client frame: masked with a fixed key, the length in its shortest form.
std::string client_frame(unsigned opcode, const std::string& payload, bool fin = true) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int k = 7; k >= 0; --k) f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * k)) & 0xff);
  }
  const char key[4] = {'\x12', '\x34', '\x56', '\x78'};
  f.append(key, 4);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ key[i & 3]);
  return f;
}

struct Frame {
  unsigned opcode;
  std::string payload;
};

// The server's frames in `bytes` (FIN, unmasked), which must be whole.
std::vector<Frame> server_frames(const ByteBuffer& out) {
  std::vector<Frame> frames;
  const unsigned char* p = out.data();
  std::size_t i = 0;
  while (i < out.size()) {
    EXPECT_EQ(p[i] & 0xf0, 0x80) << "FIN, no RSV";
    const unsigned opcode = p[i] & 0x0f;
    std::uint64_t n = p[i + 1];
    EXPECT_EQ(n & 0x80, 0u) << "unmasked";
    std::size_t h = 2;
    if (n == 126) {
      n = (static_cast<std::uint64_t>(p[i + 2]) << 8) | p[i + 3];
      h = 4;
    } else if (n == 127) {
      n = 0;
      for (int k = 0; k < 8; ++k) n = (n << 8) | p[i + 2 + k];
      h = 10;
    }
    frames.push_back({opcode, std::string(reinterpret_cast<const char*>(p + i + h), n)});
    i += h + n;
  }
  EXPECT_EQ(i, out.size()) << "no partial frame";
  return frames;
}

// Feeds `bytes` in pieces of `step` bytes, keeping what each feed did not
// consume in front of the next piece, as the session does.
struct Fed {
  ByteBuffer out;
  WsEchoResult last;
  std::uint32_t messages = 0;
};
Fed feed_in_steps(WsEchoEngine& engine, const std::string& bytes, std::size_t step) {
  Fed fed;
  std::string pending;
  for (std::size_t at = 0; at < bytes.size(); at += step) {
    pending += bytes.substr(at, step);
    fed.last = engine.feed(reinterpret_cast<unsigned char*>(pending.data()), pending.size(), fed.out);
    fed.messages += fed.last.messages;
    if (fed.last.end != WsEchoResult::End::none) break;
    pending.erase(0, fed.last.consumed);
  }
  return fed;
}

std::uint16_t close_code(const Frame& f) {
  return f.payload.size() >= 2 ? static_cast<std::uint16_t>((static_cast<unsigned char>(f.payload[0]) << 8) |
                                                            static_cast<unsigned char>(f.payload[1]))
                               : 0;
}

TEST(WsEchoEngine, FramesCutAtEveryByteComeBackAsTheSameEchoes) {
  const std::string big(70'000, 'b');  // a 64-bit length
  const std::string mid(300, 'm');     // a 16-bit length
  const std::string bytes = client_frame(kText, "hello") + client_frame(kBinary, mid) +
                            client_frame(kText, "caf\xc3", false) + client_frame(kPing, "are you there") +
                            client_frame(kCont, "\xa9 au lait") + client_frame(kBinary, big) +
                            client_frame(kBinary, "");
  for (std::size_t step : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{64}, bytes.size()}) {
    WsEchoEngine engine(1 << 20);
    const Fed fed = feed_in_steps(engine, bytes, step);
    ASSERT_EQ(fed.last.end, WsEchoResult::End::none) << "step " << step << ": " << (fed.last.why ? fed.last.why : "");
    EXPECT_EQ(fed.messages, 5u);
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 6u) << "step " << step;
    EXPECT_EQ(frames[0].opcode, kText);
    EXPECT_EQ(frames[0].payload, "hello");
    EXPECT_EQ(frames[1].payload, mid);
    EXPECT_EQ(frames[2].opcode, kPong);  // the ping between fragments is answered first
    EXPECT_EQ(frames[2].payload, "are you there");
    EXPECT_EQ(frames[3].opcode, kText);
    EXPECT_EQ(frames[3].payload, "caf\xc3\xa9 au lait");  // one frame, UTF-8 split across fragments
    EXPECT_EQ(frames[4].opcode, kBinary);
    EXPECT_EQ(frames[4].payload, big);
    EXPECT_EQ(frames[5].payload, "");
    EXPECT_FALSE(engine.in_message());
  }
}

TEST(WsEchoEngine, AFrameNotAllHereIsLeftUnconsumed) {
  WsEchoEngine engine(1 << 20);
  std::string bytes = client_frame(kText, "one") + client_frame(kBinary, std::string(1000, 'x'));
  bytes.resize(bytes.size() - 10);
  ByteBuffer out;
  const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out);
  EXPECT_EQ(r.end, WsEchoResult::End::none);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(r.consumed, client_frame(kText, "one").size());
}

TEST(WsEchoEngine, AnOversizedFrameFailsWith1009FromItsHeaderAlone) {
  WsEchoEngine engine(1024);
  std::string header = client_frame(kBinary, std::string(70'000, 'x')).substr(0, 14);
  ByteBuffer out;
  const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(header.data()), header.size(), out);
  EXPECT_EQ(r.end, WsEchoResult::End::fail);
  EXPECT_EQ(r.code, 1009);
  const auto frames = server_frames(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode, kClose);
  EXPECT_EQ(close_code(frames[0]), 1009);
}

TEST(WsEchoEngine, EchoesBeforeAnErrorAreKeptAndTheCloseFrameFollowsThem) {
  WsEchoEngine engine(1024);
  std::string bytes = client_frame(kText, "fine") + client_frame(kText, "bad \xff") + client_frame(kText, "never");
  ByteBuffer out;
  const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out);
  EXPECT_EQ(r.end, WsEchoResult::End::fail);
  EXPECT_EQ(r.code, 1007);
  const auto frames = server_frames(out);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].payload, "fine");
  EXPECT_EQ(close_code(frames[1]), 1007);
}

TEST(WsEchoEngine, InvalidUtf8IsFoundInTheFragmentThatProvesIt) {
  WsEchoEngine engine(1 << 20);
  // The second fragment cannot continue the sequence the first began; the
  // message's end has not come.
  std::string bytes = client_frame(kText, "euro \xe2\x82", false) + client_frame(kCont, "\x28", false);
  ByteBuffer out;
  const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out);
  EXPECT_EQ(r.end, WsEchoResult::End::fail);
  EXPECT_EQ(r.code, 1007);
}

TEST(WsEchoEngine, ACloseIsAnsweredWithItsCodeAndOneWithoutACodeWith1000) {
  for (const auto& [payload, received, answered] :
       std::vector<std::tuple<std::string, std::uint16_t, std::uint16_t>>{
           {std::string("\x0f\xa1", 2) + "bye", 4001, 4001}, {"", 1005, 1000}}) {
    WsEchoEngine engine(1024);
    std::string bytes = client_frame(kClose, payload) + client_frame(kText, "after the close");
    ByteBuffer out;
    const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out);
    EXPECT_EQ(r.end, WsEchoResult::End::peer_close);
    EXPECT_EQ(r.code, received);
    const auto frames = server_frames(out);
    ASSERT_EQ(frames.size(), 1u) << "nothing after the close is echoed";
    EXPECT_EQ(close_code(frames[0]), answered);
  }
}

TEST(WsEchoEngine, AfterOurCloseDataIsDroppedUntilTheClientsClose) {
  WsEchoEngine engine(1024);
  engine.closing();
  std::string bytes = client_frame(kText, "late") + client_frame(kPing, "p") +
                      client_frame(kClose, std::string("\x03\xe9", 2));
  ByteBuffer out;
  const WsEchoResult r = engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out);
  EXPECT_EQ(r.end, WsEchoResult::End::peer_close);
  EXPECT_EQ(r.code, 1001);
  EXPECT_EQ(r.messages, 0u);
  EXPECT_TRUE(out.empty());
}

TEST(ByteBuffer, ConsumeKeepsTheRestAndReleaseGivesTheMemoryBack) {
  ByteBuffer b;
  EXPECT_EQ(b.capacity(), 0u);
  b.append("abcdef", 6);
  b.consume(2);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()), "cdef");
  b.release();
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.capacity(), 0u);
}

}  // namespace
}  // namespace shoal
