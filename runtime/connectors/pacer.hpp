// Pacer: hands a source's frames on at a fixed rate (the file and stdin sources' `rate`).
// [source thread]
//
// Frame k (counted from the first frame handed on) is due at start + k / rate. Each call hands
// on, in one go, the frames already due, stamped with the time the first of them was due, then
// sleeps until the next one is: so the arrival stamps describe the offered load, not when the
// pipeline got round to the frames, and a pipeline that falls behind shows it in its latency
// instead of slowing the clock down. After each hand-on it tells the next handler that it has
// caught up, which sends partly filled batches to the shards (or, with one thread from read
// to write, writes the outputs) instead of holding them until the end of the read. (Linux
// wakes a sleeping thread up to 50 us late, its default timer slack: at high rates the frames
// go out in bursts of what fell due meanwhile, as from a network; at rates the pipeline only
// just keeps up with, in small groups, each as soon as it is due.)
#pragma once

#include <atomic>
#include <cstdint>

#include "connectors/source.hpp"

namespace shardline::connectors {

class Pacer final : public FrameHandler {
 public:
  /// `rate` frames per second (> 0); returns early from a call once `stop` is set.
  Pacer(FrameHandler& next, std::uint64_t rate, const std::atomic<bool>& stop)
      : next_(next), rate_(rate), stop_(stop) {}

  /// Returns early, with fewer than `n` taken, once `stop` is set.
  std::size_t on_frames(const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                        const FrameOrigin& origin) override;
  void on_caught_up() override { next_.on_caught_up(); }
  void on_bad_input(std::string_view what) override { next_.on_bad_input(what); }

 private:
  /// When frame k is due (metrics::now_ns clock).
  std::uint64_t due(std::uint64_t k) const;
  /// How many frames are due at `now`.
  std::uint64_t due_by(std::uint64_t now) const;
  /// Sleeps until `when`, waking every 100 ms to look at `stop`. False if it was set.
  bool sleep_until(std::uint64_t when) const;

  FrameHandler& next_;
  const std::uint64_t rate_;
  const std::atomic<bool>& stop_;
  std::uint64_t start_ns_ = 0;  ///< when the first frame was due (0: none yet)
  std::uint64_t sent_ = 0;      ///< frames handed on so far
};

}  // namespace shardline::connectors
