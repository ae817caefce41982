// KeyIndex: a state table's index, from engine key to state object. [its shard thread only]
//
// Open addressing over 16-byte {key, state} slots, probed linearly from a Fibonacci hash of
// the key (one multiply: string keys are XXH3 hashes already, integer keys may be sequential),
// at most 3/4 full. A lookup usually reads one cache line, where abseil's flat_hash_map read
// two (its control bytes, then the slot): with a million keys every line is a miss, and the
// shards' lookups are what the 1M-symbol benchmark waits on (bench/RESULTS.md). A null state
// marks a free slot; keys are never removed (a table only grows, or is replaced whole by a
// reload), so the first free slot ends every probe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace shardline::state {

class KeyIndex {
 public:
  KeyIndex() { resize(16); }

  /// The state of `key`, or null.
  void* find(std::uint64_t key) const {
    for (std::size_t i = home(key);; i = (i + 2) & mask_) {
      // Two slots at a time, selected without branching: most keys sit in the first two slots
      // of their probe, so the one branch below is nearly always taken. (A free slot's key is
      // 0, but its state is null; and a key is never behind a free slot of its probe.)
      const Slot& a = slots_[i];
      const Slot& b = slots_[(i + 1) & mask_];
      void* found = b.key == key ? b.state : nullptr;
      found = a.key == key && a.state ? a.state : found;
      if (found) return found;
      if (!a.state || !b.state) return nullptr;
    }
  }
  /// Starts loading the line where `key`'s probe begins into the cache.
  void prefetch(std::uint64_t key) const { __builtin_prefetch(&slots_[home(key)]); }
  /// Makes room for `n` keys in all without growing. Copying an index into a new one should
  /// reserve first: for_each() yields keys in slot order, and inserting them in that order into
  /// a smaller index piles each one onto the end of one long run of full slots (quadratic).
  void reserve(std::size_t n) {
    std::size_t slots = slots_.size();
    while (n * 4 > slots * 3) slots *= 2;
    if (slots != slots_.size()) resize(slots);
  }
  /// Adds a key that is not in the index yet; `state` is not null.
  void insert(std::uint64_t key, void* state) {
    if ((size_ + 1) * 4 > slots_.size() * 3) resize(slots_.size() * 2);
    place(key, state);
    ++size_;
  }
  std::size_t size() const { return size_; }
  /// Slots, used or not.
  std::size_t capacity() const { return slots_.size(); }
  static constexpr std::size_t slot_bytes() { return sizeof(Slot); }
  /// Calls f(key, state) for every key.
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.state) f(s.key, s.state);
  }

 private:
  struct Slot {
    std::uint64_t key = 0;
    void* state = nullptr;
  };
  std::size_t home(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void place(std::uint64_t key, void* state) {
    std::size_t i = home(key);
    while (slots_[i].state) i = (i + 1) & mask_;
    slots_[i] = {key, state};
  }
  /// To `n` slots (a power of two), placing every key again.
  void resize(std::size_t n) {
    std::vector<Slot> old(n);
    old.swap(slots_);
    mask_ = n - 1;
    shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(n));
    for (const Slot& s : old)
      if (s.state) place(s.key, s.state);
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace shardline::state
