// PluginCall: which plugin component the calling thread is running, so that a crash inside
// plugin code is reported as such. [any thread; the report: the crashing thread]
//
// A plugin runs inside the host's process: a segmentation fault in it cannot be recovered
// from, and ends the host with its state. What the host can do is say where it happened, since
// "Segmentation fault" alone sends a plugin's author looking in the wrong place. Each call
// into plugin code is bracketed by a PluginCall (one thread-local store before, one after: per
// batch, not per message); install_crash_report() makes SIGSEGV, SIGBUS, SIGFPE, SIGILL and
// SIGABRT (a failed assert, std::terminate) print the pipeline, the component and the thread
// before the process ends with the same signal (so core dumps and exit statuses are
// unchanged). Under AddressSanitizer its own report is kept instead. Where the host can afford
// a copy of itself — loading a plugin, a reload's canary — crash_in_copy() runs the plugin
// code in a forked copy first, and a crash or a hang ends only the copy.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace shardline::loader {

class PluginCall {
 public:
  /// `pipeline` (may be empty) and `component` must outlive the call: names held by the
  /// pipeline's plan, or a label of the caller's.
  PluginCall(std::string_view pipeline, std::string_view component) noexcept;
  ~PluginCall();
  PluginCall(const PluginCall&) = delete;
  PluginCall& operator=(const PluginCall&) = delete;

  std::string_view pipeline() const { return pipeline_; }
  std::string_view component() const { return component_; }

 private:
  std::string_view pipeline_, component_;
  const PluginCall* outer_;  ///< the call this one is nested in, current again at the end
};

/// Lets stuck_plugin_call() watch the calling thread's plugin calls (a counter per call, no
/// clock read), and gives the thread an alternate stack on which a crash in plugin code is
/// still reported when that code overflowed the stack. [each engine thread, once, when it
/// starts]
void watch_plugin_calls();

/// Whether a watched thread has been inside one and the same plugin call for at least
/// `patience` (each such call is told once). Call it regularly: a call counts as the same one
/// from the first look that finds it. [one thread: the engine's monitor thread]
bool stuck_plugin_call(std::chrono::seconds patience);

/// Installs the fatal-signal handlers that report the running PluginCall (on the alternate
/// stack of the thread that crashed: the main thread's is set up here), the handler that
/// report_plugin_calls() uses, and an exit handler that names plugin code calling exit().
/// [main thread, once]
void install_crash_report();

/// Makes every other thread of the process that is running plugin code say so on stderr, one
/// line each: "shardline: thread 'shard 1' is in plugin code: ev.track, pipeline 'events'".
/// For a host that does not stop, it names what keeps it. Returns once every thread asked has
/// answered, or after 2 s. [any thread, after install_crash_report()]
void report_plugin_calls();

/// How plugin code run by crash_in_copy() ended.
struct CopyOutcome {
  enum class End {
    returned,  ///< `run` came back (having thrown or not)
    crashed,   ///< the copy died: `what` says how
    hung,      ///< the copy did not end within the timeout, and was killed: `what` says when
    no_copy,   ///< no copy could be made (fork failed): no verdict
  };
  End end = End::no_copy;
  /// crashed: "SIGSEGV (invalid memory access) in plugin code: ev.segfault, pipeline 'events'";
  /// hung: "did not finish within 5 s (an endless loop, or a wait that never ends) in plugin
  /// code: ev.track, pipeline 'events'" (where the copy was when it was asked, if it could say).
  std::string what;

  /// Whether the host must not run the same code itself.
  bool failed() const { return end == End::crashed || end == End::hung; }
  /// "crashed: WHAT" or "did not finish within ...", to follow a subject ("loading it ...").
  std::string failure() const { return end == End::crashed ? "crashed: " + what : what; }
};

/// Runs `run` in a copy of this process (fork: this thread only, memory copied on write), so
/// that a crash or an endless loop in plugin code ends the copy instead of stopping the host.
/// [control thread, with the other engine threads idle: a lock held by another thread at the
/// fork would stay held in the copy]
CopyOutcome crash_in_copy(const std::function<void()>& run, std::chrono::seconds timeout);

}  // namespace shardline::loader
