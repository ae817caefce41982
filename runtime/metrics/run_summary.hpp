// What a run did: each pipeline's counters and latency, each state's keys; and the lines that
// say so, the summary at the end of `shardline run` and the periodic line of `--stats`.
// [control thread]
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/latency_histogram.hpp"

namespace shardline::metrics {

struct PipelineSummary {
  std::string name;
  std::uint64_t in, out, errors, bad_input, lost, dead_letters_lost, dropped;
  std::uint64_t sink_resets;  ///< Sink::connections_reset()
  LatencySnapshot latency;  ///< source arrival -> sink write, per message written
};
struct StateSummary {
  std::string name;
  std::uint64_t keys;
  std::uint64_t overhead_bytes;
};
struct RunSummary {
  double seconds = 0;
  std::vector<PipelineSummary> pipelines;
  std::vector<StateSummary> states;
  std::string line() const;  ///< the one-line summary printed at the end of a run
  /// The pipelines' counters, each followed by its rate since `before` (same pipelines,
  /// `seconds` earlier), their latency since `before`, and the states' keys: the periodic line
  /// of `shardline run --stats`.
  std::string progress_line(const std::vector<PipelineSummary>& before, double seconds) const;

 private:
  /// `head`, then each pipeline's counters (with rates when `before` is given), then each
  /// pipeline's latency (since `before`, when given), then each state's keys.
  std::string counts(std::string_view head, const std::vector<PipelineSummary>* before,
                     double seconds) const;
};

}  // namespace shardline::metrics
