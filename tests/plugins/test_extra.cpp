// test_extra: a second valid plugin, for topology checks that test_events alone cannot reach:
// a state of another type than LastSeq, and state computations that emit nothing. Its Event
// and LastSeq have the same names and layouts as test_events' own, so the host matches them.
#include <cstdint>
#include <string>

#include <shardline/plugin.hpp>

struct Event {
  std::uint64_t key;
  std::uint64_t seq;
};

struct LastSeq {
  std::uint64_t last = 0;
  std::uint64_t count = 0;
};

struct Counter {
  std::uint64_t n = 0;
};

SHARDLINE_PLUGIN("test_extra", "0.2.0", p) {
  p.state<Counter>("counter");
  p.state_computation("observe", [](const Event& e, LastSeq& s) {
    ++s.count;
    s.last = e.seq;
  });
  p.state_computation("observe_text", [](const std::string&, LastSeq& s) { ++s.count; });
}
