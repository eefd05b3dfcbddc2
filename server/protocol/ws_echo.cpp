#include "protocol/ws_echo.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "protocol/utf8.hpp"

namespace shoal {

// --- frames ------------------------------------------------------------------

namespace {

constexpr unsigned kContinuation = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10;
constexpr std::uint16_t kNoStatus = 1005;

// Unmasks src[0, n) into dst (which may be src), eight bytes at a time.
void unmask_copy(unsigned char* dst, const unsigned char* src, std::size_t n,
                 const unsigned char* key) noexcept {
  std::uint32_t k4;
  std::memcpy(&k4, key, 4);
  const std::uint64_t k8 = (static_cast<std::uint64_t>(k4) << 32) | k4;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    w ^= k8;
    std::memcpy(dst + i, &w, 8);
  }
  for (; i < n; ++i) dst[i] = src[i] ^ key[i & 3];
}

// Writes a server frame header (FIN, no mask); returns its size (2, 4 or 10).
std::size_t put_header(unsigned char* h, unsigned opcode, std::uint64_t n) noexcept {
  h[0] = static_cast<unsigned char>(0x80 | opcode);
  if (n < 126) {
    h[1] = static_cast<unsigned char>(n);
    return 2;
  }
  if (n <= 0xffff) {
    h[1] = 126;
    h[2] = static_cast<unsigned char>(n >> 8);
    h[3] = static_cast<unsigned char>(n);
    return 4;
  }
  h[1] = 127;
  for (int k = 0; k < 8; ++k) h[2 + k] = static_cast<unsigned char>(n >> (56 - 8 * k));
  return 10;
}

// RFC 6455 §7.4, as Beast 1.81 checks it, and nothing above 4999.
bool valid_close_code(std::uint16_t code) noexcept {
  if (code >= 1000 && code <= 1013) return code < 1004 || code > 1006;
  return code >= 3000 && code <= 4999;
}

}  // namespace

void WsEchoEngine::append_frame(ByteBuffer& out, unsigned opcode, const void* payload, std::size_t n) {
  unsigned char* p = out.prepare(10 + n);
  const std::size_t h = put_header(p, opcode, n);
  if (n != 0) std::memcpy(p + h, payload, n);
  out.commit(h + n);
}

void WsEchoEngine::append_close(ByteBuffer& out, std::uint16_t code) {
  if (code == 0) {
    append_frame(out, kClose, nullptr, 0);
    return;
  }
  const unsigned char payload[2] = {static_cast<unsigned char>(code >> 8),
                                    static_cast<unsigned char>(code & 0xff)};
  append_frame(out, kClose, payload, 2);
}

WsEchoResult& WsEchoEngine::fail(WsEchoResult& r, std::uint16_t code, const char* why, ByteBuffer& out) {
  r.end = WsEchoResult::End::fail;
  r.code = code;
  r.why = why;
  // After our own close frame nothing more is sent.
  if (!closing_) append_close(out, code);
  message_.release();
  opcode_ = 0;
  return r;
}

