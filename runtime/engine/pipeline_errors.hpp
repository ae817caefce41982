// PipelineErrors: what happens when plugin code fails on a message, or input cannot be framed.
// [any thread: called from source and shard threads]
//
// Every failure is counted. Then, per the pipeline's on_error policy:
//   skip         log a line naming the pipeline, the step and the error (at most one line per
//                step per second, with a count of the lines held back), and carry on;
//   dead_letter  also append the failure, with the message's bytes, to the dead-letter file;
//   stop         log the error and stop the run (in-flight messages are still drained), which
//                then exits with status 3.
// Failures are rare, so a mutex here costs nothing on the hot path.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "metrics/pipeline_metrics.hpp"
#include "topology/topology.hpp"

namespace shardline::engine {

/// `text` as one printable line of valid UTF-8: control characters (tabs and newlines
/// included) and bytes that are not UTF-8 become \xNN. A plugin's error text often quotes the
/// bad input, which may be any bytes; logs and the dead-letter file must stay readable, one
/// record per line. [any thread]
std::string printable(std::string_view text);

class PipelineErrors {
 public:
  using StopFn = std::function<void(const std::string& why)>;
  PipelineErrors(std::string pipeline, topology::ErrorPolicy policy,
                 const std::filesystem::path& dead_letter, metrics::PipelineMetrics& metrics,
                 StopFn stop);
  ~PipelineErrors();

  /// A plugin function (decoder, computation, partition, state factory or computation,
  /// encoder) failed on one message. `payload` is the message's bytes when they are known;
  /// `where`, for a decoder, where the frame was read ("file in.txt, line 12").
  void message_failed(std::string_view step, std::string_view what,
                      std::span<const std::byte> payload, std::string_view where = {});
  /// Input a source could not frame.
  void bad_input(std::string_view source, std::string_view what);
  /// Logs the last of the lines held back since the last one shown, with their number, for
  /// each kind of error. [control thread, at the end of the run]
  void flush_held_back();
  /// The run never started: closes the dead-letter file, and removes it if this object created
  /// it. [control thread, while the engine is being built]
  void remove_unstarted();
  /// Whether a failed message's bytes are kept (on_error = "dead_letter"): only then is it
  /// worth saving a message whose bytes are not at hand. [any thread]
  bool keeps_payloads() const { return policy_ == topology::ErrorPolicy::dead_letter; }
  /// Whether some failed message could not be written to the dead-letter file (then counted
  /// as lost). [any thread]
  bool dead_letter_failed() {
    std::lock_guard lock(mutex_);
    return dead_letter_failed_;
  }

 private:
  void log_limited(const std::string& where, const std::string& line);
  /// Applies the stop policy, or logs (rate-limited); false if the run is stopping.
  bool report(const std::string& where, const std::string& line);

  std::string pipeline_;
  topology::ErrorPolicy policy_;
  metrics::PipelineMetrics& metrics_;
  StopFn stop_;
  std::mutex mutex_;
  std::FILE* dead_letter_ = nullptr;
  std::string dead_letter_path_;
  bool created_ = false;  ///< the dead-letter file did not exist before [control thread]
  bool dead_letter_failed_ = false;  ///< [mutex_]
  bool stopping_ = false;            ///< on_error = "stop" has stopped the run [mutex_]
  struct Limiter {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t held_back = 0;
    std::string last_held_back;  ///< the most recent line held back
  };
  std::map<std::string, Limiter, std::less<>> limiters_;
};

}  // namespace shardline::engine
