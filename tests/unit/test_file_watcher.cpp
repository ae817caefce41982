// FileWatcher: a rewritten file runs its action once it has settled; a change still settling
// when the watcher stops is not acted on, and the log says so. No sleeps: the tests wait for
// the watcher's own log lines, and the debounce is far longer than a test where a change must
// not settle.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>

#include "reload/file_watcher.hpp"
#include "test_support.hpp"

using shardline::reload::FileWatcher;
using shardline_test::LogWatch;
using shardline_test::TempDir;
using namespace std::chrono_literals;

TEST_CASE("FileWatcher: a rewritten file runs its action once it has settled") {
  TempDir dir("shardline-watch-");
  const auto file = dir.file("app.so", "v1");
  std::atomic<int> runs{0};
  LogWatch log;
  {
    FileWatcher watcher({{file, "plugin 'app'", [&] { ++runs; }}}, 10ms);
    dir.file("app.so", "v2");
    REQUIRE(log.wait_for("plugin 'app': " + file.string() + " changed"));
  }
  CHECK(runs == 1);
  CHECK(log.count("not acted on") == 0);
}

TEST_CASE("FileWatcher: a change still settling when it stops is logged, not acted on") {
  TempDir dir("shardline-watch-");
  const auto file = dir.file("app.so", "v1");
  std::atomic<int> runs{0};
  LogWatch log;
  {
    // A debounce far longer than the test: the change cannot settle before the watcher stops,
    // whether or not its thread has read the event by then.
    FileWatcher watcher({{file, "plugin 'app'", [&] { ++runs; }}},
                        std::chrono::duration_cast<std::chrono::milliseconds>(
                            shardline_test::kGenerous));
    dir.file("app.so", "v2");
  }
  CHECK(runs == 0);
  CHECK(log.count("plugin 'app': " + file.string() + " changed as the run ended; not acted on") ==
        1);
}

TEST_CASE("wait_until_settled: a file left alone settles, one that is not there does not",
          "[reload]") {
  using shardline::reload::wait_until_settled;
  TempDir dir("shardline-settle-");
  const auto file = dir.file("x.so", "written just now");
  const auto started = std::chrono::steady_clock::now();
  CHECK(wait_until_settled(file, 200ms, 10s));
  // It waited until the file had been left alone for the quiet time, not less.
  CHECK(std::chrono::steady_clock::now() - started >= 150ms);
  CHECK_FALSE(wait_until_settled(dir.path / "gone.so", 200ms, 300ms));
}
