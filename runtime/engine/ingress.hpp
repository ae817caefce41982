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
class Ingress final : public connectors::FrameHandler {
 public:
  static constexpr std::size_t kSampleFrames = 64;

  Ingress(Dataflow& flow, PipelinePlan& p, SourceGate& gate, std::string source)
      : worker_(flow, true), p_(p), gate_(gate), source_(std::move(source)) {}
  void on_frames(const Frame* frames, std::size_t n) override {
    gate_.enter();
    worker_.ingest(p_, frames, n);
    worker_.flush();
    keep_sample(frames, n);
    gate_.leave();
  }
  void on_bad_input(std::string_view what) override { p_.errors->bad_input(source_, what); }

  /// The most recent frames, oldest first. [control thread, while the gate is closed]
  std::vector<std::vector<std::byte>> sample() const {
    std::vector<std::vector<std::byte>> out;
    for (std::size_t i = 0; i < sample_.size(); ++i)
      out.push_back(sample_[(next_ + i) % sample_.size()]);
    return out;
  }

 private:
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
  PipelinePlan& p_;
  SourceGate& gate_;
  std::string source_;
  std::vector<std::vector<std::byte>> sample_;
  std::size_t next_ = 0;
};

}  // namespace shardline::engine
