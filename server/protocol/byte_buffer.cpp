#include "protocol/byte_buffer.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>

namespace shoal {

void ByteBuffer::grow(std::size_t at_least) {
  const std::size_t capacity = std::max<std::size_t>({at_least, this->capacity() * 2, 256});
  void* p = std::realloc(block_, offsetof(Block, bytes) + capacity);
  if (p == nullptr) throw std::bad_alloc();
  const bool fresh = block_ == nullptr;
  block_ = static_cast<Block*>(p);
  if (fresh) block_->size = 0;
  block_->capacity = capacity;
}

void ByteBuffer::append(const void* p, std::size_t n) {
  if (n == 0) return;
  std::memcpy(prepare(n), p, n);
  block_->size += n;
}

void ByteBuffer::consume(std::size_t n) noexcept {
  const std::size_t have = size();
  if (n >= have) {
    clear();
    return;
  }
  std::memmove(block_->bytes, block_->bytes + n, have - n);
  block_->size = have - n;
}

}  // namespace shoal
