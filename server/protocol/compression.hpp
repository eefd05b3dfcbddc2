// The hook through which the WebSocket engine compresses and decompresses
// whole messages (RFC 7692 permessage-deflate, protocol/permessage_deflate.hpp,
// implements it). The engine knows frames; this knows message payloads.
//
// Thread safety: none; one per connection, used on its shard's thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include "protocol/byte_buffer.hpp"

namespace shoal {

class MessageCompression {
 public:
  enum class Inflate : std::uint8_t {
    ok,
    too_big,  // the message would pass `limit` once inflated: close 1009
    invalid,  // not a valid compressed message: close 1007
  };

  virtual ~MessageCompression() = default;

  // Inflates one whole compressed message (the payloads of all its frames,
  // concatenated) and appends the result to `out`. `limit` bounds the
  // inflated size (0: none); nothing past it is produced.
  virtual Inflate inflate(const unsigned char* in, std::size_t n, ByteBuffer& out,
                          std::uint64_t limit) = 0;

  // Compresses one whole message and appends the payload of its frame (the
  // sync flush's 00 00 ff ff tail removed, RFC 7692 §7.2.1) to `out`.
  virtual void deflate(const unsigned char* in, std::size_t n, ByteBuffer& out) = 0;
};

}  // namespace shoal
