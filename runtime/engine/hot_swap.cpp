// Hot reload: swap a rebuilt plugin into the running engine. [control thread]
//
//   1. load the new build from a shadow copy beside the old one (ELF and ABI checked first;
//      loaded once in a forked copy of the process before, so that a crash ends only the copy);
//   2. wire the running topology again with it: every component still exported, every type
//      still matching; decide for each state whether it is kept, migrated, reset or blocked;
//   3. pause the sources at the gate and wait until nothing is in flight: every message read
//      before this point has been processed by the old code, and nothing after it has started
//      (waited for as long as messages are being processed: a backlog drains, however slowly);
//   4. canary: run the most recent frames of each pipeline through the old and the new
//      components against copies of their keys' state (results discarded), first in a forked
//      copy of the process (refuse if the new version crashes it), then here (refuse if the new
//      version fails on more of them than the old one);
//   5. migrate states into new tables (old tables untouched, so a throwing restore() aborts
//      cleanly), then commit: retype or replace the tables, rebind the pipelines' components;
//   6. resume the sources; release the old version and check that its library is unmapped.
// Any failure before the commit leaves the old version running with its state untouched.
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <new>
#include <optional>

#include "connectors/machine_checks.hpp"
#include "engine/engine.hpp"
#include "engine/ingress.hpp"
#include "loader/plugin_call.hpp"
#include "reload/reload_plan.hpp"

namespace shardline::engine {

namespace {

using Clock = std::chrono::steady_clock;
/// A watcher's reload refused because the pipelines did not pause is tried again after
/// kFirstRetry, then twice as long each time, up to kLastRetry.
constexpr std::chrono::seconds kFirstRetry{5}, kLastRetry{60};
/// How long the trial of a migration in a copy of the host may take: every key of every
/// migrated state is carried over there, while the sources are paused.
constexpr std::chrono::seconds kMigrationPatience{30};
/// A reload waits for the sources to pause, then for the engine to drain, as long as messages
/// keep being processed (a backlog behind a slow plugin drains, however slowly): it gives up
/// after kStandstill in which nothing was, or after kLongestWait in all.
constexpr std::chrono::seconds kStandstill{5}, kLongestWait{120};
/// How long a reload waits for the file of a plugin it takes in with another to be written:
/// past it, that plugin is left for the watcher, which reloads it once it has settled.
constexpr std::chrono::seconds kPartnerSettle{10};

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

/// "a", "a and b", "a, b and c".
std::string listed(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i)
    out += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + items[i];
  return out;
}

bool mapped(const std::filesystem::path& shadow) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const std::string name = shadow.filename().string();
  while (std::getline(maps, line))
    if (line.find(name) != std::string::npos) return true;
  return false;
}

/// Whether pipeline `i` would run any code of the new builds: a component (or a state's factory)
/// of `fresh` that is not the running one. A plugin that is not reloaded keeps its components.
bool runs_new_code(const topology::Wiring& running, const topology::Wiring& fresh, std::size_t i) {
  const topology::WiredPipeline &was = running.pipelines[i], &now = fresh.pipelines[i];
  if (was.decoder != now.decoder || was.encoder != now.encoder) return true;
  for (std::size_t k = 0; k < was.steps.size(); ++k) {
    const topology::WiredStep &a = was.steps[k], &b = now.steps[k];
    if (a.component != b.component || a.partition != b.partition) return true;
    if (a.spec->stateful && running.states[a.state].factory != fresh.states[b.state].factory)
      return true;
  }
  return false;
}

/// How the engine gets on while a reload waits for it to pause and drain: a backlog drains,
/// however slowly, while a blocked sink or a plugin call that does not return moves nothing.
/// [control thread]
class Progress {
 public:
  explicit Progress(const Dataflow& flow) : flow_(flow), at_(Clock::now()), now_(counts()) {}

  /// Whether any message was decoded or processed by a shard since the last look (or since
  /// this was made); the interval is the one why() speaks of.
  bool moved() {
    before_ = std::exchange(now_, counts());
    const auto t = Clock::now();
    seconds_ = std::chrono::duration<double>(t - std::exchange(at_, t)).count();
    return now_ != before_;
  }
  /// Each shard with messages queued, and how fast it got on with them over the last interval:
  /// "shard 0 still has 9000 messages queued and processes about 480/s", "shard 1 has processed
  /// none of its 4096 queued messages for 5 s"; "; "-separated. Or that no shard has any.
  std::string why() const {
    std::string out;
    for (std::uint32_t s = 0; s < flow_.router.shards(); ++s) {
      // (done first: a batch is counted as sent before a shard can take it)
      const std::uint64_t done = flow_.loads[s].done.load(std::memory_order_relaxed);
      const std::uint64_t queued = flow_.loads[s].sent.load(std::memory_order_relaxed) - done;
      if (queued == 0) continue;
      const auto rate = static_cast<double>(now_[s] - before_[s]) / seconds_;
      out += (out.empty() ? "" : "; ") +
             (rate == 0 ? fmt::format("shard {} has processed none of its {} queued messages for "
                                      "{:.0f} s", s, queued, seconds_)
                        : fmt::format("shard {} still has {} messages queued and processes about "
                                      "{:.{}f}/s", s, queued, rate, rate < 10 ? 1 : 0));
    }
    return out.empty() ? "no shard has a message queued (a source is still handing on what it "
                         "read: a decoder or a step on its thread)"
                       : out;
  }

