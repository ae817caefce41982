#include "engine/shard.hpp"

#include "engine/thread_setup.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace shardline::engine {

Shard::Shard(Dataflow& flow, std::uint32_t index, const std::vector<StateSetup>& states)
    : flow_(flow), index_(index), worker_(flow, false) {
  for (const auto& s : states)
    tables_.push_back(std::make_unique<state::StateTable>(s.type, s.factory, s.create_unknown));
}

Shard::~Shard() { join(); }

void Shard::start() {
  thread_ = std::thread([this] {
    setup_thread("shard " + std::to_string(index_), flow_.scheduling);
    run();
  });
}

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

void Shard::run() {
  using Clock = std::chrono::steady_clock;
  // While more batches keep arriving, partly filled outputs are held back (a wake-up of the
  // sink or another shard per round costs more than the round) for at most max_hold; with
  // scheduling = "latency", not at all.
  const auto max_hold = flow_.scheduling == topology::Scheduling::latency
                            ? std::chrono::microseconds(0)
                            : std::chrono::microseconds(500);
  BoundedQueue<Batch*>& inbox = *flow_.inboxes[index_];
  std::vector<Batch*> taken;
  std::vector<std::uint32_t> done;  // pipelines of the batches processed since the last flush
  taken.reserve(flow_.queue_batches);
  auto flushed = Clock::now();
  for (;;) {
    if (!inbox.try_pop_all(taken)) {
      flush(done);
      if (!inbox.pop_all(taken)) break;
      flushed = Clock::now();
    }
    for (Batch* b : taken) {
      const std::size_t n = b->messages.count();  // (process() empties the batch)
      process(*b);
      flow_.loads[index_].done.fetch_add(n, std::memory_order_relaxed);
      done.push_back(b->pipeline);
      flow_.batches.release(b);
    }
    taken.clear();
    if (const auto now = Clock::now(); now - flushed >= max_hold) {
      flush(done);
      flushed = now;
    }
  }
}

void Shard::process_here(Batch* b) {
  here_.push_back(b);
  // Called from inside process() (its outputs routed back to this shard), the batch waits:
  // the Worker is in the middle of scattering the outputs it would overwrite.
  if (!draining_) drain_here();
}

void Shard::drain_here() {
  draining_ = true;
  for (std::size_t i = 0; i < here_.size(); ++i) {  // here_ may grow meanwhile
    process(*here_[i]);
    flow_.batches.release(here_[i]);
  }
  here_.clear();
  draining_ = false;
}

void Shard::flush_here() {
  for (;;) {
    draining_ = true;  // what the flush sends to this shard waits in here_
    worker_.flush();
    draining_ = false;
    if (here_.empty()) return;
    drain_here();  // which may leave new outputs partly filled: flushed in the next round
  }
}

void Shard::flush(std::vector<std::uint32_t>& done) {
  // Everything the batches produced is sent before they count as done, so the control
  // thread never sees an idle pipeline while outputs wait in a partly filled batch.
  worker_.flush();
  for (std::uint32_t p : done) flow_.batch_done(p);
  done.clear();
}

/// Why message i of `msgs` was rejected by a state that creates no state for undeclared keys.
/// A string key reaches the shard as its hash only: with a std::string message (often the key
/// itself, a word), its text is named too, so that the keys_file can be mended.
static std::string undeclared_key(const StepPlan& step, std::uint64_t key,
                                  const MessageBuffer& msgs, std::size_t i) {
  std::string k;
  if (step.key_kind == KeyKind::string) {
    k = "a string key (hash " + std::to_string(key);
    if (is_std_string(*msgs.type())) {
      constexpr std::size_t kShown = 60;
      const auto& text = *reinterpret_cast<const std::string*>(msgs.at(i));
      // (PipelineErrors::message_failed makes the line printable: control bytes escaped.)
      k += ", of message \"" + text.substr(0, kShown) + (text.size() > kShown ? "...\"" : "\"");
    }
    k += ")";
  } else {  // as the partition function returned it: signed, as the topology's `keys`
    k = "key " + std::to_string(static_cast<std::int64_t>(key));
  }
  return k + " is not declared in state '" + step.state_name +
         "' (its keys/keys_file) and the state has unknown_keys = \"reject\"";
}

void Shard::process(Batch& b) {
  PipelinePlan& p = flow_.pipelines[b.pipeline];
  const StepPlan& step = p.steps[b.step];
  state::StateTable& table = *tables_[step.state];
  const std::size_t n = b.messages.count();

  states_.resize(n);
  BatchErrors lookup(p, step.name, &b.messages);
  // With many keys each lookup misses the cache twice (index slot, then state): prefetch the
  // slots a few keys ahead and each state as soon as its address is known. The messages were
  // written by another core: start fetching them too, for the computation after this pass.
  constexpr std::size_t kAhead = 8;
  for (std::size_t i = 0; i < std::min(n, kAhead); ++i) table.prefetch(b.keys[i]);
  for (std::size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) table.prefetch(b.keys[i + kAhead]);
    __builtin_prefetch(b.messages.at(i));
    try {
      states_[i] = table.find(b.keys[i]);
      if (!states_[i] && table.creates_unknown()) {
        // A key seen for the first time: the state's factory, plugin code named if it crashes.
        const loader::PluginCall in(p.name, step.factory_name);
        states_[i] = table.create(b.keys[i]);
      }
      __builtin_prefetch(states_[i]);
      if (!states_[i]) lookup.add(i, undeclared_key(step, b.keys[i], b.messages, i));
    } catch (...) {
      lookup.add(i, "the state factory threw: " + current_exception_text());
    }
  }
  if (!lookup.failed().empty()) {
    // Rare: drop the failed messages and their state slots, keeping the others in order.
    const auto& failed = lookup.failed();
    b.messages.erase_sorted(failed.data(), failed.size());
    std::size_t w = 0, f = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (f < failed.size() && failed[f] == i) {
        ++f;
        continue;
      }
      states_[w++] = states_[i];
    }
  }

  MessageBuffer& out = worker_.step_output();
  out.set_type(step.output);
  BatchErrors errors(p, step.name, &b.messages);
  errors.run([&](ErrorSink& sink) {
    step.state_computation->run(b.messages.span(), states_.data(), out, sink);
  });
  b.messages.clear();
  if (step.output) worker_.advance(p, b.step + 1, b.arrived_ns);
}

}  // namespace shardline::engine
