// StateTable: states created on first sight, stable addresses, declared keys, destruction, and
// the memory overhead per key.
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <shardline/plugin.hpp>

#include "state/state_table.hpp"

using shardline::state::StateTable;

namespace state_test {
struct Pair {  // a 16-byte state
  std::uint64_t key;
  std::uint64_t value;
};

/// A non-trivial state that counts its destructions.
struct Counted {
  static inline int destroyed = 0;
  std::string name;
  explicit Counted(std::string n) : name(std::move(n)) {}
  Counted(Counted&&) = default;
  ~Counted() { ++destroyed; }
};
}  // namespace state_test

using state_test::Counted;
using state_test::Pair;

namespace {

/// Builds Pair{key, 0} and records its calls; refuses the key `refused`, if set.
struct PairFactory : shardline::StateFactory {
  std::vector<std::uint64_t> calls;
  std::optional<std::uint64_t> refused;
  void construct(void* at, std::uint64_t key) override {
    calls.push_back(key);
    if (key == refused) throw std::runtime_error("no state for key " + std::to_string(key));
    ::new (at) Pair{key, 0};
  }
};

struct CountedFactory : shardline::StateFactory {
  void construct(void* at, std::uint64_t key) override { ::new (at) Counted("key " + std::to_string(key)); }
};

const shardline::TypeDesc* pair_type = &shardline::type_desc_v<Pair>;

}  // namespace

TEST_CASE("a state is created the first time its key is seen, once", "[state]") {
  PairFactory factory;
  StateTable table(pair_type, &factory, /*create_unknown=*/true);
  CHECK(table.size() == 0);
  auto* a = static_cast<Pair*>(table.get(5));
  REQUIRE(a);
  CHECK(a->key == 5);
  a->value = 50;
  auto* b = static_cast<Pair*>(table.get(6));
  CHECK(b != a);
  CHECK(table.get(5) == a);
  CHECK(static_cast<Pair*>(table.get(5))->value == 50);
  CHECK(table.get(6) == b);
  CHECK(factory.calls == std::vector<std::uint64_t>{5, 6});
  CHECK(table.size() == 2);
  CHECK(table.keys() == 2);  // the count other threads read
  CHECK(reinterpret_cast<std::uintptr_t>(a) % alignof(Pair) == 0);
}

TEST_CASE("states never move while the table grows", "[state]") {
  PairFactory factory;
  StateTable table(pair_type, &factory, true);
  std::vector<Pair*> first;
  for (std::uint64_t k = 0; k < 1000; ++k) {
    first.push_back(static_cast<Pair*>(table.get(k * 3 + 1000)));
    first.back()->value = k;
  }
  for (std::uint64_t k = 0; k < 100000; ++k) table.get(k * 3 + 1);  // includes the first 1000
  CHECK(table.size() == 100000);
  bool stable = true;
  for (std::uint64_t k = 0; k < 1000; ++k) {
    auto* p = static_cast<Pair*>(table.get(k * 3 + 1000));
    stable = stable && p == first[k] && p->key == k * 3 + 1000 && p->value == k;
  }
  CHECK(stable);
  CHECK(factory.calls.size() == table.size());
}

TEST_CASE("a table that rejects unknown keys creates only declared ones", "[state]") {
  PairFactory factory;
  StateTable table(pair_type, &factory, /*create_unknown=*/false);
  CHECK(table.get(5) == nullptr);
  CHECK(factory.calls.empty());
  CHECK(table.size() == 0);

  table.declare(5);
  table.declare(7);
  table.declare(5);  // already there: a no-op
  CHECK(factory.calls == std::vector<std::uint64_t>{5, 7});
  CHECK(table.size() == 2);
  auto* five = static_cast<Pair*>(table.get(5));
  REQUIRE(five);
  CHECK(five->key == 5);
  CHECK(table.get(6) == nullptr);
  CHECK(table.size() == 2);
}

TEST_CASE("a factory that throws creates nothing", "[state]") {
  PairFactory factory;
  factory.refused = 13;
  StateTable table(pair_type, &factory, true);
  auto* twelve = table.get(12);
  CHECK_THROWS_WITH(table.get(13), "no state for key 13");
  CHECK(table.size() == 1);
  CHECK(table.keys() == 1);
  CHECK_THROWS_WITH(table.get(13), "no state for key 13");  // tried again, not half-made
  auto* fourteen = static_cast<Pair*>(table.get(14));
  REQUIRE(fourteen);
  CHECK(fourteen->key == 14);
  CHECK(table.get(12) == twelve);
  CHECK(table.size() == 2);
}