 private:
  /// [shard] messages processed, then the messages every pipeline decoded (a source's own
  /// progress: with one shard run by the sources, the only one).
  std::vector<std::uint64_t> counts() const {
    std::vector<std::uint64_t> out;
    for (std::uint32_t s = 0; s < flow_.router.shards(); ++s)
      out.push_back(flow_.loads[s].done.load(std::memory_order_relaxed));
    std::uint64_t decoded = 0;
    for (const auto& p : flow_.pipelines) decoded += metrics::PipelineMetrics::get(p.metrics.in);
    out.push_back(decoded);
    return out;
  }

  const Dataflow& flow_;
  Clock::time_point at_;
  std::vector<std::uint64_t> now_, before_;
  double seconds_ = 0;
};

/// Memory for one value of `type`, and its release (the alignment new/delete must agree on).
void* allocate_value(const TypeDesc* type) {
  return ::operator new(type->size, std::align_val_t(std::max<std::size_t>(type->align, 16)));
}
void free_value(const TypeDesc* type, void* p) {
  ::operator delete(p, std::align_val_t(std::max<std::size_t>(type->align, 16)));
}

/// A state object made for the canary: destroyed with its own type's destroy.
struct TempState {
  const TypeDesc* type;
  void* p;
};

/// Runs a sample of frames through one version of a pipeline's components, with states that
/// are (States::copies) copies of the live ones, (fresh) new ones from the factories, as for
/// keys never seen, or (live) the live ones themselves wherever the new version keeps them as
/// they are: only in a copy of the host, where changing them is harmless, and the only way to
/// try a state that cannot be copied (not trivially copyable, no save()). Collects errors
/// instead of reporting them.
class Canary {
 public:
  enum class States { copies, fresh, live };
  /// One message's failure: "decoder 'x.line': what it said".
  struct Error {
    std::string text;
    /// It failed where no state has been involved yet (the decoder, the steps and partition
    /// function before the first state): the states the run was given make no difference.
    bool before_state;
  };
  Canary(const ShardRouter& router, const std::vector<std::unique_ptr<Shard>>& shards,
         States states)
      : router_(router), shards_(shards), states_(states) {}
  ~Canary() {
    for (auto& t : temps_) {
      t.type->destroy(t.p);
      free_value(t.type, t.p);
    }
  }

  /// Errors of running `frames` through `p` (a plan bound to one version); state of step k
  /// comes as a copy of the live state converted to `state_types[k]` built by `factories[k]`.
  std::vector<Error> run(const PipelinePlan& p,
                               const std::vector<std::vector<std::byte>>& frames,
                               const std::vector<const TypeDesc*>& state_types,
                               const std::vector<StateFactory*>& factories) {
    errors_.clear();
    before_state_ = true;
    std::vector<Frame> views;
    for (const auto& f : frames) views.push_back({f.data(), static_cast<std::uint32_t>(f.size())});
    MessageBuffer a(p.decoded), b;
    ErrorSink sink(&Canary::on_error, this);
    in_plugin(p, "decoder", p.decoder_name,
              [&] { p.decoder->decode(views.data(), views.size(), a, sink); });
    MessageBuffer* in = &a;
    MessageBuffer* out = &b;
    for (const StepPlan& s : p.steps) {
      out->set_type(s.output);
      if (!s.stateful) {
        in_plugin(p, "step", s.name, [&] { s.computation->run(in->span(), *out, sink); });
      } else {
        // A message whose partition function failed is dropped, as Worker::route drops it;
        // so is one whose state the factory could not make, as in Shard::process.
        std::vector<std::uint64_t> keys(in->count());
        unkeyed_.assign(in->count(), 0);
        ErrorSink keying(&Canary::on_partition_error, this);
        in_plugin(p, "partition function", s.partition_name,
                  [&] { s.partition->keys(in->span(), keys.data(), keying); });
        std::vector<void*> states;
        std::vector<std::size_t> failed;
        step_ = "step '" + s.name + "'";  // for a state factory's failure
        before_state_ = false;
        for (std::size_t i = 0; i < keys.size(); ++i) {
          void* state = unkeyed_[i] ? nullptr
                                    : copy_state(s.state, keys[i], state_types[s.state],
                                                 factories[s.state]);
          if (state)
            states.push_back(state);
          else
            failed.push_back(i);
        }
        if (!failed.empty()) in->erase_sorted(failed.data(), failed.size());
        in_plugin(p, "step", s.name,
                  [&] { s.state_computation->run(in->span(), states.data(), *out, sink); });
      }
      in->clear();
      std::swap(in, out);
      if (!s.output) break;
    }
    if (p.encoder && in->type()) {
      std::vector<std::byte> bytes;
      EncodedOutput encoded(bytes, p.sink_framing);
      in_plugin(p, "encoder", p.encoder_name,
                [&] { p.encoder->encode(in->span(), encoded, sink); });
    }
    in->clear();
    return errors_;
  }

