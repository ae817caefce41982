// shardline/key.hpp — how partition keys become the 64-bit integers the engine routes on.
//
// Integer keys are used as they are. String keys are hashed once, by the partition step, with
// XXH3-64 (seed 0); the hash is the key from then on: shards, state tables and pre-declared
// keys in topology.toml all use it. Two different strings share state only if their 64-bit
// hashes collide (about n^2 / 2^65 for n distinct keys: 3e-6 for ten million keys); a plugin
// that needs exact identity returns an integer key instead (e.g. a 4-byte symbol packed in a
// uint32, as Wallaroo's Go example did).
#pragma once

#include <cstdint>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace shardline {

/// The engine key of a string key. Same value in host and plugins.
inline std::uint64_t key_of(std::string_view s) noexcept {
  return XXH3_64bits(s.data(), s.size());
}

}  // namespace shardline
