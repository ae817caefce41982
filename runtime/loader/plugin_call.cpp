#include "loader/plugin_call.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace shardline::loader {

namespace {

// The innermost PluginCall of this thread, read by the signal handlers on the same thread: a
// plain thread-local of the executable (initial-exec TLS), written only by PluginCall, in one
// store, after the call's names (so a handler never sees half of an update).
thread_local const PluginCall* tl_call = nullptr;
/// The plugin calls of one watched thread. [written by that thread, read by the watcher]
struct CallCounter {
  std::atomic<std::uint64_t> begun{0};  ///< outermost calls begun
  std::atomic<bool> inside{false};      ///< in an outermost call now
  // [the watcher's only]
  std::uint64_t seen = 0;  ///< `begun` at the last look
  std::chrono::steady_clock::time_point since{};  ///< when `seen` was first found inside
  bool told = false;
};
thread_local std::shared_ptr<CallCounter> tl_counter;  // null: not watched
std::mutex g_counters_mutex;
std::vector<std::weak_ptr<CallCounter>> g_counters;

/// An alternate stack for the fatal-signal handler of one thread: a stack overflow (plugin
/// code recursing without end) leaves no room on the thread's own stack, and a handler run
/// there would fault again and end the process without a word. Freed with the thread.
struct SignalStack {
  std::unique_ptr<char[]> memory;
  SignalStack() {
    const long wanted = ::sysconf(_SC_SIGSTKSZ);  // -1 if unknown
    const std::size_t size = std::max<std::size_t>(64 * 1024, wanted > 0 ? wanted : 0);
    memory = std::make_unique<char[]>(size);
    stack_t stack{};
    stack.ss_sp = memory.get();
    stack.ss_size = size;
    if (::sigaltstack(&stack, nullptr) != 0) memory.reset();  // then without: as before
  }
  ~SignalStack() {
    if (!memory) return;
    stack_t off{};
    off.ss_flags = SS_DISABLE;
    ::sigaltstack(&off, nullptr);
  }
  SignalStack(const SignalStack&) = delete;
  SignalStack& operator=(const SignalStack&) = delete;
};

/// Gives the calling thread its alternate signal stack (once). Under AddressSanitizer, which
/// reports crashes itself, its own alternate stack is kept.
void use_signal_stack() {
#ifndef __SANITIZE_ADDRESS__
  thread_local SignalStack stack;
  (void)stack;
#endif
}

// In a copy made by crash_in_copy(): where the handler writes what crashed. [that copy only]
int g_probe_fd = -1;

// How many times a thread has answered report_plugin_calls()'s signal (lock-free, so the
// handler may count). [every thread]
std::atomic<std::uint64_t> g_where_answers{0};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

/// The longest report_plugin_calls() and a hung copy wait for threads to say where they are:
/// a thread answers once it next runs, which on a loaded machine may take a while.
constexpr auto kAnswerPatience = std::chrono::seconds(2);

/// Appends to a fixed buffer: only async-signal-safe work in the handler.
struct Message {
  char text[1024];
  std::size_t n = 0;
  void add(std::string_view s) {
    const std::size_t k = std::min(s.size(), sizeof text - n);
    std::memcpy(text + n, s.data(), k);
    n += k;
  }
};

/// "ev.track, pipeline 'events'"
void add_call(Message& m, const PluginCall& call) {
  m.add(call.component());
  if (!call.pipeline().empty()) {
    m.add(", pipeline '");
    m.add(call.pipeline());
    m.add("'");
  }
}

/// The signal report_plugin_calls() sends: a real-time one, which nothing else here uses.
int where_signal() { return SIGRTMIN + 1; }

/// Answers report_plugin_calls() on the thread it interrupted.
void on_where_signal(int) {
  struct Answered {  // however the handler returns
    ~Answered() { g_where_answers.fetch_add(1, std::memory_order_release); }
  } answered;
  const PluginCall* call = tl_call;
  const int saved_errno = errno;
  if (g_probe_fd >= 0) {  // a copy of the host that is taking too long: tell the host where
    // Always an answer: the host waits for one before it kills the copy.
    Message where;
    where.add(call ? " in plugin code: " : ", outside plugin code");
    if (call) add_call(where, *call);
    (void)!::write(g_probe_fd, where.text, where.n);
    errno = saved_errno;
    return;
  }
  if (!call) return;
  Message m;
  char thread[17] = {};
  prctl(PR_GET_NAME, thread);
  m.add("shardline: thread '");
  m.add(thread);
  m.add("' is in plugin code: ");
  add_call(m, *call);
  m.add("\n");
  (void)!::write(STDERR_FILENO, m.text, m.n);
  errno = saved_errno;
}

[[maybe_unused]] void on_fatal_signal(int sig) {  // unused under AddressSanitizer
  // "SIGSEGV (invalid memory access) in plugin code: ev.segfault, pipeline 'events'"
  Message what;
  what.add("SIG");
  what.add(sigabbrev_np(sig) ? sigabbrev_np(sig) : "NAL");
  what.add(sig == SIGSEGV || sig == SIGBUS ? " (invalid memory access)" : "");
  const PluginCall* call = tl_call;
  if (call) {
    what.add(" in plugin code: ");
    add_call(what, *call);
  }
  if (g_probe_fd >= 0) {  // a copy of the host: the host itself reports it
    (void)!::write(g_probe_fd, what.text, what.n);
    ::raise(sig);
    return;
  }
  Message m;
  m.add("shardline: fatal ");
  m.add({what.text, what.n});
  char thread[17] = {};
  prctl(PR_GET_NAME, thread);
  m.add(", thread '");
  m.add(thread);
  m.add(!call
            ? "'.\n"
            : "'. The host cannot recover from a crash inside a plugin, and its state is lost; "
              "to find the cause, run the same topology under gdb, or with a shardline built "
              "with AddressSanitizer (in Shardline's source tree, `cmake --preset asan && cmake "
              "--build build-asan` builds build-asan/shardline).\n");
  (void)!::write(STDERR_FILENO, m.text, m.n);
  ::raise(sig);  // SA_RESETHAND restored the default action: end as the signal would have
}

/// Runs as the process exits: a thread still inside plugin code got there by the plugin
/// calling exit(), which ends the host without draining or a summary; say so, and end at once.
/// exit() would go on to destroy the host's globals while its other threads still run and use
/// them (AddressSanitizer caught a shard thread starting up writing to a freed list of
/// counters); the handlers registered before this one, the host's static objects among them,
/// are skipped.
void on_process_exit(int status, void*) {
  const PluginCall* call = tl_call;
  if (!call || g_probe_fd >= 0) return;  // a normal end, or a copy (its host reports it)
  Message m;
  m.add("shardline: plugin code called exit(");
  char digits[12];
  const int n = std::snprintf(digits, sizeof digits, "%d", status);
  m.add({digits, static_cast<std::size_t>(std::max(n, 0))});
  m.add("): ");
  add_call(m, *call);
  m.add("; the host ends with it, without draining its pipelines or printing a summary\n");
  (void)!::write(STDERR_FILENO, m.text, m.n);
  ::_exit(status);
}

}  // namespace