 private:
  /// Runs one plugin call of `kind` ("decoder", "step", ...), naming the component for its
  /// errors and for a crash report.
  template <class F>
  void in_plugin(const PipelinePlan& p, const char* kind, const std::string& name, F&& call) {
    step_ = std::string(kind) + " '" + name + "'";
    const std::string label = name + " (the reload's canary)";
    loader::PluginCall in(p.name, label);
    call();
  }

  static void on_error(void* self, std::size_t, std::string_view what) {
    auto* c = static_cast<Canary*>(self);
    c->errors_.push_back({c->step_ + ": " + printable(what), c->before_state_});
  }
  static void on_partition_error(void* self, std::size_t index, std::string_view what) {
    auto* c = static_cast<Canary*>(self);
    if (index < c->unkeyed_.size()) c->unkeyed_[index] = 1;
    on_error(self, index, what);
  }

  /// A copy of key's live state converted to `to`, or a new one from `factory` for a key not
  /// held yet: null (an error counted, as a shard counts it) if the factory throws. A
  /// conversion that throws throws: the reload's migration would fail the same way.
  void* copy_state(std::size_t state, std::uint64_t key, const TypeDesc* to,
                   StateFactory* factory) {
    state::StateTable& table = shards_[router_.shard(key)]->table(state);
    const TypeDesc* from = table.type();
    void* live = states_ == States::fresh ? nullptr : table.find(key);
    if (live && states_ == States::live && from->fingerprint == to->fingerprint) return live;
    void* at = allocate_value(to);
    try {
      if (live && from->fingerprint == to->fingerprint && from->trivial) {
        std::memcpy(at, live, to->size);
      } else if (live && from->save && to->restore) {
        try {
          const std::string label =
              "save() and restore() of " + std::string(to->name) + " (the reload's canary)";
          const loader::PluginCall in("", label);
          std::vector<std::byte> saved;
          from->save(live, saved);
          to->restore(at, saved.data(), saved.size(), from->schema_version);
        } catch (...) {
          throw std::runtime_error("save() and restore() of " + std::string(to->name) +
                                   " from schema " + std::to_string(from->schema_version) +
                                   ": " + current_exception_text());
        }
      } else {
        std::optional<std::string> threw;
        try {
          const std::string label =
              "the state factory of " + std::string(to->name) + " (the reload's canary)";
          const loader::PluginCall in("", label);
          factory->construct(at, key);
        } catch (...) {
          threw = current_exception_text();
        }
        if (threw) {  // (the outer catch frees `at` if this throws)
          errors_.push_back({step_ + ": the state factory threw: " + *threw, false});
          free_value(to, at);
          return nullptr;
        }
      }
    } catch (...) {
      free_value(to, at);
      throw;
    }
    temps_.push_back({to, at});
    return at;
  }

  const ShardRouter& router_;
  const std::vector<std::unique_ptr<Shard>>& shards_;
  const States states_;
  std::vector<TempState> temps_;
  std::vector<Error> errors_;
  std::string step_;          ///< the component running: "step 'x.add'"
  bool before_state_ = true;  ///< no stateful step has run yet
  std::vector<char> unkeyed_;  ///< [message] its partition function failed
};

}  // namespace

std::future<ReloadReport> Engine::request_reload(std::string alias, bool if_rebuilt) {
  ReloadRequest r{std::move(alias), if_rebuilt, {}};
  auto future = r.done.get_future();
  {
    std::lock_guard lock(reload_mutex_);
    reload_requests_.push_back(std::move(r));
  }
  if (flow_) flow_->wake_control();
  return future;
}

void Engine::check_edited_topology() {
  // Only plugins are swapped while running; the pipelines, states and connectors are fixed at
  // start. Still, the edit is read at once, so that a mistake shows while it is being made:
  // wired against the running plugins (a plugin the edit adds, or points at another file, is
  // loaded, in a copy first).
  const auto& file = wiring_->topology.file;
  edit_refused_ = false;
  const std::string text = file_text(file);
  if (text == topology_text_) {
    spdlog::info("the topology file is back to the one running: nothing to apply");
    return;
  }
  if (topology::same_settings(text, topology_text_)) {
    spdlog::info("the topology file differs from the one running only in comments or layout: "
                 "nothing to apply");
    return;
  }
  try {
    auto edited = topology::parse_topology(file, options_.shards);
    topology::WireOptions options;
    options.plugin_dir = options_.plugin_dir;
    options.try_in_copy = true;
    for (const auto& running : wiring_->topology.plugins) {
      const bool same_file =
          std::any_of(edited.plugins.begin(), edited.plugins.end(), [&](const auto& spec) {
            return spec.alias == running.alias && spec.path == running.path;
          });
      if (same_file) options.loaded.emplace_back(running.alias, wiring_->plugin(running.alias));
    }
    const auto wired = topology::wire_topology(std::move(edited), options);
    // What `check` warns about, too: a restart with the edit would not start if, say, its new
    // port is taken. What the running topology already uses is not looked at again: its ports
    // are this host's own (free once it stops), and its hosts resolved (a lookup may be slow).
    const auto warnings = connectors::all_warnings(*wired, &wiring_->topology);
    spdlog::warn("the edited topology is valid, but a running host keeps the topology it "
                 "started with: restart shardline to apply it{}",
                 warnings.empty() ? "" : "; warnings (plugins and this machine):");
    for (const auto& w : warnings) spdlog::warn("  {}: {}", w.pos.str(), w.text);
  } catch (const topology::TopologyError& e) {
    edit_refused_ = true;
    spdlog::warn("the edited topology has {} error(s); the running topology is unchanged:",
                 e.errors.size());
    for (const auto& error : e.errors) spdlog::warn("  {}", error);
  } catch (const std::exception& e) {
    edit_refused_ = true;
    spdlog::warn("the edited topology could not be read: {}", e.what());
  }
}

