#include "engine/engine.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include "engine/ingress.hpp"
#include "engine/thread_setup.hpp"
#include "loader/plugin_call.hpp"

namespace shardline::engine {

namespace {
/// How long one plugin call may run before the monitor thread names it in a warning.
constexpr std::chrono::seconds kStuckCall{10};
/// How long a sink may be inside one write before the monitor thread warns, and how long it
/// then waits before it warns again about the same sink (a receiver reading slowly makes every
/// write long: one warning a minute, not one per write).
constexpr std::uint64_t kStuckSinkNs = 10'000'000'000;
constexpr std::chrono::seconds kStuckSinkRepeat{60};
}  // namespace

Engine::Engine(std::unique_ptr<topology::Wiring> wiring, EngineOptions options)
    : wiring_(std::move(wiring)), options_(options) {
  const topology::Topology& t = wiring_->topology;
  if (options_.watch) topology_text_ = file_text(t.file);
  flow_ = std::make_unique<Dataflow>(t.shards, t.key_groups, t.batch_size, t.queue_batches,
                                     t.scheduling);
  try {
    // Every input and output that cannot open is reported, not only the first (two ports
    // taken, a folder missing, a dead-letter file): one line each.
    std::vector<std::string> refused;
    build_plan(refused);

    std::vector<StateSetup> setups;
    for (const auto& s : wiring_->states) {
      state_names_.push_back(s.spec->name);
      setups.push_back({s.factory->state, static_cast<StateFactory*>(s.factory->impl.get()),
                        !s.spec->reject_unknown_keys});
    }
    for (std::uint32_t i = 0; i < t.shards; ++i)
      shards_.push_back(std::make_unique<Shard>(*flow_, i, setups));
    // One thread from read to write where the topology allows it (and the shard's thread is
    // then never started): no hand-off to a sleeping shard, whose wake-up sets the tail of the
    // latency on a busy machine (bench/RESULTS.md, "Latency").
    if (const auto run = wiring_->sources_run_shard(); !run.empty()) {
      flow_->run_on_source = shards_[0].get();
      for (std::size_t p : run)
        spdlog::info("pipeline '{}': its source thread runs the shard's steps and writes the sinks "
                     "(scheduling = \"latency\", one shard{})", wiring_->pipelines[p].spec->name,
                     run.size() > 1 ? ", taking turns with the other sources that do" : "");
    }
    for (std::size_t s = 0; s < wiring_->states.size(); ++s) {
      for (std::uint64_t key : wiring_->states[s].spec->keys) {
        try {
          shards_[flow_->router.shard(key)]->declare(s, key);
        } catch (...) {
          const auto& spec = *wiring_->states[s].spec;
          refused.push_back(spec.keys_pos.str() + ": state '" + spec.name + "': the factory "
                            "threw while creating declared key " + spec.key_text(key) + ": " +
                            current_exception_text());
          break;  // one line per state
        }
      }
    }
    for (std::size_t i = 0; i < wiring_->pipelines.size(); ++i) {
      const topology::PipelineSpec& spec = *wiring_->pipelines[i].spec;
      try {
        sources_.push_back(connectors::make_source(spec.source));
        ingresses_.push_back(std::make_unique<Ingress>(*flow_, flow_->pipelines[i], gate_,
                                                       sources_.back()->describe()));
      } catch (const std::runtime_error& e) {
        refused.push_back(spec.source.pos.str() + ": pipeline '" + spec.name + "': " + e.what());
      }
    }
    for (std::size_t i = 0; i < sinks_.size(); ++i) {
      const topology::PipelineSpec& spec = *wiring_->pipelines[sink_pipeline_[i]].spec;
      try {
        sinks_[i]->open();
      } catch (const std::runtime_error& e) {
        refused.push_back(spec.sink->pos.str() + ": pipeline '" + spec.name + "': " + e.what());
      }
    }
    if (!refused.empty()) {
      std::string lines;
      for (const std::string& line : refused) lines += (lines.empty() ? "" : "\n") + line;
      throw std::runtime_error(lines);
    }
    for (auto& sink : sinks_) sink->begin();  // only now that nothing else can refuse the start
  } catch (...) {
    // A run that never started leaves behind no dead-letter file it created.
    for (auto& p : flow_->pipelines)
      if (p.errors) p.errors->remove_unstarted();
    throw;
  }
}

Engine::~Engine() {
  request_stop();
  stop_monitor();
  for (auto& q : flow_->inboxes) q->close();
  for (auto& s : flow_->sinks) s->close();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  shards_.clear();
  flow_.reset();
}

void Engine::bind_components(PipelinePlan& p, const topology::Wiring& w, std::size_t pipeline) {
  const topology::WiredPipeline& wp = w.pipelines[pipeline];
  const topology::PipelineSpec& spec = *wp.spec;
  p.decoder = static_cast<Decoder*>(wp.decoder->impl.get());
  p.decoder_name = spec.source.decoder.str();
  p.decoded = wp.decoder->output;
  // The steps' routes stay: build_plan() numbers them once; a reload only rebinds the code.
  std::vector<std::uint32_t> routes;
  for (const auto& s : p.steps) routes.push_back(s.route);
  p.steps.clear();
  for (const auto& ws : wp.steps) {
    StepPlan s;
    s.name = ws.spec->component.str();
    s.stateful = ws.spec->stateful;
    s.input = ws.component->input;
    s.output = ws.component->output;
    if (s.stateful) {
      s.state_computation = static_cast<StateComputation*>(ws.component->impl.get());
      s.partition = static_cast<Partition*>(ws.partition->impl.get());
      s.partition_name = ws.spec->partition.str();
      s.state = ws.state;
      s.state_name = ws.spec->state;
      s.factory_name = w.states[ws.state].spec->factory.str();
      s.key_kind = ws.partition->key_kind;
      if (p.steps.size() < routes.size()) s.route = routes[p.steps.size()];
    } else {
      s.computation = static_cast<Computation*>(ws.component->impl.get());
    }
    p.steps.push_back(std::move(s));
  }
  p.encoder = wp.encoder ? static_cast<Encoder*>(wp.encoder->impl.get()) : nullptr;
  p.encoder_name = wp.encoder ? spec.sink->encoder->str() : "";
}

void Engine::build_plan(std::vector<std::string>& refused) {
  for (std::size_t i = 0; i < wiring_->pipelines.size(); ++i) {
    const topology::WiredPipeline& wp = wiring_->pipelines[i];
    const topology::PipelineSpec& spec = *wp.spec;
    PipelinePlan& p = flow_->pipelines.emplace_back();
    p.index = static_cast<std::uint32_t>(i);
    p.name = spec.name;
    bind_components(p, *wiring_, i);
    for (auto& s : p.steps)
      if (s.stateful) s.route = flow_->routes++;
    if (spec.sink) {
      p.sink = static_cast<int>(sinks_.size());
      sinks_.push_back(connectors::make_sink(*spec.sink));
      sink_pipeline_.push_back(i);
      // A sink that cannot write any more (a closed pipe, a full disk) would lose all the rest
      // of its pipeline's input: its source stops reading instead, leaving that input unread
      // (the other pipelines go on, but those waiting for it with start_after do not start).
      // [the thread that wrote]
      auto on_failed = [this, i, name = spec.name, sink = sinks_.back().get()] {
        if (output_abandoned_) return;  // a second interrupt: the run is ending anyway
        spdlog::error("pipeline '{}': its sink {} cannot write any more: its source stops "
                      "reading, so that no more input is taken only to be lost (what it had "
                      "read already is counted as lost)", name, sink->describe());
        PipelinePlan& plan = flow_->pipelines[i];
        plan.cut_short_why = "its sink " + sink->describe() + " could not write any more";
        plan.cut_short = true;  // before the source ends: seen by whoever sees it drained
        sources_[i]->stop();
      };
      flow_->sinks.push_back(std::make_unique<SinkPort>(
          *sinks_.back(), p.metrics, flow_->chunks, flow_->queue_batches,
          flow_->scheduling == topology::Scheduling::latency, spec.sink->framing,
          std::move(on_failed)));
      p.sink_framing = spec.sink->framing;
    }
    if (!spec.source.start_after.empty())
      for (std::size_t j = 0; j < wiring_->pipelines.size(); ++j)
        if (wiring_->pipelines[j].spec->name == spec.source.start_after) p.start_after = static_cast<int>(j);
    try {
      p.errors = std::make_unique<PipelineErrors>(spec.name, spec.on_error, spec.dead_letter,
                                                  p.metrics, [this](const std::string& why) { fail(why); });
    } catch (const std::runtime_error& e) {
      refused.push_back(spec.dead_letter_pos.str() + ": " + e.what());
    }
  }
}

void Engine::fail(const std::string& why) {
  {
    std::lock_guard lock(fail_mutex_);
    if (failed_.exchange(true)) return;
    failure_ = why;
  }
  request_stop();
}

void Engine::request_stop() {
  stop_requested_ = true;
  for (auto& s : sources_) s->stop();
  if (flow_) flow_->wake_control();
}

void Engine::abandon_output() {
  output_abandoned_ = true;
  for (auto& s : sinks_) s->abandon();
}

void Engine::run_source(std::size_t i) {
  PipelinePlan& p = flow_->pipelines[i];
  setup_thread("source " + p.name, flow_->scheduling);
  connectors::Source& source = *sources_[i];
  Ingress& ingress = *ingresses_[i];
  if (p.start_after >= 0) {
    const auto& first = flow_->pipelines[static_cast<std::size_t>(p.start_after)];
    spdlog::info("pipeline '{}': waiting for pipeline '{}' to be fully processed", p.name, first.name);
    {
      std::unique_lock lock(flow_->control_mutex);
      while (!stop_requested_ && !flow_->drained(static_cast<std::size_t>(p.start_after)))
        flow_->control_cv.wait_for(lock, std::chrono::milliseconds(50));
    }
    // What it waited for was not all processed: all its own input is still to be processed.
    std::string why;
    if (stop_requested_)
      why = "the run stopped while it waited for pipeline '" + first.name + "'";
    else if (first.cut_short)
      why = "pipeline '" + first.name + "' did not process all its input (" +
            first.cut_short_why + ")";
    if (!why.empty()) {
      spdlog::warn("pipeline '{}' did not start: {}; its source {} was not read", p.name, why,
                   source.describe());
      p.cut_short_why = "it did not start";
      p.cut_short = true;
    }
  }
  try {
    if (!stop_requested_ && !p.cut_short) source.run(ingress);
  } catch (const std::exception& e) {
    fail("pipeline '" + p.name + "' source " + source.describe() + ": " + e.what());
  }
  ingress.on_caught_up();  // sends anything still held, however run() ended
  p.source_done = true;
  sources_running_.fetch_sub(1);
  flow_->wake_control();
}

void Engine::run_sink(std::size_t i) {
  connectors::Sink& sink = *sinks_[i];
  SinkPort& port = *flow_->sinks[i];
  PipelinePlan& p = flow_->pipelines[sink_pipeline_[i]];
  setup_thread("sink " + p.name, flow_->scheduling);
  port.drain();  // with scheduling = "latency" the workers write, and nothing is queued
  bool lost = port.lost();
  try {
    sink.close();
  } catch (const std::exception& e) {
    spdlog::error("pipeline '{}' sink {}: {}", p.name, sink.describe(), e.what());
    lost = true;
  }
  if (lost) output_lost_ = true;
}

void Engine::monitor(std::chrono::steady_clock::time_point started,
                     metrics::RunSummary progress) {
  ::pthread_setname_np(::pthread_self(), "monitor");
  const bool stats = options_.stats_every.count() > 0;
  auto progress_at = started;                          // when the last stats line was taken
  auto progress_due = started + options_.stats_every;  // on a fixed grid: no drift
  auto stuck_check_due = started;
  using Clock = std::chrono::steady_clock;
  std::vector<std::optional<Clock::time_point>> sink_warned(flow_->sinks.size());  // last warning
  for (;;) {
    {
      std::unique_lock lock(monitor_mutex_);
      const auto wake = stats ? std::min(stuck_check_due, progress_due) : stuck_check_due;
      if (monitor_cv_.wait_until(lock, wake, [&] { return monitor_stop_; })) return;
    }
    if (const auto now = std::chrono::steady_clock::now(); now >= stuck_check_due) {
      // A plugin call that never returns stalls its pipeline without any error: say so.
      stuck_check_due = now + std::chrono::seconds(1);
      if (loader::stuck_plugin_call(kStuckCall)) {
        spdlog::warn("plugin code has not returned for {} s (an endless loop, or a wait that never "
                     "ends?); its pipeline makes no progress meanwhile:", kStuckCall.count());
        loader::report_plugin_calls();
      }
      // A receiver that is connected but does not read stalls its pipelines without an error
      // (one that is gone is logged by its sink as it reconnects): say so.
      for (std::size_t i = 0; i < flow_->sinks.size(); ++i) {
        const std::uint64_t ns = flow_->sinks[i]->blocked_ns();
        if (ns >= kStuckSinkNs && (!sink_warned[i] || now - *sink_warned[i] >= kStuckSinkRepeat)) {
          sink_warned[i] = now;
          spdlog::warn("{} has been inside one write for {:.0f} s (a receiver that reads slowly "
                       "or not at all, or is gone): its pipeline waits, and so does every "
                       "pipeline whose messages share its shards",
                       sink_named(i), static_cast<double>(ns) / 1e9);
        }
      }
    }
    if (const auto now = std::chrono::steady_clock::now(); stats && now >= progress_due) {
      const auto before = std::exchange(progress.pipelines, pipeline_counters());
      progress.states = state_counts(false);
      spdlog::info("{}", progress.progress_line(
                             before, std::chrono::duration<double>(now - progress_at).count()));
      progress_at = now;
      while (progress_due <= now) progress_due += options_.stats_every;
    }
  }
}

std::string Engine::sink_named(std::size_t i) const {
  return "sink " + sinks_[i]->describe() + " of pipeline '" +
         flow_->pipelines[sink_pipeline_[i]].name + "'";
}

void Engine::stop_monitor() {
  {
    std::lock_guard lock(monitor_mutex_);
    monitor_stop_ = true;
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

int Engine::run() {
  const auto started = std::chrono::steady_clock::now();
  // The counters at the last stats line: taken before any thread starts, so that the first
  // interval counts (and times) everything, however soon input arrives.
  metrics::RunSummary progress{0, pipeline_counters(), {}};
  for (std::size_t i = 0; i < sinks_.size(); ++i) threads_.emplace_back([this, i] { run_sink(i); });
  if (!flow_->run_on_source)
    for (auto& s : shards_) s->start();
  for (std::size_t i = 0; i < sources_.size(); ++i)
    if (const std::string at = sources_[i]->listens_on(); !at.empty())
      spdlog::info("pipeline '{}' source {}: listening on {}", flow_->pipelines[i].name,
                   sources_[i]->describe(), at);
  sources_running_ = sources_.size();
  for (std::size_t i = 0; i < sources_.size(); ++i)
    threads_.emplace_back([this, i] { run_source(i); });
  monitor_ = std::thread([this, started, progress] { monitor(started, progress); });

  if (options_.watch) {
    std::vector<reload::FileWatcher::Watched> files;
    for (const auto& [alias, plugin] : wiring_->plugins)
      files.push_back({plugin->file(), "plugin '" + alias + "'",
                       [this, alias = alias] { request_reload(alias, true); }});
    files.push_back({wiring_->topology.file, "the topology",
                     [this] {
                       topology_edited_ = true;  // checked by the control thread, which owns wiring_
                       flow_->wake_control();
                     },
                     "the run goes on with the topology it started with, and a new file there "
                     "will be checked"});
    try {
      watcher_ = std::make_unique<reload::FileWatcher>(std::move(files));
    } catch (const std::exception& e) {  // e.g. the inotify limits: run on, without watching
      spdlog::error("--watch: {}; running without it (send SIGHUP to reload every plugin)",
                    e.what());
    }
  }
  for (;;) {
    serve_reloads();
    // Polls too, in case a wake-up raced with the check (cheap: a few times a second at most).
    std::unique_lock lock(flow_->control_mutex);
    if (sources_running_.load() == 0 && flow_->in_flight() == 0) break;
    flow_->control_cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  stop_monitor();
  watcher_.reset();
  {
    std::lock_guard lock(reload_mutex_);
    for (auto& r : reload_requests_) {
      ReloadReport late;
      late.message = "reload of " + (r.alias == "*" ? "every plugin" : "plugin '" + r.alias + "'") +
                     " not done: the run has ended";
      r.done.set_value(std::move(late));
    }
    reload_requests_.clear();
  }
  for (auto& q : flow_->inboxes) q->close();
  for (auto& s : shards_) s->join();
  for (auto& s : flow_->sinks) s->close();
  for (auto& t : threads_) t.join();
  threads_.clear();

  for (auto& p : flow_->pipelines) {
    p.errors->flush_held_back();
    if (p.errors->dead_letter_failed()) output_lost_ = true;
  }
  summary_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  summary_.pipelines = pipeline_counters();
  summary_.states = state_counts(true);
  // A run that lost or refused something says so at warn, so `--log-level warn` still shows it.
  const bool troubled = failed_ || std::any_of(summary_.pipelines.begin(), summary_.pipelines.end(),
                                               [](const metrics::PipelineSummary& p) {
                                                 return p.errors || p.bad_input || p.lost ||
                                                        p.dead_letters_lost || p.sink_resets;
                                               });
  spdlog::log(troubled ? spdlog::level::warn : spdlog::level::info, "{}", summary_.line());
  if (failed_) {
    spdlog::error("stopped: {}", failure_);
    return exit_stopped_on_error;
  }
  return output_lost_ ? exit_output_lost : exit_ok;
}

std::string Engine::file_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<metrics::PipelineSummary> Engine::pipeline_counters() const {
  std::vector<metrics::PipelineSummary> out;
  for (const auto& p : flow_->pipelines) {
    using M = metrics::PipelineMetrics;
    out.push_back({p.name, M::get(p.metrics.in), M::get(p.metrics.out), M::get(p.metrics.errors),
                   M::get(p.metrics.bad_input), M::get(p.metrics.lost),
                   M::get(p.metrics.dead_letters_lost), M::get(p.metrics.dropped),
                   p.sink >= 0 ? sinks_[static_cast<std::size_t>(p.sink)]->connections_reset() : 0,
                   p.metrics.latency.snapshot()});
  }
  return out;
}

std::vector<metrics::StateSummary> Engine::state_counts(bool overhead) const {
  std::lock_guard lock(tables_mutex_);
  std::vector<metrics::StateSummary> out;
  for (std::size_t s = 0; s < state_names_.size(); ++s) {
    metrics::StateSummary st{state_names_[s], 0, 0};
    for (const auto& shard : shards_) {
      st.keys += shard->table(s).keys();
      if (overhead) st.overhead_bytes += shard->table(s).overhead_bytes();
    }
    out.push_back(st);
  }
  return out;
}

}  // namespace shardline::engine
