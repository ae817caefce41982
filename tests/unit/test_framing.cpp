// FrameSplitter: both framings, fed in every way a socket or a file may cut a stream.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "connectors/frame_splitter.hpp"
#include "test_support.hpp"

using shardline::Framing;
using shardline::connectors::FrameSplitter;
using shardline_test::FrameRecorder;
using shardline_test::length_prefixed;

namespace {

/// Feeds `input` in pieces of the sizes `next_piece()` returns, calling deliver() after each.
/// Returns false as soon as deliver() does, without finishing.
template <class NextPiece>
bool feed(FrameSplitter& s, FrameRecorder& r, const std::string& input, NextPiece next_piece,
          bool finish = true) {
  std::size_t at = 0;
  while (at < input.size()) {
    const std::size_t piece = std::min(next_piece(), input.size() - at);
    const auto space = s.write_space(piece);
    REQUIRE(space.size() >= piece);
    std::memcpy(space.data(), input.data() + at, piece);
    s.commit(piece);
    at += piece;
    if (!s.deliver(r)) return false;
  }
  if (finish) s.finish(r);
  return true;
}

bool feed_whole(FrameSplitter& s, FrameRecorder& r, const std::string& input) {
  return feed(s, r, input, [&] { return std::max<std::size_t>(input.size(), 1); });
}

bool feed_bytewise(FrameSplitter& s, FrameRecorder& r, const std::string& input) {
  return feed(s, r, input, [] { return std::size_t(1); });
}

bool feed_random(FrameSplitter& s, FrameRecorder& r, const std::string& input, unsigned seed,
                 std::size_t max_piece = 300) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> size(1, max_piece);
  return feed(s, r, input, [&] { return size(rng); });
}

std::vector<std::string> sample_payloads() {
  std::vector<std::string> p = {"", "a", "abc", "abcd", std::string(100, 'x'),
                                std::string(70000, 'y'), "tail"};
  for (int i = 0; i < 500; ++i) p.push_back("frame-" + std::to_string(i));
  return p;
}

}  // namespace

TEST_CASE("length-prefixed frames survive any read boundaries", "[framing]") {
  const auto payloads = sample_payloads();
  const std::string input = length_prefixed(payloads);

  auto check = [&](auto&& feeder) {
    FrameSplitter s(Framing::length_prefixed, 1 << 20, "test");
    FrameRecorder r;
    REQUIRE(feeder(s, r));
    CHECK(r.frames == payloads);
    CHECK(r.bad.empty());
  };
  SECTION("in one piece") { check([&](auto& s, auto& r) { return feed_whole(s, r, input); }); }
  SECTION("byte by byte") { check([&](auto& s, auto& r) { return feed_bytewise(s, r, input); }); }
  SECTION("in random pieces") {
    for (unsigned seed : {1u, 2u, 3u, 42u})
      check([&](auto& s, auto& r) { return feed_random(s, r, input, seed); });
  }
}

TEST_CASE("frames reach the handler in bounded chunks", "[framing]") {
  std::vector<std::string> payloads;
  for (int i = 0; i < 5000; ++i) payloads.push_back(std::to_string(i));
  FrameSplitter s(Framing::length_prefixed, 64, "test");
  FrameRecorder r;
  REQUIRE(feed_whole(s, r, length_prefixed(payloads)));
  CHECK(r.frames == payloads);
  CHECK(r.largest_call == FrameSplitter::kFramesPerCall);
  CHECK(r.calls == (payloads.size() + FrameSplitter::kFramesPerCall - 1) /
                       FrameSplitter::kFramesPerCall);
}

