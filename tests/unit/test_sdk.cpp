// The SDK's type erasure, without dlopen: components registered with shardline::PluginBuilder
// in this test, called through the erased interfaces of <shardline/boundary.hpp> with the
// host's MessageBuffer as output, exactly as the engine calls them.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <shardline/plugin.hpp>

#include "engine/message_buffer.hpp"
#include "test_support.hpp"

using shardline::ComponentKind;
using shardline::engine::MessageBuffer;

namespace sdk_test {
struct Quote {
  std::uint32_t id;
  std::uint64_t price;
};
struct Pod {
  int a;
  double b;
};
struct Total {
  std::uint64_t sum = 0;
  std::uint64_t key = 0;
};
}  // namespace sdk_test

using sdk_test::Quote;
using sdk_test::Total;
using shardline_test::ErrorLog;
using shardline_test::get;
using shardline_test::push;
using shardline_test::Reports;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> values) {
  std::vector<std::byte> out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

std::vector<shardline::Frame> frames_of(const std::vector<std::vector<std::byte>>& payloads) {
  std::vector<shardline::Frame> out;
  for (const auto& p : payloads) out.push_back({p.data(), static_cast<std::uint32_t>(p.size())});
  return out;
}

template <class C>
C& impl(const shardline::Manifest& m, ComponentKind kind, std::string_view name) {
  for (const auto& c : m.components)
    if (c.kind == kind && c.name == name) return *static_cast<C*>(c.impl.get());
  FAIL("no " << shardline::to_string(kind) << " '" << name << "'");
  throw std::logic_error("unreachable");
}

const shardline::ComponentInfo& info(const shardline::Manifest& m, std::string_view name) {
  for (const auto& c : m.components)
    if (c.name == name) return c;
  FAIL("no component '" << name << "'");
  throw std::logic_error("unreachable");
}

std::string as_text(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

/// Runs encoder `name` over `in`, appending its framed output to `buffer` (exact once done).
void encode(const shardline::Manifest& m, std::string_view name, const MessageBuffer& in,
            shardline::Framing framing, std::vector<std::byte>& buffer, ErrorLog& errors) {
  shardline::EncodedOutput out(buffer, framing);
  impl<shardline::Encoder>(m, ComponentKind::encoder, name).encode(in.span(), out, errors.sink);
}

}  // namespace

TEST_CASE("a decoder with a Reader reads big-endian fields and reports bad frames by index", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).decoder("quote", [](shardline::Reader& r) {
    Quote q{};
    q.id = r.u32be();
    q.price = r.u64be();
    r.expect_end();
    return q;
  });
  const auto payloads = std::vector<std::vector<std::byte>>{
      bytes({0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 1, 0}),
      bytes({0, 0, 0, 1, 0, 0}),                                       // truncated
      bytes({0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9}),                  // one byte too many
      bytes({0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4, 5, 6, 7, 8}),
  };
  const auto frames = frames_of(payloads);
  MessageBuffer out(info(m, "quote").output);
  ErrorLog errors;
  impl<shardline::Decoder>(m, ComponentKind::decoder, "quote").decode(frames.data(), frames.size(), out, errors.sink);

  REQUIRE(out.count() == 2);
  CHECK(get<Quote>(out, 0).id == 42);
  CHECK(get<Quote>(out, 0).price == 256);
  CHECK(get<Quote>(out, 1).id == 0xfffffffeU);
  CHECK(get<Quote>(out, 1).price == 0x0102030405060708ULL);
  CHECK(errors.entries == Reports{{1, "truncated frame: need 8 bytes at offset 4, frame has 6"},
                                  {2, "frame has 13 bytes, format uses 12"}});
}

