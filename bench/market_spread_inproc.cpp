// market_spread_inproc: runs a topology in this process and measures one phase of the run.
//
// Built for Market Spread (NBBO file first, then the orders file with start_after = "nbbo"),
// but it runs any topology (the word-count scenario uses it too):
//   1. optionally reads the input files once (--warm), so that they are in the page cache;
//   2. parses and wires the topology (plugins are loaded here, outside the measurement);
//   3. watches the "phase file" with inotify: the measured phase starts when a source opens it
//      (for Market Spread: the orders source, once every NBBO has been processed) and ends
//      when Engine::run() returns (everything processed, sinks flushed, threads joined);
//   4. counts heap allocations: this program replaces the global operator new/delete (the
//      plugins, loaded later, bind to these too), so every C++ allocation of the runtime and
//      the plugins, on any thread, is counted. The steady-state window runs from the moment
//      the source has read a quarter of the file (pools and buffers have grown by then) to
//      the moment it closes it; --trace-allocs N prints where the first N allocations of that
//      window come from;
//   5. samples each thread's CPU time and run-queue wait (/proc/self/task/*/schedstat) over
//      the phase, so that a bottleneck thread shows (bench/profile.sh prints them).
// Prints one JSON object on stdout. [main thread; one watcher thread]
#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "engine/engine.hpp"
#include "topology/topology.hpp"
#include "topology/wiring.hpp"

// ---- Counting allocator. Relaxed atomics: a few ns per allocation, and allocations are what
// we want to see disappear from the hot path anyway.

