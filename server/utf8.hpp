// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF), for text that must be UTF-8: config strings that become
// log fields and Prometheus labels, and what the fuzz targets check.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string_view>

namespace shoal {

enum class Utf8 {
  valid,
  incomplete,  // a valid prefix that ends inside a multi-byte sequence
  invalid,
};

constexpr Utf8 check_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
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
      return Utf8::invalid;
    }
    for (std::size_t k = 1; k <= need; ++k) {
      if (i + k >= s.size()) return Utf8::incomplete;
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return Utf8::invalid;
    }
    i += need + 1;
  }
  return Utf8::valid;
}

}  // namespace shoal
