// FrameSplitter: turns a byte stream into frames, for one stream of one source. [source thread]
//
// The source reads straight into the splitter's buffer (write_space() then commit()), then
// calls deliver(), which hands every complete frame to the FrameHandler in chunks of up to
// kFramesPerCall, then calls its on_caught_up(). Frames point into the buffer: no byte is
// copied and nothing is allocated per frame. The incomplete tail stays in the buffer and is
// moved to its front only when a read needs the room, so a stream of small frames costs one
// short move per read.
//
// Framing::length_prefixed — a 4-byte big-endian length, then that many bytes (Wallaroo's
//   framing). A length above max_frame means the stream can no longer be trusted to be in
//   step: it is reported and deliver() returns false, and the source closes that stream.
// Framing::lines — each line without its '\n' (and without a '\r' before it). A line longer
//   than max_frame is reported and skipped up to the next newline, where framing resumes.
//
// The buffer never holds more than one frame's worth of tail plus one read, so it stays
// bounded by max_frame plus the read size.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <shardline/boundary.hpp>

#include "connectors/source.hpp"

namespace shardline::connectors {

class FrameSplitter {
 public:
  /// At most this many frames per FrameHandler::on_frames call.
  static constexpr std::size_t kFramesPerCall = 1024;

  /// `origin` names the stream in error messages, e.g. "file in.bin" or
  /// "tcp 0.0.0.0:7000 connection from 10.0.0.5:40312".
  /// With `stop`, delivery ends after the chunk of frames during which it became true (a run
  /// stopping, e.g. on_error = "stop" or Ctrl-C): the frames after it stay in the buffer,
  /// unread as far as the pipeline is concerned, instead of the rest of a 1 MiB read.
  /// `redo` ends the warning about them: what to do with the input from their offset on.
  FrameSplitter(Framing framing, std::uint32_t max_frame, std::string origin = "input",
                const std::atomic<bool>* stop = nullptr, std::string redo = "send them again");
  FrameSplitter(FrameSplitter&&) = default;
  /// A stream that ends holding input it did not hand on (a stop came first, or the source
  /// failed) logs it: its byte count and the stream offset to send it again from.
  ~FrameSplitter();

  /// Free space after the buffered bytes, at least `min` bytes (the buffer is compacted or
  /// grown to make room). Read into it, then commit() what was read.
  std::span<std::byte> write_space(std::size_t min = 64 * 1024);
  /// Marks `n` bytes of the last write_space() as filled.
  void commit(std::size_t n);
  /// Hands every complete frame to `handler`. Returns false when the stream is unrecoverable
  /// (an oversized length prefix, already reported) or a stop was requested: the caller closes
  /// the stream and calls nothing else on this splitter.
  bool deliver(FrameHandler& handler);
  /// End of stream: delivers what is left (lines: a last line without a newline, if the stream
  /// ended `cleanly`; after a failure it may have been cut anywhere, and is reported instead),
  /// or reports a truncated frame. The buffer is empty afterwards, unless a stop came first:
  /// what was not handed on then stays, reported when the splitter goes.
  void finish(FrameHandler& handler, bool cleanly = true);

  /// Input received but not handed on: whole frames after the chunk the stop came in (or
  /// after the last frame a paced source took), and a frame cut short.
  struct Unprocessed {
    std::uint64_t offset;  ///< stream offset of the first such byte
    std::uint64_t bytes;
  };
  Unprocessed unprocessed() const;

  /// Bytes committed since construction (the stream offset of the end of the buffer).
  std::uint64_t bytes_received() const { return base_offset_ + end_; }
  const std::string& origin() const { return origin_; }

 private:
  bool stop_requested() const { return stop_ && stop_->load(std::memory_order_relaxed); }
  void split_length_prefixed(FrameHandler& handler);
  void split_lines(FrameHandler& handler);
  // Each returns false when the handler took fewer frames than it was given (the run is
  // stopping): begin_ is then the first frame not taken, and the caller returns at once.
  bool push(FrameHandler& handler, const std::byte* data, std::size_t size);
  bool flush(FrameHandler& handler);
  bool report_long_line(FrameHandler& handler, std::size_t at);

  Framing framing_;
  std::uint32_t max_frame_;
  std::string origin_;
  std::string redo_;
  const std::atomic<bool>* stop_;

  std::unique_ptr<std::byte[]> buf_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;            ///< first byte not yet framed
  std::size_t end_ = 0;              ///< one past the last committed byte
  std::uint64_t base_offset_ = 0;    ///< stream offset of buf_[0]
  bool skipping_line_ = false;       ///< lines: inside an oversized line, dropping to '\n'
  bool broken_ = false;              ///< length_prefixed: an oversized frame was seen
  std::unique_ptr<Frame[]> frames_;  ///< kFramesPerCall frames, reused for every on_frames call
  std::size_t framed_ = 0;           ///< frames_ in use
  std::uint64_t number_ = 0;         ///< frames (lines) handed on or skipped so far
  std::uint64_t arrived_ns_ = 0;     ///< when deliver() began: the frames' arrival
};

/// How many frames the first `n` bytes of framed output hold whole (what a sink that gave up
/// part way through a chunk did deliver). [any thread]
std::uint64_t whole_frames(Framing framing, const std::byte* bytes, std::size_t n);

}  // namespace shardline::connectors
