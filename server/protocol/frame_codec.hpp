// The RFC 6455 frame codec, for both ends of a connection: frame headers
// decoded and encoded, payloads masked and unmasked, close payloads built
// and parsed, and the opcodes and close codes by name.
//
// Framing only, as uWebSockets' WebSocketProtocol<isServer, Impl> and
// Seastar's websocket_parser split it: the role decides which masking a
// peer's frame must have (a server takes only masked frames, a client only
// unmasked ones); what to do with a frame (message state, size limits,
// compression, echoing) is the caller's: WsEchoEngine (ws_echo.hpp) in
// shoald, the frame parser of shoal-load on the client side. Header-only
// and without I/O, so that shoal-load uses it without linking the daemon.
//
// Errors carry the close code the RFC asks for (1002 for framing, 1007 for
// a close reason that is not UTF-8), a FrameError for callers that map them
// to their own, and a short reason for the log.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "protocol/utf8.hpp"

namespace shoal::ws {

enum class Role : std::uint8_t { server, client };

namespace opcode {
inline constexpr std::uint8_t continuation = 0x0;
inline constexpr std::uint8_t text = 0x1;
inline constexpr std::uint8_t binary = 0x2;
inline constexpr std::uint8_t close = 0x8;
inline constexpr std::uint8_t ping = 0x9;
inline constexpr std::uint8_t pong = 0xA;
}  // namespace opcode

constexpr bool is_control(unsigned op) noexcept { return (op & 0x8) != 0; }

// RFC 6455 §7.4.1 and IANA's WebSocket Close Code Number Registry.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;  // never sent: a close without a code
inline constexpr std::uint16_t abnormal = 1006;   // never sent: no close frame at all
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t mandatory_extension = 1010;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t bad_gateway = 1014;
}  // namespace close_code