TEST_CASE("a stop requested while a chunk is handed over ends delivery after that chunk",
          "[framing]") {
  // As on_error = "stop" does from inside the handler: the rest of a large read stays unread
  // instead of being processed after the failure.
  std::vector<std::string> payloads;
  for (int i = 0; i < 5000; ++i) payloads.push_back(std::to_string(i));
  std::string lines;
  for (const auto& p : payloads) lines += p + "\n";
  for (const Framing framing : {Framing::length_prefixed, Framing::lines}) {
    std::atomic<bool> stop{false};
    struct Stopper : FrameRecorder {
      std::atomic<bool>* stop;
      std::size_t on_frames(const shardline::Frame* f, std::size_t n, std::uint64_t at,
                            const shardline::connectors::FrameOrigin& origin) override {
        FrameRecorder::on_frames(f, n, at, origin);
        if (frames.size() > 1500) *stop = true;  // during the second chunk
        return n;
      }
    } r;
    r.stop = &stop;
    FrameSplitter s(framing, 64, "test", &stop);
    feed_whole(s, r, framing == Framing::lines ? lines : length_prefixed(payloads));
    CHECK(r.frames ==
          std::vector<std::string>(payloads.begin(),
                                   payloads.begin() + 2 * FrameSplitter::kFramesPerCall));
    const std::string input = framing == Framing::lines ? lines : length_prefixed(payloads);
    const auto rest = s.unprocessed();  // reported as unprocessed: exactly the frames after
    CHECK(input.substr(rest.offset) ==
          (framing == Framing::lines
               ? std::string(lines.substr(lines.find("\n2047\n") + 6))
               : length_prefixed({payloads.begin() + 2048, payloads.end()})));
    CHECK(rest.bytes == input.size() - rest.offset);
  }
}

TEST_CASE("frames a stopping handler did not take are left unprocessed, from the first of them",
          "[framing]") {
  // A paced source stops between two frames: the frames after the last one it took were never
  // processed, and the reported offset must start right there (resending from it loses
  // nothing), at any cut and however the input arrived.
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) payloads.push_back(std::to_string(i) + "x");
  std::string lines;
  for (const auto& p : payloads) lines += p + "\n";
  for (const Framing framing : {Framing::length_prefixed, Framing::lines}) {
    for (const std::size_t cut : {0, 1, 700, 1023, 1024, 1500, 2999}) {
      std::atomic<bool> stop{false};
      struct Partial : FrameRecorder {
        std::atomic<bool>* stop;
        std::size_t cut;
        std::size_t on_frames(const shardline::Frame* f, std::size_t n, std::uint64_t at,
                              const shardline::connectors::FrameOrigin& origin) override {
          const std::size_t before = frames.size();
          if (before + n <= cut) return FrameRecorder::on_frames(f, n, at, origin);
          *stop = true;
          return FrameRecorder::on_frames(f, cut - before, at, origin);
        }
      } r;
      r.stop = &stop;
      r.cut = cut;
      const std::string input = framing == Framing::lines ? lines : length_prefixed(payloads);
      FrameSplitter s(framing, 64, "test", &stop);
      CHECK_FALSE(feed_random(s, r, input, static_cast<unsigned>(cut), 5000));
      REQUIRE(r.frames.size() == cut);
      const auto rest = s.unprocessed();
      const std::vector<std::string> after(payloads.begin() + static_cast<long>(cut),
                                           payloads.end());
      std::string expected;
      if (framing == Framing::lines) {
        for (const auto& p : after) expected += p + "\n";
      } else {
        expected = length_prefixed(after);
      }
      // What was read so far is a prefix of the input: the unprocessed bytes start the rest.
      CHECK(expected.compare(0, rest.bytes, input, rest.offset, rest.bytes) == 0);
      CHECK(rest.offset == input.size() - expected.size());
    }
  }
}

TEST_CASE("the handler hears once per read that everything read so far was delivered",
          "[framing]") {
  // 3000 frames of 6 bytes (2 + 4 of prefix); the two reads cut the 2000th frame in half.
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) payloads.push_back(std::to_string(10 + i % 90));
  const std::string input = length_prefixed(payloads);
  const std::size_t cut = 1999 * 6 + 3;
  FrameSplitter s(Framing::length_prefixed, 64, "test");
  FrameRecorder r;
  std::size_t piece = 0;
  REQUIRE(feed(s, r, input, [&] { return piece++ == 0 ? cut : input.size(); }));
  CHECK(r.frames == payloads);
  // After each read's 1024-frame chunks, then once more at the end of input (nothing new).
  CHECK(r.caught_up == std::vector<std::size_t>{1999, 3000, 3000});
  CHECK(r.calls == 3);  // 1024 + 975, then 1001
}

