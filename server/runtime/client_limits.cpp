#include "runtime/client_limits.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace shoal {

PerIpCounts::Key PerIpCounts::key_of(const boost::asio::ip::address& address) noexcept {
  if (address.is_v4()) {
    return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4()).to_bytes();
  }
  return address.to_v6().to_bytes();
}

// Both halves mixed by the splitmix64 finaliser: IPv4 clients differ only in
// the low half, and neighbouring addresses must not share a stripe.
std::size_t PerIpCounts::KeyHash::operator()(const Key& key) const noexcept {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  std::memcpy(&hi, key.data(), 8);
  std::memcpy(&lo, key.data() + 8, 8);
  std::uint64_t h = hi * 0x9e3779b97f4a7c15ULL ^ lo;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return static_cast<std::size_t>(h);
}

// The stripe takes the hash's top bits; the map's buckets use it modulo a
// prime, so the two choices stay independent.
PerIpCounts::Stripe& PerIpCounts::stripe_of(const Key& key) noexcept {
  return stripes_[(KeyHash{}(key) >> 58) % kStripes];
}

const PerIpCounts::Stripe& PerIpCounts::stripe_of(const Key& key) const noexcept {
  return stripes_[(KeyHash{}(key) >> 58) % kStripes];
}

PerIpCounts::Entry* PerIpCounts::try_acquire(const boost::asio::ip::address& address,
                                             std::uint64_t max) {
  const Key key = key_of(address);
  Stripe& stripe = stripe_of(key);
  std::lock_guard lock(stripe.mu);
  // max >= 1, so a new entry is never left at zero.
  auto [it, inserted] = stripe.counts.try_emplace(key, 0);
  if (!inserted && it->second >= max) return nullptr;
  ++it->second;
  return &*it;
}

void PerIpCounts::release(Entry* entry) noexcept {
  Stripe& stripe = stripe_of(entry->first);
  std::lock_guard lock(stripe.mu);
  if (--entry->second == 0) stripe.counts.erase(entry->first);
}

std::uint64_t PerIpCounts::count(const boost::asio::ip::address& address) const {
  const Key key = key_of(address);
  const Stripe& stripe = stripe_of(key);
  std::lock_guard lock(stripe.mu);
  const auto it = stripe.counts.find(key);
  return it == stripe.counts.end() ? 0 : it->second;
}

std::size_t PerIpCounts::addresses() const {
  std::size_t n = 0;
  for (const Stripe& stripe : stripes_) {
    std::lock_guard lock(stripe.mu);
    n += stripe.counts.size();
  }
  return n;
}

void NewConnectionRate::configure(std::uint64_t per_second, std::uint64_t burst) noexcept {
  if (burst == 0) burst = per_second;
  if (per_second == per_second_.load(std::memory_order_relaxed) &&
      burst == burst_.load(std::memory_order_relaxed))
    return;
  // The config caps both at 1,000,000: the span stays far from overflow.
  const std::int64_t interval =
      per_second == 0 ? 0 : std::max<std::int64_t>(1, 1'000'000'000 / static_cast<std::int64_t>(per_second));
  per_second_.store(per_second, std::memory_order_relaxed);
  burst_.store(burst, std::memory_order_relaxed);
  span_ns_.store(interval * static_cast<std::int64_t>(burst), std::memory_order_relaxed);
  full_at_ns_.store(0, std::memory_order_relaxed);
  interval_ns_.store(interval, std::memory_order_relaxed);
}

bool NewConnectionRate::try_take(std::int64_t now_ns) noexcept {
  const std::int64_t interval = interval_ns_.load(std::memory_order_relaxed);
  if (interval == 0) return true;
  const std::int64_t span = span_ns_.load(std::memory_order_relaxed);
  std::int64_t full_at = full_at_ns_.load(std::memory_order_relaxed);
  for (;;) {
    // A bucket that filled up in the past starts from now, not from then.
    const std::int64_t next = std::max(full_at, now_ns) + interval;
    if (next - now_ns > span) return false;
    if (full_at_ns_.compare_exchange_weak(full_at, next, std::memory_order_relaxed)) return true;
  }
}

std::int64_t NewConnectionRate::now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace shoal