namespace {
std::atomic<std::uint64_t> g_allocs{0};
std::atomic<std::uint64_t> g_alloc_bytes{0};

// --trace-allocs N: the call stacks of the first N allocations of the steady-state window,
// kept in fixed arrays (backtrace(3) does not allocate once primed) and printed at the end.
constexpr int kTraceDepth = 12;
constexpr int kTraceMax = 64;
std::atomic<int> g_trace_left{0};
std::atomic<int> g_trace_used{0};
void* g_trace[kTraceMax][kTraceDepth];
int g_trace_depth[kTraceMax];
std::size_t g_trace_size[kTraceMax];

void count(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  g_alloc_bytes.fetch_add(n, std::memory_order_relaxed);
  if (g_trace_left.load(std::memory_order_relaxed) > 0 &&
      g_trace_left.fetch_sub(1, std::memory_order_relaxed) > 0) {
    const int slot = g_trace_used.fetch_add(1, std::memory_order_relaxed);
    if (slot < kTraceMax) {
      g_trace_depth[slot] = ::backtrace(g_trace[slot], kTraceDepth);
      g_trace_size[slot] = n;
    }
  }
}

/// Prints each traced stack as module+offset lines (resolve with addr2line -f -C -e MODULE).
void print_traces() {
  const int used = std::min(g_trace_used.load(), kTraceMax);
  for (int t = 0; t < used; ++t) {
    std::fprintf(stderr, "allocation %d (%zu bytes):\n", t, g_trace_size[t]);
    for (int f = 2; f < g_trace_depth[t]; ++f) {  // skip count() and counted_alloc()
      Dl_info info{};
      if (::dladdr(g_trace[t][f], &info) && info.dli_fname) {
        std::fprintf(stderr, "  %s+0x%zx %s\n", info.dli_fname,
                     static_cast<std::size_t>(static_cast<char*>(g_trace[t][f]) -
                                              static_cast<char*>(info.dli_fbase)),
                     info.dli_sname ? info.dli_sname : "");
      } else {
        std::fprintf(stderr, "  %p\n", g_trace[t][f]);
      }
    }
  }
}

void* counted_alloc(std::size_t n) {
  count(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* counted_alloc_aligned(std::size_t n, std::align_val_t al) {
  count(n);
  const auto a = static_cast<std::size_t>(al);
  const std::size_t size = (n + a - 1) / a * a;  // aligned_alloc wants a multiple
  if (void* p = std::aligned_alloc(a, size ? size : a)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc_aligned(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;

struct Mark {
  Clock::time_point at{};
  std::uint64_t allocs = 0;
  std::uint64_t alloc_bytes = 0;
  bool seen = false;
  void take() {
    at = Clock::now();
    allocs = g_allocs.load(std::memory_order_relaxed);
    alloc_bytes = g_alloc_bytes.load(std::memory_order_relaxed);
    seen = true;
  }
};

/// CPU time of every thread of this process (from /proc/self/task/*/schedstat), without
/// operator new. Threads are listed by id, which is their creation order here.
struct ThreadTimes {
  static constexpr std::size_t kMax = 256;
  std::size_t n = 0;
  long tid[kMax];
  std::uint64_t cpu_ns[kMax];
  std::uint64_t wait_ns[kMax];  ///< runnable but waiting for a CPU
  char comm[kMax][16];          ///< the thread's name ("shard 0", ...)
  void take() {
    n = 0;
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9' || n == kMax) continue;
      char name[320], text[128];
      std::snprintf(name, sizeof name, "/proc/self/task/%s/schedstat", e->d_name);
      const int f = ::open(name, O_RDONLY | O_CLOEXEC);
      if (f < 0) continue;
      const ssize_t k = ::read(f, text, sizeof text - 1);
      ::close(f);
      if (k <= 0) continue;
      text[k] = 0;
      tid[n] = std::strtol(e->d_name, nullptr, 10);
      std::snprintf(name, sizeof name, "/proc/self/task/%s/comm", e->d_name);
      comm[n][0] = 0;
      if (const int c = ::open(name, O_RDONLY | O_CLOEXEC); c >= 0) {
        const ssize_t m = ::read(c, comm[n], sizeof comm[n] - 1);
        ::close(c);
        comm[n][m > 0 ? m - 1 : 0] = 0;  // without the newline
      }
      char* rest = nullptr;
      cpu_ns[n] = std::strtoull(text, &rest, 10);
      wait_ns[n] = std::strtoull(rest, nullptr, 10);
      ++n;
    }
    ::closedir(d);
    for (std::size_t i = 1; i < n; ++i)  // insertion sort by thread id
      for (std::size_t j = i; j > 0 && tid[j - 1] > tid[j]; --j) {
        std::swap(tid[j - 1], tid[j]);
        std::swap(cpu_ns[j - 1], cpu_ns[j]);
        std::swap(wait_ns[j - 1], wait_ns[j]);
        std::swap(comm[j - 1], comm[j]);
      }
  }
  std::size_t find(long t) const {
    for (std::size_t i = 0; i < n; ++i)
      if (tid[i] == t) return i;
    return kMax;
  }
};

/// Watches the phase file: when a source opens it (inotify), when that source has read a
/// quarter of it (its file offset, from /proc/self/fdinfo, sampled every few milliseconds), and
/// when the source closes it. The quarter mark starts the steady-state window, after the pools
/// and buffers have grown to their working size. Nothing here allocates with operator new, so
/// the watcher adds nothing to the counts.
class PhaseWatch {
 public:
  PhaseWatch(const std::string& path, int trace_allocs) : trace_allocs_(trace_allocs) {
    if (!::realpath(path.c_str(), path_)) throw std::runtime_error("cannot resolve " + path);
    struct stat st{};
    if (::stat(path_, &st) != 0) throw std::runtime_error("cannot stat " + path);
    size_ = static_cast<std::uint64_t>(st.st_size);
    fd_ = ::inotify_init1(IN_CLOEXEC);
    if (fd_ < 0 || ::inotify_add_watch(fd_, path_, IN_OPEN | IN_CLOSE) < 0)
      throw std::runtime_error("cannot watch " + path + " with inotify");
    thread_ = std::thread([this] { run(); });
  }
  ~PhaseWatch() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  /// Waits up to `patience` for the close; true if it was seen.
  bool wait_closed(std::chrono::milliseconds patience) {
    const auto until = Clock::now() + patience;
    while (!closed_seen_.load() && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return closed_seen_.load();
  }
  std::uint64_t size() const { return size_; }
  Mark opened, quarter, closed;
  std::uint64_t quarter_pos = 0;
  ThreadTimes cpu_at_open, cpu_last;  ///< at the open, and sampled until the close

 private:
  void run() {
    alignas(inotify_event) char buf[4096];
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5) > 0) {
        const ssize_t n = ::read(fd_, buf, sizeof buf);
        for (char* at = buf; n > 0 && at < buf + n;) {
          const auto* e = reinterpret_cast<const inotify_event*>(at);
          if ((e->mask & IN_OPEN) && !opened.seen) {
            opened.take();
            cpu_at_open.take();
            source_fd_ = find_fd();
          }
          if ((e->mask & IN_CLOSE) && opened.seen && !closed.seen) {
            closed.take();
            closed_seen_ = true;
          }
          at += sizeof(inotify_event) + e->len;
        }
      } else if (opened.seen && !closed.seen) {
        // Threads exit soon after the close, so their CPU times are sampled while it is open.
        if (++ticks_ % 4 == 0) cpu_last.take();  // every ~20 ms
        if (!quarter.seen && source_fd_ >= 0) {
          const std::uint64_t pos = position(source_fd_);
          if (pos >= size_ / 4 && pos != UINT64_MAX) {
            quarter.take();
            quarter_pos = pos;
            g_trace_left.store(trace_allocs_, std::memory_order_relaxed);
          }
        }
      }
    }
  }
  /// The descriptor of this process open on the phase file (the source's), or -1.
  int find_fd() const {
    char link[64], target[PATH_MAX + 1];
    for (int fd = 0; fd < 4096; ++fd) {
      std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
      const ssize_t n = ::readlink(link, target, PATH_MAX);
      if (n <= 0) continue;
      target[n] = 0;
      if (std::strcmp(target, path_) == 0) return fd;
    }
    return -1;
  }
  /// The file offset of descriptor `fd`, from /proc/self/fdinfo.
  static std::uint64_t position(int fd) {
    char name[64], text[512];
    std::snprintf(name, sizeof name, "/proc/self/fdinfo/%d", fd);
    const int f = ::open(name, O_RDONLY | O_CLOEXEC);
    if (f < 0) return UINT64_MAX;
    const ssize_t n = ::read(f, text, sizeof text - 1);
    ::close(f);
    if (n <= 0) return UINT64_MAX;
    text[n] = 0;
    const char* pos = std::strstr(text, "pos:");
    return pos ? std::strtoull(pos + 4, nullptr, 10) : UINT64_MAX;
  }
  char path_[PATH_MAX + 1] = {};
  std::uint64_t size_ = 0;
  int fd_ = -1;
  int source_fd_ = -1;
  const int trace_allocs_;  ///< allocations to trace from the quarter mark on
  unsigned ticks_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_seen_{false};
};

void warm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<char> buf(1 << 20);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
  }
}

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs a topology in-process; times the phase that starts when --phase-file is "
               "opened; counts heap allocations. Prints one JSON object."};
  std::string topology_file, phase_file, count_pipeline, log_level = "warn";
  std::vector<std::string> warm_files;
  std::uint32_t shards = 0;
  app.add_option("--topology", topology_file, "topology.toml")->required()->check(CLI::ExistingFile);
  app.add_option("--shards", shards, "Override the shard count");
  app.add_option("--phase-file", phase_file,
                 "Input file whose opening starts the measured phase (default: the whole run)");
  app.add_option("--count-pipeline", count_pipeline,
                 "Pipeline whose messages are counted (default: the last)");
  std::string count_what = "in";
  app.add_option("--count", count_what, "Count that pipeline's input or its output messages")
      ->check(CLI::IsMember({"in", "out"}))
      ->capture_default_str();
  app.add_option("--warm", warm_files, "Read these files once first (page cache)");
  app.add_option("--log-level", log_level)->capture_default_str();
  int trace_allocs = 0;
  app.add_option("--trace-allocs", trace_allocs,
                 "Print the call stacks of the first N steady-state allocations (max 64)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(log_level));

  try {
    for (const auto& f : warm_files) warm(f);
    auto topo = shardline::topology::parse_topology(topology_file);
    if (shards) topo.shards = shards;
    if (topo.key_groups < topo.shards) topo.key_groups = topo.shards;
    auto wiring = shardline::topology::wire_topology(std::move(topo));
    shardline::engine::Engine engine(std::move(wiring));

    std::unique_ptr<PhaseWatch> watch;
    if (trace_allocs > 0) {  // prime backtrace(): its first call loads libgcc and allocates
      void* prime[4];
      ::backtrace(prime, 4);
    }
    if (!phase_file.empty())
      watch = std::make_unique<PhaseWatch>(phase_file, std::min(trace_allocs, kTraceMax));
    Mark start, end;
    start.take();
    const int status = engine.run();
    end.take();
    if (watch && !watch->wait_closed(std::chrono::milliseconds(1000)))
      std::fprintf(stderr, "market_spread_inproc: %s was not opened and closed during the run\n",
                   phase_file.c_str());

    const auto& sum = engine.summary();
    const shardline::metrics::PipelineSummary* counted = nullptr;
    for (const auto& p : sum.pipelines)
      if (count_pipeline.empty() || p.name == count_pipeline) counted = &p;
    if (!counted) throw std::runtime_error("no pipeline '" + count_pipeline + "'");

    // Without a phase file, the phase is the whole of Engine::run().
    const bool have_open = watch && watch->opened.seen;
    const bool have_close = watch && watch->closed.seen;
    const Mark& open = have_open ? watch->opened : start;
    const Mark& closed = have_close ? watch->closed : end;
    // The steady-state window: from a quarter of the file read to the source's close; its
    // messages estimated from the share of the file read in it (exact for fixed-size frames).
    const bool have_quarter = have_open && have_close && watch->quarter.seen;
    const Mark& steady_from = have_quarter ? watch->quarter : open;
    const double steady_share =
        have_quarter ? static_cast<double>(watch->size() - watch->quarter_pos) /
                           static_cast<double>(watch->size())
                     : 1.0;
    const std::uint64_t messages = count_what == "in" ? counted->in : counted->out;
    const double steady_msgs = steady_share * static_cast<double>(messages);
    const std::uint64_t steady_allocs = closed.allocs - steady_from.allocs;
    const double phase_s = seconds(open.at, end.at);
    const double open_close_s = seconds(open.at, closed.at);

    // CPU seconds of each thread, and seconds it was runnable but waited for a CPU, from the
    // open to the last sample before the close (at most ~20 ms before it), in thread-id
    // order: main, the phase watcher, then as the engine starts them: sinks, shards, sources.
    std::string threads;
    if (have_open && have_close && watch->cpu_last.n) {
      const ThreadTimes& a = watch->cpu_at_open;
      const ThreadTimes& b = watch->cpu_last;
      for (std::size_t i = 0; i < b.n; ++i) {
        const std::size_t j = a.find(b.tid[i]);
        const std::uint64_t cpu0 = j < a.n ? a.cpu_ns[j] : 0, wait0 = j < a.n ? a.wait_ns[j] : 0;
        char item[160];
        std::snprintf(item, sizeof item,
                      "%s{\"tid\": %ld, \"name\": \"%s\", \"cpu_s\": %.4f, \"runq_s\": %.4f}",
                      i ? ", " : "", b.tid[i], b.comm[i], static_cast<double>(b.cpu_ns[i] - cpu0) * 1e-9,
                      static_cast<double>(b.wait_ns[i] - wait0) * 1e-9);
        threads += item;
      }
    }
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::uint64_t keys = 0, overhead = 0;
    for (const auto& s : sum.states) {
      keys += s.keys;
      overhead += s.overhead_bytes;
    }
    std::printf(
        "{\"status\": %d, \"run_s\": %.6f, \"phase_s\": %.6f, \"read_s\": %.6f, \"messages\": %llu, "
        "\"out\": %llu, \"errors\": %llu, \"msgs_per_s\": %.1f, \"phase_allocs\": %llu, "
        "\"phase_alloc_bytes\": %llu, \"steady_window\": \"%s\", \"steady_msgs\": %.0f, "
        "\"steady_allocs\": %llu, \"allocs_per_msg\": %.7f, \"max_rss_kb\": %ld, "
        "\"state_keys\": %llu, \"state_overhead_bytes\": %llu, \"threads\": [%s], "
        "\"summary\": \"%s\"}\n",
        status, seconds(start.at, end.at), phase_s, open_close_s, static_cast<unsigned long long>(messages),
        static_cast<unsigned long long>(counted->out),
        static_cast<unsigned long long>(counted->errors),
        phase_s > 0 ? static_cast<double>(messages) / phase_s : 0.0,
        static_cast<unsigned long long>(end.allocs - open.allocs),
        static_cast<unsigned long long>(end.alloc_bytes - open.alloc_bytes),
        have_quarter ? "quarter-read..close" : (have_open ? "open..close" : "run"), steady_msgs,
        static_cast<unsigned long long>(steady_allocs),
        steady_msgs > 0 ? static_cast<double>(steady_allocs) / steady_msgs : 0.0, ru.ru_maxrss,
        static_cast<unsigned long long>(keys), static_cast<unsigned long long>(overhead),
        threads.c_str(), json_escape(sum.line()).c_str());
    g_trace_left = 0;
    print_traces();
    return status;
  } catch (const shardline::topology::TopologyError& e) {
    for (const auto& line : e.errors) std::fprintf(stderr, "%s\n", line.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "market_spread_inproc: %s\n", e.what());
  }
  return 1;
}