// Whether a peer may send `code` in a close frame: 1000-1003 and 1007-1014
// (registered for use on the wire), 3000-4999 (libraries, applications).
// 1004 is reserved, 1005, 1006 and 1015 are never sent, 1016-2999 are not
// assigned, 0-999 and 5000 up are not used.
constexpr bool valid_close_code(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

inline constexpr std::size_t max_header_size = 14;     // 2 + 8 (length) + 4 (mask)
inline constexpr std::size_t max_control_payload = 125;
inline constexpr std::size_t max_close_reason = 123;  // 125 less the code

// A masking key as it is on the wire.
struct MaskKey {
  unsigned char bytes[4] = {0, 0, 0, 0};
  // The key whose wire bytes are `k` in network order (k >> 24 first), as
  // shoal-load keeps it.
  static constexpr MaskKey from_u32(std::uint32_t k) noexcept {
    return MaskKey{{static_cast<unsigned char>(k >> 24), static_cast<unsigned char>(k >> 16),
                    static_cast<unsigned char>(k >> 8), static_cast<unsigned char>(k)}};
  }
  constexpr std::uint32_t to_u32() const noexcept {
    return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
           (std::uint32_t{bytes[2]} << 8) | bytes[3];
  }
};

// What made a frame header invalid, for callers with their own error kinds.
enum class FrameError : std::uint8_t {
  none,
  reserved_bits,       // RSV1-3 not allowed by the negotiated extensions
  reserved_opcode,     // 3-7, 11-15
  bad_masking,         // a client frame unmasked, or a server frame masked
  bad_control_frame,   // a control frame fragmented or over 125 bytes
  non_minimal_length,  // a length not in its shortest encoding
  length_top_bit,      // a 64-bit length with its most significant bit set
};

struct FrameHeader {
  bool fin = false;
  bool rsv1 = false, rsv2 = false, rsv3 = false;
  std::uint8_t opcode = 0;
  bool masked = false;
  MaskKey key;              // when masked
  std::uint64_t length = 0;  // payload bytes
  // ok: the header's bytes (2..14), where the payload starts.
  // need_more: how many bytes the header needs, as far as known (2 until
  // the second byte is in).
  std::size_t size = 0;
};

enum class Decode : std::uint8_t { need_more, ok, error };

struct HeaderResult {
  Decode status = Decode::need_more;
  FrameHeader header;
  // error: the close code to fail with (1002), what was wrong and why.
  std::uint16_t code = 0;
  FrameError error = FrameError::none;
  const char* why = nullptr;
};

// Which RSV bits the negotiated extensions allow.
struct Extensions {
  // permessage-deflate (RFC 7692): RSV1 marks a compressed message, on the
  // first frame of a data message only (never on a continuation or a
  // control frame).
  bool deflate = false;
};

namespace detail {

inline HeaderResult header_error(FrameError e, const char* why) noexcept {
  HeaderResult r;
  r.status = Decode::error;
  r.code = close_code::protocol_error;
  r.error = e;
  r.why = why;
  return r;
}

// The key as eight bytes, starting at key byte `offset` % 4, so that byte
// i of a piece that starts `offset` bytes into the payload gets key byte
// (offset + i) % 4.
inline std::uint64_t key8(const MaskKey& key, std::size_t offset) noexcept {
  unsigned char k[8];
  for (std::size_t i = 0; i < 8; ++i) k[i] = key.bytes[(offset + i) & 3];
  std::uint64_t w;
  std::memcpy(&w, k, 8);
  return w;
}

}  // namespace detail

// Decodes the frame header at p[0, avail) as the `R` end of the connection
// receives it. Errors are reported as soon as the bytes that prove them
// are in: the first two bytes (RSV, opcode, masking, control-frame rules)
// before the extended length arrives, the length's form before the mask.
inline HeaderResult decode_header(Role receiver, const unsigned char* p, std::size_t avail,
                                  Extensions ext = {}) noexcept {
  HeaderResult r;
  FrameHeader& h = r.header;
  h.size = 2;
  if (avail < 2) return r;
  h.fin = (p[0] & 0x80) != 0;
  h.rsv1 = (p[0] & 0x40) != 0;
  h.rsv2 = (p[0] & 0x20) != 0;
  h.rsv3 = (p[0] & 0x10) != 0;
  h.opcode = p[0] & 0x0f;
  h.masked = (p[1] & 0x80) != 0;
  const bool control = is_control(h.opcode);
  const unsigned len7 = p[1] & 0x7f;

  if (h.rsv2 || h.rsv3) return detail::header_error(FrameError::reserved_bits, "RSV2 or RSV3 set");
  if (h.rsv1) {
    if (!ext.deflate) return detail::header_error(FrameError::reserved_bits, "RSV1 set without an extension");
    if (control) return detail::header_error(FrameError::reserved_bits, "RSV1 on a control frame");
    if (h.opcode == opcode::continuation)
      return detail::header_error(FrameError::reserved_bits, "RSV1 on a continuation frame");
  }
  if (control) {
    if (h.opcode > opcode::pong) return detail::header_error(FrameError::reserved_opcode, "reserved control opcode");
    if (!h.fin) return detail::header_error(FrameError::bad_control_frame, "fragmented control frame");
    if (len7 > max_control_payload)
      return detail::header_error(FrameError::bad_control_frame, "control frame over 125 bytes");
  } else if (h.opcode > opcode::binary) {
    return detail::header_error(FrameError::reserved_opcode, "reserved data opcode");
  }
  if (receiver == Role::server && !h.masked)
    return detail::header_error(FrameError::bad_masking, "unmasked client frame");
  if (receiver == Role::client && h.masked)
    return detail::header_error(FrameError::bad_masking, "masked server frame");

  std::size_t at = 2;
  if (len7 == 126) {
    h.size = 4 + (h.masked ? 4 : 0);
    if (avail < 4) return r;
    h.length = (std::uint64_t{p[2]} << 8) | p[3];
    if (h.length < 126)
      return detail::header_error(FrameError::non_minimal_length, "length not in its shortest form");
    at = 4;
  } else if (len7 == 127) {
    h.size = 10 + (h.masked ? 4 : 0);
    if (avail < 10) return r;
    std::uint64_t n = 0;
    for (std::size_t k = 0; k < 8; ++k) n = (n << 8) | p[2 + k];
    if (n >> 63) return detail::header_error(FrameError::length_top_bit, "length with its top bit set");
    if (n <= 0xffff) return detail::header_error(FrameError::non_minimal_length, "length not in its shortest form");
    h.length = n;
    at = 10;
  } else {
    h.length = len7;
  }
  h.size = at + (h.masked ? 4 : 0);
  if (avail < h.size) return r;
  if (h.masked) std::memcpy(h.key.bytes, p + at, 4);
  r.status = Decode::ok;
  return r;
}

// Writes a frame header to `buf` (room for max_header_size bytes) and
// returns its size (2 to 14): the length in its shortest form, the mask
// bit and key when `mask` is given.
inline std::size_t put_header(unsigned char* buf, bool fin, bool rsv1, std::uint8_t op, std::uint64_t len,
                              std::optional<MaskKey> mask = std::nullopt) noexcept {
  buf[0] = static_cast<unsigned char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (op & 0x0f));
  const unsigned char mask_bit = mask ? 0x80 : 0;
  std::size_t n;
  if (len < 126) {
    buf[1] = static_cast<unsigned char>(mask_bit | len);
    n = 2;
  } else if (len <= 0xffff) {
    buf[1] = static_cast<unsigned char>(mask_bit | 126);
    buf[2] = static_cast<unsigned char>(len >> 8);
    buf[3] = static_cast<unsigned char>(len);
    n = 4;
  } else {
    buf[1] = static_cast<unsigned char>(mask_bit | 127);
    for (std::size_t k = 0; k < 8; ++k) buf[2 + k] = static_cast<unsigned char>(len >> (56 - 8 * k));
    n = 10;
  }
  if (mask) {
    std::memcpy(buf + n, mask->bytes, 4);
    n += 4;
  }
  return n;
}

