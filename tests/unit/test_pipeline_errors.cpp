// printable(): how a plugin's error text, which may quote any bytes of the bad input, is
// written to the log and the dead-letter file.
#include <catch2/catch.hpp>
#include <string>

#include "engine/pipeline_errors.hpp"

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
