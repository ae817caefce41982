// SourceGate: lets the control thread pause every source between two chunks of input.
// [source threads: enter/leave around what they hand over; control thread: pause/resume]
//
// A source thread enters the gate before it hands frames to the engine and leaves once every
// batch they made is sent (after each read, or sooner when pause_requested()). pause() closes
// the gate and waits until no source is inside, so when it returns no source holds unsent
// messages, and none will start again until resume(). A source parked at the gate keeps its
// unread bytes in its buffer and its socket: nothing is lost, it just waits (a TCP sender sees
// its window close).
//
// With the gate closed and the engine drained (Dataflow::in_flight() == 0), the reload has its
// consistent cut without a barrier message in the queues: they are empty, so there is nothing
// to align. A cut taken while messages keep flowing (a checkpoint) would need such a marker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace shardline::engine {

class SourceGate {
 public:
  void enter() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !paused_.load(std::memory_order_relaxed); });
    ++inside_;
  }
  void leave() {
    std::lock_guard lock(mutex_);
    if (--inside_ == 0 && paused_.load(std::memory_order_relaxed)) cv_.notify_all();
  }
  /// Closes the gate (if open); true once no source is inside, false after `timeout` with the
  /// gate still closed: the caller waits again, or gives up with resume().
  bool pause(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    paused_.store(true, std::memory_order_relaxed);
    return cv_.wait_for(lock, timeout, [&] { return inside_ == 0; });
  }
  void resume() {
    std::lock_guard lock(mutex_);
    paused_.store(false, std::memory_order_relaxed);
    cv_.notify_all();
  }
  /// A pause is waiting for the sources inside to leave. [source threads, between chunks]
  bool pause_requested() const { return paused_.load(std::memory_order_relaxed); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> paused_{false};  ///< written under the mutex; also read without it
  int inside_ = 0;
};

}  // namespace shardline::engine
