// Fuzz target: FrameSplitter (connectors/frame_splitter) for each framing, fed the stream in
// reads whose sizes come from the input, as a file or tcp source feeds it.
//
// The input is a header, then the stream:
//   byte 0    bit 0: framing (length-prefixed, lines); bit 1: the stream ends cleanly (lines:
//             a last line without '\n' is a frame, not a truncated line)
//   byte 1-2  max_frame, 1 to 4096 (small, so oversized frames and lines are common)
//   byte 3    the handler takes this many frames, then stops the run (0: never stops)
//   byte 4    n, then n bytes: read sizes, used in turn (0: the rest of the stream)
//
// The splitter's frames are checked against frames cut from the whole stream by the rules in
// frame_splitter.hpp, so however the stream is cut into reads:
// - the frames are exactly those, in order, pointing at the stream's bytes, each within
//   max_frame, numbered as their frame or line;
// - everything else is reported (oversized, truncated), each once; nothing is silently lost;
// - after a stop, what was not taken is reported as unprocessed, from where it begins.
#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "connectors/frame_splitter.hpp"
#include "fuzz_support.hpp"

namespace {

using shardline::Frame;
using shardline::Framing;
using shardline::connectors::FrameHandler;
using shardline::connectors::FrameOrigin;
using shardline::connectors::FrameSplitter;

struct Expected {
  std::uint64_t offset;  ///< of the payload in the stream
  std::uint32_t size;
  std::uint64_t number;  ///< frame or line number, from 1
  std::uint64_t start;   ///< where its framing begins (the length prefix, or the line)
};

/// What the splitter should deliver from the whole `stream`, and how many reports.
struct Oracle {
  std::vector<Expected> frames;
  std::size_t reports = 0;
};

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

Oracle cut(Framing framing, std::string_view s, std::uint32_t max_frame, bool cleanly) {
  Oracle o;
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  if (framing == Framing::length_prefixed) {
    std::size_t pos = 0;
    while (s.size() - pos >= 4) {
      const std::uint32_t len = be32(p + pos);
      if (len > max_frame) {  // the stream is closed here
        ++o.reports;
        return o;
      }
      if (s.size() - pos - 4 < len) break;
      o.frames.push_back({pos + 4, len, o.frames.size() + 1, pos});
      pos += 4 + std::size_t(len);
    }
    if (pos < s.size()) ++o.reports;  // truncated frame
    return o;
  }
  std::size_t pos = 0;
  std::uint64_t number = 0;
  while (pos < s.size()) {
    const std::size_t nl = s.find('\n', pos);
    const bool last = nl == std::string_view::npos;
    const std::size_t stop = last ? s.size() : nl;
    std::size_t len = stop - pos;
    if (len > 0 && s[stop - 1] == '\r') --len;
    ++number;
    if (last && !cleanly) {
      ++o.reports;  // truncated line (or the rest of one already reported as too long)
    } else if (len > max_frame) {
      ++o.reports;
    } else {
      o.frames.push_back({pos, static_cast<std::uint32_t>(len), number, pos});
    }
    pos = last ? s.size() : nl + 1;
  }
  return o;
}

struct Handler final : FrameHandler {
  std::string_view stream;
  std::uint32_t max_frame = 0;
  std::size_t budget = 0;  ///< frames to take before stopping; 0: no stop
  std::atomic<bool>* stop = nullptr;
  std::size_t received = 0;  ///< stream bytes committed so far
  std::vector<Expected> got;
  std::vector<std::string> reports;

