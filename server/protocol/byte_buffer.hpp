// ByteBuffer: a growable byte buffer for frames and messages in flight.
//
// Thread safety: none; owned by one session or one shard thread.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <utility>

namespace shoal {

// A growable byte buffer that does not zero what it grows into, and that can
// give its memory back. Holds nothing until first used, and is one pointer:
// size and capacity live in the block it points to. Every connection has
// three (its input, its output, the engine's message so far), nearly always
// empty, so two words saved in each are 48 bytes of every idle connection.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    if (this != &other) {
      std::free(block_);
      block_ = std::exchange(other.block_, nullptr);
    }
    return *this;
  }
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { std::free(block_); }

  unsigned char* data() noexcept { return block_ ? block_->bytes : nullptr; }
  const unsigned char* data() const noexcept { return block_ ? block_->bytes : nullptr; }
  std::size_t size() const noexcept { return block_ ? block_->size : 0; }
  std::size_t capacity() const noexcept { return block_ ? block_->capacity : 0; }
  bool empty() const noexcept { return size() == 0; }

  // Room for `n` more bytes at data() + size(); returns where they go.
  unsigned char* prepare(std::size_t n) {
    const std::size_t have = size();
    if (have + n > capacity()) grow(have + n);
    return data() + have;  // prepare(0) on an empty buffer: null, as before (no block)
  }
  // After prepare(n) or more.
  void commit(std::size_t n) noexcept {
    if (block_) block_->size += n;
  }
  void resize(std::size_t n) {
    if (n > capacity()) grow(n);
    if (block_) block_->size = n;
  }
  void append(const void* p, std::size_t n);
  // Drops the first `n` bytes.
  void consume(std::size_t n) noexcept;
  void clear() noexcept {
    if (block_) block_->size = 0;
  }
  // Empty and without memory.
  void release() noexcept {
    std::free(block_);
    block_ = nullptr;
  }

 private:
  struct Block {
    std::size_t size;
    std::size_t capacity;
    unsigned char bytes[1];  // capacity bytes from here
  };
  void grow(std::size_t at_least);

  Block* block_ = nullptr;
};
static_assert(sizeof(ByteBuffer) == sizeof(void*), "ByteBuffer is one pointer: it is in every connection, three times");

}  // namespace shoal
