#include "engine/plugin_call.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace shardline::engine {

namespace {

// Read by the signal handler on the same thread: plain thread-locals of the executable
// (initial-exec TLS), written only by PluginCall.
thread_local std::string_view tl_pipeline;
thread_local std::string_view tl_component;

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

void on_fatal_signal(int sig) {
  Message m;
  m.add("shardline: fatal SIG");
  m.add(sigabbrev_np(sig) ? sigabbrev_np(sig) : "NAL");
  m.add(sig == SIGSEGV || sig == SIGBUS ? " (invalid memory access)" : "");
  char thread[17] = {};
  prctl(PR_GET_NAME, thread);
  if (!tl_component.empty()) {
    m.add(" in plugin code: ");
    m.add(tl_component);
    if (!tl_pipeline.empty()) {
      m.add(", pipeline '");
      m.add(tl_pipeline);
      m.add("'");
    }
    m.add(", thread '");
    m.add(thread);
    m.add("'. The host cannot recover from a crash inside a plugin, and its state is lost; "
          "to find the cause, run the same topology with the asan preset's "
          "build-asan/shardline, or under gdb.\n");
  } else {
    m.add(" on thread '");
    m.add(thread);
    m.add("'.\n");
  }
  (void)!::write(STDERR_FILENO, m.text, m.n);
  ::raise(sig);  // SA_RESETHAND restored the default action: end as the signal would have
}

}  // namespace

PluginCall::PluginCall(std::string_view pipeline, std::string_view component) noexcept
    : outer_pipeline_(tl_pipeline), outer_component_(tl_component) {
  tl_pipeline = pipeline;
  tl_component = component;
}

PluginCall::~PluginCall() {
  tl_pipeline = outer_pipeline_;
  tl_component = outer_component_;
}

void install_crash_report() {
#ifndef __SANITIZE_ADDRESS__
  struct sigaction action {};
  action.sa_handler = on_fatal_signal;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) sigaction(sig, &action, nullptr);
#endif
}

}  // namespace shardline::engine
