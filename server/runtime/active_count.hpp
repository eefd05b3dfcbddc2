// The process-wide count of admitted connections: acceptors take a place in
// it on admission, a connection gives its place back when it ends (or the
// admission is given back unserved). A drain waits for it to reach zero
// without polling: once watch() was called, the release that brings it to
// zero makes fd() (an eventfd) readable.
//
// Ownership: the Server owns it; shards and acceptors refer to it.
// Thread safety: acquire()/release()/load() on any thread (one atomic
// read-modify-write per connection, never per message); watch() and fd()
// on the thread that drains.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <system_error>

namespace shoal {

class ActiveCount {
 public:
  ActiveCount() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~ActiveCount() { ::close(fd_); }
  ActiveCount(const ActiveCount&) = delete;
  ActiveCount& operator=(const ActiveCount&) = delete;

  std::uint64_t load() const noexcept { return n_.load(std::memory_order_relaxed); }

  // Takes a place when fewer than `max` are taken; false (nothing taken)
  // at the limit.
  bool acquire(std::uint64_t max) noexcept {
    if (n_.fetch_add(1, std::memory_order_relaxed) < max) return true;
    release();
    return false;
  }

  void release() noexcept {
    // seq_cst here and in watch(): either the drain sees zero after
    // watching, or this release sees the watch and signals.
    if (n_.fetch_sub(1) == 1 && watching_.load()) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t w = ::write(fd_, &one, sizeof one);
    }
  }

  // From now on, reaching zero makes fd() readable. Returns the count then:
  // 0 means there is nothing to wait for.
  std::uint64_t watch() noexcept {
    watching_.store(true);
    return n_.load();
  }
  // Consumes a pending "reached zero" (before waiting again).
  void clear() noexcept {
    std::uint64_t ignored = 0;
    [[maybe_unused]] const ssize_t r = ::read(fd_, &ignored, sizeof ignored);
  }
  int fd() const noexcept { return fd_; }

 private:
  std::atomic<std::uint64_t> n_{0};
  std::atomic<bool> watching_{false};
  int fd_;
};

}  // namespace shoal
