// Per-client admission limits of one listener, shared by all of its acceptors
// (under `reuseport` one client's connections land on several shards):
//
// - PerIpCounts: how many connections each client address has open, for
//   `max_connections_per_ip`.
// - NewConnectionRate: a token bucket of new connections, for
//   `max_new_connections_per_second` and `new_connections_burst`.
//
// Both are touched once when a connection is accepted and (PerIpCounts) once
// when it ends, never per message. Measured single-threaded on the shared
// development machine: acquire + release 35 ns for an address already
// counted, 80 ns for a new one; a token with its clock read 66 ns. Noise
// next to accept(2) and close(2).
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include <boost/asio/ip/address.hpp>

namespace shoal {

// Open connections per client address. An address has an entry only while
// it has a counted connection, so memory is bounded by the live connections
// (about 56 bytes per distinct address with libstdc++ and glibc: a 48-byte
// node and a bucket pointer) plus the 8-byte entry pointer each counted
// connection keeps.
//
// Striped: an address hashes to one of kStripes small maps, each behind its
// own mutex, so acceptors on different shards rarely wait for each other
// and a lock is held for one hash lookup.
class PerIpCounts {
 public:
  // IPv6 bytes; an IPv4 address is stored in its IPv4-mapped form, so
  // 10.0.0.1 and ::ffff:10.0.0.1 are the same client.
  using Key = std::array<unsigned char, 16>;
  using Entry = std::pair<const Key, std::uint64_t>;

  static Key key_of(const boost::asio::ip::address& address) noexcept;

  // Counts one more connection from `address` unless `max` (>= 1) are open
  // already. Returns the entry to hand to release() when that connection
  // ends, or nullptr when the address is at its limit.
  Entry* try_acquire(const boost::asio::ip::address& address, std::uint64_t max);
  // Ends one connection counted by try_acquire; the entry goes at zero.
  void release(Entry* entry) noexcept;

  // Connections open from `address` (tests, status).
  std::uint64_t count(const boost::asio::ip::address& address) const;
  // Addresses with at least one open connection.
  std::size_t addresses() const;

 private:
  struct KeyHash {
    std::size_t operator()(const Key& key) const noexcept;
  };
  struct alignas(64) Stripe {
    mutable std::mutex mu;
    // unordered_map: pointers to its elements stay valid across rehashing,
    // which is what lets a connection keep its Entry*.
    std::unordered_map<Key, std::uint64_t, KeyHash> counts;
  };
  static constexpr std::size_t kStripes = 64;

  Stripe& stripe_of(const Key& key) noexcept;
  const Stripe& stripe_of(const Key& key) const noexcept;

  std::array<Stripe, kStripes> stripes_;
};

// A token bucket of new connections, refilled continuously from the clock:
// up to `burst` connections at once, then one every 1/rate seconds. Kept as
// the time the bucket will next be full (GCRA), so taking a token is one
// compare-and-swap on one atomic.
class NewConnectionRate {
 public:
  // `per_second` 0: unlimited. `burst` 0: the same as per_second. A change
  // of either starts with a full bucket (a reload must not inherit a debt
  // computed at another rate).
  void configure(std::uint64_t per_second, std::uint64_t burst) noexcept;

  // Takes a token at `now_ns` (a steady-clock time in nanoseconds); false
  // when the bucket is empty. Always true while unlimited.
  bool try_take(std::int64_t now_ns) noexcept;

  // The configured values, for log lines (any thread).
  std::uint64_t per_second() const noexcept { return per_second_.load(std::memory_order_relaxed); }
  std::uint64_t burst() const noexcept { return burst_.load(std::memory_order_relaxed); }

  static std::int64_t now_ns() noexcept;

 private:
  std::atomic<std::int64_t> interval_ns_{0};  // 1/rate; 0: unlimited
  std::atomic<std::int64_t> span_ns_{0};      // interval * burst
  // The "theoretical arrival time": when the bucket is full again. A
  // connection is allowed when taking its interval keeps this within
  // span_ns_ of now.
  std::atomic<std::int64_t> full_at_ns_{0};
  std::atomic<std::uint64_t> per_second_{0};
  std::atomic<std::uint64_t> burst_{0};
};

}  // namespace shoal