std::string Engine::blocked_sinks() const {
  constexpr std::uint64_t kBlocked = 1'000'000'000;  // a healthy write takes milliseconds
  std::string out;
  for (std::size_t i = 0; i < flow_->sinks.size(); ++i) {
    const std::uint64_t ns = flow_->sinks[i]->blocked_ns();
    if (ns < kBlocked) continue;
    out += fmt::format("{}{} has been inside one write for {:.1f} s", out.empty() ? "" : "; ",
                       sink_named(i), static_cast<double>(ns) / 1e9);
  }
  return out;
}

void Engine::serve_reloads() {
  std::vector<ReloadRequest> requests;
  {
    std::lock_guard lock(reload_mutex_);
    requests.swap(reload_requests_);
  }
  if (topology_edited_.exchange(false)) check_edited_topology();
  // A retry is due, or superseded by a new request for the same plugin (a new build).
  const auto now = Clock::now();
  std::erase_if(reload_retries_, [&](const ReloadRetry& retry) {
    const bool superseded = std::any_of(requests.begin(), requests.end(), [&](const auto& r) {
      return r.alias == retry.alias || r.alias == "*" || retry.alias == "*";
    });
    if (superseded || stop_requested_) return true;
    if (retry.due > now) return false;
    requests.push_back({retry.alias, true, {}, retry.attempt});
    return true;
  });
  for (auto& r : requests) {
    if (stop_requested_) {  // a rebuild seen by the watcher while the run drains
      ReloadReport late{};
      late.message = (r.alias == "*" ? std::string("the plugins") : "plugin '" + r.alias + "'") +
                     " not reloaded: the run is stopping, and nothing is reloaded while it drains";
      spdlog::warn("{}", late.message);
      r.done.set_value(std::move(late));
      continue;
    }
    ReloadReport report = serve_reload(r);
    // The edit may have named a component this reload brought in (a request that found
    // nothing to reload brought nothing).
    if (report.ok && !report.versions.empty() && edit_refused_) check_edited_topology();
    // SIGHUP's "*" reloads only what was rebuilt: tried again like a watcher's request.
    if (report.stalled && (r.if_rebuilt || r.alias == "*") && !stop_requested_) {
      // The pause may have been passing (a receiver that was slow for a while): the build
      // waiting on disk is tried again, less often the longer it lasts.
      const auto after = std::min(kFirstRetry * (1 << std::min(r.attempt, 4)), kLastRetry);
      if (r.alias == "*")
        spdlog::info("the rebuilt plugins: the reload is tried again in {} s, or at the next "
                     "SIGHUP", after.count());
      else
        spdlog::info("plugin '{}': the reload is tried again in {} s, or when it is rebuilt again",
                     r.alias, after.count());
      reload_retries_.push_back({r.alias, Clock::now() + after, r.attempt + 1});
    }
    r.done.set_value(std::move(report));
  }
}

