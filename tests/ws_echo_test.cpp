// WsEchoEngine, the WebSocket echo on shoal's frame codec, fed bytes
// directly: how it treats frames cut anywhere by a read, what it answers,
// text checked as its bytes arrive, close codes, and compressed messages
// through a test-only MessageCompression. The checks a client sees end to
// end are in websocket_test.cpp.
#include "protocol/ws_echo.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <string>
#include <vector>

namespace shoal {
namespace {

constexpr unsigned kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;
constexpr unsigned kRsv1 = 0x40, kRsv2 = 0x20, kRsv3 = 0x10;

// A client frame: masked with a fixed key, the length in its shortest form;
// `rsv` is ORed into the first byte.
std::string client_frame(unsigned opcode, const std::string& payload, bool fin = true, unsigned rsv = 0) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | rsv | opcode);
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

// How many header bytes client_frame() puts before a payload of `n` bytes.
std::size_t client_header_size(std::size_t n) { return n < 126 ? 6 : n <= 0xffff ? 8 : 14; }

struct Frame {
  unsigned opcode;
  std::string payload;
  bool rsv1 = false;
};

// The server's frames in `bytes` (FIN, unmasked, no RSV2/3), which must be whole.
std::vector<Frame> server_frames(const ByteBuffer& out) {
  std::vector<Frame> frames;
  const unsigned char* p = out.data();
  std::size_t i = 0;
  while (i < out.size()) {
    EXPECT_EQ(p[i] & 0xb0, 0x80) << "FIN, no RSV2 or RSV3";
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
    frames.push_back({opcode, std::string(reinterpret_cast<const char*>(p + i + h), n), (p[i] & kRsv1) != 0});
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
Fed feed_cut_at(WsEchoEngine& engine, const std::string& bytes, const std::vector<std::size_t>& cuts) {
  Fed fed;
  std::string pending;
  std::size_t at = 0;
  std::vector<std::size_t> ends(cuts);
  ends.push_back(bytes.size());
  for (const std::size_t end : ends) {
    pending += bytes.substr(at, end - at);
    at = end;
    fed.last = engine.feed(reinterpret_cast<unsigned char*>(pending.data()), pending.size(), fed.out);
    fed.messages += fed.last.messages;
    if (fed.last.end != WsEchoResult::End::none) break;
    EXPECT_LE(fed.last.consumed, pending.size());
    pending.erase(0, fed.last.consumed);
  }
  return fed;
}
Fed feed_in_steps(WsEchoEngine& engine, const std::string& bytes, std::size_t step) {
  std::vector<std::size_t> cuts;
  for (std::size_t at = step; at < bytes.size(); at += step) cuts.push_back(at);
  return feed_cut_at(engine, bytes, cuts);
}
Fed feed_all(WsEchoEngine& engine, const std::string& bytes) { return feed_cut_at(engine, bytes, {}); }

std::uint16_t close_code(const Frame& f) {
  return f.payload.size() >= 2 ? static_cast<std::uint16_t>((static_cast<unsigned char>(f.payload[0]) << 8) |
                                                            static_cast<unsigned char>(f.payload[1]))
                               : 0;
}

std::string out_string(const ByteBuffer& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string close_payload(std::uint16_t code, const std::string& reason = {}) {
  std::string s;
  s += static_cast<char>(code >> 8);
  s += static_cast<char>(code & 0xff);
  return s + reason;
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

// --- text checked as it arrives -----------------------------------------------

// A text frame whose payload turns invalid at byte `bad` fails with 1007 as
// soon as that byte is in, although the frame is not complete, however the
// bytes before it were cut; and not a byte earlier.
void expect_1007_as_soon_as_proved(const std::string& before, const std::string& frame_bytes,
                                   std::size_t bad_at) {
  const std::string bytes = before + frame_bytes;
  const std::size_t proof = before.size() + bad_at + 1;  // bytes needed to prove it
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    // The input ends after n bytes: the rest is "still in the kernel".
    for (const std::size_t cut : {std::size_t{0}, n / 2, n == 0 ? 0 : n - 1}) {
      WsEchoEngine engine(1 << 20);
      std::vector<std::size_t> cuts;
      if (cut != 0) cuts.push_back(cut);
      const Fed fed = feed_cut_at(engine, bytes.substr(0, n), cuts);
      if (n >= proof) {
        ASSERT_EQ(fed.last.end, WsEchoResult::End::fail) << "input of " << n << " bytes, cut at " << cut;
        ASSERT_EQ(fed.last.code, 1007);
        const auto frames = server_frames(fed.out);
        ASSERT_FALSE(frames.empty());
        EXPECT_EQ(close_code(frames.back()), 1007);
      } else {
        ASSERT_EQ(fed.last.end, WsEchoResult::End::none) << "input of " << n << " bytes, cut at " << cut;
      }
    }
  }
}

TEST(WsEchoEngine, InvalidUtf8InATextFrameNotCompleteYetFailsAsSoonAsItsBytesArrive) {
  // Short, 16-bit and 64-bit lengths; the bad byte past the 512-byte pieces
  // the engine checks in.
  const std::string small = "caf\xc3\xa9 \xe2\x82\x28 and the rest";
  expect_1007_as_soon_as_proved("", client_frame(kText, small), client_header_size(small.size()) + 8);
  const std::string mid = std::string(700, 'm') + "\xed\xa0\x80" + std::string(100, 'x');
  expect_1007_as_soon_as_proved(client_frame(kText, "ok"), client_frame(kText, mid),
                                client_header_size(mid.size()) + 701);
}

TEST(WsEchoEngine, InvalidUtf8InAnIncompleteContinuationFrameFailsAsSoonAsItsBytesArrive) {
  // The sequence begun in the first fragment is broken in the second, whose
  // end has not come.
  const std::string first = client_frame(kText, "euro \xe2\x82", false);
  const std::string second = std::string(client_frame(kCont, "\xac ok \xc3\x28 more text"));
  expect_1007_as_soon_as_proved(first, second, client_header_size(17) + 6);
  // Broken right at the start of the continuation.
  expect_1007_as_soon_as_proved(first, client_frame(kCont, "\x28 rest"), client_header_size(6) + 0);
}

TEST(WsEchoEngine, IncompleteTextIsCheckedOnlyForTextThatCounts) {
  // Binary frames, and data after our close, are not text to check.
  WsEchoEngine engine(1 << 20);
  std::string bytes = client_frame(kBinary, "\xff\xfe binary is anything");
  bytes.resize(bytes.size() - 3);
  ByteBuffer out;
  EXPECT_EQ(engine.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out).end,
            WsEchoResult::End::none);

  WsEchoEngine closing(1 << 20);
  closing.closing();
  bytes = client_frame(kText, "\xff late");
  bytes.resize(bytes.size() - 2);
  EXPECT_EQ(closing.feed(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), out).end,
            WsEchoResult::End::none);
}

TEST(WsEchoEngine, ValidTextCutAtEveryByteEchoesAsWhenItCameWhole) {
  // Multi-byte characters across the 512-byte pieces and across fragments.
  std::string long_text;
  while (long_text.size() < 1300) long_text += "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x90\x9f ";
  const std::string bytes = client_frame(kText, long_text) + client_frame(kText, "caf\xc3", false) +
                            client_frame(kPing, "p") + client_frame(kCont, "\xa9 ", false) +
                            client_frame(kCont, long_text) + client_frame(kText, "");
  WsEchoEngine whole_engine(1 << 20);
  const Fed whole = feed_all(whole_engine, bytes);
  ASSERT_EQ(whole.last.end, WsEchoResult::End::none) << (whole.last.why ? whole.last.why : "");
  ASSERT_EQ(whole.messages, 3u);
  const auto frames = server_frames(whole.out);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].payload, long_text);
  EXPECT_EQ(frames[2].payload, "caf\xc3\xa9 " + long_text);