TEST_CASE("Reader and Writer round-trip every field type", "[sdk]") {
  std::vector<std::byte> buffer;
  {
    shardline::EncodedOutput encoded(buffer, shardline::Framing::lines);  // exact once gone
    shardline::Writer w(encoded);
    w.u8(0xab);
    w.u16be(0x1234);
    w.u32be(0xdeadbeef);
    w.u64be(0x0102030405060708ULL);
    w.f64be(-1.5);
    w.text("IBM ");
    w.bytes("xyz", 3);
  }
  CHECK(buffer.size() == 1 + 2 + 4 + 8 + 8 + 4 + 3);
  // Network order on the wire.
  CHECK(buffer[1] == std::byte{0x12});
  CHECK(buffer[2] == std::byte{0x34});
  CHECK(buffer[3] == std::byte{0xde});
  CHECK(buffer[7] == std::byte{0x01});
  CHECK(buffer[14] == std::byte{0x08});

  shardline::Reader r({buffer.data(), static_cast<std::uint32_t>(buffer.size())});
  CHECK(r.u8() == 0xab);
  CHECK(r.u16be() == 0x1234);
  CHECK(r.u32be() == 0xdeadbeef);
  CHECK(r.u64be() == 0x0102030405060708ULL);
  CHECK(r.f64be() == -1.5);
  char symbol[4];
  r.copy_to(symbol);
  CHECK(std::string_view(symbol, 4) == "IBM ");
  CHECK(r.remaining() == 3);
  CHECK_THROWS_WITH(r.expect_end(), "frame has 30 bytes, format uses 27");
  CHECK(r.text(3) == "xyz");
  CHECK(r.offset() == 30);
  CHECK_NOTHROW(r.expect_end());
  CHECK_THROWS_AS(r.u8(), shardline::DecodeError);
}

TEST_CASE("a text decoder returning optional drops the frames it rejects", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).decoder("words", [](std::string_view s) -> std::optional<std::string> {
    if (s.empty()) return std::nullopt;
    if (s == "bad") throw shardline::DecodeError("bad word");
    return std::string(s) + std::string(20, '!');  // beyond the small-string buffer
  });
  CHECK(info(m, "words").output == &shardline::type_desc_v<std::string>);
  const std::string lines[] = {"one", "", "bad", "two"};
  std::vector<shardline::Frame> frames;
  for (const auto& l : lines)
    frames.push_back({reinterpret_cast<const std::byte*>(l.data()), static_cast<std::uint32_t>(l.size())});
  MessageBuffer out(info(m, "words").output);
  ErrorLog errors;
  impl<shardline::Decoder>(m, ComponentKind::decoder, "words").decode(frames.data(), frames.size(), out, errors.sink);
  REQUIRE(out.count() == 2);
  CHECK(get<std::string>(out, 0) == "one" + std::string(20, '!'));
  CHECK(get<std::string>(out, 1) == "two" + std::string(20, '!'));
  CHECK(errors.entries == Reports{{2, "bad word"}});
}

TEST_CASE("a batch loop makes room for the whole batch once, after what the output holds", "[sdk]") {
  // Decoders, computations and state computations with at most one output per message fill
  // the room for the whole batch through their own position: the output may already hold
  // messages, must grow (relocating non-trivial ones) and gets exactly the kept outputs.
  shardline::Manifest m;
  shardline::PluginBuilder(m).computation("long_or_skip", [](const std::int64_t& v) -> std::optional<std::string> {
    if (v % 3 == 0) return std::nullopt;
    if (v % 100 == 7) throw std::runtime_error("seven");
    return std::to_string(v) + std::string(24, '#');  // beyond the small-string buffer
  });
  const auto& c = info(m, "long_or_skip");
  MessageBuffer in(c.input), out(c.output);
  push(out, std::string("already here, and long enough to be on the heap"));
  constexpr std::int64_t n = 1000;  // beyond the buffer's first capacity (256)
  for (std::int64_t v = 0; v < n; ++v) push(in, v);
  ErrorLog errors;
  impl<shardline::Computation>(m, ComponentKind::computation, "long_or_skip").run(in.span(), out, errors.sink);

  std::vector<std::string> expected{"already here, and long enough to be on the heap"};
  Reports expected_errors;
  for (std::int64_t v = 0; v < n; ++v) {
    if (v % 3 == 0) continue;
    if (v % 100 == 7) {
      expected_errors.push_back({static_cast<std::size_t>(v), "seven"});
      continue;
    }
    expected.push_back(std::to_string(v) + std::string(24, '#'));
  }
  REQUIRE(out.count() == expected.size());
  bool all_right = true;
  for (std::size_t i = 0; i < expected.size(); ++i) all_right = all_right && get<std::string>(out, i) == expected[i];
  CHECK(all_right);
  CHECK(errors.entries == expected_errors);
}

