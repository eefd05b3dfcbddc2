// Histogram: percentiles within 1 % of the exact ones, and merging.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "histogram.hpp"

namespace shoal::load {
namespace {

std::uint64_t exact_percentile(std::vector<std::uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

void expect_within_1pct(const Histogram& h, const std::vector<std::uint64_t>& values) {
  for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const double exact = static_cast<double>(exact_percentile(values, p));
    const double got = static_cast<double>(h.percentile(p));
    EXPECT_LE(std::abs(got - exact), 0.01 * exact + 0.5) << "p" << p << " exact " << exact << " got " << got;
  }
}

TEST(Histogram, BucketBoundsCoverEveryValueOnce) {
  for (std::uint64_t v : {0ull, 1ull, 255ull, 256ull, 257ull, 383ull, 384ull, 1000ull, 123456789ull,
                          (1ull << 40) + 12345, ~0ull}) {
    const auto i = Histogram::index_of(v);
    ASSERT_LT(i, Histogram::bucket_count);
    EXPECT_LE(Histogram::lowest_of(i), v);
    EXPECT_GE(Histogram::highest_of(i), v);
    // A bucket is at most 1/128 of its lower bound wide.
    EXPECT_LE(static_cast<double>(Histogram::highest_of(i) - Histogram::lowest_of(i)),
              static_cast<double>(Histogram::lowest_of(i)) / 128.0 + 1);
  }
  for (std::size_t i = 1; i < Histogram::bucket_count; ++i) {
    ASSERT_EQ(Histogram::lowest_of(i), Histogram::highest_of(i - 1) + 1) << i;
  }
}

TEST(Histogram, PercentilesWithinOnePercentOnRandomData) {
  std::mt19937_64 rng(42);
  // Latency-like: log-normal around 100 us, plus a uniform and a heavy tail.
  std::lognormal_distribution<double> lognormal(std::log(100'000.0), 1.0);
  std::uniform_int_distribution<std::uint64_t> uniform(0, 5'000'000);
  std::exponential_distribution<double> tail(1.0 / 2'000'000.0);
  for (int dist = 0; dist < 3; ++dist) {
    Histogram h;
    std::vector<std::uint64_t> values;
    for (int i = 0; i < 200'000; ++i) {
      std::uint64_t v = 0;
      if (dist == 0) v = static_cast<std::uint64_t>(lognormal(rng));
      if (dist == 1) v = uniform(rng);
      if (dist == 2) v = static_cast<std::uint64_t>(tail(rng));
      values.push_back(v);
      h.record(v);
    }
    SCOPED_TRACE(dist);
    EXPECT_EQ(h.count(), values.size());
    EXPECT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
    EXPECT_EQ(h.max(), *std::max_element(values.begin(), values.end()));
    expect_within_1pct(h, values);
  }
}

TEST(Histogram, MergeEqualsHistogramOfUnion) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> a_dist(std::log(50'000.0), 0.8);
  std::lognormal_distribution<double> b_dist(std::log(3'000'000.0), 1.5);
  Histogram a, b, all;
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 50'000; ++i) {
    const auto va = static_cast<std::uint64_t>(a_dist(rng));
    const auto vb = static_cast<std::uint64_t>(b_dist(rng));
    a.record(va);
    b.record(vb);
    all.record(va);
    all.record(vb);
    values.push_back(va);
    values.push_back(vb);
  }
  Histogram merged = a;
  merged.merge(b);
  EXPECT_TRUE(merged == all);
  expect_within_1pct(merged, values);

  // The sparse wire form merges the same.
  Histogram via_sparse;
  via_sparse.merge(a.to_sparse());
  via_sparse.merge(b.to_sparse());
  EXPECT_TRUE(via_sparse == all);
}

TEST(Histogram, EmptyAndReset) {
  Histogram h;
  EXPECT_EQ(h.percentile(99), 0u);
  EXPECT_EQ(h.min(), 0u);
  h.record(5);
  h.record_n(1000, 3);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.percentile(0), 5u);
  EXPECT_EQ(h.percentile(100), 1000u);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_TRUE(h == Histogram());
}

}  // namespace
}  // namespace shoal::load