TEST_CASE("a frame of exactly max_frame bytes is accepted", "[framing]") {
  FrameSplitter s(Framing::length_prefixed, 10, "test");
  FrameRecorder r;
  REQUIRE(feed_random(s, r, length_prefixed({std::string(10, 'z')}), 7, 3));
  CHECK(r.frames == std::vector<std::string>{std::string(10, 'z')});
  CHECK(r.bad.empty());
}

TEST_CASE("an oversized length prefix is reported and closes the stream", "[framing]") {
  // 40 good frames of 6 bytes each (2 + 4 of prefix), then a length of 101 at offset 240.
  std::vector<std::string> good;
  for (int i = 10; i < 50; ++i) good.push_back(std::to_string(i));
  const std::string input =
      length_prefixed(good) + length_prefixed({std::string(101, 'b'), "never"});
  const std::string expected =
      "frame of 101 bytes exceeds max_frame 100 at byte offset 240 of tcp 127.0.0.1:7000 "
      "connection from 127.0.0.1:5000; closing this stream, since nothing after it can be "
      "framed for sure (if frames this large are real, raise the source's max_frame; otherwise "
      "its sender's framing is wrong)";

  auto check = [&](auto&& feeder) {
    FrameSplitter s(Framing::length_prefixed, 100,
                    "tcp 127.0.0.1:7000 connection from 127.0.0.1:5000");
    FrameRecorder r;
    CHECK_FALSE(feeder(s, r));
    CHECK(r.frames == good);  // everything before the bad frame, and nothing after it
    REQUIRE(r.bad.size() == 1);
    CHECK(r.bad[0] == expected);
    CHECK_FALSE(s.deliver(r));  // stays closed
    CHECK(r.bad.size() == 1);
  };
  SECTION("whole") { check([&](auto& s, auto& r) { return feed_whole(s, r, input); }); }
  SECTION("byte by byte (the offset survives compaction)") {
    check([&](auto& s, auto& r) { return feed_bytewise(s, r, input); });
  }
  SECTION("random pieces") {
    check([&](auto& s, auto& r) { return feed_random(s, r, input, 99, 17); });
  }
}

TEST_CASE("an oversized length prefix that is text says to frame by lines", "[framing]") {
  // "AAPL" read as a length: 1,094,799,436 bytes.
  FrameSplitter s(Framing::length_prefixed, 1 << 20, "file quotes.txt");
  FrameRecorder r;
  CHECK_FALSE(feed_whole(s, r, "AAPL 1 2\nMSFT 3 4\n"));
  CHECK(r.bad == std::vector<std::string>{
                     "frame of 1094799436 bytes exceeds max_frame 1048576 at byte offset 0 of "
                     "file quotes.txt; closing this stream, since nothing after it can be "
                     "framed for sure (if frames this large are real, raise the source's "
                     "max_frame; otherwise its sender's framing is wrong); the input looks like "
                     "text: set framing = \"lines\" on this source"});
}

TEST_CASE("a truncated final frame is reported at end of input", "[framing]") {
  FrameRecorder r;
  SECTION("payload cut short") {
    FrameSplitter s(Framing::length_prefixed, 100, "test");
    const std::string full = length_prefixed({"one", "0123456789"});
    REQUIRE(feed_random(s, r, full.substr(0, full.size() - 7), 5, 4));
    CHECK(r.frames == std::vector<std::string>{"one"});
    CHECK(r.bad == std::vector<std::string>{"truncated frame at end of input: got 3 of 10 bytes, at byte "
                                         "offset 7 of test"});
  }
  SECTION("length prefix cut short") {
    FrameSplitter s(Framing::length_prefixed, 100, "test");
    REQUIRE(feed_bytewise(s, r, length_prefixed({"one"}) + std::string("\0\0", 2)));
    CHECK(r.frames == std::vector<std::string>{"one"});
    CHECK(r.bad == std::vector<std::string>{
                       "truncated frame at end of input: got 2 of 4 bytes of the length prefix, "
                       "at byte offset 7 of test"});
  }
  SECTION("an empty stream is not an error") {
    FrameSplitter s(Framing::length_prefixed, 100, "test");
    s.finish(r);
    CHECK(r.frames.empty());
    CHECK(r.bad.empty());
  }
}

