// BoundedQueue: the one queue between threads. Multi-producer, single-consumer, batched.
//
// Items are whole batches (hundreds of messages), so a mutex and two condition variables cost a
// fraction of a nanosecond per message, and a blocked thread sleeps instead of spinning (with
// more threads than cores, spinning collapses throughput). Waiters are notified after the lock
// is released: a thread woken while the notifier still holds it would run only to block on the
// mutex and be woken a second time, and on a virtual machine each wake-up of an idle CPU costs
// tens of microseconds. The consumer takes everything queued in one call (a sink, which holds
// each item long, takes one at a time). push() blocks while the queue holds `capacity` items —
// that is the backpressure — unless the producer asks not to block: shards forwarding to other
// shards never block, so two shards feeding each other cannot deadlock (they drain their own
// inbox first; the sources, which do block, bound how much can be in flight).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

namespace shardline::engine {

template <class T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity) { items_.reserve(capacity); }

  /// Appends an item. With `may_block`, waits while the queue is full. With `wake` false the
  /// sleeping consumer is woken only once a few items are waiting: the producer promises to
  /// call wake() when it runs out of input (a wake-up per batch costs more than the batch).
  /// [producer threads]
  void push(T item, bool may_block = true, bool wake = true) {
    bool notify;
    {
      std::unique_lock lock(mutex_);
      if (may_block) not_full_.wait(lock, [&] { return items_.size() < capacity_ || closed_; });
      items_.push_back(std::move(item));
      // A full queue always wakes its consumer: otherwise a producer that blocks on it next
      // would wait for a consumer that waits for it.
      notify = consumer_waiting_ && (wake || items_.size() >= std::min(kWakeAt, capacity_));
    }
    if (notify) not_empty_.notify_one();
  }

  /// Wakes the consumer if it sleeps while items wait. [producer threads]
  void wake() {
    bool notify;
    {
      std::lock_guard lock(mutex_);
      notify = consumer_waiting_ && !items_.empty();
    }
    if (notify) not_empty_.notify_one();
  }

  /// Moves every queued item into `out` (which must be empty), waiting for at least one.
  /// Returns false once the queue is closed and empty. [consumer thread]
  bool pop_all(std::vector<T>& out) {
    {
      std::unique_lock lock(mutex_);
      consumer_waiting_ = true;
      not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
      consumer_waiting_ = false;
      if (!take_all(out)) return false;
    }
    not_full_.notify_all();
    return true;
  }

  /// Moves the oldest queued item into `out`, waiting for one. Returns false once the queue is
  /// closed and empty. For a consumer that holds each item a long time (a sink writing a chunk
  /// to a slow receiver): taking one at a time, what it holds and what is queued stay within
  /// the capacity and one item, where pop_all() would let the queue fill again behind all it
  /// took. [consumer thread]
  bool pop_one(T& out) {
    {
      std::unique_lock lock(mutex_);
      consumer_waiting_ = true;
      not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
      consumer_waiting_ = false;
      if (items_.empty()) return false;
      out = std::move(items_.front());
      items_.erase(items_.begin());  // at most `capacity` items: a short move
    }
    not_full_.notify_all();
    return true;
  }

  /// Moves every queued item into `out` (which must be empty) without waiting. Returns false if
  /// there was none. [consumer thread]
  bool try_pop_all(std::vector<T>& out) {
    {
      std::lock_guard lock(mutex_);
      if (!take_all(out)) return false;
    }
    not_full_.notify_all();
    return true;
  }

  /// Wakes the consumer; pop_all() returns false once everything queued has been taken.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return items_.size();
  }

 private:
  /// pop_all() and try_pop_all(), with the lock held; the caller then wakes blocked producers.
  bool take_all(std::vector<T>& out) {
    if (items_.empty()) return false;
    out.swap(items_);
    return true;
  }

  mutable std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::vector<T> items_;
  std::size_t capacity_;
  static constexpr std::size_t kWakeAt = 4;  ///< queued items that wake a sleeping consumer
  bool consumer_waiting_ = false;
  bool closed_ = false;
};

}  // namespace shardline::engine