TEST_CASE("a computation returning optional filters", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).computation("evens_times_ten", [](const std::int64_t& v) -> std::optional<std::int64_t> {
    if (v % 2 != 0) return std::nullopt;
    if (v == 4) throw std::runtime_error("four is unlucky");
    return v * 10;
  });
  const auto& c = info(m, "evens_times_ten");
  CHECK(c.input == &shardline::type_desc_v<std::int64_t>);
  CHECK(c.output == &shardline::type_desc_v<std::int64_t>);
  MessageBuffer in(c.input), out(c.output);
  for (std::int64_t v = 0; v < 8; ++v) push(in, v);
  ErrorLog errors;
  impl<shardline::Computation>(m, ComponentKind::computation, "evens_times_ten").run(in.span(), out, errors.sink);
  REQUIRE(out.count() == 3);
  CHECK(get<std::int64_t>(out, 0) == 0);
  CHECK(get<std::int64_t>(out, 1) == 20);
  CHECK(get<std::int64_t>(out, 2) == 60);
  CHECK(errors.entries == Reports{{4, "four is unlucky"}});
}

TEST_CASE("a message returned const, or by reference, is the plain type, copied", "[sdk]") {
  // `-> const T` and `-> const T&` name the same message type as `-> T`: the host matches
  // steps by it. A reference is copied as the call returns (here, to the input itself).
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .decoder("line", [](std::string_view s) -> const std::string { return std::string(s); })
      .computation("same", [](const std::string& s) -> const std::string& { return s; })
      .state_computation("keep", [](const std::string& s, std::string& last)
                                     -> const std::optional<std::string> {
        last = s;
        return last + "!";
      })
      .computation("maybe", [](const std::string& s) -> std::optional<const std::string> {
        return s;
      });
  for (const char* name : {"line", "same", "keep", "maybe"})
    CHECK(info(m, name).output == &shardline::type_desc_v<std::string>);
  MessageBuffer in(&shardline::type_desc_v<std::string>), out(&shardline::type_desc_v<std::string>);
  push(in, std::string("long enough to live on the heap, not in the string"));
  ErrorLog errors;
  impl<shardline::Computation>(m, ComponentKind::computation, "same").run(in.span(), out, errors.sink);
  REQUIRE(out.count() == 1);
  CHECK(get<std::string>(out, 0) == "long enough to live on the heap, not in the string");
  CHECK(get<std::string>(in, 0) == get<std::string>(out, 0));  // copied, not moved from
  CHECK(errors.entries.empty());
}

namespace sdk_test {
struct Weird {};  // thrown by plugin code that does not throw std::exception
}  // namespace sdk_test

TEST_CASE("whatever plugin code throws is reported with what can be said of it", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).computation("throws", [](const std::int64_t& v) -> std::int64_t {
    if (v == 0) throw std::runtime_error("a std::exception");
    if (v == 1) throw std::string("a thrown std::string");
    if (v == 2) throw "a thrown C string";
    if (v == 3) throw 42;
    throw sdk_test::Weird{};
  });
  const auto& c = info(m, "throws");
  MessageBuffer in(c.input), out(c.output);
  for (std::int64_t v = 0; v < 5; ++v) push(in, v);
  ErrorLog errors;
  impl<shardline::Computation>(m, ComponentKind::computation, "throws").run(in.span(), out, errors.sink);
  CHECK(out.count() == 0);
  CHECK(errors.entries == Reports{{0, "a std::exception"},
                                  {1, "a thrown std::string"},
                                  {2, "a thrown C string"},
                                  {3, "an exception of type int"},
                                  {4, "an exception of type sdk_test::Weird"}});
}

