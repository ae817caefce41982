// What crosses threads: batches of messages (to shards) and chunks of encoded bytes (to sinks),
// both recycled through a Pool so that steady-state processing allocates nothing.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/message_buffer.hpp"

namespace shardline::engine {

/// Messages bound for one stateful step of one pipeline on one shard, with their keys.
struct Batch {
  std::uint32_t pipeline = 0;
  std::uint32_t step = 0;
  std::uint64_t arrived_ns = 0;  ///< when the source read the oldest of them (metrics::now_ns)
  MessageBuffer messages;
  std::vector<std::uint64_t> keys;  ///< keys[i] is the key of messages.at(i)
};

/// Framed bytes bound for one sink.
struct EncodedChunk {
  std::vector<std::byte> bytes;
  std::uint64_t messages = 0;
  std::uint64_t arrived_ns = 0;  ///< when the source read the oldest message encoded in it
};

/// A free list of reusable objects, handed out least recently released first. [any thread]
///
/// Oldest first, not most recent: each object is filled by one thread and read by another (a
/// source fills a batch, a shard reads it). The object released last was just read, so its
/// cache lines still sit in the reader's core, and every store of the next filler would first
/// have to take its line back from there. Reused after all the others, an object has had the
/// longest time to leave the reader's cache. How much that saves depends on the machine: on the
/// benchmark's Zen 4 host it made the source thread's scatter 2-3x cheaper, where a Zen 3 host
/// had measured it slower (bench/RESULTS.md, "Changes").
template <class T>
class Pool {
 public:
  T* acquire() {
    {
      std::lock_guard lock(mutex_);
      if (free_count_) {
        T* t = free_[free_head_];
        free_head_ = next(free_head_);
        --free_count_;
        return t;
      }
    }
    auto fresh = std::make_unique<T>();
    T* t = fresh.get();
    std::lock_guard lock(mutex_);
    // The ring first: it must hold a slot for every object, even if growing it throws.
    if (free_.size() < all_.size() + 1) grow();
    all_.push_back(std::move(fresh));
    return t;
  }
  /// Takes back an object of this pool that is not free already.
  void release(T* t) {
    std::lock_guard lock(mutex_);
    // Room is certain: the ring holds as many slots as there are objects.
    assert(free_count_ < free_.size());
    std::size_t tail = free_head_ + free_count_;
    if (tail >= free_.size()) tail -= free_.size();
    free_[tail] = t;
    ++free_count_;
  }

 private:
  std::size_t next(std::size_t i) const { return i + 1 == free_.size() ? 0 : i + 1; }
  /// Doubles the ring of free objects, keeping their order; only when a new object is made,
  /// so a steady state allocates nothing. [mutex_ held]
  void grow() {
    std::vector<T*> bigger(std::max<std::size_t>(16, 2 * free_.size()));
    for (std::size_t i = 0, at = free_head_; i < free_count_; ++i, at = next(at))
      bigger[i] = free_[at];
    free_.swap(bigger);
    free_head_ = 0;
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<T>> all_;
  std::vector<T*> free_;  ///< a ring: free_count_ objects from free_head_, oldest first
  std::size_t free_head_ = 0;
  std::size_t free_count_ = 0;
};

}  // namespace shardline::engine