ReloadReport Engine::serve_reload(const ReloadRequest& r) {
  const auto logged = [](ReloadReport report) {
    if (!report.ok) spdlog::error("{}", report.message);
    else if (report.old_unloaded && report.untried.empty()) spdlog::info("{}", report.message);
    else if (report.old_unloaded) spdlog::warn("{}", report.message);  // says what was not tried
    else
      spdlog::warn("{} (something still holds the old version: a thread_local with a destructor "
                   "used on an engine thread, or a library the plugin opened, keeps it mapped)",
                   report.message);
    return report;
  };
  const auto nothing_to_reload = [](std::string why) {
    ReloadReport same{};
    same.ok = same.old_unloaded = true;
    same.message = std::move(why);
    spdlog::info("{}", same.message);
    return same;
  };
  std::vector<std::string> aliases;  // names only: a copy of the handles would keep them loaded
  for (const auto& entry : wiring_->plugins) aliases.push_back(entry.first);
  if (r.alias == "*") {  // SIGHUP: every plugin whose file holds another build, together
    std::vector<std::string> rebuilt;
    bool removed = false;
    for (const auto& alias : aliases) {
      const auto& plugin = *wiring_->plugin(alias);
      // A file removed (a clean rebuild under way) is no new build: the one loaded runs on, as
      // the watcher has it, and the other plugins are reloaded. A file there that cannot be
      // read is tried: the refusal then says why.
      std::error_code ec;
      if (!std::filesystem::exists(plugin.file(), ec) && !ec) {
        spdlog::warn("plugin '{}': {} was removed; the build already loaded runs on", alias,
                     plugin.file().string());
        removed = true;
      } else if (plugin.rebuilt() || ::access(plugin.file().c_str(), R_OK) != 0) {
        rebuilt.push_back(alias);
      }
    }
    if (rebuilt.empty())
      return nothing_to_reload(std::string(removed ? "every other" : "every") +
                               " plugin file holds the build already running; nothing to reload");
    return logged(reload(rebuilt));
  }

  if (const auto plugin = wiring_->plugin(r.alias); plugin && r.if_rebuilt && !plugin->rebuilt())
    return nothing_to_reload("plugin '" + r.alias + "': " + plugin->file().string() +
                             " holds the build already running; nothing to reload");
  // (the if's handle ends with it: held any longer, it would keep the old version loaded)
  // Aliases of the same file are one plugin to its author: their new build goes in at once,
  // in one pause, rather than one alias running it while the other runs the old one.
  std::vector<std::string> same_file{r.alias};
  if (const auto plugin = wiring_->plugin(r.alias))
    for (const auto& alias : aliases) {
      const auto other = wiring_->plugin(alias);
      std::error_code ec;
      if (alias != r.alias && other->rebuilt() &&
          std::filesystem::equivalent(other->file(), plugin->file(), ec))
        same_file.push_back(alias);
    }
  ReloadReport alone = reload(same_file);
  if (alone.ok || !alone.split_type) return logged(std::move(alone));
  // A type this plugin shares with others may have changed in all of them: one build alone
  // cannot fit, so the plugins rebuilt since they were loaded go in together. Such a file may
  // be being written right now (a build system relinks one after the other): it is used once
  // it has settled, as the watcher waits for the file it saw change.
  std::vector<std::string> group = same_file;
  for (const auto& alias : aliases) {
    if (std::find(group.begin(), group.end(), alias) != group.end()) continue;
    const auto plugin = wiring_->plugin(alias);
    if (!plugin->rebuilt()) continue;
    if (!reload::wait_until_settled(plugin->file(), reload::kDebounce, kPartnerSettle)) {
      spdlog::info("plugin '{}': {} is still being written; it is reloaded once it has settled",
                   alias, plugin->file().string());
      continue;
    }
    if (plugin->rebuilt()) group.push_back(alias);  // (it may be back to the running build)
  }
  if (group.size() == same_file.size()) {
    // Not an error: the first of a pair to land waits for the other, as the old pair runs on.
    const auto running = wiring_->plugin(r.alias);
    alone.message = "plugin '" + r.alias + "': waiting for the plugins it shares a type with to "
                    "be rebuilt too, to reload them together; until then it runs " +
                    running->name() + " " + running->version() + ": " + alone.reason;
    spdlog::warn("{}", alone.message);
    return alone;
  }
  ReloadReport together = reload(group);
  if (!together.ok) together.message = alone.message + "; and " + together.message;
  return logged(std::move(together));
}

std::string Engine::run_canary(const topology::Wiring& fresh, bool in_copy) {
  try {
    std::vector<const TypeDesc*> old_types, new_types;
    std::vector<StateFactory*> old_factories, new_factories;
    for (std::size_t s = 0; s < wiring_->states.size(); ++s) {
      old_types.push_back(wiring_->states[s].factory->state);
      old_factories.push_back(static_cast<StateFactory*>(wiring_->states[s].factory->impl.get()));
      new_types.push_back(fresh.states[s].factory->state);
      new_factories.push_back(static_cast<StateFactory*>(fresh.states[s].factory->impl.get()));
    }
    for (std::size_t i = 0; i < flow_->pipelines.size(); ++i) {
      const auto sample = ingresses_[i]->sample();
      if (sample.empty()) continue;
      PipelinePlan candidate;  // the new version's components (it routes nothing)
      candidate.name = flow_->pipelines[i].name;
      candidate.sink_framing = flow_->pipelines[i].sink_framing;
      bind_components(candidate, fresh, i);
      // On copies of the live states, then on fresh ones: the recent messages have already
      // been applied to the live states, so a check the new build adds (a duplicate, an
      // event out of order) fails on the replay itself; it must fail on both to count.
      std::optional<Canary::Error> first;  // the new version's first failure, on copies
      std::string on_copies;                // its counts there
      for (const auto states : {Canary::States::copies, Canary::States::fresh}) {
        Canary old_run(flow_->router, shards_, states), new_run(flow_->router, shards_, states);
        const auto old_errors = old_run.run(flow_->pipelines[i], sample, old_types, old_factories);
        const auto new_errors = new_run.run(candidate, sample, new_types, new_factories);
        if (new_errors.size() <= old_errors.size()) break;
        const std::string counts = std::to_string(new_errors.size()) +
                                   " failed with the new version, " +
                                   std::to_string(old_errors.size()) + " with the old";
        if (states == Canary::States::copies) {
          first = new_errors.front();
          on_copies = counts;
          continue;
        }
        // A failure before any state (a decoder, a partition function) is the same whatever
        // states the runs were given: the two counts are then one, and no state is named.
        const std::string of = " (of " + std::to_string(sample.size()) + " recent messages";
        const std::string verdict =
            "canary: pipeline '" + flow_->pipelines[i].name + "' " + first->text +
            (first->before_state && counts == on_copies
                 ? of + ", " + counts + ")"
                 : of + ": on copies of their keys' states, " + on_copies + "; on fresh states, " +
                       counts + ")");
        if (wiring_->topology.canary == topology::CanaryPolicy::refuse)
          return verdict + "; if the new build rejects these messages on purpose, set canary = "
                           "\"warn\" at the top of the topology (a restart applies it)";
        if (!in_copy) spdlog::warn("{}; the reload goes on (canary = \"warn\")", verdict);
      }
      // In the copy, the new version also runs on the live states it keeps as they are:
      // one it cannot copy (no save()) is otherwise only tried fresh, and a crash on the
      // real thing would come after the swap.
      if (in_copy)
        Canary(flow_->router, shards_, Canary::States::live)
            .run(candidate, sample, new_types, new_factories);
    }
  } catch (const std::exception& e) {
    return std::string("canary: the new version could not take over the state of a key the "
                       "recent messages touched (tried before migrating every key): ") +
           e.what();
  }
  return {};
}