// XORs src[0, n) with the key into dst (which may be src), eight bytes at a
// time. `offset` is where in the payload src starts, so a payload can be
// (un)masked in pieces; returns the offset for the next piece.
inline std::size_t apply_mask(unsigned char* dst, const unsigned char* src, std::size_t n, const MaskKey& key,
                              std::size_t offset = 0) noexcept {
  const std::uint64_t k8 = detail::key8(key, offset);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, src + i, 8);
    w ^= k8;
    std::memcpy(dst + i, &w, 8);
  }
  for (; i < n; ++i) dst[i] = static_cast<unsigned char>(src[i] ^ key.bytes[(offset + i) & 3]);
  return offset + n;
}
inline std::size_t apply_mask(unsigned char* data, std::size_t n, const MaskKey& key,
                              std::size_t offset = 0) noexcept {
  return apply_mask(data, data, n, key, offset);
}

// Writes a close payload to `buf` (room for max_control_payload bytes) and
// returns its size: nothing for code 0, else the code and as much of
// `reason` as fits (123 bytes), cut where no UTF-8 sequence is split. A
// reason that is not UTF-8 is left out, so that no peer fails on ours.
inline std::size_t put_close_payload(unsigned char* buf, std::uint16_t code, std::string_view reason = {}) noexcept {
  if (code == 0) return 0;
  buf[0] = static_cast<unsigned char>(code >> 8);
  buf[1] = static_cast<unsigned char>(code & 0xff);
  const auto* r = reinterpret_cast<const unsigned char*>(reason.data());
  const std::size_t n = utf8_prefix(r, reason.size(), max_close_reason);
  if (n == 0 || scan_utf8(r, n).status != Utf8::valid) return 2;
  std::memcpy(buf + 2, r, n);
  return 2 + n;
}

struct CloseResult {
  bool ok = false;
  // ok: the peer's code (1005 when the payload is empty) and reason.
  std::uint16_t code = close_code::no_status;
  std::string_view reason;
  // !ok: the close code to fail with (1002 or 1007) and why.
  std::uint16_t error = 0;
  const char* why = nullptr;
};

// Parses a peer's close payload (unmasked): empty, or a valid close code
// and a UTF-8 reason.
inline CloseResult parse_close(const unsigned char* payload, std::size_t n) noexcept {
  CloseResult r;
  if (n == 0) {
    r.ok = true;
    return r;
  }
  if (n == 1) {
    r.error = close_code::protocol_error;
    r.why = "close frame with a one-byte payload";
    return r;
  }
  if (n > max_control_payload) {
    r.error = close_code::protocol_error;
    r.why = "close frame over 125 bytes";
    return r;
  }
  const auto code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
  if (!valid_close_code(code)) {
    r.error = close_code::protocol_error;
    r.why = "invalid close code";
    return r;
  }
  if (scan_utf8(payload + 2, n - 2).status != Utf8::valid) {
    r.error = close_code::invalid_payload;
    r.why = "close reason not UTF-8";
    return r;
  }
  r.ok = true;
  r.code = code;
  r.reason = std::string_view(reinterpret_cast<const char*>(payload + 2), n - 2);
  return r;
}

// The codec for the `R` end: what it accepts from its peer and how its own
// frames go out (a server's unmasked, a client's masked with a key).
template <Role R>
struct FrameCodec {
  static constexpr Role role = R;
  static constexpr Role peer = R == Role::server ? Role::client : Role::server;
  // The largest header of a frame this end sends.
  static constexpr std::size_t max_send_header = R == Role::server ? 10 : 14;

  // A frame header from the peer, as decode_header(R, ...) checks it.
  static HeaderResult decode_header(const unsigned char* p, std::size_t avail, Extensions ext = {}) noexcept {
    return ws::decode_header(R, p, avail, ext);
  }

  // The header of a frame of ours; a client passes its masking key (and
  // masks the payload with it), a server none.
  static std::size_t put_header(unsigned char* buf, bool fin, bool rsv1, std::uint8_t op, std::uint64_t len,
                                const MaskKey& key) noexcept
    requires(R == Role::client)
  {
    return ws::put_header(buf, fin, rsv1, op, len, key);
  }
  static std::size_t put_header(unsigned char* buf, bool fin, bool rsv1, std::uint8_t op,
                                std::uint64_t len) noexcept
    requires(R == Role::server)
  {
    return ws::put_header(buf, fin, rsv1, op, len, std::nullopt);
  }
};

using ServerCodec = FrameCodec<Role::server>;
using ClientCodec = FrameCodec<Role::client>;

}  // namespace shoal::ws
