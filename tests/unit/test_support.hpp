// Helpers that several unit test files share: where the test plugins are, a temporary folder,
// a capture of the log, a log of what components report through ErrorSink, typed access to a
// MessageBuffer, and the frames side of the connectors (a FrameHandler that records,
// length-prefixed framing).
// Everything is inline, in namespace shardline_test; a test file says which names it uses.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "connectors/source.hpp"
#include "engine/message_buffer.hpp"

namespace shardline_test {

/// A test plugin built by tests/plugins, by name ("test_events" -> .../test_events.so).
inline std::filesystem::path test_plugin(const std::string& name) {
  return std::filesystem::path(SHARDLINE_TEST_PLUGIN_DIR) / (name + ".so");
}

/// A fresh folder under the system temp folder, named `prefix`, the process id and a counter;
/// removed with everything in it.
struct TempDir {
  explicit TempDir(const std::string& prefix) {
    static std::atomic<unsigned> counter{0};
    path = std::filesystem::temp_directory_path() /
           (prefix + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Writes `content` (as bytes) to the file `name` in the folder; returns its path.
  std::filesystem::path file(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
  std::filesystem::path path;
};

/// The bytes of a file (empty if it cannot be read).
inline std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A copy of `plugin`, written to `dir` as `name`, whose ABI record says it was built with SDK
/// `version` (of the same ABI): what the host sees of a plugin built with another SDK release.
inline std::filesystem::path with_sdk_version(const TempDir& dir, const std::string& name,
                                              const std::filesystem::path& plugin,
                                              std::string_view version) {
  std::string image = read_file(plugin);
  const auto& host = shardline::kAbiRecord;  // the plugin's record, as built with this SDK
  const std::string_view record(reinterpret_cast<const char*>(&host), sizeof host);
  const auto at = image.find(record);
  if (at == std::string::npos || image.find(record, at + 1) != std::string::npos) return {};
  shardline::AbiRecord patched = host;
  std::memset(patched.sdk_version, 0, sizeof patched.sdk_version);
  std::memcpy(patched.sdk_version, version.data(),
              std::min(version.size(), sizeof patched.sdk_version - 1));
  std::memcpy(image.data() + at, &patched, sizeof patched);
  return dir.file(name, image);
}

/// How long a test waits for something that happens at once on an idle machine: far longer
/// than any run, so a slow CI machine never fails a test by timing out.
constexpr auto kGenerous = std::chrono::seconds(60);

/// Captures log lines, so a test can wait for "the sink has tried and failed" as an event.
class LogWatch : public spdlog::sinks::base_sink<std::mutex> {
 public:
  LogWatch() { spdlog::default_logger()->sinks().push_back(self()); }
  ~LogWatch() override {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), self()), sinks.end());
  }
  /// Waits until `count` lines containing `needle` have been logged.
  bool wait_for(const std::string& needle, std::ptrdiff_t count = 1) {
    std::unique_lock lock(seen_mutex_);
    return seen_cv_.wait_for(lock, kGenerous, [&] { return matching(needle) >= count; });
  }
  /// How many lines containing `needle` have been logged so far.
  std::ptrdiff_t count(const std::string& needle) {
    std::lock_guard lock(seen_mutex_);
    return matching(needle);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    {
      std::lock_guard lock(seen_mutex_);
      lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    seen_cv_.notify_all();
  }
  void flush_() override {}

 private:
  std::ptrdiff_t matching(const std::string& needle) const {
    return std::count_if(lines_.begin(), lines_.end(),
                         [&](const std::string& l) { return l.find(needle) != l.npos; });
  }
  // Registered in the logger as a non-owning shared_ptr: the LogWatch lives on the stack.
  std::shared_ptr<spdlog::sinks::sink> self() {
    return std::shared_ptr<spdlog::sinks::sink>(std::shared_ptr<void>(), this);
  }
  std::mutex seen_mutex_;
  std::condition_variable seen_cv_;
  std::vector<std::string> lines_;
};

/// What an ErrorSink was told: (index of the message, what went wrong), in order.
using Reports = std::vector<std::pair<std::size_t, std::string>>;

/// Collects what components report through ErrorSink.
struct ErrorLog {
  ErrorLog() = default;
  ErrorLog(const ErrorLog&) = delete;  // the sink points at this object
  ErrorLog& operator=(const ErrorLog&) = delete;

  Reports entries;
  shardline::ErrorSink sink{[](void* ctx, std::size_t i, std::string_view what) {
                              static_cast<ErrorLog*>(ctx)->entries.emplace_back(i, std::string(what));
                            },
                            this};
};

/// Appends a T to a buffer whose type is T.
template <class T>
void push(shardline::engine::MessageBuffer& b, T value) {
  ::new (b.next_slot()) T(std::move(value));
  b.commit();
}

/// The i-th message of a buffer whose type is T.
template <class T>
T& get(const shardline::engine::MessageBuffer& b, std::size_t i) {
  return b.span().at<T>(i);
}

/// Records the frames and the bad-input reports a source or a FrameSplitter delivers, and how
/// it delivered them (number of calls, most frames in one call, when it was caught up).
struct FrameRecorder : shardline::connectors::FrameHandler {
  std::vector<std::string> frames;
  std::vector<std::string> bad;
  std::size_t calls = 0;
  std::size_t largest_call = 0;
  std::vector<std::size_t> caught_up;  ///< frames.size() at each on_caught_up()
  std::vector<std::uint64_t> arrived;  ///< arrived_ns of each call
  std::vector<std::string> where;      ///< origin.where() of every frame, with `locate`
  bool locate = false;
  std::size_t on_frames(const shardline::Frame* f, std::size_t n, std::uint64_t arrived_ns,
                        const shardline::connectors::FrameOrigin& origin) override {
    if (locate)
      for (std::size_t i = 0; i < n; ++i) where.push_back(origin.where(f + i));
    ++calls;
    arrived.push_back(arrived_ns);
    largest_call = std::max(largest_call, n);
    for (std::size_t i = 0; i < n; ++i) frames.emplace_back(f[i].text());
    return n;
  }
  void on_caught_up() override { caught_up.push_back(frames.size()); }
  void on_bad_input(std::string_view what) override { bad.emplace_back(what); }
};

/// The payloads as a stream of frames with a 4-byte big-endian length prefix.
inline std::string length_prefixed(const std::vector<std::string>& payloads) {
  std::string out;
  for (const auto& p : payloads) {
    const auto n = static_cast<std::uint32_t>(p.size());
    out += {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
    out += p;
  }
  return out;
}

}  // namespace shardline_test
