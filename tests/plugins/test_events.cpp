// test_events: a small valid plugin for the unit and integration tests.
//
// Text lines "KEY SEQ" become Events; "track" keeps the last sequence number per key and flags
// events that arrive out of order. The other components exist to exercise error paths: a
// computation that throws for some inputs, a state factory that refuses a key, and components
// on std::string for type and key-kind mismatches in topologies.
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <chrono>
#include <functional>
#include <thread>

#include <shardline/plugin.hpp>

// Built once per TEST_EVENTS_VARIANT for the hot-reload tests (default 1):
//   1 the base version;  2 same state layout, tags its output " v2", and adds a computation
//     "pass" (a topology edited to use it is valid only once this build is loaded);
//   3 LastSeq gains a field (schema 3) and restores any earlier version, tags " v3";
//   4 LastSeq changes layout with no restore(): a reload must be refused;
//   5 LastSeq changes layout and restore() throws: the migration fails;
//   6 same layout, but track throws on every event: the canary must refuse it;
//   7 no "track" component at all;
//   8 same layout, but track crashes (SIGSEGV) on every event: the canary, run in a copy of
//     the host first, must refuse it and the host must live on;
//   9 same layout, but track never returns: the canary's copy is given up on, the reload
//     refused, and the host must not run the same code itself;
//  10 Event gains a field, as in test_extra_v2 (a message type two plugins share changes in
//     both): this build alone does not fit a host running test_extra; tags " v10".
//  11 Event keeps its size but changes schema: a layout another build cannot read.
//  12 by_key returns the key as a string: the keys a state holds would not be found again.
//  13 track rejects an event that is not beyond the last one seen (a duplicate): the reload's
//     canary replays messages already applied, which this check trips; tags " v13".
//  14 LastSeq changes schema, and restore() crashes on a state that has seen no event (a
//     declared key no message reached, which the canary's recent messages never touch).
//  15 as 2, under another plugin name (SHARDLINE_PLUGIN's first argument); tags " v15".
//  16 LastSeq changes schema, and restore() crashes on every state: the canary, taking over
//     a recent key's state, must name it.
//  17 the decoder rejects every event: the canary must name it as a decoder, which has no state.
#ifndef TEST_EVENTS_VARIANT
#define TEST_EVENTS_VARIANT 1
#endif

struct Event {
#if TEST_EVENTS_VARIANT == 11
  static constexpr std::uint32_t schema_version = 2;  // a new layout of the same size
#endif
  std::uint64_t key;
  std::uint64_t seq;
#if TEST_EVENTS_VARIANT == 10
  std::uint64_t hops = 0;
#endif
};
#define TEST_EVENTS_STR2(x) #x
#define TEST_EVENTS_STR(x) TEST_EVENTS_STR2(x)

namespace {
void crash();  // below
}  // namespace

struct LastSeq {
#if TEST_EVENTS_VARIANT == 3 || TEST_EVENTS_VARIANT == 4 || TEST_EVENTS_VARIANT == 5 || \
    TEST_EVENTS_VARIANT == 14 || TEST_EVENTS_VARIANT == 16
  static constexpr std::uint32_t schema_version = TEST_EVENTS_VARIANT;
  std::uint64_t restored_from = 0;  ///< the schema version this state was migrated from
#endif
  std::uint64_t last = 0;
  std::uint64_t count = 0;

#if TEST_EVENTS_VARIANT != 4
  void save(shardline::Writer& out) const {
    out.u64be(last);
    out.u64be(count);
  }
  static LastSeq restore(shardline::Reader& in, std::uint32_t version) {
#if TEST_EVENTS_VARIANT == 5
    throw std::runtime_error("cannot migrate LastSeq from schema " + std::to_string(version));
#endif
    LastSeq s;
    s.last = in.u64be();
    s.count = in.u64be();
#if TEST_EVENTS_VARIANT == 14
    if (s.count == 0) crash();
#endif
#if TEST_EVENTS_VARIANT == 16
    crash();
#endif
#if TEST_EVENTS_VARIANT == 3
    s.restored_from = version;
#endif
    (void)version;
    return s;
  }
#endif
};

/// A state holding a function made by the build that created it: the old build must stay
/// loaded while such a state lives on after a reload.
struct Labeller {
  std::function<std::string(std::uint64_t)> label;
};

#if TEST_EVENTS_VARIANT == 2
constexpr const char* kTag = " v2";
#elif TEST_EVENTS_VARIANT == 3
constexpr const char* kTag = " v3";
#elif TEST_EVENTS_VARIANT == 10
constexpr const char* kTag = " v10";
#elif TEST_EVENTS_VARIANT == 13
constexpr const char* kTag = " v13";
#elif TEST_EVENTS_VARIANT == 15
constexpr const char* kTag = " v15";
#else
constexpr const char* kTag = "";
#endif

struct Tracked {
  std::uint64_t key, seq, count;
  bool in_order;
};

namespace {

/// Parses one unsigned decimal number filling [begin, end) exactly.
std::uint64_t parse_number(std::string_view text, std::string_view line) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw shardline::DecodeError("expected \"KEY SEQ\" (two unsigned integers), got \"" +
                                 std::string(line) + "\"");
  return v;
}

/// Writes through a null pointer, read from a volatile so that the compiler cannot see it is
/// null (and emit a trap instead): SIGSEGV, as a real bug would.
void crash() {
  volatile std::uintptr_t null = 0;
  *reinterpret_cast<volatile int*>(null) = 1;
}

