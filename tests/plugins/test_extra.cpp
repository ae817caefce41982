// test_extra: a second valid plugin, for topology checks that test_events alone cannot reach:
// a state of another type than LastSeq, and state computations that emit nothing. Its Event
// and LastSeq have the same names and layouts as test_events' own, so the host matches them.
// TEST_EXTRA_VARIANT 2 (version 0.3.0) has the Event of test_events_v10, with a field more:
// the two plugins reload together.
#include <cstdint>
#include <string>

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

SHARDLINE_PLUGIN("test_extra", TEST_EXTRA_VARIANT == 2 ? "0.3.0" : "0.2.0", p) {
  p.computation("relay", [](const Event& e) { return e; });
  p.state<Counter>("counter");
  p.state_computation("observe", [](const Event& e, LastSeq& s) {
    ++s.count;
    s.last = e.seq;
  });
  p.state_computation("observe_text", [](const std::string&, LastSeq& s) { ++s.count; });
}
