// Counters of one pipeline, updated once per batch by source and shard threads (relaxed
// atomics: they are statistics, not synchronisation) and read by the control thread; and its
// latency, recorded once per chunk of output written.
#pragma once

#include <atomic>
#include <cstdint>

#include "metrics/latency_histogram.hpp"

namespace shardline::metrics {

struct PipelineMetrics {
  std::atomic<std::uint64_t> in{0};         ///< messages decoded from the source
  std::atomic<std::uint64_t> dropped{0};    ///< frames the decoder chose to drop (nullopt)
  std::atomic<std::uint64_t> out{0};        ///< messages encoded for the sink
  std::atomic<std::uint64_t> errors{0};     ///< messages a plugin function failed on
  std::atomic<std::uint64_t> bad_input{0};  ///< unframeable input (oversized, truncated)
  std::atomic<std::uint64_t> lost{0};       ///< encoded messages a sink had to abandon
  std::atomic<std::uint64_t> dead_letters_lost{0};  ///< failed messages the dead letter missed
  /// From the moment the source read a message to the moment its output was written to the
  /// sink (or reached a discard sink). Stamps travel with batches and chunks, not messages:
  /// each message counts with the arrival of the oldest message written with it, so the
  /// figures are upper bounds, at the cost of one clock read per chunk read and per chunk
  /// written.
  LatencyHistogram latency;

  void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
    if (n) counter.fetch_add(n, std::memory_order_relaxed);
  }
  static std::uint64_t get(const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  }
};

}  // namespace shardline::metrics
