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
// give its memory back. Holds nothing until first used.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& other) noexcept
      : data_(std::move(other.data_)),
        size_(std::exchange(other.size_, 0)),
        capacity_(std::exchange(other.capacity_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& other) noexcept {
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    return *this;
  }

  unsigned char* data() noexcept { return data_.get(); }
  const unsigned char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }

  // Room for `n` more bytes at data() + size(); returns where they go.
  unsigned char* prepare(std::size_t n) {
    if (size_ + n > capacity_) grow(size_ + n);
    return data_.get() + size_;
  }
  void commit(std::size_t n) noexcept { size_ += n; }
  void resize(std::size_t n) {
    if (n > capacity_) grow(n);
    size_ = n;
  }
  void append(const void* p, std::size_t n);
  // Drops the first `n` bytes.
  void consume(std::size_t n) noexcept;
  void clear() noexcept { size_ = 0; }
  // Empty and without memory.
  void release() noexcept {
    data_.reset();
    size_ = capacity_ = 0;
  }

 private:
  struct Free {
    void operator()(unsigned char* p) const noexcept { std::free(p); }
  };
  void grow(std::size_t at_least);

  std::unique_ptr<unsigned char, Free> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace shoal
