// StateTable: the states of one partitioned state on one shard. [its shard thread only]
//
// Maps each key to its state object. Objects live in chunks allocated as needed (about 1 KiB
// first, doubling up to 64 KiB), so a state never moves once created: a batch resolves all its
// states first and the state computation then runs over the whole batch with stable pointers.
// The index (KeyIndex) maps the 64-bit engine key to the object in 16-byte slots, at most 3/4
// full. The table builds a state with the plugin's factory the first time its key is seen,
// unless the topology rejects undeclared keys.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <shardline/boundary.hpp>

#include "state/key_index.hpp"

namespace shardline::state {

class StateTable {
 public:
  StateTable(const TypeDesc* type, StateFactory* factory, bool create_unknown);
  ~StateTable();
  StateTable(const StateTable&) = delete;
  StateTable& operator=(const StateTable&) = delete;

  /// The state of `key`, created if needed (and allowed); null if the key is unknown and the
  /// table rejects unknown keys. Throws whatever the plugin's factory throws.
  void* get(std::uint64_t key) {
    if (void* state = index_.find(key)) return state;
    return create_unknown_ ? create(key) : nullptr;
  }
  /// Starts loading the index slot of `key` into the cache (a batch knows its keys ahead).
  void prefetch(std::uint64_t key) const { index_.prefetch(key); }
  /// Creates the state of a pre-declared key (no-op if present).
  void declare(std::uint64_t key) {
    if (!index_.find(key)) create(key);
  }

  /// The state of `key` if it exists, without creating it.
  void* find(std::uint64_t key) const { return index_.find(key); }
  /// Creates the state of a key not in the table with the plugin's factory, which may throw.
  void* create(std::uint64_t key);
  /// Creates the state of a new key with `construct(void* at)` (which may throw).
  template <class Construct>
  void* create_with(std::uint64_t key, Construct&& construct) {
    void* at = slot();
    construct(at);
    ++used_in_last_;
    index_.insert(key, at);
    keys_.store(index_.size(), std::memory_order_relaxed);
    return at;
  }
  /// Makes room in the index for `n` keys in all (before copying another table's keys in).
  void reserve(std::size_t n) { index_.reserve(n); }
  /// Calls f(key, state) for every state.
  template <class F>
  void for_each(F&& f) const {
    index_.for_each(f);
  }
  /// Points the table at a new version's type and factory whose objects are laid out exactly
  /// as the old ones (same fingerprint): a hot reload keeps every object where it is.
  void retype(const TypeDesc* type, StateFactory* factory) {
    type_ = type;
    factory_ = factory;
  }
  const TypeDesc* type() const { return type_; }
  bool creates_unknown() const { return create_unknown_; }

  std::size_t size() const { return index_.size(); }
  /// size(), for other threads (e.g. periodic statistics); it may lag by a key. [any thread]
  std::size_t keys() const { return keys_.load(std::memory_order_relaxed); }
  /// Bytes used by the index and the chunks, beyond the state objects themselves.
  std::size_t overhead_bytes() const;

 private:
  /// Memory for the next state object (a new chunk when the last one is full).
  void* slot();

  const TypeDesc* type_;
  StateFactory* factory_;
  bool create_unknown_;
  std::size_t stride_;
  std::size_t per_chunk_;  ///< how many states the last chunk holds
  std::size_t used_in_last_ = 0;
  struct ChunkFree {
    std::size_t align;
    void operator()(std::byte* p) const { ::operator delete(p, std::align_val_t(align)); }
  };
  std::vector<std::unique_ptr<std::byte, ChunkFree>> chunks_;
  KeyIndex index_;
  std::atomic<std::size_t> keys_{0};  ///< index_.size(), published when a key is added
};

}  // namespace shardline::state
