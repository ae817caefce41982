// Engine: runs a wired topology. [control thread, except where noted]
//
// Threads: one per shard, one per pipeline source, one per sink (with scheduling = "latency"
// the shards write the sinks themselves, and a sink's thread only closes it: SinkPort; with
// "latency" and one shard, the threads of the sources that feed it run it, in turn, and its
// own thread never starts: Dataflow::run_on_source); a monitor thread (--stats, plugin calls
// that do not return); the control thread (the caller of run()) serves reloads and waits.
// Lifecycle:
//   1. build the Dataflow (plans, router, queues), the shards and their state tables (declared
//      keys are created now), the sinks (opened now, so a bad path fails before any input);
//   2. start sinks, shards, then sources and the monitor;
//   3. wait until every source has ended (input exhausted, or request_stop()) and no batch is
//      in flight; then close the shard inboxes, join the shards, close the sink queues and
//      join the sinks, which flush;
//   4. report a one-line summary.
// Everything plugin-made (messages in pools, states in tables) is destroyed before the
// plugins, which the Wiring holds and the Engine owns, are released.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "connectors/sink.hpp"
#include "connectors/source.hpp"

#include "engine/dataflow.hpp"
#include "engine/shard.hpp"
#include "engine/source_gate.hpp"
#include "metrics/run_summary.hpp"
#include "reload/file_watcher.hpp"
#include "reload/reload_plan.hpp"
#include "topology/wiring.hpp"

namespace shardline::engine {

class Ingress;

/// Exit statuses of `shardline run`.
enum ExitStatus : int {
  exit_ok = 0,
  exit_startup_failed = 1,
  exit_usage = 2,
  exit_stopped_on_error = 3,
  exit_output_lost = 4,
};

/// What a hot reload did (or why it was refused).
struct ReloadReport {
  bool ok = false;
  /// Refused because a type the plugin shares with another changed in this build only.
  bool split_type = false;
  bool stalled = false;       ///< refused because the pipelines did not pause: may pass later
  std::string message;        ///< the log line
  std::string reason;         ///< why it was refused (the end of `message`)
  std::string versions;       ///< "test_events 1.0.0 -> 2.0.0", one per plugin reloaded
  std::uint64_t keys_kept = 0, keys_migrated = 0, keys_reset = 0;
  /// States kept as they are whose values may hold the old builds' objects: every build the
  /// reload replaced then stays loaded, on purpose.
  std::vector<std::string> old_held_for;
  /// What the canary could not try ("canary: no recent input, ..."): a pipeline that runs the
  /// new code and has had no input yet. Empty when every such pipeline was tried.
  std::string untried;
  double pause_ms = 0;        ///< sources paused -> resumed
  double total_ms = 0;        ///< request taken -> done
  bool old_unloaded = false;  ///< the old library is no longer mapped
};

struct EngineOptions {
  bool watch = false;  ///< reload a plugin when its file is rebuilt
  /// Log each pipeline's counters and rates this often while running; zero: never.
  std::chrono::milliseconds stats_every{0};
  /// What the run was started with (`run --plugin-dir`, `run --shards`): an edited topology
  /// (watch) is read and wired with them, as a restart with the same command would.
  std::filesystem::path plugin_dir;
  std::optional<std::uint32_t> shards;
};

class Engine {
 public:
  /// Builds everything (step 1). Throws std::runtime_error if a source, sink or dead-letter
  /// file cannot be opened or a declared key's state cannot be built: one line per cause.
  explicit Engine(std::unique_ptr<topology::Wiring> wiring, EngineOptions options = {});
  ~Engine();

  /// Steps 2-4. Returns an ExitStatus.
  int run();
  /// Stops the sources; what was read is still processed and flushed. [any thread]
  void request_stop();
  /// Gives up on output a sink cannot deliver (a second Ctrl-C). [any thread]
  void abandon_output();
  /// Asks the control thread to reload plugin `alias` from its file; the future gets the
  /// report. Without a running engine the request waits. [any thread]
  ///  - "*" reloads every rebuilt plugin at once, in one pause: all or none of them.
  ///  - A new build that does not fit the running plugins alone (a type it shares with another
  ///    plugin changed) is tried again together with every plugin rebuilt since it was loaded.
  ///  - With `if_rebuilt` (the watcher), a file that holds the build already running (it was
  ///    reloaded together with another plugin's) is left alone, and a reload refused because
  ///    the pipelines did not pause (a blocked sink, a slow call) is tried again after 5 s,
  ///    then 10, 20, 40 and every 60 s, until it is done or the file changes again; so is a
  ///    "*" refused that way (SIGHUP).
  std::future<ReloadReport> request_reload(std::string alias, bool if_rebuilt = false);
  /// Counters after run() returned.
  const metrics::RunSummary& summary() const { return summary_; }

