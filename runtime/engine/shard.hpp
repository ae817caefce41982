// Shard: one thread that owns the state of its key groups. [its own thread]
//
// The shard takes every batch queued in its inbox at once, resolves each message's state
// (creating it with the plugin's factory the first time a key is seen), calls the state
// computation once for the whole batch, and hands the outputs to its Worker. Partly filled
// outputs go out when the inbox is empty (or every 500 us under constant load). No other
// thread ever touches the shard's states, so there are no locks on the hot path; messages of
// one key reach it in the order their source read them, and it processes them in that order.
//
// With scheduling = "latency" and one shard, the source threads that feed it run the shard
// instead (process_from_source(), flush_from_source()) and the shard's own thread never
// starts: no hand-off or wake-up on the way from a read to a write (topology::Wiring::
// sources_run_shard). With several such sources they take turns under a lock, each running
// the shard for one call's worth of its own input: the states still see one thread at a time,
// and each source's messages in the order it read them. The lock is only ever waited for when
// two sources have input at the same moment.
#pragma once

#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/dataflow.hpp"
#include "engine/worker.hpp"
#include "state/state_table.hpp"

namespace shardline::engine {

/// What each shard needs to make its table of one state.
struct StateSetup {
  const TypeDesc* type;
  StateFactory* factory;
  bool create_unknown;
};

class Shard {
 public:
  Shard(Dataflow& flow, std::uint32_t index, const std::vector<StateSetup>& states);
  ~Shard();

  /// Pre-creates the state of a declared key. [control thread, before start()]
  void declare(std::size_t state, std::uint64_t key) { tables_[state]->declare(key); }
  void start();
  /// Processes a batch on the calling thread, once no other source thread is running the
  /// shard (Dataflow::run_on_source). [a source thread that runs the shard]
  void process_from_source(Batch* b) {
    std::lock_guard lock(here_mutex_);
    process_here(b);
  }
  /// Sends every output this source's batches left partly filled, and processes what that
  /// sends back to this shard. [a source thread that runs the shard, when it runs out of input]
  void flush_from_source() {
    std::lock_guard lock(here_mutex_);
    flush_here();
  }
  /// A batch the shard's own steps send back to it (a later stateful step): it waits until the
  /// current one is done, then is processed in turn. [the thread running the shard, inside
  /// process_from_source() or flush_from_source()]
  void process_here(Batch* b);
  /// Waits for the thread to end (after its inbox was closed). [control thread]
  void join();
  const state::StateTable& table(std::size_t state) const { return *tables_[state]; }
  /// For a hot reload, while the shard is idle and its sources paused. [control thread]
  state::StateTable& table(std::size_t state) { return *tables_[state]; }
  std::unique_ptr<state::StateTable> replace_table(std::size_t state,
                                                   std::unique_ptr<state::StateTable> table) {
    tables_[state].swap(table);
    return table;
  }

 private:
  void run();
  void process(Batch& b);
  /// Processes and releases every batch in here_, including those queued meanwhile.
  void drain_here();
  void flush_here();
  /// Sends every partly filled output, then counts `done`'s batches as done.
  void flush(std::vector<std::uint32_t>& done);

  Dataflow& flow_;
  std::uint32_t index_;
  std::vector<std::unique_ptr<state::StateTable>> tables_;
  Worker worker_;
  std::vector<void*> states_;
  std::mutex here_mutex_;     ///< held by the source thread running the shard
  std::vector<Batch*> here_;  ///< [here_mutex_] batches for process_here(), oldest first
  bool draining_ = false;     ///< [here_mutex_] inside drain_here() or flush_here(): new batches
                              ///< wait in here_
  std::thread thread_;
};

}  // namespace shardline::engine
