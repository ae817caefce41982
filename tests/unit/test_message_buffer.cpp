// MessageBuffer: non-trivial messages through growth, moves between buffers, swaps, erasure in
// order, and retyping.
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include <shardline/plugin.hpp>

#include "engine/message_buffer.hpp"
#include "test_support.hpp"

using shardline::type_desc_v;
using shardline::engine::MessageBuffer;

namespace mb_test {
/// Counts the live objects, to catch leaks and double destruction.
struct Counted {
  static inline int live = 0;
  std::string text;
  explicit Counted(std::string t) : text(std::move(t)) { ++live; }
  Counted(Counted&& o) noexcept : text(std::move(o.text)) { ++live; }
  ~Counted() { --live; }
};
struct alignas(128) Wide {
  std::uint64_t v;
};
}  // namespace mb_test

using mb_test::Counted;
using shardline_test::get;
using shardline_test::push;

namespace {
std::string text(int i) { return "message number " + std::to_string(i) + " (long enough for the heap)"; }
}  // namespace

TEST_CASE("strings survive growth, which relocates them", "[message_buffer]") {
  MessageBuffer b(&type_desc_v<std::string>);
  for (int i = 0; i < 1000; ++i) push(b, i % 2 ? text(i) : std::to_string(i));  // heap and small strings
  REQUIRE(b.count() == 1000);
  bool all_right = true;
  for (int i = 0; i < 1000; ++i) all_right = all_right && get<std::string>(b, i) == (i % 2 ? text(i) : std::to_string(i));
  CHECK(all_right);
  CHECK(b.span().count == 1000);
  CHECK(b.span().stride == sizeof(std::string));
}

TEST_CASE("clear destroys every message and keeps the capacity", "[message_buffer]") {
  Counted::live = 0;
  {
    MessageBuffer b(&type_desc_v<Counted>);
    for (int i = 0; i < 300; ++i) push(b, Counted(text(i)));
    CHECK(Counted::live == 300);
    std::byte* const data = b.at(0);
    b.clear();
    CHECK(Counted::live == 0);
    CHECK(b.empty());
    for (int i = 0; i < 300; ++i) push(b, Counted(text(i)));
    CHECK(b.at(0) == data);  // no new allocation
    CHECK(get<Counted>(b, 299).text == text(299));
    CHECK(Counted::live == 300);
  }
  CHECK(Counted::live == 0);  // the destructor destroys what is left
}

TEST_CASE("take moves messages between buffers", "[message_buffer]") {
  Counted::live = 0;
  {
    MessageBuffer from(&type_desc_v<Counted>), evens(&type_desc_v<Counted>), odds(&type_desc_v<Counted>);
    for (int i = 0; i < 500; ++i) push(from, Counted(text(i)));
    for (std::size_t i = 0; i < from.count(); ++i) (i % 2 ? odds : evens).take(from, i);
    from.forget_all();
    CHECK(from.empty());
    REQUIRE(evens.count() == 250);
    REQUIRE(odds.count() == 250);
    bool all_right = true;
    for (int i = 0; i < 250; ++i)
      all_right = all_right && get<Counted>(evens, i).text == text(2 * i) && get<Counted>(odds, i).text == text(2 * i + 1);
    CHECK(all_right);
    CHECK(Counted::live == 500);
  }
  CHECK(Counted::live == 0);

  MessageBuffer a(&type_desc_v<std::uint64_t>), b(&type_desc_v<std::uint64_t>);
  for (std::uint64_t i = 0; i < 100; ++i) push(a, i * i);
  for (std::size_t i = 100; i-- > 0;) b.take(a, i);
  a.forget_all();
  REQUIRE(b.count() == 100);
  CHECK(get<std::uint64_t>(b, 0) == 99 * 99);
  CHECK(get<std::uint64_t>(b, 99) == 0);
}

