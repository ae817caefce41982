// Dataflow: the running shape of a topology, shared by every thread of the engine.
//
// It holds the per-pipeline plan (component pointers resolved once, never looked up per
// message), the router, each shard's inbox and each sink's queue, the batch and chunk pools,
// and the count of batches in flight that tells the control thread when everything has been
// processed. Built by the Engine on the control thread before any worker starts; afterwards
// only the queues, pools, counters and metrics change, each of which is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <shardline/boundary.hpp>

#include "engine/batch.hpp"
#include "engine/bounded_queue.hpp"
#include "engine/pipeline_errors.hpp"
#include "engine/shard_router.hpp"
#include "engine/sink_port.hpp"
#include "metrics/pipeline_metrics.hpp"
#include "topology/topology.hpp"

namespace shardline::engine {

class Shard;

/// Messages sent to one shard's inbox, and processed from it: what the shard still has queued,
/// and whether it gets on with it, for a reload waiting for the engine to drain. Counted once
/// per batch; each count on a cache line of its own (the senders write one, the shard the
/// other).
struct ShardLoad {
  alignas(64) std::atomic<std::uint64_t> sent{0};
  alignas(64) std::atomic<std::uint64_t> done{0};
};

struct StepPlan {
  std::string name;  ///< "plugin.component" as written in the topology
  bool stateful = false;
  Computation* computation = nullptr;
  StateComputation* state_computation = nullptr;
  Partition* partition = nullptr;
  std::string partition_name;
  std::size_t state = 0;     ///< index of the state (stateful steps)
  std::string state_name;    ///< as written in the topology (stateful steps)
  std::string factory_name;  ///< the state's factory, "plugin.component" (stateful steps)
  KeyKind key_kind = KeyKind::integer;  ///< of the partition (stateful steps)
  std::uint32_t route = 0;   ///< index among all stateful steps of all pipelines
  const TypeDesc* input = nullptr;
  const TypeDesc* output = nullptr;  ///< null: the step emits nothing
};

struct PipelinePlan {
  std::uint32_t index = 0;
  std::string name;
  Decoder* decoder = nullptr;
  std::string decoder_name;
  const TypeDesc* decoded = nullptr;
  std::vector<StepPlan> steps;
  Encoder* encoder = nullptr;  ///< null: no sink, or a discard sink without encoder
  std::string encoder_name;
  Framing sink_framing = Framing::length_prefixed;
  int sink = -1;               ///< index into Dataflow::sinks, -1 if none
  int start_after = -1;        ///< pipeline whose input must be fully processed first
  metrics::PipelineMetrics metrics;
  std::unique_ptr<PipelineErrors> errors;
  std::atomic<std::uint64_t> in_flight{0};  ///< this pipeline's batches queued or in process
  std::atomic<bool> source_done{false};
  /// Set while the run goes on when not all of this pipeline's input will be processed: its
  /// sink could not write any more (so its source stopped reading), or it never started.
  /// `cut_short_why`, written before by the same thread, says which. A pipeline waiting for it
  /// with start_after then does not start, as when the run stops. [set by the thread that
  /// wrote the sink, or by the pipeline's source thread; read by the sources waiting for it]
  std::atomic<bool> cut_short{false};
  std::string cut_short_why;
};

class Dataflow {
 public:
  Dataflow(std::uint32_t shards, std::uint32_t key_groups, std::uint32_t batch_size,
           std::uint32_t queue_batches, topology::Scheduling scheduling)
      : router(key_groups, shards),
        batch_size(batch_size),
        queue_batches(queue_batches),
        scheduling(scheduling),
        loads(std::make_unique<ShardLoad[]>(shards)) {
    for (std::uint32_t s = 0; s < shards; ++s)
      inboxes.push_back(std::make_unique<BoundedQueue<Batch*>>(queue_batches));
  }

  /// Queues a batch for a shard. Sources block while the inbox is full; shards never do.
  /// `wake` as in BoundedQueue::push: without it the sender must call inboxes[shard]->wake()
  /// when it runs out of input.
  void send(std::uint32_t shard, Batch* b, bool may_block, bool wake) {
    pipelines[b->pipeline].in_flight.fetch_add(1, std::memory_order_relaxed);
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    loads[shard].sent.fetch_add(b->messages.count(), std::memory_order_relaxed);
    inboxes[shard]->push(b, may_block, wake);
  }
  /// A shard finished a batch of `pipeline`, and has already sent on everything it produced.
  void batch_done(std::uint32_t pipeline) {
    PipelinePlan& p = pipelines[pipeline];
    const bool pipeline_idle = p.in_flight.fetch_sub(1) == 1;
    const bool engine_idle = in_flight_.fetch_sub(1) == 1;
    // The control thread waits only for a pipeline whose source has ended to drain (the end of
    // the run, start_after) and, during a reload, for the engine to drain. Waking it for
    // anything else would cost a wake-up of a sleeping thread after nearly every batch at a
    // light load. (Sequentially consistent: a waiter that saw work in flight after
    // source_done or drain_waiters_ was set is woken by the batch that ends it.)
    if ((pipeline_idle && p.source_done.load()) || (engine_idle && drain_waiters_.load() > 0))
      wake_control();
  }
  /// Brackets a wait of the control thread for in_flight() == 0 while sources still run.
  void begin_drain_wait() { drain_waiters_.fetch_add(1); }
  void end_drain_wait() { drain_waiters_.fetch_sub(1); }
  /// True once the pipeline's source has ended and all it read has been processed.
  bool drained(std::size_t pipeline) const {
    const PipelinePlan& p = pipelines[pipeline];
    return p.source_done.load() && p.in_flight.load() == 0;
  }
  std::uint64_t in_flight() const { return in_flight_.load(); }

  /// Wakes the control thread to re-check whether the run is over.
  void wake_control() {
    std::lock_guard lock(control_mutex);
    control_cv.notify_all();
  }

  std::deque<PipelinePlan> pipelines;  ///< a deque: plans hold atomics and never move
  ShardRouter router;
  std::uint32_t batch_size;
  std::uint32_t queue_batches;
  topology::Scheduling scheduling;  ///< applied by every engine thread as it starts
  std::uint32_t routes = 0;  ///< number of stateful steps over all pipelines
  std::vector<std::unique_ptr<BoundedQueue<Batch*>>> inboxes;
  std::unique_ptr<ShardLoad[]> loads;  ///< [shard]: what went through its inbox
  std::vector<std::unique_ptr<SinkPort>> sinks;
  /// The shard whose steps the source threads run themselves (topology::Wiring::
  /// sources_run_shard): their batches go to Shard::process_from_source() instead of its inbox,
  /// and its thread never starts. Null when every shard runs on its own thread.
  Shard* run_on_source = nullptr;
  Pool<Batch> batches{Reuse::oldest_first};
  Pool<EncodedChunk> chunks{Reuse::newest_first};

  std::mutex control_mutex;
  std::condition_variable control_cv;

 private:
  std::atomic<std::uint64_t> in_flight_{0};
  std::atomic<int> drain_waiters_{0};
};

}  // namespace shardline::engine
