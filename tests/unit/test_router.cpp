// ShardRouter: key -> key group -> shard, and shardline::key_of for string keys.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <shardline/key.hpp>

#include "engine/shard_router.hpp"

using shardline::engine::ShardRouter;

TEST_CASE("routing is deterministic: equal routers route every key alike", "[router]") {
  const ShardRouter a(4096, 4);
  const ShardRouter b(4096, 4);
  for (std::uint64_t k = 0; k < 100000; ++k) {
    REQUIRE(a.key_group(k) == b.key_group(k));
    REQUIRE(a.shard(k) == b.shard(k));
    REQUIRE(a.shard(k) == a.shard_of_group(a.key_group(k)));
  }
}

TEST_CASE("a key's shard depends on the key only", "[router]") {
  const ShardRouter router(4096, 4);
  const std::uint64_t key = 0x5eed;
  const auto group = router.key_group(key);
  const auto shard = router.shard(key);
  // Routing any number of other keys in between changes nothing.
  for (std::uint64_t k = 0; k < 10000; ++k) (void)router.shard(k * 7919);
  CHECK(router.key_group(key) == group);
  CHECK(router.shard(key) == shard);
  // Neither does the number of shards change the key group: state moves by whole groups.
  for (std::uint32_t shards : {1u, 2u, 3u, 8u, 64u}) {
    const ShardRouter other(4096, shards);
    CHECK(other.key_group(key) == group);
  }
}

TEST_CASE("key groups are assigned to shards in contiguous, balanced ranges", "[router]") {
  struct Case {
    std::uint32_t groups, shards;
  };
  for (const Case c : {Case{4096, 4}, Case{4096, 3}, Case{10, 3}, Case{7, 7}, Case{100, 1}, Case{1 << 20, 1024}}) {
    INFO(c.groups << " key groups, " << c.shards << " shards");
    const ShardRouter router(c.groups, c.shards);
    CHECK(router.key_groups() == c.groups);
    CHECK(router.shards() == c.shards);
    std::vector<std::uint32_t> per_shard(c.shards, 0);
    std::uint32_t previous = 0;
    bool contiguous = true;
    for (std::uint32_t g = 0; g < c.groups; ++g) {
      const auto s = router.shard_of_group(g);
      REQUIRE(s < c.shards);
      // Ranges: the shard never decreases and never skips one.
      if (s < previous || s > previous + 1) contiguous = false;
      previous = s;
      ++per_shard[s];
    }
    CHECK(contiguous);
    CHECK(router.shard_of_group(0) == 0);
    CHECK(router.shard_of_group(c.groups - 1) == c.shards - 1);
    for (std::uint32_t s = 0; s < c.shards; ++s) {
      // Every shard is used, and shares differ by at most one group.
      CHECK(per_shard[s] >= c.groups / c.shards);
      CHECK(per_shard[s] <= (c.groups + c.shards - 1) / c.shards);
    }
  }
}

TEST_CASE("key groups are always in range", "[router]") {
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  for (std::uint32_t groups : {1u, 2u, 3u, 4096u, 1u << 20}) {
    const ShardRouter router(groups, 1);
    for (std::uint64_t k : {std::uint64_t{0}, std::uint64_t{1}, max, max - 1, max / 2, std::uint64_t{1} << 63,
                            shardline::key_of(""), shardline::key_of("a")})
      CHECK(router.key_group(k) < groups);
    for (std::uint64_t k = 0; k < 10000; ++k) REQUIRE(router.key_group(k * 0x9e3779b97f4a7c15ULL) < groups);
  }
}

TEST_CASE("sequential integer keys spread roughly uniformly", "[router]") {
  const ShardRouter router(4096, 4);
  constexpr std::uint64_t n = 100000;
  std::vector<std::uint32_t> per_group(4096, 0), per_shard(4, 0);
  for (std::uint64_t k = 0; k < n; ++k) {
    ++per_group[router.key_group(k)];
    ++per_shard[router.shard(k)];
  }
  // 25000 keys per shard expected; a good mix is within a few hundred.
  for (std::uint32_t s = 0; s < 4; ++s) {
    INFO("shard " << s << ": " << per_shard[s] << " keys");
    CHECK(per_shard[s] > 23750);
    CHECK(per_shard[s] < 26250);
  }
  // About 24.4 keys per group: every group used, none with more than three times its share.
  std::uint32_t empty = 0, fullest = 0;
  double chi2 = 0;
  const double expected = double(n) / 4096;
  for (auto c : per_group) {
    empty += c == 0;
    fullest = std::max(fullest, c);
    chi2 += (c - expected) * (c - expected) / expected;
  }
  INFO("empty groups " << empty << ", fullest group " << fullest << ", chi2 " << chi2);
  CHECK(empty == 0);
  CHECK(fullest < 75);
  // 4095 degrees of freedom: chi2 has mean 4095 and standard deviation ~90 for a uniform hash.
  CHECK(chi2 < 4095 * 1.5);
}

TEST_CASE("key_of gives equal strings equal keys", "[router]") {
  const std::string a = "market:IBM";
  const std::string b = std::string("market:") + "IBM";  // another buffer
  CHECK(a.data() != b.data());
  CHECK(shardline::key_of(a) == shardline::key_of(b));
  CHECK(shardline::key_of(a) == shardline::key_of(std::string_view("market:IBM, and more").substr(0, 10)));
  CHECK(shardline::key_of(a) != shardline::key_of("market:IBN"));
  CHECK(shardline::key_of("") != shardline::key_of(std::string_view("\0", 1)));
  // XXH3-64 with seed 0, as documented in <shardline/key.hpp>.
  CHECK(shardline::key_of(a) == XXH3_64bits(a.data(), a.size()));
  CHECK(shardline::key_of("") == 0x2D06800538D394C2ULL);
  const ShardRouter router(4096, 4);
  CHECK(router.shard(shardline::key_of(a)) == router.shard(shardline::key_of(b)));
}