WsEchoResult WsEchoEngine::feed(unsigned char* data, std::size_t n, ByteBuffer& out) {
  WsEchoResult r;
  std::size_t pos = 0;
  while (n - pos >= 2) {
    unsigned char* const p = data + pos;
    const std::size_t avail = n - pos;
    const bool fin = (p[0] & 0x80) != 0;
    const unsigned opcode = p[0] & 0x0f;
    const bool control = (opcode & 0x8) != 0;
    std::uint64_t len = p[1] & 0x7f;
    std::size_t header = 2;

    if ((p[0] & 0x70) != 0) return fail(r, 1002, "RSV bits set without an extension", out);
    if (control) {
      if (opcode > kPong) return fail(r, 1002, "reserved control opcode", out);
      if (!fin) return fail(r, 1002, "fragmented control frame", out);
      if (len > 125) return fail(r, 1002, "control frame over 125 bytes", out);
    } else if (opcode > kBinary) {
      return fail(r, 1002, "reserved data opcode", out);
    }
    if ((p[1] & 0x80) == 0) return fail(r, 1002, "unmasked client frame", out);
    if (len == 126) {
      if (avail < 4) break;
      len = (static_cast<std::uint64_t>(p[2]) << 8) | p[3];
      header = 4;
      if (len < 126) return fail(r, 1002, "length not in its shortest form", out);
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int k = 0; k < 8; ++k) len = (len << 8) | p[2 + k];
      header = 10;
      if (len >> 63) return fail(r, 1002, "length with its top bit set", out);
      if (len <= 0xffff) return fail(r, 1002, "length not in its shortest form", out);
    }
    header += 4;  // the mask
    if (!control) {
      if (opcode == kContinuation && opcode_ == 0)
        return fail(r, 1002, "continuation frame without a message", out);
      if (opcode != kContinuation && opcode_ != 0)
        return fail(r, 1002, "new message inside a fragmented one", out);
      const std::uint64_t so_far = opcode == kContinuation ? message_.size() : 0;
      if (max_ != 0 && (len > max_ || so_far + len > max_))
        return fail(r, 1009, "message over max_message_bytes", out);
    }
    // Not all here yet: the caller keeps the bytes and reads more.
    if (avail < header || avail - header < len) break;
    const unsigned char* const key = p + header - 4;
    unsigned char* const payload = p + header;
    const std::size_t size = static_cast<std::size_t>(len);
    pos += header + size;

    if (control) {
      unmask_copy(payload, payload, size, key);
      if (opcode == kPing) {
        if (!closing_) {
          append_frame(out, kPong, payload, size);
          r.ping = true;
        }
        continue;
      }
      if (opcode == kPong) {
        if (!closing_) r.pong = true;
        continue;
      }
      // Close.
      std::uint16_t code = kNoStatus;
      if (size == 1) return fail(r, 1002, "close frame with a one-byte payload", out);
      if (size >= 2) {
        code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
        if (!valid_close_code(code)) return fail(r, 1002, "invalid close code", out);
        if (scan_utf8(payload + 2, size - 2).status != Utf8::valid)
          return fail(r, 1002, "close reason not UTF-8", out);
      }
      // The answer carries the same code (1000 when the client gave none).
      if (!closing_) append_close(out, code == kNoStatus ? 1000 : code);
      r.end = WsEchoResult::End::peer_close;
      r.code = code;
      r.consumed = pos;
      return r;
    }

    if (closing_) continue;  // our close is sent: data is dropped

    if (opcode != kContinuation && fin) {
      // A whole message in one frame, the usual case: unmasked straight
      // into its echo.
      unsigned char* const o = out.prepare(10 + size);
      const std::size_t h = put_header(o, opcode, size);
      unmask_copy(o + h, payload, size, key);
      if (opcode == kText && scan_utf8(o + h, size).status != Utf8::valid)
        return fail(r, 1007, "text message not UTF-8", out);
      out.commit(h + size);
      ++r.messages;
      r.message_bytes += size;
      continue;
    }

    // A message in pieces.
    if (opcode != kContinuation) {
      opcode_ = static_cast<std::uint8_t>(opcode);
      message_.clear();
      utf8_checked_ = 0;
    }
    unmask_copy(message_.prepare(size), payload, size, key);
    message_.commit(size);
    if (opcode_ == kText) {
      const Utf8Scan s = scan_utf8(message_.data() + utf8_checked_, message_.size() - utf8_checked_);
      if (s.status == Utf8::invalid) return fail(r, 1007, "text message not UTF-8", out);
      utf8_checked_ += s.end;
      if (fin && utf8_checked_ != message_.size())
        return fail(r, 1007, "text message ends inside a UTF-8 sequence", out);
    }
    if (fin) {
      append_frame(out, opcode_, message_.data(), message_.size());
      ++r.messages;
      r.message_bytes += message_.size();
      message_.release();
      opcode_ = 0;
    }
  }
  r.consumed = pos;
  return r;
}

}  // namespace shoal
