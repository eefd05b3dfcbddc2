// Histogram: an HDR-style log-linear histogram of non-negative 64-bit values
// (shoal-load records nanoseconds).
//
// Values below 256 have a bucket each; above, every power-of-two range is
// split into 128 equal buckets, so a bucket is at most 1/128 of its lower
// bound wide and the midpoint reported for a percentile is within 0.4 % of
// any value in it. Every 64-bit value fits in 7,424 buckets (58 KiB), so two
// histograms always merge by adding counts, whatever their ranges.
//
// Owned by one thread; copy or merge to hand over. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace shoal::load {

class Histogram {
 public:
  static constexpr int sub_bits = 7;                            // 128 buckets per octave
  static constexpr std::size_t linear_limit = 256;              // exact below this
  static constexpr std::size_t bucket_count = 256 + 56 * 128;   // covers 2^64

  Histogram();

  void record(std::uint64_t value) { record_n(value, 1); }
  void record_n(std::uint64_t value, std::uint64_t n);
  void merge(const Histogram& other);
  void reset();

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }
  // The value at percentile p (0-100): the midpoint of the bucket holding the
  // ceil(p/100 * count)-th smallest value, clamped to [min, max]. 0 if empty.
  std::uint64_t percentile(double p) const;

  // Bucket arithmetic (public for tests and for the sparse wire form).
  static std::size_t index_of(std::uint64_t value);
  static std::uint64_t lowest_of(std::size_t index);
  static std::uint64_t highest_of(std::size_t index);  // inclusive

  // Sparse form: (bucket index, count) for every non-empty bucket, plus the
  // exact min, max and sum, for sending between processes.
  struct Sparse {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> buckets;
    std::uint64_t min = 0, max = 0, sum = 0;
  };
  Sparse to_sparse() const;
  void merge(const Sparse& sparse);

  const std::vector<std::uint64_t>& buckets() const { return counts_; }
  bool operator==(const Histogram& other) const;

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;  // wraps after ~584 years of nanoseconds summed
};

}  // namespace shoal::load