  std::size_t on_frames(const Frame* frames, std::size_t n, std::uint64_t,
                        const FrameOrigin& origin) override {
    FUZZ_CHECK(n > 0 && n <= FrameSplitter::kFramesPerCall);
    FUZZ_CHECK(origin.chunk == frames);
    std::size_t take = n;
    if (budget > 0) {
      take = std::min(n, budget - got.size());
      if (got.size() + take == budget) stop->store(true);
    }
    for (std::size_t i = 0; i < take; ++i) {
      const Frame& f = frames[i];
      FUZZ_CHECK(f.data >= origin.buffer);
      const std::uint64_t off =
          origin.buffer_offset + static_cast<std::uint64_t>(f.data - origin.buffer);
      FUZZ_CHECK(f.size <= max_frame);
      FUZZ_CHECK(off <= received && f.size <= received - off);
      FUZZ_CHECK(std::memcmp(f.data, stream.data() + off, f.size) == 0);
      got.push_back({off, f.size, origin.first_number + i, 0});
    }
    (void)origin.where(&frames[0]);
    return take;
  }
  void on_bad_input(std::string_view what) override {
    FUZZ_CHECK(!what.empty());
    reports.emplace_back(what);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = [] {  // a stop logs its unprocessed bytes: not news here
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  if (size < 5) return 0;
  const Framing framing = (data[0] & 1) ? Framing::lines : Framing::length_prefixed;
  const bool cleanly = data[0] & 2;
  const std::uint32_t max_frame = 1 + ((std::uint32_t(data[1]) << 8 | data[2]) % 4096);
  const std::size_t budget = data[3];
  const std::size_t n_sizes = std::min<std::size_t>(data[4], size - 5);
  const std::uint8_t* sizes = data + 5;
  const std::string_view stream(reinterpret_cast<const char*>(data + 5 + n_sizes),
                                size - 5 - n_sizes);

  std::atomic<bool> stop{false};
  Handler h;
  h.stream = stream;
  h.max_frame = max_frame;
  h.budget = budget;
  h.stop = &stop;
  std::optional<FrameSplitter::Unprocessed> left;
  {
    FrameSplitter splitter(framing, max_frame, "fuzz", &stop);
    std::size_t at = 0, read = 0;
    bool open = true;
    while (at < stream.size()) {
      std::size_t want = n_sizes ? sizes[read++ % n_sizes] : 0;
      if (want == 0) want = stream.size() - at;
      want = std::min(want, stream.size() - at);
      const auto space = splitter.write_space(want);
      FUZZ_CHECK(space.size() >= want);
      std::memcpy(space.data(), stream.data() + at, want);
      splitter.commit(want);
      at += want;
      h.received = at;
      FUZZ_CHECK(splitter.bytes_received() == at);
      if (!splitter.deliver(h)) {
        open = false;
        break;
      }
    }
    if (open) splitter.finish(h, cleanly);
    left = splitter.unprocessed();
  }

  const bool stopped = stop.load();
  // finish() was not reached after a stop or a closed stream: a last line is then neither a
  // frame nor reported as truncated, whatever `cleanly` said.
  const Oracle want = cut(framing, stream, max_frame, cleanly);
  FUZZ_CHECK(h.got.size() <= want.frames.size());
  for (std::size_t i = 0; i < h.got.size(); ++i) {
    FUZZ_CHECK(h.got[i].offset == want.frames[i].offset);
    FUZZ_CHECK(h.got[i].size == want.frames[i].size);
    FUZZ_CHECK(h.got[i].number == want.frames[i].number);
  }
  if (!stopped) {
    FUZZ_CHECK(h.got.size() == want.frames.size());
    FUZZ_CHECK(h.reports.size() == want.reports);
    FUZZ_CHECK(left->bytes == 0);
    if (framing == Framing::length_prefixed && want.reports == 0)
      FUZZ_CHECK(shardline::connectors::whole_frames(
                     framing, reinterpret_cast<const std::byte*>(stream.data()),
                     stream.size()) == h.got.size());
  } else {
    FUZZ_CHECK(h.got.size() == budget);
    FUZZ_CHECK(h.reports.size() <= want.reports);
    // The first frame not taken, if it arrived, is in what is reported as unprocessed.
    if (h.got.size() < want.frames.size() && want.frames[h.got.size()].start < h.received) {
      FUZZ_CHECK(left->bytes > 0);
      FUZZ_CHECK(left->offset <= want.frames[h.got.size()].start);
    }
    if (left->bytes > 0) FUZZ_CHECK(left->offset + left->bytes == h.received);
    if (!h.got.empty() && left->bytes > 0)
      FUZZ_CHECK(left->offset >= h.got.back().offset + h.got.back().size);
  }
  return 0;
}
