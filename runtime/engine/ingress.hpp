// Ingress: where a source's frames enter the engine. [source thread]
#pragma once

#include <string>
#include <vector>

#include "connectors/source.hpp"
#include "engine/dataflow.hpp"
#include "engine/source_gate.hpp"
#include "engine/worker.hpp"

namespace shardline::engine {

/// Feeds one pipeline's frames into its source thread's Worker, through the gate a reload
/// closes, and keeps copies of the most recent frames for a reload's canary. [source thread]
///
/// Partly filled batches are sent once the source has handed over everything it has read
/// (on_caught_up(): once per read, e.g. per megabyte of a file, rather than per chunk of
/// frames), which saves most of the wake-ups of sleeping shards. The source stays inside the
/// gate until then, so a reload never finds messages waiting in a partly filled batch; a
/// pending reload makes it send and leave after the current chunk.
class Ingress final : public connectors::FrameHandler {
 public:
  static constexpr std::size_t kSampleFrames = 64;

  Ingress(Dataflow& flow, PipelinePlan& p, SourceGate& gate, std::string source)
      : worker_(flow, true), p_(p), gate_(gate), source_(std::move(source)) {}
  std::size_t on_frames(const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                        const connectors::FrameOrigin& origin) override {
    // Stamped by the source before the gate: time the frames wait here during a reload counts
    // as latency.
    if (!inside_) {
      gate_.enter();
      inside_ = true;
    }
    worker_.decode(p_, frames, n, arrived_ns, origin);
    keep_sample(frames, n);
    if (gate_.pause_requested()) leave();
    return n;
  }
  void on_caught_up() override {
    if (inside_) leave();
  }
  void on_bad_input(std::string_view what) override { p_.errors->bad_input(source_, what); }

  /// Whether any frame has been seen yet. [control thread, while the gate is closed]
  bool sampled() const { return !sample_.empty(); }
  /// The most recent frames, oldest first. [control thread, while the gate is closed]
  std::vector<std::vector<std::byte>> sample() const {
    std::vector<std::vector<std::byte>> out;
    for (std::size_t i = 0; i < sample_.size(); ++i)
      out.push_back(sample_[(next_ + i) % sample_.size()]);
    return out;
  }

 private:
  void leave() {
    worker_.flush();
    gate_.leave();
    inside_ = false;
  }

  void keep_sample(const Frame* frames, std::size_t n) {
    // Only the last kSampleFrames of each chunk: a few copies per chunk, none allocating once
    // the ring is full and its vectors have grown.
    for (std::size_t i = n > kSampleFrames ? n - kSampleFrames : 0; i < n; ++i) {
      if (sample_.size() < kSampleFrames) {
        sample_.emplace_back(frames[i].data, frames[i].data + frames[i].size);
        continue;
      }
      sample_[next_].assign(frames[i].data, frames[i].data + frames[i].size);
      next_ = (next_ + 1) % kSampleFrames;
    }
  }

  Worker worker_;
  bool inside_ = false;  ///< entered the gate, with batches possibly not sent yet
  PipelinePlan& p_;
  SourceGate& gate_;
  std::string source_;
  std::vector<std::vector<std::byte>> sample_;
  std::size_t next_ = 0;
};

}  // namespace shardline::engine