PluginCall::PluginCall(std::string_view pipeline, std::string_view component) noexcept
    : pipeline_(pipeline), component_(component), outer_(tl_call) {
  std::atomic_signal_fence(std::memory_order_release);  // the names first, then the pointer
  tl_call = this;
  if (!outer_ && tl_counter) {
    tl_counter->begun.fetch_add(1, std::memory_order_relaxed);
    tl_counter->inside.store(true, std::memory_order_relaxed);
  }
}

PluginCall::~PluginCall() {
  tl_call = outer_;
  if (!outer_ && tl_counter) tl_counter->inside.store(false, std::memory_order_relaxed);
}

void watch_plugin_calls() {
  use_signal_stack();
  tl_counter = std::make_shared<CallCounter>();  // freed with the thread; the list holds it weakly
  std::lock_guard lock(g_counters_mutex);
  g_counters.push_back(tl_counter);
}

bool stuck_plugin_call(std::chrono::seconds patience) {
  const auto now = std::chrono::steady_clock::now();
  bool stuck = false;
  std::lock_guard lock(g_counters_mutex);
  std::erase_if(g_counters, [](const auto& c) { return c.expired(); });
  for (const auto& weak : g_counters) {
    const auto c = weak.lock();
    if (!c) continue;
    const std::uint64_t begun = c->begun.load(std::memory_order_relaxed);
    if (!c->inside.load(std::memory_order_relaxed) || begun != c->seen) {
      c->seen = begun;  // another call (or none) since the last look
      c->since = now;
      c->told = false;
      continue;
    }
    if (!c->told && now - c->since >= patience) {
      c->told = true;
      stuck = true;
    }
  }
  return stuck;
}

