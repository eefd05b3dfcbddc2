#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace shoal::load {

Histogram::Histogram() : counts_(bucket_count, 0) {}

std::size_t Histogram::index_of(std::uint64_t value) {
  if (value < linear_limit) return static_cast<std::size_t>(value);
  const int msb = 63 - std::countl_zero(value);  // >= 8
  const int shift = msb - sub_bits;               // >= 1
  const std::uint64_t top = value >> shift;       // in [128, 256)
  return linear_limit + static_cast<std::size_t>(shift - 1) * 128 + static_cast<std::size_t>(top - 128);
}

std::uint64_t Histogram::lowest_of(std::size_t index) {
  if (index < linear_limit) return index;
  const std::size_t rel = index - linear_limit;
  const int shift = static_cast<int>(rel / 128) + 1;
  const std::uint64_t top = 128 + rel % 128;
  return top << shift;
}

std::uint64_t Histogram::highest_of(std::size_t index) {
  if (index < linear_limit) return index;
  const std::size_t rel = index - linear_limit;
  const int shift = static_cast<int>(rel / 128) + 1;
  return lowest_of(index) + ((std::uint64_t{1} << shift) - 1);
}

void Histogram::record_n(std::uint64_t value, std::uint64_t n) {
  if (n == 0) return;
  counts_[index_of(value)] += n;
  count_ += n;
  sum_ += value * n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0) return;
  for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

std::uint64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const std::uint64_t lo = lowest_of(i);
      const std::uint64_t mid = lo + (highest_of(i) - lo) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

Histogram::Sparse Histogram::to_sparse() const {
  Sparse s;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    if (counts_[i]) s.buckets.emplace_back(static_cast<std::uint32_t>(i), counts_[i]);
  }
  s.min = min();
  s.max = max_;
  s.sum = sum_;
  return s;
}

void Histogram::merge(const Sparse& sparse) {
  std::uint64_t n = 0;
  for (const auto& [index, c] : sparse.buckets) {
    if (index >= bucket_count || c == 0) continue;
    counts_[index] += c;
    n += c;
  }
  if (n == 0) return;
  count_ += n;
  sum_ += sparse.sum;
  min_ = std::min(min_, sparse.min);
  max_ = std::max(max_, sparse.max);
}

bool Histogram::operator==(const Histogram& other) const {
  return counts_ == other.counts_ && count_ == other.count_ && min() == other.min() &&
         max_ == other.max_ && sum_ == other.sum_;
}

}  // namespace shoal::load
