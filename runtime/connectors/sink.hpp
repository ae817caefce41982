// Sinks: where a pipeline's encoded output goes.
//
// The thread that runs a pipeline's last step (a shard, or the source thread for a pipeline
// without state) encodes its messages into framed byte chunks. By default it queues them for
// the sink's own thread, which writes them in order of arrival; with scheduling = "latency"
// the thread that filled a chunk writes it itself, one writer at a time (engine/sink_port.hpp).
// Either way a sink is used by one thread at a time: "[sink thread]" below means that one. A sink
// never drops data silently: if it cannot write (a TCP peer is down), it retries (reconnecting
// with backoff), and the queue or lock in front of it blocks the shards, which in turn stops
// the sources.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "topology/topology.hpp"

namespace shardline::connectors {

class Sink {
 public:
  virtual ~Sink() = default;
  /// Opens the output (for TCP: the first connection attempt happens lazily in write()).
  /// Throws std::runtime_error if it cannot be opened. [control thread, before any write]
  virtual void open() = 0;
  /// Called once every input and output of the run has opened: a file sink empties its file
  /// only now, so that a run that cannot start leaves the last run's output as it was.
  /// Throws std::runtime_error if it cannot. [control thread, before any write]
  virtual void begin() {}
  /// Writes all `n` bytes; blocks (retrying) until they are written or abandon() is called.
  /// Returns how many of them reached the output, from the first: `n`, or fewer if it gave
  /// up (abandoned, or a write error it cannot recover from). [sink thread]
  virtual std::size_t write(const std::byte* data, std::size_t n) = 0;
  /// Flushes buffered output and closes. [sink thread]
  virtual void close() = 0;
  /// Makes a blocked write() give up (second Ctrl-C). [any thread]
  virtual void abandon() = 0;
  /// e.g. "tcp 127.0.0.1:5555". [any thread]
  virtual std::string describe() const = 0;
  /// Connections reset after output was written to them: what their receiver had not read
  /// yet is lost with them, and no sender can count it (for the summary). [any thread]
  virtual std::uint64_t connections_reset() const { return 0; }
};

/// Builds the sink a topology describes.
std::unique_ptr<Sink> make_sink(const topology::SinkSpec& spec);

/// Opens a file to write output to (a file sink, a dead-letter file), created if missing and
/// never truncated here (a file sink empties it in begin()); with `append`, every write goes to
/// its end. `created`, if given, tells whether this call created the file. A FIFO that no
/// process reads yet is refused rather than waited for: open(2) would block the start of the
/// run where no signal can end it. Returns the descriptor; throws std::runtime_error saying
/// why not. [control thread]
int open_output(const std::string& path, bool append, bool* created = nullptr);

}  // namespace shardline::connectors