  for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
    WsEchoEngine engine(1 << 20);
    const Fed fed = feed_cut_at(engine, bytes, {cut});
    ASSERT_EQ(fed.last.end, WsEchoResult::End::none) << "cut at " << cut << ": " << (fed.last.why ? fed.last.why : "");
    ASSERT_EQ(out_string(fed.out), out_string(whole.out)) << "cut at " << cut;
  }
  // And in many small pieces.
  for (std::size_t step : {1, 3, 511, 513}) {
    WsEchoEngine engine(1 << 20);
    const Fed fed = feed_in_steps(engine, bytes, step);
    ASSERT_EQ(out_string(fed.out), out_string(whole.out)) << "step " << step;
  }
}

TEST(WsEchoEngine, TextEndingInsideASequenceFailsAtItsLastFrame) {
  for (const std::string& bytes : {client_frame(kText, "cut \xe2\x82"),
                                   client_frame(kText, "cut \xe2", false) + client_frame(kCont, "\x82")}) {
    for (std::size_t step : {std::size_t{1}, bytes.size()}) {
      WsEchoEngine engine(1 << 20);
      const Fed fed = feed_in_steps(engine, bytes, step);
      EXPECT_EQ(fed.last.end, WsEchoResult::End::fail);
      EXPECT_EQ(fed.last.code, 1007);
    }
  }
}