TEST_CASE("swap exchanges messages, types and allocations, and each buffer destroys its own", "[message_buffer]") {
  Counted::live = 0;
  {
    MessageBuffer texts(&type_desc_v<Counted>), wides(&type_desc_v<mb_test::Wide>);
    for (int i = 0; i < 300; ++i) push(texts, Counted(text(i)));
    for (std::uint64_t i = 0; i < 3; ++i) push(wides, mb_test::Wide{i + 7});
    texts.swap(wides);
    REQUIRE(texts.type() == &type_desc_v<mb_test::Wide>);
    REQUIRE(wides.type() == &type_desc_v<Counted>);
    REQUIRE(texts.count() == 3);
    REQUIRE(wides.count() == 300);
    CHECK(get<mb_test::Wide>(texts, 2).v == 9);
    CHECK(reinterpret_cast<std::uintptr_t>(texts.at(1)) % 128 == 0);
    CHECK(get<Counted>(wides, 299).text == text(299));
    push(wides, Counted(text(300)));  // each keeps growing its new allocation
    push(texts, mb_test::Wide{10});
    CHECK(get<Counted>(wides, 300).text == text(300));
    CHECK(get<mb_test::Wide>(texts, 3).v == 10);
    CHECK(Counted::live == 301);
  }
  CHECK(Counted::live == 0);
}

TEST_CASE("erase_sorted removes the listed messages and keeps the order of the rest", "[message_buffer]") {
  SECTION("non-trivial messages") {
    Counted::live = 0;
    {
      MessageBuffer b(&type_desc_v<Counted>);
      for (int i = 0; i < 10; ++i) push(b, Counted(text(i)));
      const std::size_t gone[] = {0, 3, 4, 9};
      b.erase_sorted(gone, 4);
      CHECK(Counted::live == 6);
      REQUIRE(b.count() == 6);
      std::vector<std::string> rest;
      for (std::size_t i = 0; i < b.count(); ++i) rest.push_back(get<Counted>(b, i).text);
      CHECK(rest == std::vector<std::string>{text(1), text(2), text(5), text(6), text(7), text(8)});
      b.erase_sorted(gone, 0);  // nothing
      CHECK(b.count() == 6);
    }
    CHECK(Counted::live == 0);
  }
  SECTION("trivial messages") {
    MessageBuffer b(&type_desc_v<std::uint32_t>);
    for (std::uint32_t i = 0; i < 8; ++i) push(b, i);
    const std::size_t gone[] = {5, 6, 7};
    b.erase_sorted(gone, 3);
    REQUIRE(b.count() == 5);
    for (std::uint32_t i = 0; i < 5; ++i) CHECK(get<std::uint32_t>(b, i) == i);
  }
}

TEST_CASE("a buffer keeps working after set_type switches its type", "[message_buffer]") {
  Counted::live = 0;
  MessageBuffer b(&type_desc_v<Counted>);
  for (int i = 0; i < 100; ++i) push(b, Counted(text(i)));
  b.set_type(&type_desc_v<std::uint64_t>);
  CHECK(Counted::live == 0);  // the old messages were destroyed
  CHECK(b.empty());
  CHECK(b.type() == &type_desc_v<std::uint64_t>);
  for (std::uint64_t i = 0; i < 1000; ++i) push(b, i * 3);
  CHECK(get<std::uint64_t>(b, 999) == 2997);
  CHECK(b.span().stride == 8);

  b.set_type(&type_desc_v<mb_test::Wide>);  // needs a more aligned allocation
  for (std::uint64_t i = 0; i < 300; ++i) push(b, mb_test::Wide{i});
  CHECK(b.span().stride == 128);
  CHECK(reinterpret_cast<std::uintptr_t>(b.at(0)) % 128 == 0);
  CHECK(get<mb_test::Wide>(b, 299).v == 299);

  b.set_type(&type_desc_v<std::string>);
  for (int i = 0; i < 600; ++i) push(b, text(i));
  CHECK(get<std::string>(b, 0) == text(0));
  CHECK(get<std::string>(b, 599) == text(599));
}
