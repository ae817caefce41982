// Shard: one thread that owns the state of its key groups. [its own thread]
//
// The shard takes every batch queued in its inbox at once, resolves each message's state
// (creating it with the plugin's factory the first time a key is seen), calls the state
// computation once for the whole batch, and hands the outputs to its Worker. Partly filled
// outputs go out when the inbox is empty (or every 500 us under constant load). No other
// thread ever touches the shard's states, so there are no locks on the hot path; messages of
// one key reach it in the order their source read them, and it processes them in that order.
#pragma once

#include <memory>
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
  /// Sends every partly filled output, then counts `done`'s batches as done.
  void flush(std::vector<std::uint32_t>& done);

  Dataflow& flow_;
  std::uint32_t index_;
  std::vector<std::unique_ptr<state::StateTable>> tables_;
  Worker worker_;
  std::vector<void*> states_;
  std::thread thread_;
};

}  // namespace shardline::engine
