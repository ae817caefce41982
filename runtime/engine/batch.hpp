// What crosses threads: batches of messages (to shards) and chunks of encoded bytes (to sinks),
// both recycled through a Pool so that steady-state processing allocates nothing.
#pragma once

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

/// A free list of reusable objects. [any thread]
template <class T>
class Pool {
 public:
  T* acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        T* t = free_.back();
        free_.pop_back();
        return t;
      }
    }
    auto fresh = std::make_unique<T>();
    T* t = fresh.get();
    std::lock_guard lock(mutex_);
    all_.push_back(std::move(fresh));
    return t;
  }
  void release(T* t) {
    std::lock_guard lock(mutex_);
    free_.push_back(t);
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<T>> all_;
  std::vector<T*> free_;
};

}  // namespace shardline::engine