void install_crash_report() {
#ifndef __SANITIZE_ADDRESS__
  struct sigaction action {};
  action.sa_handler = on_fatal_signal;
  action.sa_flags = SA_RESETHAND | SA_ONSTACK;  // on the thread's alternate stack, if it has one
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &action, nullptr);
  use_signal_stack();
#endif
  ::on_exit(on_process_exit, nullptr);
  struct sigaction where {};
  where.sa_handler = on_where_signal;
  where.sa_flags = SA_RESTART;  // interrupted system calls go on as if nothing happened
  sigemptyset(&where.sa_mask);
  sigaction(where_signal(), &where, nullptr);
}

void report_plugin_calls() {
  // One report at a time: the answers are counted, and two reports would count each other's.
  static std::mutex reporting;
  const std::lock_guard one_at_a_time(reporting);
  const pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
  const std::uint64_t before = g_where_answers.load(std::memory_order_acquire);
  std::uint64_t asked = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const pid_t tid = static_cast<pid_t>(std::atol(task.path().filename().c_str()));
    if (tid > 0 && tid != self && ::syscall(SYS_tgkill, ::getpid(), tid, where_signal()) == 0)
      ++asked;
  }
  // Until every thread asked has answered (its line is then written), not for a fixed time: the
  // caller may end the process next. A thread that ended meanwhile never answers.
  const auto deadline = std::chrono::steady_clock::now() + kAnswerPatience;
  while (g_where_answers.load(std::memory_order_acquire) - before < asked &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

CopyOutcome crash_in_copy(const std::function<void()>& run, std::chrono::seconds timeout) {
  using End = CopyOutcome::End;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {End::no_copy, {}};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {End::no_copy, {}};
  }
  if (pid == 0) {
    // The copy: only this thread exists. It must not flush, log or run destructors, which
    // belong to the host: whatever happens, it ends with _exit or a signal.
    ::close(fds[0]);
    g_probe_fd = fds[1];
    try {
      run();
    } catch (...) {
      // Exceptions are the host's to handle when it runs the same code itself.
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  const auto read_all = [&] {
    char buf[1024];
    std::string text;
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, std::size_t(n));
    ::close(fds[0]);
    return text;
  };
  if (done != pid) {  // the host would be stuck the same way: never run it there
    // Asked where it is first (on_where_signal writes the plugin call it is in), then killed
    // once it has answered (or has not within kAnswerPatience: not in plugin code).
    ::kill(pid, where_signal());
    pollfd answer{fds[0], POLLIN, 0};
    const int patience_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(kAnswerPatience).count());
    while (::poll(&answer, 1, patience_ms) < 0 && errno == EINTR) {
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return {End::hung, "did not finish within " + std::to_string(timeout.count()) +
                           " s (an endless loop, or a wait that never ends)" + read_all()};
  }
  std::string what = read_all();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {End::returned, {}};
  if (what.empty())  // e.g. AddressSanitizer's report, which ends with an exit status
    what = WIFSIGNALED(status) ? std::string("signal ") + std::to_string(WTERMSIG(status))
                               : "exit status " + std::to_string(WEXITSTATUS(status));
  return {End::crashed, what};
}

}  // namespace shardline::loader