TEST_CASE("a computation with Emit produces any number of non-trivial outputs", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).computation("split", [](const std::string& line, shardline::Emit<std::string>& emit) {
    std::istringstream words(line);
    for (std::string w; words >> w;) emit(w + std::string(16, '.'));  // heap-allocated strings
  });
  const auto& c = info(m, "split");
  CHECK(c.input->name == "std::string");
  CHECK(c.output->name == "std::string");
  CHECK_FALSE(c.output->trivial);
  MessageBuffer in(c.input), out(c.output);
  constexpr int lines = 300;  // 900 outputs: the output buffer grows, relocating its strings
  for (int i = 0; i < lines; ++i) {
    const std::string n = std::to_string(i);
    push(in, std::string("a").append(n).append(" b").append(n).append(" c").append(n));
  }
  push(in, std::string());  // emits nothing
  ErrorLog errors;
  impl<shardline::Computation>(m, ComponentKind::computation, "split").run(in.span(), out, errors.sink);
  CHECK(errors.entries.empty());
  REQUIRE(out.count() == 3 * lines);
  bool all_right = true;
  for (int i = 0; i < lines; ++i)
    for (int j = 0; j < 3; ++j)
      all_right = all_right &&
                  get<std::string>(out, 3 * i + j) ==
                      std::string(1, char('a' + j)).append(std::to_string(i)).append(16, '.');
  CHECK(all_right);
}

TEST_CASE("partitions produce integer keys as they are and string keys as key_of", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .partition("by_id", [](const Quote& q) { return q.id; })
      .partition("by_word", [](const std::string& s) { return std::string_view(s); })
      .partition("by_owned", [](const std::string& s) {
        if (s == "throw") throw std::runtime_error("no key");
        return s + "#";
      });
  CHECK(info(m, "by_id").key_kind == shardline::KeyKind::integer);
  CHECK(info(m, "by_word").key_kind == shardline::KeyKind::string);
  CHECK(info(m, "by_owned").key_kind == shardline::KeyKind::string);
  CHECK(info(m, "by_id").output == nullptr);

  MessageBuffer quotes(&shardline::type_desc_v<Quote>);
  push(quotes, Quote{7, 1});
  push(quotes, Quote{0xffffffffU, 2});
  std::uint64_t keys[2] = {};
  ErrorLog errors;
  impl<shardline::Partition>(m, ComponentKind::partition, "by_id").keys(quotes.span(), keys, errors.sink);
  CHECK(keys[0] == 7);
  CHECK(keys[1] == 0xffffffffU);

  MessageBuffer words(&shardline::type_desc_v<std::string>);
  push(words, std::string("IBM"));
  push(words, std::string("throw"));
  std::uint64_t word_keys[2] = {0, 0};
  impl<shardline::Partition>(m, ComponentKind::partition, "by_word").keys(words.span(), word_keys, errors.sink);
  CHECK(word_keys[0] == shardline::key_of("IBM"));
  CHECK(word_keys[1] == shardline::key_of("throw"));
  std::uint64_t owned_keys[2] = {0, 0};
  impl<shardline::Partition>(m, ComponentKind::partition, "by_owned").keys(words.span(), owned_keys, errors.sink);
  CHECK(owned_keys[0] == shardline::key_of("IBM#"));
  CHECK(errors.entries == Reports{{1, "no key"}});
}

TEST_CASE("a partition returning an enum keys by its underlying value", "[sdk]") {
  enum class Venue : std::int16_t { nyse = 3, lse = -2 };
  shardline::Manifest m;
  shardline::PluginBuilder(m).partition("by_venue", [](const std::int64_t& v) {
    return v > 0 ? Venue::nyse : Venue::lse;
  });
  CHECK(info(m, "by_venue").key_kind == shardline::KeyKind::integer);
  MessageBuffer in(&shardline::type_desc_v<std::int64_t>);
  push(in, std::int64_t{1});
  push(in, std::int64_t{-1});
  std::uint64_t keys[2] = {};
  ErrorLog errors;
  impl<shardline::Partition>(m, ComponentKind::partition, "by_venue").keys(in.span(), keys, errors.sink);
  CHECK(keys[0] == 3);
  CHECK(keys[1] == static_cast<std::uint64_t>(std::int64_t{-2}));  // as `keys = [-2]` declares it
}

