// Sources: where a pipeline's bytes come from. Each source runs on its own thread.
//
// A source reads bytes, splits them into frames (FrameSplitter) and hands them to its
// FrameHandler in chunks, on the source thread. The handler may block (a full shard queue):
// that is the backpressure, and the source simply stops reading until the call returns — a TCP
// source stops reading its sockets, so the kernel's window closes on the sender.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <shardline/boundary.hpp>

#include "topology/topology.hpp"

namespace shardline::connectors {

/// Where a chunk of frames was read: names a frame in an error message ("file in.txt, line
/// 12", "tcp ... connection from ..., frame 7 at byte offset 412"). Frames handed on are a
/// part of one chunk of the splitter's, which this describes. [source thread]
struct FrameOrigin {
  const std::string* stream = nullptr;  ///< e.g. "file in.txt"
  Framing framing = Framing::length_prefixed;
  const Frame* chunk = nullptr;         ///< the chunk's first frame
  std::uint64_t first_number = 1;       ///< its line (lines) or frame number, from 1
  const std::byte* buffer = nullptr;    ///< the frames point into it
  std::uint64_t buffer_offset = 0;      ///< stream offset of buffer[0]

  /// Where `frame`, a frame of the chunk, came from.
  std::string where(const Frame* frame) const;
};

/// Receives what a source reads. [source thread]
class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  /// `n` complete frames; they point into the source's buffer and are valid during the call,
  /// and `origin` says where they were read. `arrived_ns` (metrics::now_ns) is when they
  /// arrived: the read that brought them in, or, from a source replaying at a fixed rate,
  /// when the first of them was due. Returns how many of them were taken, in order: all `n`,
  /// unless the run is stopping (a paced source stops between two frames); the rest stay the
  /// source's, reported as not processed.
  virtual std::size_t on_frames(const Frame* frames, std::size_t n, std::uint64_t arrived_ns,
                                const FrameOrigin& origin) = 0;
  /// Every frame read so far has been handed over: the source is about to read again, and may
  /// wait for input. A handler that holds partly filled batches sends them now.
  virtual void on_caught_up() {}
  /// Input that could not be framed (too large, truncated): reported and counted, then the
  /// source carries on with what it can still read.
  virtual void on_bad_input(std::string_view what) = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  /// Reads until the input is exhausted or stop() is called, then returns. Throws
  /// std::runtime_error only for a failure to start (e.g. cannot listen or open the file).
  /// [source thread]
  virtual void run(FrameHandler& handler) = 0;
  /// Asks run() to return soon. [any thread]
  virtual void stop() = 0;
  /// e.g. "tcp 127.0.0.1:7000". [any thread]
  virtual std::string describe() const = 0;
  /// "127.0.0.1:46729": where a listening source accepts connections (the kernel's port for
  /// port 0); empty for other sources. [any thread, before run()]
  virtual std::string listens_on() const { return {}; }
};

/// Builds the source a topology describes.
std::unique_ptr<Source> make_source(const topology::SourceSpec& spec);

}  // namespace shardline::connectors
