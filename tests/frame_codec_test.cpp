// The frame codec (protocol/frame_codec.hpp) in both roles: headers that
// round-trip at every length encoding, what each role refuses, close
// payloads built and parsed, and masking in pieces.
#include "protocol/frame_codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shoal::ws {
namespace {

const MaskKey kKey{{0x37, 0xfa, 0x21, 0x3d}};

std::vector<unsigned char> bytes(std::initializer_list<int> l) {
  std::vector<unsigned char> v;
  for (int b : l) v.push_back(static_cast<unsigned char>(b));
  return v;
}

TEST(FrameCodec, HeadersRoundTripAtEveryLengthBoundaryInBothRoles) {
  struct Case {
    std::uint64_t len;
    std::size_t size;  // header size without the mask
  };
  for (const Case c : {Case{0, 2}, Case{125, 2}, Case{126, 4}, Case{65535, 4}, Case{65536, 10},
                       Case{std::uint64_t{1} << 40, 10}}) {
    for (const bool fin : {true, false}) {
      unsigned char h[max_header_size];
      // A client's frame, masked, as the server decodes it.
      std::size_t n = ClientCodec::put_header(h, fin, false, opcode::binary, c.len, kKey);
      ASSERT_EQ(n, c.size + 4) << c.len;
      HeaderResult r = ServerCodec::decode_header(h, n);
      ASSERT_EQ(r.status, Decode::ok) << c.len << ": " << (r.why ? r.why : "");
      EXPECT_EQ(r.header.fin, fin);
      EXPECT_EQ(r.header.opcode, opcode::binary);
      EXPECT_TRUE(r.header.masked);
      EXPECT_EQ(r.header.key.to_u32(), kKey.to_u32());
      EXPECT_EQ(r.header.length, c.len);
      EXPECT_EQ(r.header.size, n);
      // Every shorter prefix asks for more, and says how much it knows it needs.
      for (std::size_t k = 0; k < n; ++k) {
        const HeaderResult part = ServerCodec::decode_header(h, k);
        ASSERT_EQ(part.status, Decode::need_more) << c.len << " cut at " << k;
        EXPECT_GT(part.header.size, k);
        EXPECT_LE(part.header.size, n);
      }
      // A server's frame, unmasked, as the client decodes it.
      n = ServerCodec::put_header(h, fin, false, opcode::text, c.len);
      ASSERT_EQ(n, c.size);
      r = ClientCodec::decode_header(h, n);
      ASSERT_EQ(r.status, Decode::ok) << c.len;
      EXPECT_FALSE(r.header.masked);
      EXPECT_EQ(r.header.opcode, opcode::text);
      EXPECT_EQ(r.header.length, c.len);
      EXPECT_EQ(r.header.size, c.size);
    }
  }
}

TEST(FrameCodec, EachRoleRefusesThePeersWrongMasking) {
  unsigned char h[max_header_size];
  std::size_t n = put_header(h, true, false, opcode::text, 5);  // unmasked
  HeaderResult r = ServerCodec::decode_header(h, n);
  EXPECT_EQ(r.status, Decode::error);
  EXPECT_EQ(r.code, close_code::protocol_error);
  EXPECT_EQ(r.error, FrameError::bad_masking);
  EXPECT_EQ(ClientCodec::decode_header(h, n).status, Decode::ok);

  n = put_header(h, true, false, opcode::text, 5, kKey);  // masked
  r = ClientCodec::decode_header(h, n);
  EXPECT_EQ(r.status, Decode::error);
  EXPECT_EQ(r.code, close_code::protocol_error);
  EXPECT_EQ(r.error, FrameError::bad_masking);
  EXPECT_EQ(ServerCodec::decode_header(h, n).status, Decode::ok);
}

TEST(FrameCodec, MalformedHeadersAre1002AsSoonAsTheirBytesProveIt) {
  struct Case {
    const char* name;
    std::vector<unsigned char> h;  // as much as proves it, no more
    FrameError error;
  };
  const std::vector<Case> cases = {
      {"non-minimal 16-bit", bytes({0x82, 0xfe, 0x00, 0x7d}), FrameError::non_minimal_length},
      {"non-minimal 64-bit", bytes({0x82, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff}), FrameError::non_minimal_length},
      {"64-bit top bit", bytes({0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}), FrameError::length_top_bit},
      {"ping of 126", bytes({0x89, 0xfe}), FrameError::bad_control_frame},
      {"fragmented close", bytes({0x08, 0x80}), FrameError::bad_control_frame},
      {"opcode 3", bytes({0x83, 0x80}), FrameError::reserved_opcode},
      {"opcode 7", bytes({0x87, 0x80}), FrameError::reserved_opcode},
      {"opcode 11", bytes({0x8b, 0x80}), FrameError::reserved_opcode},
      {"opcode 15", bytes({0x8f, 0x80}), FrameError::reserved_opcode},
      {"RSV1", bytes({0xc1, 0x80}), FrameError::reserved_bits},
      {"RSV2", bytes({0xa1, 0x80}), FrameError::reserved_bits},
      {"RSV3", bytes({0x91, 0x80}), FrameError::reserved_bits},
  };
  for (const Case& c : cases) {
    const HeaderResult r = ServerCodec::decode_header(c.h.data(), c.h.size());
    EXPECT_EQ(r.status, Decode::error) << c.name;
    EXPECT_EQ(r.code, close_code::protocol_error) << c.name;
    EXPECT_EQ(r.error, c.error) << c.name;
  }
  // The longest control payload is fine.
  const auto ping125 = bytes({0x89, 0xfd, 1, 2, 3, 4});
  EXPECT_EQ(ServerCodec::decode_header(ping125.data(), ping125.size()).status, Decode::ok);
}

TEST(FrameCodec, Rsv1IsAllowedOnlyOnTheFirstDataFrameWithDeflate) {
  const Extensions deflate{.deflate = true};
  unsigned char h[max_header_size];
  for (const std::uint8_t op : {opcode::text, opcode::binary}) {
    const std::size_t n = put_header(h, false, true, op, 10, kKey);
    const HeaderResult r = ServerCodec::decode_header(h, n, deflate);
    ASSERT_EQ(r.status, Decode::ok);
    EXPECT_TRUE(r.header.rsv1);
    EXPECT_EQ(ServerCodec::decode_header(h, n).error, FrameError::reserved_bits) << "not negotiated";
  }
  for (const std::uint8_t op : {opcode::continuation, opcode::ping, opcode::pong, opcode::close}) {
    const std::size_t n = put_header(h, true, true, op, 0, kKey);
    const HeaderResult r = ServerCodec::decode_header(h, n, deflate);
    EXPECT_EQ(r.status, Decode::error) << int{op};
    EXPECT_EQ(r.error, FrameError::reserved_bits) << int{op};
  }
  const auto rsv2 = bytes({0xa1, 0x80, 0, 0, 0, 0});
  EXPECT_EQ(ServerCodec::decode_header(rsv2.data(), rsv2.size(), deflate).error, FrameError::reserved_bits);
}

TEST(FrameCodec, MaskingInPiecesAtAnyOffsetEqualsMaskingWhole) {
  std::string plain;
  for (int i = 0; i < 101; ++i) plain += static_cast<char>('a' + i % 26);
  std::vector<unsigned char> whole(plain.begin(), plain.end());
  apply_mask(whole.data(), whole.size(), kKey);
  for (std::size_t i = 0; i < whole.size(); ++i)
    ASSERT_EQ(whole[i], static_cast<unsigned char>(plain[i] ^ kKey.bytes[i % 4])) << i;

  for (std::size_t piece : {1, 3, 5, 8, 13, 64}) {
    std::vector<unsigned char> v(whole);
    std::size_t offset = 0;
    for (std::size_t at = 0; at < v.size(); at += piece) {
      const std::size_t k = std::min(piece, v.size() - at);
      offset = apply_mask(v.data() + at, k, kKey, offset);
    }
    EXPECT_EQ(std::string(v.begin(), v.end()), plain) << "pieces of " << piece;
  }
  // Into another buffer, from an odd offset.
  std::vector<unsigned char> dst(whole.size() - 7);
  apply_mask(dst.data(), whole.data() + 7, dst.size(), kKey, 7);
  EXPECT_EQ(std::string(dst.begin(), dst.end()), plain.substr(7));
}

TEST(FrameCodec, MaskKeyKeepsShoalLoadsNetworkOrder) {
  const MaskKey k = MaskKey::from_u32(0x01020304);
  EXPECT_EQ(k.bytes[0], 0x01);
  EXPECT_EQ(k.bytes[3], 0x04);
  EXPECT_EQ(k.to_u32(), 0x01020304u);
}

std::vector<unsigned char> close_payload(std::uint16_t code, const std::string& reason = {}) {
  std::string s;
  s += static_cast<char>(code >> 8);
  s += static_cast<char>(code & 0xff);
  s += reason;
  return std::vector<unsigned char>(s.begin(), s.end());
}

TEST(FrameCodec, CloseCodesAreValidExactlyInTheRegisteredRanges) {
  // Every code, against the ranges of RFC 6455 §7.4 and IANA's registry.
  for (std::uint32_t code = 0; code <= 0xffff; ++code) {
    const bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                       (code >= 3000 && code <= 4999);
    ASSERT_EQ(valid_close_code(static_cast<std::uint16_t>(code)), valid) << code;
  }
  for (std::uint16_t code : {999, 1000, 1003, 1004, 1005, 1006, 1007, 1014, 1015, 1016, 2999, 3000, 4999, 5000,
                             65535}) {
    const auto p = close_payload(code);
    const CloseResult r = parse_close(p.data(), p.size());
    EXPECT_EQ(r.ok, valid_close_code(code)) << code;
    if (r.ok) {
      EXPECT_EQ(r.code, code);
    } else {
      EXPECT_EQ(r.error, close_code::protocol_error) << code;
    }
  }
}

TEST(FrameCodec, CloseParsingChecksSizeAndReason) {
  CloseResult r = parse_close(nullptr, 0);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.code, close_code::no_status);