TEST_CASE("state factories build default states or states from their key", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .state<Total>("default")
      .state<Total>("from_nothing", [] { return Total{5, 0}; })
      .state<Total>("from_key", [](std::uint64_t key) { return Total{0, key * 2}; })
      .state<std::string>("named", [](std::uint64_t key) { return "state of key " + std::to_string(key) + " and more"; });
  for (const char* name : {"default", "from_nothing", "from_key"}) {
    CHECK(info(m, name).state == &shardline::type_desc_v<Total>);
    CHECK(info(m, name).input == nullptr);
    CHECK(info(m, name).output == nullptr);
  }
  alignas(Total) std::byte slot[sizeof(Total)];
  impl<shardline::StateFactory>(m, ComponentKind::state, "default").construct(slot, 99);
  CHECK(reinterpret_cast<Total*>(slot)->sum == 0);
  CHECK(reinterpret_cast<Total*>(slot)->key == 0);
  impl<shardline::StateFactory>(m, ComponentKind::state, "from_nothing").construct(slot, 99);
  CHECK(reinterpret_cast<Total*>(slot)->sum == 5);
  impl<shardline::StateFactory>(m, ComponentKind::state, "from_key").construct(slot, 21);
  CHECK(reinterpret_cast<Total*>(slot)->key == 42);

  const auto* named = info(m, "named").state;
  alignas(std::string) std::byte text[sizeof(std::string)];
  impl<shardline::StateFactory>(m, ComponentKind::state, "named").construct(text, 3);
  CHECK(*std::launder(reinterpret_cast<std::string*>(text)) == "state of key 3 and more");
  named->destroy(text);
}

TEST_CASE("a state computation updates each message's state and emits", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .state_computation("sum", [](const Quote& q, Total& t) {
        if (q.price == 0) throw std::invalid_argument("free quote");
        t.sum += q.price;
        return t.sum;
      })
      .state_computation("silent", [](const Quote& q, Total& t) { t.sum += q.price; })
      .state_computation("twice", [](const Quote& q, Total& t, shardline::Emit<std::string>& emit) {
        ++t.sum;
        emit(std::to_string(q.id));
        emit(std::to_string(t.sum));
      })
      .state_computation("half_done", [](const Quote& q, Total& t, shardline::Emit<std::string>& emit) {
        ++t.sum;
        emit(std::to_string(q.id));
        if (q.price == 0) throw std::invalid_argument("free quote");
      });
  CHECK(info(m, "sum").input->name == "sdk_test::Quote");
  CHECK(info(m, "sum").state->name == "sdk_test::Total");
  CHECK(info(m, "sum").output == &shardline::type_desc_v<std::uint64_t>);
  CHECK(info(m, "silent").output == nullptr);
  CHECK(info(m, "twice").output == &shardline::type_desc_v<std::string>);

  // Two keys, interleaved: states[i] is the state of message i's key.
  Total a, b;
  MessageBuffer in(&shardline::type_desc_v<Quote>);
  push(in, Quote{1, 10});
  push(in, Quote{2, 100});
  push(in, Quote{1, 0});
  push(in, Quote{1, 5});
  void* const states[] = {&a, &b, &a, &a};
  MessageBuffer out(info(m, "sum").output);
  ErrorLog errors;
  impl<shardline::StateComputation>(m, ComponentKind::state_computation, "sum").run(in.span(), states, out, errors.sink);
  REQUIRE(out.count() == 3);
  CHECK(get<std::uint64_t>(out, 0) == 10);
  CHECK(get<std::uint64_t>(out, 1) == 100);
  CHECK(get<std::uint64_t>(out, 2) == 15);
  CHECK(a.sum == 15);
  CHECK(b.sum == 100);
  CHECK(errors.entries == Reports{{2, "free quote"}});

  MessageBuffer none(&shardline::type_desc_v<std::uint64_t>);
  impl<shardline::StateComputation>(m, ComponentKind::state_computation, "silent").run(in.span(), states, none, errors.sink);
  CHECK(none.count() == 0);
  CHECK(a.sum == 30);
  CHECK(b.sum == 200);

  MessageBuffer texts(info(m, "twice").output);
  impl<shardline::StateComputation>(m, ComponentKind::state_computation, "twice").run(in.span(), states, texts, errors.sink);
  REQUIRE(texts.count() == 8);
  CHECK(get<std::string>(texts, 0) == "1");
  CHECK(get<std::string>(texts, 1) == "31");
  CHECK(get<std::string>(texts, 2) == "2");
  CHECK(get<std::string>(texts, 3) == "201");
  CHECK(get<std::string>(texts, 7) == "33");

  // A failure drops what the message emitted, and keeps what it changed in its state.
  MessageBuffer ids(info(m, "half_done").output);
  ErrorLog failed;
  impl<shardline::StateComputation>(m, ComponentKind::state_computation, "half_done").run(in.span(), states, ids, failed.sink);
  REQUIRE(ids.count() == 3);
  CHECK(get<std::string>(ids, 2) == "1");  // the fourth message's
  CHECK(a.sum == 36);  // all three of key 1's messages counted, the failed one too
  CHECK(failed.entries == Reports{{2, "free quote"}});
}