void Engine::migrate_states(const topology::Wiring& fresh,
                            const std::vector<reload::StateCarry>& carries,
                            MigratedTables& migrated, std::string& migrating) const {
  migrated = MigratedTables(wiring_->states.size());
  for (std::size_t s = 0; s < wiring_->states.size(); ++s) {
    const reload::Carry carry = carries[s].carry;
    if (carry == reload::Carry::keep) continue;
    migrating = wiring_->states[s].spec->name;
    const TypeDesc* to = fresh.states[s].factory->state;
    auto* factory = static_cast<StateFactory*>(fresh.states[s].factory->impl.get());
    std::vector<std::byte> saved;
    for (const auto& shard : shards_) {
      const state::StateTable& old_table = shard->table(s);
      auto table = std::make_unique<state::StateTable>(to, factory, old_table.creates_unknown());
      if (carry == reload::Carry::migrate) {
        const TypeDesc* from = old_table.type();
        const std::string label =
            "save() and restore() of " + std::string(to->name) + " (the reload's migration)";
        loader::PluginCall in("", label);
        table->reserve(old_table.size());
        old_table.for_each([&](std::uint64_t key, const void* value) {
          saved.clear();
          from->save(value, saved);
          table->create_with(key, [&](void* at) {
            to->restore(at, saved.data(), saved.size(), from->schema_version);
          });
        });
      }
      migrated[s].push_back(std::move(table));
    }
    if (carry == reload::Carry::reset)
      for (std::uint64_t key : wiring_->states[s].spec->keys)
        migrated[s][flow_->router.shard(key)]->declare(key);
  }
}

void Engine::swap_states(const topology::Wiring& fresh,
                         const std::vector<reload::StateCarry>& carries, MigratedTables& migrated,
                         const std::vector<std::string>& aliases, ReloadReport& report) {
  // The keys the reload is about: of the states the reloaded plugins make or compute on (a
  // plugin with no state of its own reports none).
  std::vector<char> touched(wiring_->states.size(), 0);
  const auto reloaded = [&](const std::string& alias) {
    return std::find(aliases.begin(), aliases.end(), alias) != aliases.end();
  };
  for (std::size_t s = 0; s < wiring_->states.size(); ++s)
    touched[s] = reloaded(wiring_->states[s].spec->factory.plugin);
  for (const auto& wp : wiring_->pipelines)
    for (const auto& ws : wp.steps)
      if (ws.spec->stateful &&
          (reloaded(ws.spec->component.plugin) || reloaded(ws.spec->partition.plugin)))
        touched[ws.state] = 1;
  const std::lock_guard tables(tables_mutex_);  // the monitor may be counting their keys
  for (std::size_t s = 0; s < wiring_->states.size(); ++s) {
    std::uint64_t keys = 0;
    for (auto& shard : shards_) keys += shard->table(s).size();
    switch (carries[s].carry) {
      case reload::Carry::keep:
        if (touched[s]) report.keys_kept += keys;
        for (auto& shard : shards_)
          shard->table(s).retype(fresh.states[s].factory->state,
                                 static_cast<StateFactory*>(fresh.states[s].factory->impl.get()));
        break;
      case reload::Carry::migrate:
      case reload::Carry::reset:
        (carries[s].carry == reload::Carry::migrate ? report.keys_migrated : report.keys_reset) += keys;
        for (std::size_t i = 0; i < shards_.size(); ++i)
          shards_[i]->replace_table(s, std::move(migrated[s][i]));  // old table destroyed here
        break;
      case reload::Carry::blocked:
        break;
    }
  }
}

