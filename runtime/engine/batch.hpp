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

/// Which free object a Pool hands out next.
///
/// - `oldest_first` (batches): each is filled by one thread and read by another (a source fills
///   a batch, a shard reads it). The batch released last was just read, so its cache lines still
///   sit in the reader's core, and every store of the next filler would first have to take its
///   line back from there. Reused after all the others, a batch has had the longest time to
///   leave the reader's cache. How much that saves depends on the machine: on the benchmark's
///   Zen 4 host it made the source thread's scatter 2-3x cheaper, where a Zen 3 host had
///   measured it slower (bench/RESULTS.md, "Changes").
/// - `newest_first` (output chunks): a chunk's 320 KiB become resident only as output is written
///   into them, and at light load chunks go out nearly empty. Reusing the most recent keeps the
///   resident memory to the chunks in use; taken in turn, the catch-up burst after a receiver
///   outage touched more of them (RSS +14.5-15.5 MB against +7.6-10.0 MB, two runs each). The
///   order made no difference to throughput for chunks.
enum class Reuse { oldest_first, newest_first };

/// A free list of reusable objects, handed out in the order `Reuse` says. [any thread]
template <class T>
class Pool {
 public:
  explicit Pool(Reuse reuse) : reuse_(reuse) {}

  T* acquire() {
    {
      std::lock_guard lock(mutex_);
      if (free_count_) {
        --free_count_;
        if (reuse_ == Reuse::newest_first) return free_[at(free_count_)];
        T* t = free_[free_head_];
        free_head_ = at(1);
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
    free_[at(free_count_)] = t;
    ++free_count_;
  }

 private:
  /// The slot `i` places after the oldest free object.
  std::size_t at(std::size_t i) const {
    const std::size_t slot = free_head_ + i;
    return slot < free_.size() ? slot : slot - free_.size();
  }
  /// Doubles the ring of free objects, keeping their order; only when a new object is made,
  /// so a steady state allocates nothing. [mutex_ held]
  void grow() {
    std::vector<T*> bigger(std::max<std::size_t>(16, 2 * free_.size()));
    for (std::size_t i = 0; i < free_count_; ++i) bigger[i] = free_[at(i)];
    free_.swap(bigger);
    free_head_ = 0;
  }

  const Reuse reuse_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<T>> all_;
  std::vector<T*> free_;  ///< a ring: free_count_ objects from free_head_, oldest first
  std::size_t free_head_ = 0;
  std::size_t free_count_ = 0;
};

}  // namespace shardline::engine