/// Recurses until the thread's stack is gone (SIGSEGV on the guard page), as a recursion
/// without a base case would. The frame's volatile array keeps it from becoming a loop.
std::uint64_t overflow(std::uint64_t depth) {
  volatile char frame[256];
  frame[0] = static_cast<char>(depth);
  if (depth == ~std::uint64_t{0}) return 0;  // never: only so the recursion is not endless
  return overflow(depth + 1) + static_cast<std::uint64_t>(frame[0]);
}

Event parse_event(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos)
    throw shardline::DecodeError("expected \"KEY SEQ\" (two unsigned integers), got \"" +
                                 std::string(line) + "\"");
  return Event{parse_number(line.substr(0, space), line), parse_number(line.substr(space + 1), line)};
}

}  // namespace

#if TEST_EVENTS_VARIANT == 15
#define TEST_EVENTS_NAME "test_events_renamed"
#else
#define TEST_EVENTS_NAME "test_events"
#endif

SHARDLINE_PLUGIN(TEST_EVENTS_NAME, TEST_EVENTS_STR(TEST_EVENTS_VARIANT) ".0.0", p) {
#if TEST_EVENTS_VARIANT == 17
  p.decoder("event_line", [](std::string_view line) -> Event {
    throw shardline::DecodeError("version 17 rejects every event, e.g. seq " +
                                 std::to_string(parse_event(line).seq));
  });
#else
  p.decoder("event_line", [](std::string_view line) { return parse_event(line); });
#endif
#if TEST_EVENTS_VARIANT == 12
  p.partition("by_key", [](const Event& e) { return std::to_string(e.key); });
#else
  p.partition("by_key", [](const Event& e) { return e.key; });
#endif
  p.state<LastSeq>("last_seq");
#if TEST_EVENTS_VARIANT != 7
  p.state_computation("track", [](const Event& e, LastSeq& s) {
#if TEST_EVENTS_VARIANT == 6
    throw std::runtime_error("version 6 rejects every event, e.g. seq " + std::to_string(e.seq));
#elif TEST_EVENTS_VARIANT == 8
    crash();
#elif TEST_EVENTS_VARIANT == 9
    for (volatile bool forever = true; forever;) {
    }
#elif TEST_EVENTS_VARIANT == 13
    if (e.seq <= s.last)
      throw std::runtime_error("seq " + std::to_string(e.seq) + " of key " +
                               std::to_string(e.key) + " seen before");
#endif
    ++s.count;
    const bool in_order = e.seq > s.last;
    s.last = e.seq;
    return Tracked{e.key, e.seq, s.count, in_order};
  });
#endif
  // A second stateful step after "track", for pipelines that hand a key's events from one state
  // to the next: counts them again in a state of its own, and keeps "track"'s verdict.
  p.partition("tracked_by_key", [](const Tracked& t) { return t.key; });
  p.state_computation("retrack", [](const Tracked& t, LastSeq& s) {
    ++s.count;
    const bool in_order = t.in_order && t.seq > s.last;
    s.last = t.seq;
    return Tracked{t.key, t.seq, s.count, in_order};
  });
  p.encoder("tracked_line", [](const Tracked& t) {
    return std::to_string(t.key) + " " + std::to_string(t.seq) + " " + std::to_string(t.count) +
           (t.in_order ? " ok" : " OUT-OF-ORDER") + kTag;
  });
  p.computation("explode", [](const Event& e) {
    if (e.seq % 7 == 0) throw std::runtime_error("seq " + std::to_string(e.seq) + " is cursed");
    return e;
  });
  p.computation("segfault", [](const Event& e) {  // a plugin that crashes the host at seq 5
    if (e.seq == 5) crash();
    return e;
  });
  p.computation("exit_at_5", [](const Event& e) {  // ends the process, as a careless plugin may
    if (e.seq == 5) std::exit(7);
    return e;
  });
  // Overflow the stack at seq 5: on the source thread, and on a shard after "track".
  p.computation("overflow", [](const Event& e) {
    if (e.seq == 5) (void)overflow(0);
    return e;
  });
  p.computation("overflow_tracked", [](const Tracked& t) {
    if (t.seq == 5) (void)overflow(0);
    return t;
  });
  // A step after "track" that takes 2 ms a message, on the shard: a backlog builds up behind
  // it, which a reload has to wait for.
  p.computation("slow_tracked", [](const Tracked& t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return t;
  });
#if TEST_EVENTS_VARIANT == 2
  p.computation("pass", [](const Event& e) { return e; });
#endif
  p.computation("to_text", [](const Event& e) {
    return std::to_string(e.key) + ":" + std::to_string(e.seq);
  });
  p.encoder("text", [](const std::string& s) { return s; });
  p.computation("no_13", [](const std::string& s) {  // fails on the text of key 13's events
    if (s.rfind("13:", 0) == 0) throw std::runtime_error("no text for key 13");
    return s;
  });
  // A state holding code of the build that made it (no save(): kept as is across a reload).
  p.state<Labeller>("labeller", [] {
    return Labeller{[](std::uint64_t seq) { return "seq " + std::to_string(seq) + kTag; }};
  });
  p.state_computation("label", [](const Event& e, Labeller& l) {
    return std::to_string(e.key) + " " + l.label(e.seq);
  });
  p.state<LastSeq>("picky", [](std::uint64_t key) {
    if (key == 13) throw std::runtime_error("no state for key 13");
    if (key == 666) crash();  // a factory with a bug, on the shard's thread
    return LastSeq{};
  });
  p.partition("by_text", [](const std::string& s) { return std::string_view(s); });
  p.partition("by_key_but_13", [](const Event& e) {
    if (e.key == 13) throw std::runtime_error("key 13 has no partition");
    return e.key;
  });
}
