// SinkPort: chunks queued for the sink's thread (scheduling = "throughput") or written by the
// producing threads themselves (scheduling = "latency"): every chunk arrives whole, one writer
// at a time, each producer's chunks in order; once the sink gives up, the rest is counted lost.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/sink_port.hpp"

using shardline::engine::EncodedChunk;
using shardline::engine::Pool;
using shardline::engine::Reuse;
using shardline::engine::SinkPort;

namespace {

/// A sink that keeps what it is given, notes which threads wrote, and catches two writes at
/// once. Gives up from write number `fail_at` on (1-based; 0: never), having written the first
/// `partial` bytes of that write.
class RecordingSink final : public shardline::connectors::Sink {
 public:
  explicit RecordingSink(int fail_at = 0, std::size_t partial = 0)
      : fail_at_(fail_at), partial_(partial) {}
  void open() override {}
  std::size_t write(const std::byte* data, std::size_t n) override {
    if (writing_.exchange(true)) overlapped_ = true;
    ++writes_;
    const std::size_t kept = fail_at_ == 0 || writes_ < fail_at_ ? n
                             : writes_ == fail_at_              ? std::min(partial_, n)
                                                                : 0;
    bytes_.append(reinterpret_cast<const char*>(data), kept);
    {
      std::lock_guard lock(threads_mutex_);
      threads_.insert(std::this_thread::get_id());
    }
    writing_ = false;
    return kept;
  }
  void close() override {}
  void abandon() override {}
  std::string describe() const override { return "recording"; }

  const std::string& bytes() const { return bytes_; }
  int writes() const { return writes_; }
  bool overlapped() const { return overlapped_; }
  std::set<std::thread::id> threads() {
    std::lock_guard lock(threads_mutex_);
    return threads_;
  }

 private:
  const int fail_at_;
  const std::size_t partial_;
  std::atomic<bool> writing_{false};
  std::atomic<bool> overlapped_{false};
  int writes_ = 0;     // only written inside a write, which the port serializes
  std::string bytes_;  // likewise
  std::mutex threads_mutex_;
  std::set<std::thread::id> threads_;
};

/// A chunk of `lines` lines "producer seq\n", as a worker would fill one.
EncodedChunk* chunk_of(Pool<EncodedChunk>& pool, int producer, int& seq, int lines) {
  EncodedChunk* c = pool.acquire();
  c->bytes.clear();
  c->messages = 0;
  for (int i = 0; i < lines; ++i) {
    const std::string line = std::to_string(producer) + " " + std::to_string(seq++) + "\n";
    const auto* b = reinterpret_cast<const std::byte*>(line.data());
    c->bytes.insert(c->bytes.end(), b, b + line.size());
    ++c->messages;
  }
  return c;
}

}  // namespace

TEST_CASE("a sink port delivers every chunk whole, one writer at a time", "[sink_port]") {
  const bool direct = GENERATE(false, true);
  CAPTURE(direct);
  constexpr int producers = 3, chunks = 400, lines = 7;
  RecordingSink sink;
  shardline::metrics::PipelineMetrics metrics;
  Pool<EncodedChunk> pool(Reuse::newest_first);
  // A small queue: producers block often.
  std::atomic<int> failures{0};
  SinkPort port(sink, metrics, pool, 4, direct, shardline::Framing::lines, [&] { ++failures; });

  std::thread::id sink_thread;
  auto drainer = std::async(std::launch::async, [&] {
    sink_thread = std::this_thread::get_id();
    port.drain();
  });
  std::vector<std::future<std::thread::id>> workers;
  for (int p = 0; p < producers; ++p)
    workers.push_back(std::async(std::launch::async, [&, p] {
      int seq = 0;
      for (int c = 0; c < chunks; ++c) port.deliver(chunk_of(pool, p, seq, lines));
      return std::this_thread::get_id();
    }));
  std::set<std::thread::id> worker_threads;
  for (auto& w : workers) worker_threads.insert(w.get());
  port.close();
  drainer.get();

  CHECK_FALSE(sink.overlapped());
  CHECK_FALSE(port.lost());
  CHECK(failures == 0);
  CHECK(metrics.lost.load() == 0);
  if (direct) {
    CHECK(sink.threads() == worker_threads);
  } else {
    CHECK(sink.threads() == std::set<std::thread::id>{sink_thread});
  }
  // Each producer's lines, in the order it sent them: chunks were neither split nor reordered.
  std::map<int, int> next;
  std::istringstream in(sink.bytes());
  int producer = 0, seq = 0, total = 0;
  while (in >> producer >> seq) {
    REQUIRE(seq == next[producer]++);
    ++total;
  }
  CHECK(total == producers * chunks * lines);
}

TEST_CASE("once the sink gives up, every later chunk is counted lost", "[sink_port]") {
  const bool direct = GENERATE(false, true);
  CAPTURE(direct);
  RecordingSink sink(3);  // the third write fails
  shardline::metrics::PipelineMetrics metrics;
  Pool<EncodedChunk> pool(Reuse::newest_first);
  std::atomic<int> failures{0};
  SinkPort port(sink, metrics, pool, 64, direct, shardline::Framing::lines, [&] { ++failures; });
  auto drainer = std::async(std::launch::async, [&] { port.drain(); });
  int seq = 0;
  for (int c = 0; c < 5; ++c) port.deliver(chunk_of(pool, 0, seq, 10));
  port.close();
  drainer.get();
  CHECK(port.lost());
  CHECK(sink.writes() == 3);  // not retried, and nothing tried after it
  CHECK(failures == 1);       // reported once, when it gave up
  CHECK(metrics.lost.load() == 30);
  CHECK(std::count(sink.bytes().begin(), sink.bytes().end(), '\n') == 20);
}

TEST_CASE("the chunk a sink gives up in counts its whole frames as written, the rest lost",
          "[sink_port]") {
  // Chunks of 10 lines "0 N\n" (4 or 5 bytes each); the third write stops after 13 bytes of
  // its chunk: "0 20\n0 21\n0 2" holds two whole lines.
  shardline::metrics::PipelineMetrics metrics;
  Pool<EncodedChunk> pool(Reuse::newest_first);
  RecordingSink sink(3, 13);
  SinkPort port(sink, metrics, pool, 64, true, shardline::Framing::lines, [] {});
  int seq = 0;
  for (int c = 0; c < 5; ++c) port.deliver(chunk_of(pool, 0, seq, 10));
  CHECK(port.lost());
  CHECK(std::count(sink.bytes().begin(), sink.bytes().end(), '\n') == 22);
  CHECK(metrics.lost.load() == 8 + 20);
}
