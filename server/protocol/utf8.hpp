// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF), for text that must be UTF-8: config strings that become
// log fields and Prometheus labels, WebSocket text messages and close
// reasons (ws_echo.cpp, frame_codec.hpp), and what the fuzz targets check.
//
// Utf8Validator carries its state across calls, so that a text message can
// be checked piece by piece as its bytes arrive (a frame cut by a read, the
// fragments of a message) without scanning any byte twice; scan_utf8 and
// check_utf8 check a whole string. Both run on the same small automaton.
//
// Thread safety: pure functions; a Utf8Validator belongs to its caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace shoal {

namespace utf8_detail {

// States of the automaton: 0 between characters; 1..7 inside a sequence,
// named by what the next byte may be; 8 invalid (final).
//   1: one more byte, 80..BF        2: two more, the next A0..BF (after E0)
//   3: two more, the next 80..BF    4: two more, the next 80..9F (after ED)
//   5: three more, next 90..BF (F0) 6: three more, next 80..BF (F1..F3)
//   7: three more, next 80..8F (F4)
// The narrowed first continuations rule out overlong forms (E0, F0),
// surrogates (ED) and code points above U+10FFFF (F4).
inline constexpr std::uint8_t kAccept = 0, kReject = 8;
inline constexpr unsigned char kLo[8] = {0, 0x80, 0xA0, 0x80, 0x80, 0x90, 0x80, 0x80};
inline constexpr unsigned char kHi[8] = {0, 0xBF, 0xBF, 0xBF, 0x9F, 0xBF, 0xBF, 0x8F};
inline constexpr std::uint8_t kNext[8] = {0, 0, 1, 1, 1, 3, 3, 3};

// The state after a lead byte (c >= 0x80).
constexpr std::uint8_t lead(unsigned char c) noexcept {
  if (c >= 0xC2 && c <= 0xDF) return 1;
  if (c == 0xE0) return 2;
  if (c == 0xED) return 4;
  if (c >= 0xE1 && c <= 0xEF) return 3;
  if (c == 0xF0) return 5;
  if (c >= 0xF1 && c <= 0xF3) return 6;
  if (c == 0xF4) return 7;
  return kReject;  // a stray continuation, C0/C1 (overlong) or F5..FF
}

// Where the first byte at or after `i` with its top bit set is (n: none).
inline std::size_t skip_ascii(const unsigned char* p, std::size_t i, std::size_t n) noexcept {
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ull) break;
  }
  while (i < n && p[i] < 0x80) ++i;
  return i;
}

}  // namespace utf8_detail

// A UTF-8 check fed in pieces: feed() each piece in order; complete() at
// the end says the text did not stop inside a sequence.
class Utf8Validator {
 public:
  // False once the bytes so far cannot be UTF-8 (and from then on).
  bool feed(const unsigned char* p, std::size_t n) noexcept {
    using namespace utf8_detail;
    std::uint8_t s = state_;
    if (s == kReject) return false;
    std::size_t i = 0;
    while (i < n) {
      if (s == kAccept) {
        i = skip_ascii(p, i, n);
        if (i == n) break;
        s = lead(p[i++]);
        if (s == kReject) break;
        continue;
      }
      const unsigned char c = p[i++];
      if (c < kLo[s] || c > kHi[s]) {
        s = kReject;
        break;
      }
      s = kNext[s];
    }
    state_ = s;
    return s != kReject;
  }

  bool invalid() const noexcept { return state_ == utf8_detail::kReject; }
  // Valid so far and not inside a sequence: the text may end here.
  bool complete() const noexcept { return state_ == utf8_detail::kAccept; }
  void reset() noexcept { state_ = utf8_detail::kAccept; }

 private:
  std::uint8_t state_ = utf8_detail::kAccept;
};

enum class Utf8 {
  valid,
  incomplete,  // a valid prefix that ends inside a multi-byte sequence
  invalid,
};

// How far `s` is UTF-8: `status`, and `end`, where the valid part ends
// (the start of the incomplete or invalid sequence; s.size() when valid).
struct Utf8Scan {
  Utf8 status;
  std::size_t end;
};

inline Utf8Scan scan_utf8(const unsigned char* p, std::size_t n) noexcept {
  using namespace utf8_detail;
  std::size_t i = 0;
  while (true) {
    i = skip_ascii(p, i, n);
    if (i == n) return {Utf8::valid, n};
    const std::size_t start = i;
    std::uint8_t s = lead(p[i++]);
    while (s != kAccept && s != kReject) {
      if (i == n) return {Utf8::incomplete, start};
      const unsigned char c = p[i++];
      s = (c < kLo[s] || c > kHi[s]) ? kReject : kNext[s];
    }
    if (s == kReject) return {Utf8::invalid, start};
  }
}

inline Utf8 check_utf8(std::string_view s) noexcept {
  return scan_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()).status;
}

// The longest prefix of p[0, n) of at most `max` bytes that does not end
// inside a multi-byte sequence (for UTF-8 text cut to a size limit).
inline std::size_t utf8_prefix(const unsigned char* p, std::size_t n, std::size_t max) noexcept {
  if (n <= max) return n;
  std::size_t k = max;
  // At most three continuation bytes belong to one character.
  for (int back = 0; back < 3 && k > 0 && (p[k] & 0xC0) == 0x80; ++back) --k;
  return (p[k] & 0xC0) == 0x80 ? max : k;
}

}  // namespace shoal
