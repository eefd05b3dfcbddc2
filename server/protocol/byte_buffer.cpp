#include "protocol/byte_buffer.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace shoal {

void ByteBuffer::grow(std::size_t at_least) {
  const std::size_t capacity = std::max<std::size_t>({at_least, capacity_ * 2, 256});
  void* p = std::realloc(data_.get(), capacity);
  if (p == nullptr) throw std::bad_alloc();
  (void)data_.release();
  data_.reset(static_cast<unsigned char*>(p));
  capacity_ = capacity;
}

void ByteBuffer::append(const void* p, std::size_t n) {
  if (n == 0) return;
  std::memcpy(prepare(n), p, n);
  size_ += n;
}

void ByteBuffer::consume(std::size_t n) noexcept {
  if (n >= size_) {
    size_ = 0;
    return;
  }
  std::memmove(data_.get(), data_.get() + n, size_ - n);
  size_ -= n;
}

}  // namespace shoal
