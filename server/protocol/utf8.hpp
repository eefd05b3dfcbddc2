// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF), for text that must be UTF-8: config strings that become
// log fields and Prometheus labels, WebSocket text messages echoed without
// Beast (ws_echo.cpp), and what the fuzz targets check.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace shoal {

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
  std::size_t i = 0;
  while (i < n) {
    // ASCII runs eight bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return {Utf8::invalid, i};
    }
    for (std::size_t k = 1; k <= need; ++k) {
      if (i + k >= n) return {Utf8::incomplete, i};
      const unsigned char b = p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return {Utf8::invalid, i};
    }
    i += need + 1;
  }
  return {Utf8::valid, n};
}

inline Utf8 check_utf8(std::string_view s) noexcept {
  return scan_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size()).status;
}

}  // namespace shoal