TEST_CASE("Emit::emplace builds outputs in place, and a message that throws keeps none of them", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).state_computation(
      "fill", [](const Quote& q, Total& t, shardline::Emit<Quote>& emit) {
        Quote& filled = emit.emplace();  // value-initialized, then filled where it lies
        CHECK((filled.id == 0 && filled.price == 0));
        filled.price = (t.sum += q.price);
        filled.id = q.id;
        emit.emplace(q.id + 100, std::uint64_t{7});  // from arguments
        if (q.price == 0) throw std::invalid_argument("free quote");
      });
  Total total;
  MessageBuffer in(&shardline::type_desc_v<Quote>);
  push(in, Quote{1, 10});
  push(in, Quote{2, 0});
  push(in, Quote{3, 5});
  void* const states[] = {&total, &total, &total};
  MessageBuffer out(info(m, "fill").output);
  ErrorLog errors;
  impl<shardline::StateComputation>(m, ComponentKind::state_computation, "fill")
      .run(in.span(), states, out, errors.sink);
  CHECK(errors.entries == Reports{{1, "free quote"}});
  REQUIRE(out.count() == 4);  // the second message's two outputs were rolled back
  const auto quote = [&](std::size_t i) { return get<Quote>(out, i); };
  CHECK((quote(0).id == 1 && quote(0).price == 10));
  CHECK((quote(1).id == 101 && quote(1).price == 7));
  CHECK((quote(2).id == 3 && quote(2).price == 15));
  CHECK((quote(3).id == 103 && quote(3).price == 7));
}

TEST_CASE("processing_time_ns is read once per call into the plugin, and afresh outside one", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m).state_computation("stamp", [](const Quote& q, Total& t) {
    if (q.price == 0) throw std::invalid_argument("free quote");
    ++t.sum;
    return shardline::processing_time_ns();
  });
  auto& stamp = impl<shardline::StateComputation>(m, ComponentKind::state_computation, "stamp");
  Total total;
  MessageBuffer in(&shardline::type_desc_v<Quote>);
  for (std::uint32_t i = 0; i < 100; ++i) push(in, Quote{i, i == 50 ? 0u : 1u});
  const std::vector<void*> states(100, &total);
  const auto stamps = [&] {
    MessageBuffer out(info(m, "stamp").output);
    ErrorLog errors;
    stamp.run(in.span(), states.data(), out, errors.sink);
    CHECK(errors.entries == Reports{{50, "free quote"}});
    std::vector<std::uint64_t> got;
    for (std::size_t i = 0; i < out.count(); ++i) got.push_back(get<std::uint64_t>(out, i));
    return got;
  };
  const auto first = stamps();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto second = stamps();
  REQUIRE(first.size() == 99);
  REQUIRE(second.size() == 99);
  // One reading per call, shared by every message of it; each call its own.
  CHECK(std::count(first.begin(), first.end(), first[0]) == 99);
  CHECK(std::count(second.begin(), second.end(), second[0]) == 99);
  CHECK(second[0] != first[0]);
  CHECK(first[0] > 1'600'000'000ull * 1'000'000'000ull);  // nanoseconds since the epoch
  // Outside a call (the failed message's exception did not leave one open), a fresh reading.
  CHECK(shardline::detail::call_time_ns == shardline::detail::kNoCall);
  const std::uint64_t outside = shardline::processing_time_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  CHECK(shardline::processing_time_ns() != outside);
}