TEST_CASE("the table destroys its non-trivial states", "[state]") {
  CountedFactory factory;
  Counted::destroyed = 0;
  {
    StateTable table(&shardline::type_desc_v<Counted>, &factory, true);
    for (std::uint64_t k = 0; k < 5000; ++k) table.get(k);
    for (std::uint64_t k = 0; k < 5000; ++k) table.get(k);  // no new states
    CHECK(static_cast<Counted*>(table.get(4321))->name == "key 4321");
    CHECK(Counted::destroyed == 0);
  }
  CHECK(Counted::destroyed == 5000);
}

TEST_CASE("the overhead per key of a large table is small", "[state]") {
  PairFactory factory;
  StateTable table(pair_type, &factory, true);
  constexpr std::uint64_t n = 1000000;
  for (std::uint64_t k = 0; k < n; ++k) table.get(k * 0x9e3779b97f4a7c15ULL);
  REQUIRE(table.size() == n);
  const double per_key = double(table.overhead_bytes()) / double(table.size());
  INFO("overhead: " << table.overhead_bytes() << " bytes for " << table.size() << " keys of a "
                    << sizeof(Pair) << "-byte state: " << per_key << " bytes per key");
  CHECK(per_key > 0);
  CHECK(per_key < 64);
}

TEST_CASE("a small table wastes little: chunks start small and grow", "[state]") {
  PairFactory factory;
  StateTable table(pair_type, &factory, true);
  for (std::uint64_t k = 0; k < 175; ++k) table.get(k * 0x9e3779b97f4a7c15ULL);
  REQUIRE(table.size() == 175);
  const double per_key = double(table.overhead_bytes()) / double(table.size());
  INFO("overhead: " << table.overhead_bytes() << " bytes for 175 keys: " << per_key
                    << " bytes per key");
  CHECK(per_key < 64);
  // The states stay where they were created while the table grows.
  void* first = table.find(0);
  for (std::uint64_t k = 175; k < 5000; ++k) table.get(k * 0x9e3779b97f4a7c15ULL);
  CHECK(table.find(0) == first);
}

TEST_CASE("the key index finds every key it was given, and no other", "[state]") {
  // Sequential keys (integer partition keys often are), key 0, and keys that differ only in
  // their high bits, through many growths of the index.
  shardline::state::KeyIndex index;
  std::vector<std::uint64_t> keys;
  for (std::uint64_t i = 0; i < 50'000; ++i) keys.push_back(i);
  for (std::uint64_t i = 1; i < 1'000; ++i) keys.push_back(i << 40);
  std::vector<int> states(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) index.insert(keys[i], &states[i]);
  CHECK(index.size() == keys.size());
  CHECK(index.capacity() * 3 >= index.size() * 4);  // at most 3/4 full
  for (std::size_t i = 0; i < keys.size(); ++i) REQUIRE(index.find(keys[i]) == &states[i]);
  for (std::uint64_t absent : {std::uint64_t{50'000}, ~std::uint64_t{0}, std::uint64_t{3} << 40 | 1})
    CHECK(index.find(absent) == nullptr);
  std::size_t visited = 0;
  index.for_each([&](std::uint64_t key, void* state) {
    const auto i = static_cast<std::size_t>(static_cast<int*>(state) - states.data());
    REQUIRE(i < keys.size());
    CHECK(keys[i] == key);
    ++visited;
  });
  CHECK(visited == keys.size());
}

TEST_CASE("a reserved key index takes another's keys, in its slot order, without growing", "[state]") {
  // What a reload's migration does: copy every key of one index into a new one.
  shardline::state::KeyIndex from;
  std::vector<int> states(20'000);
  for (std::size_t i = 0; i < states.size(); ++i) from.insert(i * 0x9E3779B97F4A7C15ull, &states[i]);
  shardline::state::KeyIndex to;
  to.reserve(from.size());
  const std::size_t reserved = to.capacity();
  CHECK(reserved * 3 >= from.size() * 4);
  CHECK(reserved == from.capacity());  // the same size as the original: the same layout
  from.for_each([&](std::uint64_t key, void* state) { to.insert(key, state); });
  CHECK(to.capacity() == reserved);
  CHECK(to.size() == from.size());
  bool all = true;
  from.for_each([&](std::uint64_t key, void* state) { all = all && to.find(key) == state; });
  CHECK(all);
  to.reserve(10);  // never shrinks
  CHECK(to.capacity() == reserved);
}
