// printable(): how a plugin's error text, which may quote any bytes of the bad input, is
// written to the log and the dead-letter file; and how often such lines are logged.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "engine/pipeline_errors.hpp"
#include "test_support.hpp"

using shardline::engine::printable;

TEST_CASE("error text is kept as it is when it is printable UTF-8", "[errors]") {
  CHECK(printable("expected \"KEY SEQ\", got \"x 1\"") == "expected \"KEY SEQ\", got \"x 1\"");
  CHECK(printable("symbol \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x88") ==
        "symbol \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x88");  // é, €, a 4-byte emoji
  CHECK(printable("") == "");
}

TEST_CASE("control characters and bytes that are not UTF-8 are shown as hexadecimal escapes", "[errors]") {
  CHECK(printable("a\tb\nc\r") == "a\\x09b\\x0ac\\x0d");
  CHECK(printable(std::string("nul\0end", 7)) == "nul\\x00end");
  CHECK(printable("\x7f") == "\\x7f");
  CHECK(printable("bad \xff\xfe lead") == "bad \\xff\\xfe lead");
  CHECK(printable("cut \xe2\x82") == "cut \\xe2\\x82");         // a sequence cut short
  CHECK(printable("no cont \xc3(") == "no cont \\xc3(");         // lead without continuation
  CHECK(printable("\x80 alone") == "\\x80 alone");               // a stray continuation byte
}

TEST_CASE("lines held back are counted over the time since the last line shown", "[errors]") {
  // A burst of failures, then quiet: the next line shown sums up the burst, which came long
  // before it, so the interval it names is the age of the last line shown, not "a second".
  shardline_test::LogWatch log;
  shardline::metrics::PipelineMetrics metrics;
  shardline::engine::PipelineErrors errors("p", shardline::topology::ErrorPolicy::skip, {},
                                           metrics, [](const std::string&) {});
  for (int i = 0; i < 3; ++i) errors.message_failed("x.step", "boom", {});
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  errors.message_failed("x.step", "boom", {});
  REQUIRE(log.count("pipeline 'p' step 'x.step': boom") == 2);
  CHECK(log.count("(2 similar line(s) held back in the ") == 1);
  CHECK(log.count(" s since the last one)") == 1);
  CHECK(log.count("in the last second") == 0);
}