TEST_CASE("encoders frame their output, and a throwing encoder leaves no partial bytes", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .encoder("binary", [](const Quote& q, shardline::Writer& w) {
        w.u32be(q.id);
        if (q.id == 2) throw std::runtime_error("cannot encode quote 2");  // after writing 4 bytes
        w.u64be(q.price);
      })
      .encoder("text", [](const Quote& q) {
        std::string s = std::to_string(q.id) + "@" + std::to_string(q.price);
        if (q.id == 2) throw std::runtime_error("cannot encode quote 2");
        return s;
      });
  CHECK(info(m, "binary").input == &shardline::type_desc_v<Quote>);
  CHECK(info(m, "binary").output == nullptr);

  MessageBuffer in(&shardline::type_desc_v<Quote>);
  push(in, Quote{1, 0x0a0b});
  push(in, Quote{2, 7});
  push(in, Quote{3, 9});

  SECTION("length-prefixed bytes") {
    std::vector<std::byte> buffer = bytes({0xee});  // bytes already in the chunk stay
    ErrorLog errors;
    encode(m, "binary", in, shardline::Framing::length_prefixed, buffer, errors);
    CHECK(buffer == bytes({0xee,                                       //
                           0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b,  //
                           0, 0, 0, 12, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9}));
    CHECK(errors.entries == Reports{{1, "cannot encode quote 2"}});
  }
  SECTION("lines") {
    std::vector<std::byte> buffer;
    ErrorLog errors;
    encode(m, "text", in, shardline::Framing::lines, buffer, errors);
    CHECK(as_text(buffer) == "1@2571\n3@9\n");
    CHECK(errors.entries == Reports{{1, "cannot encode quote 2"}});
  }
  SECTION("text, length-prefixed") {
    std::vector<std::byte> buffer;
    ErrorLog errors;
    encode(m, "text", in, shardline::Framing::length_prefixed, buffer, errors);
    CHECK(as_text(buffer) == std::string("\0\0\0\x06" "1@2571" "\0\0\0\x03" "3@9", 17));
  }
}

TEST_CASE("a text encoder's output is copied whole, whatever its length", "[sdk]") {
  // The encoder returns a std::string by value: a temporary that the SDK must keep alive
  // until its bytes are appended (a long string lives on the heap, a short one inline).
  shardline::Manifest m;
  shardline::PluginBuilder(m).encoder("repeat", [](const std::uint32_t& n) { return std::string(n, 'x') + "!"; });
  MessageBuffer in(&shardline::type_desc_v<std::uint32_t>);
  for (std::uint32_t n : {100u, 3u, 5000u, 1000u, 40u}) push(in, n);
  for (const auto framing : {shardline::Framing::lines, shardline::Framing::length_prefixed}) {
    std::vector<std::byte> buffer;  // empty: the first append allocates
    ErrorLog errors;
    encode(m, "repeat", in, framing, buffer, errors);
    std::string expected;
    for (std::uint32_t n : {100u, 3u, 5000u, 1000u, 40u}) {
      if (framing == shardline::Framing::length_prefixed)
        expected += std::string{'\0', '\0', char((n + 1) >> 8), char((n + 1) & 0xff)};
      expected += std::string(n, 'x') + "!";
      if (framing == shardline::Framing::lines) expected += "\n";
    }
    CHECK(as_text(buffer) == expected);
    CHECK(errors.entries.empty());
  }
}