TEST_CASE("lines: newline and CRLF endings, and a last line without newline", "[framing]") {
  const std::string input = "alpha\r\nbeta\n\n\r\ngamma\rdelta\nlast\r";
  const std::vector<std::string> expected = {"alpha", "beta", "", "", "gamma\rdelta", "last"};
  SECTION("whole") {
    FrameSplitter s(Framing::lines, 100, "test");
    FrameRecorder r;
    REQUIRE(feed_whole(s, r, input));
    CHECK(r.frames == expected);
    CHECK(r.bad.empty());
  }
  SECTION("byte by byte, so '\\r' and '\\n' arrive apart") {
    FrameSplitter s(Framing::lines, 100, "test");
    FrameRecorder r;
    REQUIRE(feed_bytewise(s, r, input));
    CHECK(r.frames == expected);
  }
  SECTION("random pieces") {
    for (unsigned seed : {11u, 12u, 13u}) {
      FrameSplitter s(Framing::lines, 100, "test");
      FrameRecorder r;
      REQUIRE(feed_random(s, r, input, seed, 5));
      CHECK(r.frames == expected);
    }
  }
  SECTION("last line without a newline") {
    FrameSplitter s(Framing::lines, 100, "test");
    FrameRecorder r;
    REQUIRE(feed_whole(s, r, "one\ntwo"));
    CHECK(r.frames == std::vector<std::string>{"one", "two"});
  }
  SECTION("a stream that failed: its last line may have been cut anywhere") {
    FrameSplitter s(Framing::lines, 100, "test");
    FrameRecorder r;
    const std::string input = "one\ntwo\n5 12";
    std::copy_n(reinterpret_cast<const std::byte*>(input.data()), input.size(),
                s.write_space(input.size()).data());
    s.commit(input.size());
    REQUIRE(s.deliver(r));
    s.finish(r, false);
    CHECK(r.frames == std::vector<std::string>{"one", "two"});
    CHECK(r.bad == std::vector<std::string>{
                       "truncated line at end of input: 4 bytes without a newline when the "
                       "stream failed, from byte offset 8 of test"});
  }
  SECTION("a line of exactly max_frame bytes, with CRLF") {
    FrameSplitter s(Framing::lines, 5, "test");
    FrameRecorder r;
    REQUIRE(feed_bytewise(s, r, "12345\r\n67890\r"));
    CHECK(r.frames == std::vector<std::string>{"12345", "67890"});
    CHECK(r.bad.empty());
  }
}

TEST_CASE("what a stop leaves unprocessed is reported from its first byte", "[framing]") {
  std::atomic<bool> stop{false};
  const auto add = [](FrameSplitter& s, const std::string& bytes) {
    const auto space = s.write_space(bytes.size());
    std::memcpy(space.data(), bytes.data(), bytes.size());
    s.commit(bytes.size());
  };
  SECTION("a last line without a newline, at the end of input after the stop") {
    FrameSplitter s(Framing::lines, 64, "test", &stop);
    FrameRecorder r;
    add(s, "a\nlast");
    REQUIRE(s.deliver(r));
    stop = true;
    s.finish(r);
    CHECK(r.frames == std::vector<std::string>{"a"});
    CHECK(s.unprocessed().offset == 2);
    CHECK(s.unprocessed().bytes == 4);
  }
  SECTION("whole lines after a long line being skipped") {
    FrameSplitter s(Framing::lines, 8, "test", &stop);
    FrameRecorder r;
    add(s, "ok\n" + std::string(20, 'L'));
    REQUIRE(s.deliver(r));  // the long line is reported, and skipped up to its newline
    add(s, "LL\nabc\ndef\n");
    stop = true;
    CHECK_FALSE(s.deliver(r));
    CHECK(r.frames == std::vector<std::string>{"ok"});
    CHECK(s.unprocessed().offset == 26);  // "abc\ndef\n", after the long line's newline
    CHECK(s.unprocessed().bytes == 8);
  }
}

