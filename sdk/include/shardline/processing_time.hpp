// shardline/processing_time.hpp — the wall-clock time at which the host handed over the
// messages a plugin function is working on.
//
// A function that stamps its outputs (Market Spread's rejected orders) would otherwise read the
// clock once per message: 10-30 ns each on a virtual machine, as much as the rest of a state
// computation. processing_time_ns() reads it once per call of the host into the plugin (a
// batch: up to batch_size messages for a step, 1,024 frames for a decoder), the first time a
// message of that call asks, and gives every later message of the call the same value. Calls
// follow each other within microseconds under load; a light load makes smaller calls, each
// with its own reading.
#pragma once

#include <cstdint>
#include <ctime>

namespace shardline {

namespace detail {
/// Outside a call: no reading is shared, each asks the clock.
inline constexpr std::uint64_t kNoCall = ~std::uint64_t{0};
/// The reading of the current call, 0 before its first use, kNoCall outside a call. One per
/// plugin and thread; trivially destructible, so it never keeps a plugin's build mapped.
inline thread_local std::uint64_t call_time_ns = kNoCall;

inline std::uint64_t realtime_now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Brackets one call of the host into a plugin function (the SDK's wrappers make it).
class CallTime {
 public:
  CallTime() noexcept { call_time_ns = 0; }
  ~CallTime() { call_time_ns = kNoCall; }
  CallTime(const CallTime&) = delete;
  CallTime& operator=(const CallTime&) = delete;
};
}  // namespace detail

/// CLOCK_REALTIME in nanoseconds since the epoch, read once per call of the host into this
/// plugin and the same for every message of that call; outside such a call (a state factory,
/// a state's save or restore), the clock now.
inline std::uint64_t processing_time_ns() noexcept {
  std::uint64_t& t = detail::call_time_ns;
  if (t == detail::kNoCall) return detail::realtime_now_ns();
  if (t == 0) t = detail::realtime_now_ns();
  return t;
}

}  // namespace shardline