 private:
  struct ReloadRequest {
    std::string alias;
    bool if_rebuilt = false;
    std::promise<ReloadReport> done;
    int attempt = 0;  ///< earlier tries refused because the pipelines did not pause
  };
  /// A watcher's reload to try again once `due`. [control thread]
  struct ReloadRetry {
    std::string alias;
    std::chrono::steady_clock::time_point due;
    int attempt;
  };
  /// The plan of every pipeline; a dead-letter file that cannot be opened adds its line to
  /// `refused` (and leaves that pipeline without PipelineErrors: the run does not start).
  void build_plan(std::vector<std::string>& refused);
  void bind_components(PipelinePlan& p, const topology::Wiring& w, std::size_t pipeline);
  void serve_reloads();
  /// "sink X of pipeline 'p' has been inside one write for 12.3 s" for each sink blocked for
  /// over a second, "; "-separated; empty if none. [control thread]
  std::string blocked_sinks() const;
  /// "sink tcp 127.0.0.1:7200 of pipeline 'orders'": sink `i` as the log names it. [any thread]
  std::string sink_named(std::size_t i) const;
  /// Carries out one request (see request_reload) and logs its outcome. [control thread]
  ReloadReport serve_reload(const ReloadRequest& r);
  /// Reloads these plugins together, in one pause; refused as a whole. Logs nothing.
  ReloadReport reload(const std::vector<std::string>& aliases);
  /// A reload's step 4: the recent input of each pipeline through the running components and
  /// through `fresh`'s. Why the new version is refused, or empty. With `in_copy` (run in a
  /// copy of the host) it also tries the live states it keeps. [control thread, paused]
  std::string run_canary(const topology::Wiring& fresh, bool in_copy);
  /// [state][shard] -> the new table of each state a reload migrates or resets.
  using MigratedTables = std::vector<std::vector<std::unique_ptr<state::StateTable>>>;
  /// A reload's step 5: new tables for every state not kept as it is, the old ones untouched.
  /// Throws what a restore() throws; `migrating` names the state it was at. [control thread,
  /// paused; or in a copy of the host]
  void migrate_states(const topology::Wiring& fresh,
                      const std::vector<reload::StateCarry>& carries, MigratedTables& migrated,
                      std::string& migrating) const;
  /// A reload's commit, for the states: each kept table takes the new types, each migrated
  /// or reset one is replaced. Counts the keys migrated and reset, and the keys kept of the
  /// states the reloaded plugins make or compute on.
  /// [control thread, paused]
  void swap_states(const topology::Wiring& fresh, const std::vector<reload::StateCarry>& carries,
                   MigratedTables& migrated, const std::vector<std::string>& aliases,
                   ReloadReport& report);
  /// Reads the topology file again after an edit, wires it against the running plugins, and
  /// logs whether it is valid. [control thread, asked by the watcher through topology_edited_]
  void check_edited_topology();
  /// The whole text of a file; empty if it cannot be read.
  static std::string file_text(const std::filesystem::path& file);
  /// Every pipeline's counters now. [any thread: relaxed reads of the metrics]
  std::vector<metrics::PipelineSummary> pipeline_counters() const;
  /// Every state's keys over all shards, and with `overhead` the bytes its tables use beyond
  /// the states (only once the shards have stopped). [monitor or control thread]
  std::vector<metrics::StateSummary> state_counts(bool overhead) const;
  /// The monitor thread: the `--stats` line on its grid, and a warning for plugin code that
  /// has not returned for 10 s. A thread of its own, so that neither waits while the control
  /// thread is busy with a reload (a pause, a canary, a migration). `progress` holds the
  /// counters at `started`.
  void monitor(std::chrono::steady_clock::time_point started, metrics::RunSummary progress);
  /// Ends the monitor thread, if it runs. [control thread]
  void stop_monitor();
  void fail(const std::string& why);
  void run_source(std::size_t pipeline);
  void run_sink(std::size_t sink);

  // Declaration order is destruction order in reverse: the plugins go last.
  /// Builds replaced by a reload that states kept as they are may still hold objects of (a
  /// std::function, a shared_ptr): loaded until the end of the run. [control thread]
  std::vector<std::shared_ptr<loader::Plugin>> held_for_states_;
  std::unique_ptr<topology::Wiring> wiring_;
  std::unique_ptr<Dataflow> flow_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::unique_ptr<connectors::Source>> sources_;
  std::vector<std::unique_ptr<Ingress>> ingresses_;
  SourceGate gate_;
  std::vector<std::unique_ptr<connectors::Sink>> sinks_;
  std::vector<std::size_t> sink_pipeline_;  ///< [sink] -> pipeline
  std::vector<std::thread> threads_;
  std::thread monitor_;
  std::mutex monitor_mutex_;
  std::condition_variable monitor_cv_;
  bool monitor_stop_ = false;  ///< [monitor_mutex_]
  /// Held while a reload replaces or retypes the state tables, and while the monitor counts
  /// their keys. [control and monitor threads; never a shard's]
  mutable std::mutex tables_mutex_;
  std::vector<std::string> state_names_;  ///< [state], as in the topology
  std::atomic<std::size_t> sources_running_{0};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> failed_{false};
  std::atomic<bool> output_lost_{false};
  std::atomic<bool> output_abandoned_{false};  ///< abandon_output() was called
  EngineOptions options_;
  std::mutex reload_mutex_;
  std::vector<ReloadRequest> reload_requests_;
  std::vector<ReloadRetry> reload_retries_;  ///< [control thread]
  std::unique_ptr<reload::FileWatcher> watcher_;
  std::atomic<bool> topology_edited_{false};  ///< set by the watcher's thread
  /// The edited topology's last check found errors: checked again after each reload, which
  /// may bring the component it lacked. [control thread]
  bool edit_refused_ = false;
  std::string topology_text_;  ///< the topology file as the run started with it
  std::mutex fail_mutex_;
  std::string failure_;
  metrics::RunSummary summary_;
};

}  // namespace shardline::engine