// --- close codes ------------------------------------------------------------------

TEST(WsEchoEngine, CloseCodesAreAcceptedAndRefusedByRange) {
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
                             4000, 4999}) {
    WsEchoEngine engine(1024);
    const Fed fed = feed_all(engine, client_frame(kClose, close_payload(code, "reason")));
    EXPECT_EQ(fed.last.end, WsEchoResult::End::peer_close) << code;
    EXPECT_EQ(fed.last.code, code);
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(close_code(frames[0]), code) << "answered with the same code";
  }
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    WsEchoEngine engine(1024);
    const Fed fed = feed_all(engine, client_frame(kClose, close_payload(code)));
    EXPECT_EQ(fed.last.end, WsEchoResult::End::fail) << code;
    EXPECT_EQ(fed.last.code, 1002) << code;
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(close_code(frames[0]), 1002);
  }
}

TEST(WsEchoEngine, ACloseReasonNotUtf8Is1007AndAOneBytePayload1002) {
  WsEchoEngine engine(1024);
  Fed fed = feed_all(engine, client_frame(kClose, close_payload(1000, "bad \xff reason")));
  EXPECT_EQ(fed.last.end, WsEchoResult::End::fail);
  EXPECT_EQ(fed.last.code, 1007);
  EXPECT_EQ(close_code(server_frames(fed.out).at(0)), 1007);

  WsEchoEngine one(1024);
  fed = feed_all(one, client_frame(kClose, "\x03"));
  EXPECT_EQ(fed.last.code, 1002);
}

TEST(WsEchoEngine, AppendCloseCarriesAReasonCutAtACharacter) {
  ByteBuffer out;
  WsEchoEngine::append_close(out, 1001, std::string(122, 'r') + "\xc3\xa9");
  const auto frames = server_frames(out);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(close_code(frames[0]), 1001);
  EXPECT_EQ(frames[0].payload.size(), 2u + 122);
}

// --- compressed messages ------------------------------------------------------------

