// permessage-deflate (RFC 7692): the extension's negotiation in the upgrade,
// and the per-connection compressor behind MessageCompression.
//
// Pure code: no sockets, no Asio, zlib underneath. The upgrade code calls
// negotiate_deflate() with the request's Sec-WebSocket-Extensions values; on
// an agreement it sends `response` back and gives the connection a
// MessageDeflate built from it, which the frame engine then calls once per
// whole message.
//
// Memory: a direction whose no_context_takeover was agreed holds no zlib
// state between messages; it borrows a stream from its thread's pool for the
// call. A direction with context takeover owns its stream (created on its
// first message and kept: its window is the context), about 140 KiB to send
// and 40 KiB to receive at 15 window bits.
//
// Thread safety: negotiate_deflate() is a pure function. A MessageDeflate is
// one connection's and is used on its shard's thread only; the pool it
// borrows from is that thread's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "protocol/compression.hpp"

namespace shoal {

namespace detail {
struct ZStream;  // a z_stream and the memory it holds (permessage_deflate.cpp)
}

struct DeflateAgreement {
  int server_max_window_bits = 15;  // window of our compressor (9..15)
  int client_max_window_bits = 15;  // window of the client's compressor, our inflater's (8..15)
  bool server_no_context_takeover = false;  // we reset our compressor after each message
  bool client_no_context_takeover = false;  // the client resets its compressor after each message
  std::string response;  // the value of our Sec-WebSocket-Extensions response header
};

// `offers`: every Sec-WebSocket-Extensions value of the request, in arrival
// order; each may hold several comma-separated extensions with ;-separated
// parameters (token or quoted-string values, names in any case, optional
// whitespace). Returns the agreement for the first permessage-deflate offer
// we can accept, or nullopt to decline (no compression). An offer with an
// unknown or duplicated parameter or a bad value is declined and the next one
// is tried (RFC 7692 §5); so is one that demands server_max_window_bits=8,
// which zlib cannot compress with. Always nullopt when !config.enabled.
std::optional<DeflateAgreement> negotiate_deflate(const std::vector<std::string_view>& offers,
                                                  const WebSocketConfig::Deflate& config);

class MessageDeflate final : public MessageCompression {
 public:
  explicit MessageDeflate(const DeflateAgreement& agreement) noexcept;
  ~MessageDeflate() override;
  MessageDeflate(const MessageDeflate&) = delete;
  MessageDeflate& operator=(const MessageDeflate&) = delete;

  // Bad data, a truncated message and anything zlib rejects: invalid. An
  // empty payload is an empty message; one ending in a final block is fine.
  // After a failure the connection's context is dropped (held_bytes() 0).
  // Throws std::bad_alloc only when memory runs out.
  Inflate inflate(const unsigned char* in, std::size_t n, ByteBuffer& out,
                  std::uint64_t limit) override;
  // An empty message is the one byte 0x00 (RFC 7692 §7.2.3.6).
  // Throws std::bad_alloc only when memory runs out.
  void deflate(const unsigned char* in, std::size_t n, ByteBuffer& out) override;

  // Memory this connection holds between messages: its own streams, zlib's
  // allocations counted and the z_stream structs.
  std::size_t held_bytes() const noexcept;
  // zlib memory of the calling thread's pool of borrowed streams.
  static std::size_t pooled_bytes() noexcept;

 private:
  std::unique_ptr<detail::ZStream> deflater_;  // with server context takeover only
  std::unique_ptr<detail::ZStream> inflater_;  // with client context takeover only
  std::uint8_t deflate_bits_;
  std::uint8_t inflate_bits_;
  bool deflate_pooled_;
  bool inflate_pooled_;
};

}  // namespace shoal
