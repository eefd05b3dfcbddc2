// A value that a reload replaces while other threads read it: readers take a
// shared_ptr copy under a short lock and keep what they took for as long as
// they need it (a session keeps the certificate it was accepted with).
//
// Thread safety: get() and set() from any thread. One lock per get(): for
// per-connection use (an accept, a TLS handshake), never per message.
#pragma once

#include <memory>
#include <mutex>

namespace shoal {

template <typename T>
class SharedValue {
 public:
  explicit SharedValue(std::shared_ptr<T> value) : value_(std::move(value)) {}

  std::shared_ptr<T> get() const {
    std::lock_guard lock(mu_);
    return value_;
  }
  void set(std::shared_ptr<T> value) {
    {
      std::lock_guard lock(mu_);
      value_.swap(value);
    }
    // The old value is released here, outside the lock, by `value`.
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<T> value_;
};

}  // namespace shoal