  const unsigned char one = 0x03;
  r = parse_close(&one, 1);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, close_code::protocol_error);

  auto p = close_payload(4001, "caf\xc3\xa9");
  r = parse_close(p.data(), p.size());
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.code, 4001);
  EXPECT_EQ(r.reason, "caf\xc3\xa9");

  for (const char* bad : {"\xff", "caf\xc3", "\xed\xa0\x80", "\xc0\xaf"}) {
    p = close_payload(1000, bad);
    r = parse_close(p.data(), p.size());
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.error, close_code::invalid_payload) << "a reason not UTF-8 is 1007";
  }
}

TEST(FrameCodec, CloseReasonIsCutTo123BytesWithoutSplittingACharacter) {
  unsigned char buf[max_control_payload];
  EXPECT_EQ(put_close_payload(buf, 0, "ignored"), 0u);
  EXPECT_EQ(put_close_payload(buf, 1001), 2u);
  EXPECT_EQ(buf[0], 0x03);
  EXPECT_EQ(buf[1], 0xe9);

  // 122 ASCII bytes, then a 2-byte character across the 123-byte limit.
  std::string reason = std::string(122, 'r') + "\xc3\xa9" + "tail";
  std::size_t n = put_close_payload(buf, 1000, reason);
  EXPECT_EQ(n, 2u + 122);
  // A 4-byte character ending exactly at 123 is kept whole.
  reason = std::string(119, 'r') + "\xf0\x9f\x90\x9f" + "x";
  n = put_close_payload(buf, 1000, reason);
  EXPECT_EQ(n, 2u + 123);
  CloseResult r = parse_close(buf, n);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.reason, reason.substr(0, 123));
  // One byte later, it goes.
  reason = std::string(120, 'r') + "\xf0\x9f\x90\x9f";
  n = put_close_payload(buf, 1000, reason);
  EXPECT_EQ(n, 2u + 120);
  r = parse_close(buf, n);
  EXPECT_TRUE(r.ok);
  // Ours is never invalid: a reason that is not UTF-8 is left out.
  EXPECT_EQ(put_close_payload(buf, 1000, "bad \xff"), 2u);
}

}  // namespace
}  // namespace shoal::ws