ReloadReport Engine::reload(const std::vector<std::string>& aliases) {
  const auto started = Clock::now();
  ReloadReport report;
  std::vector<std::shared_ptr<loader::Plugin>> olds;
  std::vector<std::string> quoted, running;
  for (const auto& alias : aliases) {
    olds.push_back(wiring_->plugin(alias));
    quoted.push_back("'" + alias + "'");
    running.push_back(olds.back() ? olds.back()->name() + " " + olds.back()->version() : "nothing");
  }
  const std::string who = (aliases.size() == 1 ? "plugin " : "plugins ") + listed(quoted) +
                          (aliases.size() == 1 ? "" : " together");
  auto refuse = [&](const std::string& why) {
    report.ok = false;
    report.total_ms = ms_since(started);
    report.reason = why;
    report.message = "reload of " + who + " refused, still running " + listed(running) + ": " + why;
    return report;
  };

  // 1-2. Load and wire the new versions (each from its plugin's file); decide how each state
  // crosses over.
  std::vector<reload::NewBuild> builds;
  for (std::size_t i = 0; i < aliases.size(); ++i)
    builds.push_back({aliases[i], olds[i] ? olds[i]->file() : std::filesystem::path()});
  reload::ReloadPlan plan = reload::plan_reload(*wiring_, builds);
  report.versions = plan.versions;
  report.split_type = plan.split_type;
  if (!plan.refused.empty()) return refuse(plan.refused);
  std::unique_ptr<topology::Wiring> fresh = std::move(plan.fresh);
  const std::vector<reload::StateCarry>& carries = plan.carries;
  for (std::size_t s = 0; s < carries.size(); ++s) {
    // A value kept as it is that is not plain data may hold objects made by any build that
    // worked on it: a state computation of another plugin as much as its own factory.
    if (carries[s].carry == reload::Carry::keep && !wiring_->states[s].factory->state->trivial)
      report.old_held_for.push_back(wiring_->states[s].spec->name);
    if (carries[s].warn)
      spdlog::warn("reload of {}: state '{}': {}", who, wiring_->states[s].spec->name,
                   carries[s].why);
  }

  // 3. Pause the sources; drain everything already read. A sink blocked in a write would hold
  // the pause for its whole 5 s, and every pipeline with it: the reload waits for the sink
  // instead (tried again later), pausing nothing.
  if (const std::string sinks = blocked_sinks(); !sinks.empty()) {
    report.stalled = true;
    return refuse(sinks + " (a receiver that reads slowly or not at all, or is gone): nothing was "
                          "paused");
  }
  const auto pause_started = Clock::now();
  auto resume = [&] {
    gate_.resume();
    report.pause_ms = ms_since(pause_started);
  };
  // Each wait goes on while the engine moves: a source blocked on the full inbox of a slow
  // shard leaves the gate once it has handed over its chunk, and the backlog drains. What does
  // not move within kStandstill (a blocked sink, a plugin call that does not return), or takes
  // longer than kLongestWait in all, refuses the reload, saying which.
  Progress progress(*flow_);
  const auto wait = [&](const std::string& what, const std::string& failed,
                        const auto& done_within) -> std::string {
    for (;;) {
      if (done_within(kStandstill)) return {};
      const bool moved = progress.moved();
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() -
                                                                            pause_started);
      if (moved && waited < kLongestWait) {
        spdlog::info("reload of {}: waiting for {} ({} s so far): {}", who, what, waited.count(),
                     progress.why());
        continue;
      }
      report.stalled = true;  // tried again later: it may pass
      if (moved)
        return fmt::format("{} within {} s, though messages were processed all along: {} (a "
                           "backlog longer than a reload waits for: it is tried again when it may "
                           "have drained)", failed, kLongestWait.count(), progress.why());
      loader::report_plugin_calls();  // named first in the log
      const std::string sinks = blocked_sinks();
      return fmt::format("{}: nothing was processed for {} s ({}); {}", failed,
                         kStandstill.count(), progress.why(),
                         sinks.empty() ? "a sink that is blocked, or plugin code that does not "
                                         "return: the threads in plugin code, if any, are named "
                                         "above"
                                       : sinks);
    }
  };
  std::string stuck = wait("the sources to pause", "the sources did not pause",
                           [&](auto patience) { return gate_.pause(patience); });
  if (stuck.empty()) {
    flow_->begin_drain_wait();
    stuck = wait("the messages in flight to be processed", "in-flight messages did not drain",
                 [&](auto patience) {
                   std::unique_lock lock(flow_->control_mutex);
                   return flow_->control_cv.wait_for(lock, patience,
                                                     [&] { return flow_->in_flight() == 0; });
                 });
    flow_->end_drain_wait();
  }
  if (!stuck.empty()) {
    resume();
    return refuse(stuck);
  }

  // 4. Canary on recent input: the new version may not fail where the old one did not. It runs
  // first in a copy of this process, where a crash of the new build ends only the copy and
  // refuses the reload; then here, where its failures are counted against the old version's.
  // (Before any input there is nothing to try, and no copy to pay for.) A pipeline of the new
  // code that has had no input yet tries nothing: the reload line says so, rather than let a
  // build that crashes on its first message pass for one that was tried.
  const bool any_input = std::any_of(ingresses_.begin(), ingresses_.end(),
                                     [](const auto& in) { return in->sampled(); });
  std::vector<std::string> untried, tried_on;
  for (std::size_t i = 0; i < flow_->pipelines.size(); ++i) {
    if (!runs_new_code(*wiring_, *fresh, i)) continue;
    (ingresses_[i]->sampled() ? tried_on : untried).push_back("'" + flow_->pipelines[i].name + "'");
  }
  const std::string were = aliases.size() == 1 ? "the new build was" : "the new builds were";
  if (!untried.empty() && tried_on.empty())
    report.untried = "canary: no recent input, " + were + " not tried on messages";
  else if (!untried.empty())
    report.untried = fmt::format("canary: no recent input on pipeline{} {}: {} not tried on {} "
                                 "messages", untried.size() == 1 ? "" : "s", listed(untried),
                                 were, untried.size() == 1 ? "its" : "their");
  using End = loader::CopyOutcome::End;
  const auto tried =
      any_input ? loader::crash_in_copy([&] { run_canary(*fresh, true); }, std::chrono::seconds(5))
                : loader::CopyOutcome{End::returned, {}};
  if (tried.end == End::no_copy)
    spdlog::warn("reload of {}: the canary could not be run in a copy of the host first", who);
  const std::string why =
      tried.end == End::crashed ? "canary: the new version crashed on recent messages: " + tried.what
      : tried.end == End::hung  ? "canary: on recent messages, the new version " + tried.what
                                : run_canary(*fresh, false);
  if (!why.empty()) {
    resume();
    return refuse(why);
  }

  // 5. Migrate into new tables, then commit. A restore() that crashes or never returns on a key
  // the canary did not touch would take the host down with every state, so the migration is
  // tried in a copy of this process first, as the canary is.
  MigratedTables migrated;
  std::string migrating;  // the state whose values are being carried over, for the error
  const auto migrate = [&] { migrate_states(*fresh, carries, migrated, migrating); };
  const bool migrates = std::any_of(carries.begin(), carries.end(), [](const auto& c) {
    return c.carry == reload::Carry::migrate;
  });
  if (migrates) {
    // (An exception ends the copy's run quietly: the host meets it again below, and reports it.)
    const auto trial = loader::crash_in_copy(migrate, kMigrationPatience);
    if (trial.end == End::no_copy)
      spdlog::warn("reload of {}: the migration could not be tried in a copy of the host first",
                   who);
    if (trial.end == End::crashed || trial.end == End::hung) {
      resume();
      return refuse(trial.end == End::crashed
                        ? "migrating the states crashed in a copy of the host: " + trial.what
                        : "migrating the states, the new version " + trial.what);
    }
  }
  try {
    migrate();
  } catch (...) {
    const std::string why = current_exception_text();
    migrated.clear();  // destroyed by the new version's code, which is still loaded
    resume();
    return refuse("migrating state '" + migrating + "' failed: " + why);
  }
  swap_states(*fresh, carries, migrated, aliases, report);
  for (std::size_t i = 0; i < flow_->pipelines.size(); ++i)
    bind_components(flow_->pipelines[i], *fresh, i);
  // A state kept as it is that may hold the old builds' objects keeps those builds loaded: a
  // std::function in it calls into the old code, and its destructor runs there too.
  const bool hold_olds = !report.old_held_for.empty();
  if (hold_olds) held_for_states_.insert(held_for_states_.end(), olds.begin(), olds.end());
  std::unique_ptr<topology::Wiring> old = std::move(wiring_);
  wiring_ = std::move(fresh);

  // 6. Resume, then let the old versions go.
  resume();
  for (const auto& w : wiring_->warnings)  // new ones only: the others were logged before
    if (std::none_of(old->warnings.begin(), old->warnings.end(), [&](const topology::Warning& was) {
          return was.pos.str() == w.pos.str() && was.text == w.text;
        }))
      spdlog::warn("reload of {}: {}: {}", who, w.pos.str(), w.text);
  old.reset();
  // The old builds go, unless a state kept as it is holds them on purpose.
  report.old_unloaded = true;
  std::string fate;
  if (hold_olds) {
    std::string builds, states;
    for (const auto& plugin : olds)
      builds += (builds.empty() ? "" : ", ") + plugin->name() + " " + plugin->version();
    for (const std::string& name : report.old_held_for)
      states += (states.empty() ? "'" : ", '") + name + "'";
    fate = fmt::format("old build {} kept loaded for state{} {}, kept as is (its values may hold "
                       "objects of that build)",
                       builds, report.old_held_for.size() == 1 ? "" : "s", states);
  } else {
    for (auto& plugin : olds) {
      const auto shadow = plugin->shadow();
      const long users = plugin.use_count();
      plugin.reset();
      report.old_unloaded = report.old_unloaded && users == 1 && !mapped(shadow);
    }
    fate = fmt::format("old {} {}", olds.size() == 1 ? "library" : "libraries",
                       report.old_unloaded ? "unloaded" : "STILL MAPPED");
  }
  report.ok = true;
  report.total_ms = ms_since(started);
  report.message = fmt::format(
      "reloaded {}: {}; keys kept {}, migrated {}, reset {}; paused {:.2f} ms, total {:.2f} ms; "
      "{}{}", who, report.versions, report.keys_kept, report.keys_migrated, report.keys_reset,
      report.pause_ms, report.total_ms, fate, report.untried.empty() ? "" : "; " + report.untried);
  return report;
}

}  // namespace shardline::engine
