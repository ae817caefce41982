// LatencyHistogram: a distribution of durations in nanoseconds, log-linear ("HDR-style"):
// exact below 64 ns, then 64 linear buckets per power of two, so a reported value is within
// 1/64 of the true one. Fixed buckets: recording allocates nothing and costs one relaxed atomic
// add, from any thread; any thread may take a LatencySnapshot at any time (e.g. the control
// thread for `--stats`) and read percentiles from it. Used by the engine (each pipeline's time
// from source arrival to sink write) and by the latency benchmark's harness.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace shardline::metrics {

/// The clock latencies are measured with (steady, in ns): the same on every thread.
inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

namespace latency_buckets {
inline constexpr unsigned kSubBits = 6;
inline constexpr unsigned kMaxBits = 40;  ///< values from 2^40 ns (18 minutes) on share a bucket
inline constexpr std::size_t kSub = std::size_t{1} << kSubBits;
inline constexpr std::size_t kCount = kSub + (kMaxBits - kSubBits) * kSub;

inline std::size_t index(std::uint64_t ns) {
  if (ns < kSub) return static_cast<std::size_t>(ns);
  const unsigned e = 63 - static_cast<unsigned>(std::countl_zero(ns));  // >= kSubBits
  if (e >= kMaxBits) return kCount - 1;
  const std::uint64_t sub = (ns >> (e - kSubBits)) - kSub;  // the kSubBits bits below the top
  return kSub + (e - kSubBits) * kSub + static_cast<std::size_t>(sub);
}
/// The smallest value of bucket i, and how many values it holds.
inline std::uint64_t low(std::size_t i) {
  if (i < kSub) return i;
  const std::size_t e = (i - kSub) / kSub + kSubBits;
  return (kSub + (i - kSub) % kSub) << (e - kSubBits);
}
inline std::uint64_t width(std::size_t i) {
  return i < kSub ? 1 : std::uint64_t{1} << ((i - kSub) / kSub);
}
}  // namespace latency_buckets

/// The counts of a LatencyHistogram at one moment, or between two moments (since()).
class LatencySnapshot {
 public:
  LatencySnapshot() = default;
  explicit LatencySnapshot(std::vector<std::uint64_t> counts) : counts_(std::move(counts)) {
    for (std::uint64_t c : counts_) total_ += c;
  }

  /// Number of recorded values.
  std::uint64_t total() const { return total_; }
  /// The value below which a fraction q (0..1) of the recorded values lie, in ns: the middle
  /// of the bucket holding it. 0 when nothing was recorded.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return middle(i);
    }
    return max();
  }
  /// The smallest and the largest recorded value (the middle of their buckets), in ns.
  double min() const {
    for (std::size_t i = 0; i < counts_.size(); ++i)
      if (counts_[i]) return middle(i);
    return 0;
  }
  double max() const {
    for (std::size_t i = counts_.size(); i-- > 0;)
      if (counts_[i]) return middle(i);
    return 0;
  }
  /// What was recorded after `earlier`, a snapshot of the same histogram.
  LatencySnapshot since(const LatencySnapshot& earlier) const {
    std::vector<std::uint64_t> d = counts_;
    for (std::size_t i = 0; i < d.size() && i < earlier.counts_.size(); ++i)
      d[i] -= earlier.counts_[i];
    return LatencySnapshot(std::move(d));
  }

 private:
  static double middle(std::size_t i) {
    return static_cast<double>(latency_buckets::low(i)) +
           static_cast<double>(latency_buckets::width(i) - 1) / 2.0;
  }
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
};

class LatencyHistogram {
 public:
  /// Records `count` values of `ns` nanoseconds. [any thread]
  void record(std::uint64_t ns, std::uint64_t count = 1) {
    counts_[latency_buckets::index(ns)].fetch_add(count, std::memory_order_relaxed);
  }
  /// The counts so far (relaxed reads: a value recorded meanwhile may or may not be in it).
  /// [any thread]
  LatencySnapshot snapshot() const {
    std::vector<std::uint64_t> counts(latency_buckets::kCount);
    for (std::size_t i = 0; i < counts.size(); ++i)
      counts[i] = counts_[i].load(std::memory_order_relaxed);
    return LatencySnapshot(std::move(counts));
  }

 private:
  std::array<std::atomic<std::uint64_t>, latency_buckets::kCount> counts_{};
};

}  // namespace shardline::metrics
