// SinkPort: how the engine's threads hand encoded output to a sink. [any engine thread]
//
// With scheduling = "throughput" a worker queues each full (or flushed) chunk for the sink's
// own thread, which writes it while the shards go on computing. With "latency" the worker that
// filled the chunk writes it itself, the workers taking turns under a lock: one hand-off, and
// one wake-up of a sleeping thread, less on every result's path, at the price of shards
// waiting for the socket under full load (bench/RESULTS.md). Either way the queue or the lock
// is the backpressure, and once the sink has given up (abandon(): a second Ctrl-C; or a write
// error it cannot recover from: a closed pipe, a full disk) every chunk it is handed is
// counted as lost instead of written; of the chunk it gave up in, the frames that reached the
// output whole count as written and the rest as lost. A sink that gives up by itself is
// reported once (`on_failed`), so that its pipeline stops taking input only to lose it.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>

#include "connectors/frame_splitter.hpp"
#include "connectors/sink.hpp"
#include "engine/batch.hpp"
#include "engine/bounded_queue.hpp"
#include "metrics/pipeline_metrics.hpp"

namespace shardline::engine {

class SinkPort {
 public:
  /// `direct`: workers write themselves instead of queueing for the sink's thread. `framing`:
  /// how the chunks' frames are delimited (one frame per message). `on_failed`: called once,
  /// by the thread that wrote, when the sink first gives up.
  SinkPort(connectors::Sink& sink, metrics::PipelineMetrics& metrics, Pool<EncodedChunk>& pool,
           std::size_t queue_chunks, bool direct, Framing framing,
           std::function<void()> on_failed)
      : sink_(sink),
        metrics_(metrics),
        pool_(pool),
        queue_(queue_chunks),
        direct_(direct),
        framing_(framing),
        on_failed_(std::move(on_failed)) {}

  /// Hands over a chunk, which goes back to the pool once written. Blocks while the queue is
  /// full or, when writing directly, while the sink writes. [source and shard threads]
  void deliver(EncodedChunk* c) {
    if (!direct_) return queue_.push(c, true);
    std::lock_guard lock(mutex_);
    write(c);
  }

  /// Writes the queued chunks until close() and the queue is empty. One at a time: a write may
  /// wait long for a receiver, and the chunks queued meanwhile, with the one being written,
  /// are all the sink holds (queue_batches + 1). [sink thread]
  void drain() {
    EncodedChunk* c = nullptr;
    while (queue_.pop_one(c)) {
      std::lock_guard lock(mutex_);
      write(c);
    }
  }

  /// Makes drain() return once the queue is empty. [control thread]
  void close() { queue_.close(); }

  /// Whether the sink gave up on some output. [sink thread, after drain()]
  bool lost() {
    std::lock_guard lock(mutex_);
    return abandoned_;
  }

  /// How long the sink has been inside one write, in ns (0 when it is not writing): a
  /// receiver that does not read, or is gone while the sink reconnects. [any thread]
  std::uint64_t blocked_ns() const {
    const std::uint64_t since = writing_since_ns_.load(std::memory_order_relaxed);
    if (since == 0) return 0;
    const std::uint64_t now = metrics::now_ns();
    return now > since ? now - since : 0;
  }

 private:
  /// With mutex_ held.
  void write(EncodedChunk* c) {
    const std::size_t size = c->bytes.size();
    writing_since_ns_.store(metrics::now_ns(), std::memory_order_relaxed);
    const std::size_t written = abandoned_ ? 0 : sink_.write(c->bytes.data(), size);
    writing_since_ns_.store(0, std::memory_order_relaxed);
    if (written < size) {
      if (!abandoned_) on_failed_();
      abandoned_ = true;
      const std::uint64_t delivered = connectors::whole_frames(framing_, c->bytes.data(), written);
      metrics_.add(metrics_.lost, c->messages - std::min(c->messages, delivered));
    } else if (c->messages) {
      metrics_.latency.record(metrics::now_ns() - c->arrived_ns, c->messages);
    }
    pool_.release(c);
  }

  connectors::Sink& sink_;
  metrics::PipelineMetrics& metrics_;
  Pool<EncodedChunk>& pool_;
  BoundedQueue<EncodedChunk*> queue_;
  const bool direct_;
  const Framing framing_;
  const std::function<void()> on_failed_;
  std::mutex mutex_;        ///< one writer at a time
  bool abandoned_ = false;  ///< [mutex_]
  std::atomic<std::uint64_t> writing_since_ns_{0};  ///< metrics::now_ns() of the write under way
};

}  // namespace shardline::engine