// A stand-in for permessage-deflate, so that these tests need no zlib and
// can reach every outcome: deflate() writes 'Z' and the message reversed;
// inflate() takes that, or 'R', a count and a byte (that byte, count
// times: a message that inflates past its compressed size); anything else
// is invalid.
class ToyCompression : public MessageCompression {
 public:
  Inflate inflate(const unsigned char* in, std::size_t n, ByteBuffer& out, std::uint64_t limit) override {
    ++inflated;
    if (n >= 1 && in[0] == 'Z') {
      if (limit != 0 && n - 1 > limit) return Inflate::too_big;
      for (std::size_t i = n; i > 1; --i) out.append(in + i - 1, 1);
      return Inflate::ok;
    }
    if (n == 3 && in[0] == 'R') {
      if (limit != 0 && in[1] > limit) return Inflate::too_big;
      for (unsigned i = 0; i < in[1]; ++i) out.append(in + 2, 1);
      return Inflate::ok;
    }
    return Inflate::invalid;
  }
  void deflate(const unsigned char* in, std::size_t n, ByteBuffer& out) override {
    out.append("Z", 1);
    for (std::size_t i = n; i > 0; --i) out.append(in + i - 1, 1);
  }
  static std::string compress(std::string s) {
    std::reverse(s.begin(), s.end());
    return "Z" + s;
  }
  int inflated = 0;
};

TEST(WsEchoEngine, CompressedMessagesAreInflatedCheckedAndEchoedCompressed) {
  // "café" reversed is not UTF-8: only the inflated text is checked.
  const std::string text = "caf\xc3\xa9 au lait";
  const std::string z = ToyCompression::compress(text);
  const std::string bytes = client_frame(kText, z, true, kRsv1) + client_frame(kBinary, "plain") +
                            client_frame(kText, z.substr(0, 4), false, kRsv1) + client_frame(kPing, "p") +
                            client_frame(kCont, z.substr(4, 3), false) + client_frame(kCont, z.substr(7));
  for (std::size_t step : {std::size_t{1}, std::size_t{5}, bytes.size()}) {
    ToyCompression toy;
    WsEchoEngine engine(1024, &toy);
    const Fed fed = feed_in_steps(engine, bytes, step);
    ASSERT_EQ(fed.last.end, WsEchoResult::End::none) << "step " << step << ": " << (fed.last.why ? fed.last.why : "");
    EXPECT_EQ(fed.messages, 3u);
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 4u);
    EXPECT_EQ(frames[0].opcode, kText);
    EXPECT_TRUE(frames[0].rsv1);
    EXPECT_EQ(frames[0].payload, z);
    EXPECT_EQ(frames[1].payload, "plain");
    EXPECT_FALSE(frames[1].rsv1) << "an uncompressed message is echoed uncompressed";
    EXPECT_EQ(frames[2].opcode, kPong);
    EXPECT_EQ(frames[3].opcode, kText);
    EXPECT_TRUE(frames[3].rsv1);
    EXPECT_EQ(frames[3].payload, z) << "the fragments are one message, echoed as one frame";
    EXPECT_EQ(toy.inflated, 2);
  }
  // The hook set after construction works the same.
  ToyCompression toy;
  WsEchoEngine engine(1024);
  engine.compression(&toy);
  const Fed fed = feed_all(engine, client_frame(kBinary, ToyCompression::compress("bin"), true, kRsv1));
  ASSERT_EQ(fed.messages, 1u);
  EXPECT_EQ(fed.last.message_bytes, 3u) << "counted inflated";
}

TEST(WsEchoEngine, Rsv1IsAllowedOnlyOnTheFirstFrameOfAMessageWithTheHook) {
  const std::string z = ToyCompression::compress("x");
  struct Case {
    const char* name;
    std::string bytes;
    bool hook;
  };
  const std::vector<Case> cases = {
      {"RSV1 without the hook", client_frame(kText, z, true, kRsv1), false},
      {"RSV1 on a continuation", client_frame(kText, z, false, kRsv1) + client_frame(kCont, "", true, kRsv1), true},
      {"RSV1 on a ping", client_frame(kPing, "", true, kRsv1), true},
      {"RSV1 on a close", client_frame(kClose, "", true, kRsv1), true},
      {"RSV2", client_frame(kBinary, "x", true, kRsv2), true},
      {"RSV3", client_frame(kBinary, "x", true, kRsv3), true},
      {"RSV1 and RSV2", client_frame(kBinary, z, true, kRsv1 | kRsv2), true},
  };
  for (const Case& c : cases) {
    ToyCompression toy;
    WsEchoEngine engine(1024, c.hook ? &toy : nullptr);
    const Fed fed = feed_all(engine, c.bytes);
    EXPECT_EQ(fed.last.end, WsEchoResult::End::fail) << c.name;
    EXPECT_EQ(fed.last.code, 1002) << c.name;
  }
}

