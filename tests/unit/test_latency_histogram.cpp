// LatencyHistogram: the buckets, the percentiles read from a snapshot, weights, and intervals.
#include <catch2/catch.hpp>
#include <cstdint>
#include <thread>
#include <vector>

#include "metrics/latency_histogram.hpp"

using shardline::metrics::LatencyHistogram;
namespace buckets = shardline::metrics::latency_buckets;

TEST_CASE("every value falls in the bucket that holds it, within 1/64 of its size",
          "[latency]") {
  std::vector<std::uint64_t> values;
  for (std::uint64_t v = 0; v < 5000; ++v) values.push_back(v);
  for (std::uint64_t v = 5000; v < (std::uint64_t{1} << 39); v = v * 3 / 2 + 7) values.push_back(v);
  std::size_t previous = 0;
  for (std::uint64_t v : values) {
    const std::size_t i = buckets::index(v);
    REQUIRE(i < buckets::kCount);
    REQUIRE(i >= previous);  // monotone in the value
    previous = i;
    REQUIRE(buckets::low(i) <= v);
    REQUIRE(v < buckets::low(i) + buckets::width(i));
    REQUIRE(buckets::width(i) * 64 <= std::max<std::uint64_t>(v, 64));
  }
  // Values below 64 ns are exact; the largest values share the last bucket.
  REQUIRE(buckets::width(buckets::index(63)) == 1);
  REQUIRE(buckets::index(~std::uint64_t{0}) == buckets::kCount - 1);
}

TEST_CASE("percentiles of a known distribution", "[latency]") {
  LatencyHistogram h;
  REQUIRE(h.snapshot().total() == 0);
  REQUIRE(h.snapshot().quantile(0.99) == 0);
  // 1..10000 us, once each.
  for (std::uint64_t us = 1; us <= 10000; ++us) h.record(us * 1000);
  const auto s = h.snapshot();
  REQUIRE(s.total() == 10000);
  REQUIRE(s.quantile(0.5) == Approx(5'000'000).epsilon(1.0 / 64));
  REQUIRE(s.quantile(0.99) == Approx(9'900'000).epsilon(1.0 / 64));
  REQUIRE(s.quantile(0.999) == Approx(9'990'000).epsilon(1.0 / 64));
  REQUIRE(s.min() == Approx(1000).epsilon(1.0 / 64));
  REQUIRE(s.max() == Approx(10'000'000).epsilon(1.0 / 64));
  REQUIRE(s.quantile(1.0) == s.max());
}

TEST_CASE("a weighted record counts as that many values", "[latency]") {
  LatencyHistogram h;
  h.record(100'000, 99);   // 99 messages written in one chunk, 100 us after the oldest arrived
  h.record(5'000'000, 1);  // one at 5 ms
  const auto s = h.snapshot();
  REQUIRE(s.total() == 100);
  REQUIRE(s.quantile(0.99) == Approx(100'000).epsilon(1.0 / 64));
  REQUIRE(s.quantile(0.995) == Approx(5'000'000).epsilon(1.0 / 64));
}

TEST_CASE("since() keeps only what was recorded after the earlier snapshot", "[latency]") {
  LatencyHistogram h;
  for (int i = 0; i < 1000; ++i) h.record(2'000'000);  // 2 ms before
  const auto before = h.snapshot();
  for (int i = 0; i < 10; ++i) h.record(50'000);  // 50 us after
  const auto interval = h.snapshot().since(before);
  REQUIRE(interval.total() == 10);
  REQUIRE(interval.max() == Approx(50'000).epsilon(1.0 / 64));
  REQUIRE(h.snapshot().since(h.snapshot()).total() == 0);
}

TEST_CASE("threads record concurrently without losing counts", "[latency]") {
  LatencyHistogram h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&h, t] {
      for (std::uint64_t i = 0; i < 100000; ++i) h.record(1000 + i % 64 + t, 2);
    });
  for (auto& t : threads) t.join();
  REQUIRE(h.snapshot().total() == 800000);
}
