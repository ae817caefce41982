// test_extra: a second valid plugin, for topology checks that test_events alone cannot reach:
// a state of another type than LastSeq, state computations that emit nothing, and a message
// type with save() (Note). Its Event and LastSeq have the same names and layouts as
// test_events' own, so the host matches them.
// TEST_EXTRA_VARIANT 2 (version 0.3.0) has the Event of test_events_v10, with a field more:
// the two plugins reload together. TEST_EXTRA_VARIANT 3 (0.4.0): "remember" crashes on a
// history that is not empty, a state that cannot be copied (a vector, no save()): only a canary
// run on the live states themselves sees it.
#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <shardline/plugin.hpp>

#ifndef TEST_EXTRA_VARIANT
#define TEST_EXTRA_VARIANT 1
#endif

struct Event {
  std::uint64_t key;
  std::uint64_t seq;
#if TEST_EXTRA_VARIANT == 2
  std::uint64_t hops = 0;
#endif
};

struct LastSeq {
  std::uint64_t last = 0;
  std::uint64_t count = 0;
};

struct Counter {
  std::uint64_t n = 0;
};

/// Not trivially copyable, and without save()/restore(): kept as it is across a reload.
struct History {
  std::vector<std::uint64_t> seqs;
};

/// A message that is not trivially copyable, with a save(): a dead letter holds its saved form.
struct Note {
  std::uint64_t key = 0;
  std::string text;
  void save(shardline::Writer& out) const {
    out.u64be(key);
    out.text(text);
  }
};

/// A message that is not trivially copyable, without a save(): a dead letter holds only its
/// error, and the wiring warns about it.
struct Words {
  std::vector<std::string> words;
};

namespace {
/// Writes through a null pointer the compiler cannot see (SIGSEGV, as a real bug would).
void crash() {
  volatile std::uintptr_t null = 0;
  *reinterpret_cast<volatile int*>(null) = 1;
}
}  // namespace

SHARDLINE_PLUGIN("test_extra", TEST_EXTRA_VARIANT == 3 ? "0.4.0" : TEST_EXTRA_VARIANT == 2 ? "0.3.0" : "0.2.0", p) {
  p.state<History>("history");
  p.state_computation("remember", [](const Event& e, History& h) {
    if (TEST_EXTRA_VARIANT == 3 && !h.seqs.empty()) crash();
    h.seqs.push_back(e.seq);
  });
  p.computation("relay", [](const Event& e) { return e; });
  // "KEY SEQ" lines, where a line starting with '#' is a comment, dropped on purpose.
  p.decoder("event_or_comment", [](std::string_view line) -> std::optional<Event> {
    if (line.starts_with('#')) return std::nullopt;
    Event e{};
    const auto space = line.find(' ');
    const char* end = line.data() + line.size();
    if (space == std::string_view::npos ||
        std::from_chars(line.data(), line.data() + space, e.key).ptr != line.data() + space ||
        std::from_chars(line.data() + space + 1, end, e.seq).ptr != end)
      throw shardline::DecodeError("expected \"KEY SEQ\" or a # comment");
    return e;
  });
  p.state<Counter>("counter");
  p.state_computation("observe", [](const Event& e, LastSeq& s) {
    ++s.count;
    s.last = e.seq;
  });
  p.computation("to_note",
                [](const Event& e) { return Note{e.key, "seq " + std::to_string(e.seq)}; });
  p.computation("no_note_13", [](const Note& n) {  // fails on key 13's notes
    if (n.key == 13) throw std::runtime_error("no note for key 13");
    return n;
  });
  p.computation("to_words", [](const Event& e) {
    return Words{{std::to_string(e.key), std::to_string(e.seq)}};
  });
  p.computation("count_words",
                [](const Words& w) { return static_cast<std::uint64_t>(w.words.size()); });
  p.state_computation("observe_text", [](const std::string&, LastSeq& s) { ++s.count; });
}
