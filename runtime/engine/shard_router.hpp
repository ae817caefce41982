// ShardRouter: key -> key group -> shard. [any thread; immutable after construction]
//
// A key (already a 64-bit integer: see <shardline/key.hpp>) is mixed, mapped to one of K key
// groups (K fixed per topology), and each key group belongs to one shard: contiguous ranges of
// key groups per shard, as in Flink. State is owned per key group, so changing the shard count
// moves whole key groups and never rehashes keys; `hash % shards` would move almost every key.
#pragma once

#include <cstdint>
#include <vector>

namespace shardline::engine {

/// A strong 64-bit mix (the murmur3 finalizer): integer keys such as packed symbols or small
/// counters are far from uniform, and the key group must depend on every bit.
inline std::uint64_t mix64(std::uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

class ShardRouter {
 public:
  ShardRouter(std::uint32_t key_groups, std::uint32_t shards)
      : key_groups_(key_groups), shards_(shards), group_shard_(key_groups) {
    for (std::uint32_t g = 0; g < key_groups; ++g)
      group_shard_[g] = static_cast<std::uint16_t>(std::uint64_t{g} * shards / key_groups);
  }

  std::uint32_t key_group(std::uint64_t key) const {
    // Multiply-shift maps the 64-bit hash onto [0, K) without a division.
    return static_cast<std::uint32_t>(
        (static_cast<unsigned __int128>(mix64(key)) * key_groups_) >> 64);
  }
  std::uint32_t shard_of_group(std::uint32_t group) const { return group_shard_[group]; }
  std::uint32_t shard(std::uint64_t key) const { return group_shard_[key_group(key)]; }

  std::uint32_t key_groups() const { return key_groups_; }
  std::uint32_t shards() const { return shards_; }

 private:
  std::uint32_t key_groups_;
  std::uint32_t shards_;
  std::vector<std::uint16_t> group_shard_;
};

}  // namespace shardline::engine
