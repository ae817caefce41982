#include "connectors/pacer.hpp"

#include <time.h>

#include <algorithm>
#include <cerrno>

#include "metrics/latency_histogram.hpp"

namespace shardline::connectors {

namespace {
constexpr std::uint64_t kSecond = 1'000'000'000;
constexpr std::uint64_t kStopCheckNs = 100'000'000;
}  // namespace

std::size_t Pacer::on_frames(const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                             const FrameOrigin& origin) {
  if (start_ns_ == 0) start_ns_ = arrived_ns;
  std::size_t i = 0;
  while (i < n) {
    if (stop_.load(std::memory_order_relaxed)) break;
    const std::uint64_t now = metrics::now_ns();
    const std::uint64_t ready = due_by(now);
    if (ready <= sent_) {
      if (!sleep_until(due(sent_))) break;
      continue;
    }
    const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>(n - i, ready - sent_));
    const std::size_t taken = next_.on_frames(frames + i, m, due(sent_), origin);
    i += taken;
    sent_ += taken;
    if (taken < m) break;
    // Everything due is handed on: as far as the schedule goes, the source has caught up. Said
    // after every hand-on, not only before a sleep: at a high rate the next frame falls due
    // while this one is processed, the pacer never sleeps, and the pipeline would hold its
    // outputs until the end of the read (a 64 KiB read is 92 us of Market Spread orders at
    // 12.5M/s).
    next_.on_caught_up();
  }
  return i;
}

std::uint64_t Pacer::due(std::uint64_t k) const {
  // 128 bits: k * 1e9 passes 2^64 after 18 billion frames.
  return start_ns_ + static_cast<std::uint64_t>(static_cast<unsigned __int128>(k) * kSecond / rate_);
}

std::uint64_t Pacer::due_by(std::uint64_t now) const {
  if (now < start_ns_) return 0;
  // Frames 0..k are due when due(k) <= now.
  return static_cast<std::uint64_t>(static_cast<unsigned __int128>(now - start_ns_) * rate_ / kSecond) + 1;
}

bool Pacer::sleep_until(std::uint64_t when) const {
  // metrics::now_ns reads steady_clock, which is CLOCK_MONOTONIC on Linux.
  for (;;) {
    if (stop_.load(std::memory_order_relaxed)) return false;
    const std::uint64_t now = metrics::now_ns();
    if (now >= when) return true;
    const std::uint64_t until = std::min(when, now + kStopCheckNs);
    timespec ts{static_cast<time_t>(until / kSecond), static_cast<long>(until % kSecond)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
  }
}

}  // namespace shardline::connectors
