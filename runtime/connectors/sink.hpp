// Sinks: where a pipeline's encoded output goes. Each sink runs on its own thread.
//
// Shards encode messages into framed byte chunks and queue them for the sink's thread, which
// writes them in order of arrival. A sink never drops data silently: if it cannot write (a TCP
// peer is down), it retries (reconnecting with backoff), and the bounded queue in front of it
// fills and blocks the shards, which in turn stops the sources.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "topology/topology.hpp"

namespace shardline::connectors {

class Sink {
 public:
  virtual ~Sink() = default;
  /// Opens the output (for TCP: the first connection attempt happens lazily in write()).
  /// Throws std::runtime_error if it cannot be opened. [sink thread]
  virtual void open() = 0;
  /// Writes all `n` bytes; blocks (retrying) until they are written or abandon() is called.
  /// Returns false if the bytes were abandoned. [sink thread]
  virtual bool write(const std::byte* data, std::size_t n) = 0;
  /// Flushes buffered output and closes. [sink thread]
  virtual void close() = 0;
  /// Makes a blocked write() give up (second Ctrl-C). [any thread]
  virtual void abandon() = 0;
  /// e.g. "tcp 127.0.0.1:5555". [any thread]
  virtual std::string describe() const = 0;
};

/// Builds the sink a topology describes.
std::unique_ptr<Sink> make_sink(const topology::SinkSpec& spec);

}  // namespace shardline::connectors
