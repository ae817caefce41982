// test_events: a small valid plugin for the unit and integration tests.
//
// Text lines "KEY SEQ" become Events; "track" keeps the last sequence number per key and flags
// events that arrive out of order. The other components exist to exercise error paths: a
// computation that throws for some inputs, a state factory that refuses a key, and components
// on std::string for type and key-kind mismatches in topologies.
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <shardline/plugin.hpp>

struct Event {
  std::uint64_t key;
  std::uint64_t seq;
};

struct LastSeq {
  std::uint64_t last = 0;
  std::uint64_t count = 0;
};

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

Event parse_event(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos)
    throw shardline::DecodeError("expected \"KEY SEQ\" (two unsigned integers), got \"" +
                                 std::string(line) + "\"");
  return Event{parse_number(line.substr(0, space), line), parse_number(line.substr(space + 1), line)};
}

}  // namespace

SHARDLINE_PLUGIN("test_events", "1.0.0", p) {
  p.decoder("event_line", [](std::string_view line) { return parse_event(line); });
  p.partition("by_key", [](const Event& e) { return e.key; });
  p.state<LastSeq>("last_seq");
  p.state_computation("track", [](const Event& e, LastSeq& s) {
    ++s.count;
    const bool in_order = e.seq > s.last;
    s.last = e.seq;
    return Tracked{e.key, e.seq, s.count, in_order};
  });
  p.encoder("tracked_line", [](const Tracked& t) {
    return std::to_string(t.key) + " " + std::to_string(t.seq) + " " + std::to_string(t.count) +
           (t.in_order ? " ok" : " OUT-OF-ORDER");
  });
  p.computation("explode", [](const Event& e) {
    if (e.seq % 7 == 0) throw std::runtime_error("seq " + std::to_string(e.seq) + " is cursed");
    return e;
  });
  p.computation("to_text", [](const Event& e) {
    return std::to_string(e.key) + ":" + std::to_string(e.seq);
  });
  p.encoder("text", [](const std::string& s) { return s; });
  p.state<LastSeq>("picky", [](std::uint64_t key) {
    if (key == 13) throw std::runtime_error("no state for key 13");
    return LastSeq{};
  });
  p.partition("by_text", [](const std::string& s) { return std::string_view(s); });
}