TEST_CASE("a message with a newline inside fails for lines framing, not for length", "[sdk]") {
  // Written as lines it would reach a reader as two messages: the encoder fails on it instead.
  shardline::Manifest m;
  shardline::PluginBuilder(m).encoder("two_lines", [](const std::uint32_t& n) {
    return n == 2 ? std::string("2\nand more") : std::to_string(n);
  });
  MessageBuffer in(&shardline::type_desc_v<std::uint32_t>);
  for (std::uint32_t n : {1u, 2u, 3u}) push(in, n);
  SECTION("lines") {
    std::vector<std::byte> buffer;
    ErrorLog errors;
    encode(m, "two_lines", in, shardline::Framing::lines, buffer, errors);
    CHECK(as_text(buffer) == "1\n3\n");
    CHECK(errors.entries ==
          Reports{{1, "the encoded message has a newline at byte 1, and the sink's framing is "
                      "\"lines\": a reader would take it for two messages (encode it without "
                      "newlines, or give the sink framing = \"length\")"}});
  }
  SECTION("length-prefixed") {
    std::vector<std::byte> buffer;
    ErrorLog errors;
    encode(m, "two_lines", in, shardline::Framing::length_prefixed, buffer, errors);
    CHECK(as_text(buffer) == std::string("\0\0\0\x01" "1" "\0\0\0\x0a" "2\nand more" "\0\0\0\x01" "3", 24));
    CHECK(errors.entries.empty());
  }
}

TEST_CASE("a duplicate registration is rejected", "[sdk]") {
  shardline::Manifest m;
  shardline::PluginBuilder p(m);
  p.decoder("same", [](std::string_view s) { return std::string(s); });
  CHECK_THROWS_WITH(p.decoder("same", [](std::string_view s) { return s.size(); }), "duplicate decoder 'same'");
  // The same name for another kind of component is fine.
  CHECK_NOTHROW(p.encoder("same", [](const std::string& s) { return s; }));
  CHECK(m.components.size() == 2);

  // Inside SHARDLINE_PLUGIN, the error lands in the manifest, which then has no components.
  const auto manifest = shardline::detail::build_manifest("dup", "0.0.1", [](shardline::PluginBuilder& b) {
    b.computation("c", [](const Quote& q) { return q.id; });
    b.computation("c", [](const Quote& q) { return q.price; });
  });
  CHECK(manifest.plugin_name == "dup");
  CHECK(manifest.plugin_version == "0.0.1");
  CHECK(manifest.error == "duplicate computation 'c'");
  CHECK(manifest.components.empty());

  const auto fine = shardline::detail::build_manifest("ok", "1", [](shardline::PluginBuilder& b) {
    b.computation("c", [](const Quote& q) { return q.id; });
  });
  CHECK(fine.error.empty());
  CHECK(fine.components.size() == 1);
}

TEST_CASE("type descriptions: names, sizes and triviality", "[sdk]") {
  using shardline::type_desc_v;
  using shardline::type_name;
  CHECK(type_desc_v<std::string>.name == "std::string");
  CHECK_FALSE(type_desc_v<std::string>.trivial);
  CHECK(type_desc_v<std::string>.size == sizeof(std::string));
  CHECK(type_desc_v<sdk_test::Pod>.trivial);
  CHECK(type_desc_v<sdk_test::Pod>.name == "sdk_test::Pod");
  CHECK(type_desc_v<sdk_test::Pod>.size == sizeof(sdk_test::Pod));
  CHECK(type_desc_v<sdk_test::Pod>.align == alignof(sdk_test::Pod));
  CHECK(type_name<Quote>() == "sdk_test::Quote");
  CHECK(type_name<std::uint64_t>() == "long unsigned int");
  CHECK(type_name<std::vector<int>>() == "std::vector<int>");

  // relocate moves and destroys the source; destroy destroys.
  alignas(std::string) std::byte src[sizeof(std::string)], dst[sizeof(std::string)];
  ::new (src) std::string(40, 'x');
  type_desc_v<std::string>.relocate(dst, src);
  CHECK(*std::launder(reinterpret_cast<std::string*>(dst)) == std::string(40, 'x'));
  type_desc_v<std::string>.destroy(dst);

  // The manifest names the types of each component.
  shardline::Manifest m;
  shardline::PluginBuilder(m)
      .decoder("d", [](shardline::Reader& r) { return sdk_test::Pod{r.u8(), 0}; })
      .computation("c", [](const sdk_test::Pod& p) { return std::to_string(p.a); });
  CHECK(info(m, "d").input == nullptr);
  CHECK(info(m, "d").output->name == "sdk_test::Pod");
  CHECK(info(m, "c").input->name == "sdk_test::Pod");
  CHECK(info(m, "c").output->name == "std::string");
}
