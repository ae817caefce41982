#include "connectors/frame_splitter.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "metrics/latency_histogram.hpp"

namespace shardline::connectors {

namespace {

std::uint32_t read_be32(const std::byte* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) |
         (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

/// Whether the 4 bytes of a length prefix are text (printable ASCII, tabs, line ends): a
/// text file read as length-prefixed frames, the default for a file source.
bool looks_like_text(const std::byte* p) {
  return std::all_of(p, p + 4, [](std::byte b) {
    const auto c = static_cast<unsigned char>(b);
    return (c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n' || c == '\r';
  });
}

}  // namespace

FrameSplitter::FrameSplitter(Framing framing, std::uint32_t max_frame, std::string origin,
                             const std::atomic<bool>* stop, std::string redo)
    : framing_(framing),
      max_frame_(max_frame),
      origin_(std::move(origin)),
      redo_(std::move(redo)),
      stop_(stop),
      frames_(std::make_unique_for_overwrite<Frame[]>(kFramesPerCall)) {}

std::span<std::byte> FrameSplitter::write_space(std::size_t min) {
  if (capacity_ - end_ < min) {
    // Compact first: the tail is at most one frame, and usually a few bytes.
    const std::size_t tail = end_ - begin_;
    if (begin_ > 0) {
      std::memmove(buf_.get(), buf_.get() + begin_, tail);
      base_offset_ += begin_;
      begin_ = 0;
      end_ = tail;
    }
    if (capacity_ - end_ < min) {
      // Doubling keeps a growing frame (up to max_frame) from costing a copy per read.
      const std::size_t capacity = std::max({capacity_ * 2, tail + min, 2 * min});
      auto grown = std::make_unique_for_overwrite<std::byte[]>(capacity);
      if (tail > 0) std::memcpy(grown.get(), buf_.get(), tail);
      buf_ = std::move(grown);
      capacity_ = capacity;
    }
  }
  return {buf_.get() + end_, capacity_ - end_};
}

void FrameSplitter::commit(std::size_t n) { end_ += std::min(n, capacity_ - end_); }

bool FrameSplitter::deliver(FrameHandler& handler) {
  if (broken_ || stop_requested()) return false;
  arrived_ns_ = metrics::now_ns();
  if (framing_ == Framing::length_prefixed) {
    split_length_prefixed(handler);
  } else {
    split_lines(handler);
  }
  flush(handler);
  handler.on_caught_up();
  if (begin_ == end_) {  // everything framed: the next read starts at the front for free
    base_offset_ += end_;
    begin_ = end_ = 0;
  }
  return !broken_ && !stop_requested();
}

FrameSplitter::~FrameSplitter() {
  // Nothing else counts these bytes. (A moved-from splitter has no buffer, and nothing to say.)
  if (const auto u = unprocessed(); u.bytes > 0)
    spdlog::warn("source {}: the run stopped with {} bytes received from it and not processed "
                 "(from stream offset {}); {}",
                 origin_, u.bytes, u.offset, redo_);
}

FrameSplitter::Unprocessed FrameSplitter::unprocessed() const {
  if (!buf_ || broken_ || end_ == begin_) return {bytes_received(), 0};
  std::size_t from = begin_;
  if (skipping_line_) {  // the rest of a line already reported as too long is not input
    const void* nl = std::memchr(buf_.get() + begin_, '\n', end_ - begin_);
    if (!nl) return {bytes_received(), 0};
    from = static_cast<std::size_t>(static_cast<const std::byte*>(nl) - buf_.get()) + 1;
  }
  return {base_offset_ + from, end_ - from};
}

void FrameSplitter::finish(FrameHandler& handler, bool cleanly) {
  const bool delivered = deliver(handler);
  // Stopped: what is left stays, reported when the splitter goes, not dropped here.
  if (!delivered && !broken_) return;
  if (delivered) {
    const std::byte* b = buf_.get();
    const std::size_t tail = end_ - begin_;
    if (framing_ == Framing::lines) {
      if (tail > 0 && !skipping_line_ && !cleanly) {
        handler.on_bad_input(fmt::format(
            "truncated line at end of input: {} bytes without a newline when the stream failed, "
            "from byte offset {} of {}",
            tail, base_offset_ + begin_, origin_));
      } else if (tail > 0 && !skipping_line_) {
        std::size_t len = tail;
        if (b[begin_ + len - 1] == std::byte('\r')) --len;
        if (len > max_frame_) {
          if (!report_long_line(handler, begin_)) return;
        } else {
          push(handler, b + begin_, len);
          begin_ = end_;
          if (!flush(handler)) return;  // stopped before the line was taken: begin_ is at it
          handler.on_caught_up();
        }
      }
    } else if (tail > 0 && tail < 4) {
      handler.on_bad_input(fmt::format(
          "truncated frame at end of input: got {} of 4 bytes of the length prefix, at byte "
          "offset {} of {}",
          tail, base_offset_ + begin_, origin_));
    } else if (tail >= 4) {
      handler.on_bad_input(fmt::format(
          "truncated frame at end of input: got {} of {} bytes, at byte offset {} of {}",
          tail - 4, read_be32(b + begin_), base_offset_ + begin_, origin_));
    }
  }
  base_offset_ += end_;
  begin_ = end_ = 0;
  skipping_line_ = false;
}

void FrameSplitter::split_length_prefixed(FrameHandler& handler) {
  // The hot loop of every length-prefixed source: position, end and frame count stay in
  // registers (members would be reloaded after every store of a frame).
  const std::byte* b = buf_.get();
  const std::size_t end = end_;
  Frame* frames = frames_.get();
  std::size_t framed = framed_;
  std::size_t pos = begin_;
  while (end - pos >= 4) {
    const std::uint32_t len = read_be32(b + pos);
    if (len > max_frame_) {
      // The length cannot be skipped safely (it may be garbage), so nothing after it can be
      // trusted: deliver what came before, then give up on this stream.
      framed_ = framed;
      begin_ = pos;
      if (!flush(handler)) return;  // stopped: the bad length is not reached
      broken_ = true;
      handler.on_bad_input(fmt::format(
          "frame of {} bytes exceeds max_frame {} at byte offset {} of {}; closing this stream, "
          "since nothing after it can be framed for sure (if frames this large are real, raise "
          "the source's max_frame; otherwise its sender's framing is wrong){}",
          len, max_frame_, base_offset_ + pos, origin_,
          looks_like_text(b + pos) ? "; the input looks like text: set framing = \"lines\" on "
                                     "this source"
                                   : ""));
      return;
    }
    if (end - pos - 4 < len) break;
    frames[framed++] = Frame{b + pos + 4, len};
    pos += 4 + std::size_t(len);
    if (framed == kFramesPerCall) {
      framed_ = framed;
      begin_ = pos;
      if (!flush(handler)) return;
      framed = 0;
      if (stop_requested()) break;
    }
  }
  framed_ = framed;
  begin_ = pos;
}

void FrameSplitter::split_lines(FrameHandler& handler) {
  const std::byte* b = buf_.get();
  std::size_t pos = begin_;
  while (pos < end_) {
    const void* nl = std::memchr(b + pos, '\n', end_ - pos);
    if (nl == nullptr) {
      // No newline yet. A tail longer than max_frame (+1 for a possible '\r') can only be an
      // oversized line: report it now and drop its bytes, so the buffer stays bounded.
      if (!skipping_line_ && end_ - pos > std::size_t(max_frame_) + 1) {
        begin_ = pos;
        if (!report_long_line(handler, pos)) return;
        skipping_line_ = true;
      }
      if (skipping_line_) pos = end_;
      break;
    }
    const std::size_t newline = static_cast<std::size_t>(static_cast<const std::byte*>(nl) - b);
    if (skipping_line_) {  // the end of a line already reported: resume after it
      skipping_line_ = false;
      pos = newline + 1;
      continue;
    }
    std::size_t len = newline - pos;
    if (len > 0 && b[newline - 1] == std::byte('\r')) --len;
    const std::size_t line = pos;
    pos = newline + 1;
    begin_ = pos;
    if (len > max_frame_) {
      if (!report_long_line(handler, line)) return;
    } else if (!push(handler, b + line, len)) {
      return;
    }
    if (framed_ == 0 && stop_requested()) break;  // a chunk was just handed over
  }
  begin_ = pos;
}

bool FrameSplitter::push(FrameHandler& handler, const std::byte* data, std::size_t size) {
  frames_[framed_++] = Frame{data, static_cast<std::uint32_t>(size)};
  return framed_ < kFramesPerCall || flush(handler);
}

bool FrameSplitter::flush(FrameHandler& handler) {
  if (framed_ == 0) return true;
  const std::size_t n = framed_;
  framed_ = 0;
  const FrameOrigin origin{&origin_, framing_, frames_.get(), number_ + 1, buf_.get(), base_offset_};
  number_ += n;
  const std::size_t taken = handler.on_frames(frames_.get(), n, arrived_ns_, origin);
  if (taken == n) return true;
  // Stopped part way: the first frame not taken is where the unprocessed input begins.
  number_ -= n - taken;
  const std::byte* first = frames_[taken].data;
  if (framing_ == Framing::length_prefixed) first -= 4;
  begin_ = static_cast<std::size_t>(first - buf_.get());
  return false;
}

bool FrameSplitter::report_long_line(FrameHandler& handler, std::size_t at) {
  if (!flush(handler)) return false;  // keep the handler's view in stream order
  ++number_;
  handler.on_bad_input(fmt::format(
      "line {} longer than max_frame {} at byte offset {} of {}; skipped up to the next newline",
      number_, max_frame_, base_offset_ + at, origin_));
  return true;
}

std::string FrameOrigin::where(const Frame* frame) const {
  const std::uint64_t number = first_number + static_cast<std::uint64_t>(frame - chunk);
  if (framing == Framing::lines) return fmt::format("{}, line {}", *stream, number);
  const std::uint64_t offset = buffer_offset + static_cast<std::uint64_t>(frame->data - buffer) - 4;
  return fmt::format("{}, frame {} at byte offset {}", *stream, number, offset);
}

std::uint64_t whole_frames(Framing framing, const std::byte* bytes, std::size_t n) {
  if (framing == Framing::lines)
    return static_cast<std::uint64_t>(std::count(bytes, bytes + n, std::byte('\n')));
  std::uint64_t frames = 0;
  for (std::size_t at = 0; n - at >= 4; ++frames) {
    const std::size_t len = read_be32(bytes + at);
    if (n - at - 4 < len) break;
    at += 4 + len;
  }
  return frames;
}

}  // namespace shardline::connectors