TEST(WsEchoEngine, CompressedMessagesOverTheLimitAre1009CompressedOrInflated) {
  ToyCompression toy;
  // The compressed frame alone is over the limit (and the slack a
  // compressed form of a message at the limit may need, 1/64 + 1 KiB): from
  // its header.
  {
    WsEchoEngine engine(100, &toy);
    std::string header = client_frame(kBinary, ToyCompression::compress(std::string(2000, 'a')), true, kRsv1)
                             .substr(0, 8);
    const Fed fed = feed_all(engine, header);
    EXPECT_EQ(fed.last.code, 1009);
  }
  // Its fragments together are over it.
  {
    WsEchoEngine engine(100, &toy);
    const std::string z = ToyCompression::compress(std::string(1200, 'a'));
    const Fed fed = feed_all(engine, client_frame(kBinary, z.substr(0, 600), false, kRsv1) +
                                         client_frame(kCont, z.substr(600)));
    EXPECT_EQ(fed.last.end, WsEchoResult::End::fail);
    EXPECT_EQ(fed.last.code, 1009);
  }
  // Three bytes that inflate to 200, whole or in fragments.
  for (const std::string& bytes : {client_frame(kBinary, std::string("R\xc8" "a", 3), true, kRsv1),
                                   client_frame(kText, "R", false, kRsv1) + client_frame(kCont, "\xc8" "a")}) {
    WsEchoEngine engine(100, &toy);
    const Fed fed = feed_all(engine, bytes);
    EXPECT_EQ(fed.last.end, WsEchoResult::End::fail);
    EXPECT_EQ(fed.last.code, 1009);
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 1u) << "only the close: nothing of the inflated bytes";
    EXPECT_EQ(close_code(frames[0]), 1009);
  }
  // Within the limit once inflated, it is echoed.
  WsEchoEngine engine(200, &toy);
  const Fed fed = feed_all(engine, client_frame(kBinary, std::string("R\xc8" "a", 3), true, kRsv1));
  ASSERT_EQ(fed.messages, 1u);
  EXPECT_EQ(server_frames(fed.out).at(0).payload, ToyCompression::compress(std::string(200, 'a')));
}

TEST(WsEchoEngine, CompressedMessagesThatDoNotInflateOrAreNotUtf8Are1007) {
  const std::vector<std::string> cases = {
      client_frame(kBinary, "not compressed", true, kRsv1),
      client_frame(kText, ToyCompression::compress("bad \xff text"), true, kRsv1),
      client_frame(kText, ToyCompression::compress("cut \xe2\x82"), true, kRsv1),
      client_frame(kText, "Z\xa9", false, kRsv1) + client_frame(kCont, "\xc3 x \xff"),
  };
  for (const std::string& bytes : cases) {
    ToyCompression toy;
    WsEchoEngine engine(1024, &toy);
    const Fed fed = feed_all(engine, client_frame(kText, "first") + bytes);
    EXPECT_EQ(fed.last.end, WsEchoResult::End::fail);
    EXPECT_EQ(fed.last.code, 1007);
    const auto frames = server_frames(fed.out);
    ASSERT_EQ(frames.size(), 2u);
    EXPECT_EQ(frames[0].payload, "first");
    EXPECT_EQ(close_code(frames[1]), 1007);
  }
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