TEST_CASE("a length-prefixed frame is named by its number and byte offset", "[framing]") {
  std::vector<std::string> payloads;
  for (int i = 0; i < 2500; ++i) payloads.push_back(std::string(static_cast<std::size_t>(i % 7), 'x'));
  const std::string input = length_prefixed(payloads);
  FrameSplitter s(Framing::length_prefixed, 64, "tcp 127.0.0.1:7000 connection from 10.0.0.5:4000");
  FrameRecorder r;
  r.locate = true;
  REQUIRE(feed_random(s, r, input, 7, 5000));  // chunks of up to 1,024 frames, any reads
  REQUIRE(r.where.size() == payloads.size());
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    CHECK(r.where[i] == "tcp 127.0.0.1:7000 connection from 10.0.0.5:4000, frame " +
                            std::to_string(i + 1) + " at byte offset " + std::to_string(offset));
    offset += 4 + payloads[i].size();
  }
}

TEST_CASE("lines: a too-long line is reported, skipped, and framing resumes", "[framing]") {
  const std::string input = "short\n" + std::string(40, 'L') + "\r\nok\nend";
  const std::string expected_bad =
      "line 2 longer than max_frame 8 at byte offset 6 of file words.txt; skipped up to the "
      "next newline";
  auto check = [&](auto&& feeder) {
    FrameSplitter s(Framing::lines, 8, "file words.txt");
    FrameRecorder r;
    r.locate = true;
    REQUIRE(feeder(s, r));
    CHECK(r.frames == std::vector<std::string>{"short", "ok", "end"});
    CHECK(r.bad == std::vector<std::string>{expected_bad});
    // Each frame is named by its line, the skipped one counted.
    CHECK(r.where == std::vector<std::string>{"file words.txt, line 1", "file words.txt, line 3",
                                              "file words.txt, line 4"});
  };
  SECTION("whole") { check([&](auto& s, auto& r) { return feed_whole(s, r, input); }); }
  SECTION("byte by byte") { check([&](auto& s, auto& r) { return feed_bytewise(s, r, input); }); }
  SECTION("random pieces") {
    check([&](auto& s, auto& r) { return feed_random(s, r, input, 3, 6); });
  }
  SECTION("too long and unterminated at end of input") {
    FrameSplitter s(Framing::lines, 8, "test");
    FrameRecorder r;
    REQUIRE(feed_bytewise(s, r, "a\n" + std::string(20, 'L')));
    CHECK(r.frames == std::vector<std::string>{"a"});
    CHECK(r.bad.size() == 1);
  }
}

TEST_CASE("lines: an endless line does not grow the buffer", "[framing]") {
  FrameSplitter s(Framing::lines, 10, "test");
  FrameRecorder r;
  for (int i = 0; i < 10000; ++i) {
    const auto space = s.write_space(16);
    REQUIRE(space.size() <= 256);  // the bytes of the long line are dropped, not kept
    std::memset(space.data(), 'x', 16);
    s.commit(16);
    REQUIRE(s.deliver(r));
  }
  const auto space = s.write_space(4);
  std::memcpy(space.data(), "\nok\n", 4);
  s.commit(4);
  REQUIRE(s.deliver(r));
  CHECK(r.frames == std::vector<std::string>{"ok"});
  CHECK(r.bad.size() == 1);
  CHECK(s.bytes_received() == 10000 * 16 + 4);
}

TEST_CASE("whole_frames counts the frames a prefix of output holds whole", "[framing]") {
  using shardline::connectors::whole_frames;
  const std::string framed = length_prefixed({"ab", "", "cdef"});  // 6 + 4 + 8 bytes
  const auto* b = reinterpret_cast<const std::byte*>(framed.data());
  const std::size_t expected[] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3};
  for (std::size_t n = 0; n <= framed.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK(whole_frames(Framing::length_prefixed, b, n) == expected[n]);
  }
  const std::string lines = "a\n\nbc\nd";
  const auto* l = reinterpret_cast<const std::byte*>(lines.data());
  CHECK(whole_frames(Framing::lines, l, 1) == 0);
  CHECK(whole_frames(Framing::lines, l, 3) == 2);
  CHECK(whole_frames(Framing::lines, l, lines.size()) == 3);
}
