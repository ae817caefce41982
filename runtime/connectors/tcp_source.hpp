// TcpSource: listens on "host:port" and reads framed bytes from any number of clients.
//
// One Asio io_context, run by run() on the source thread, serves the listener and every
// connection; each connection has its own FrameSplitter. When a read completes, its frames are
// delivered synchronously: a handler that blocks (a full shard queue) stops all reading, the
// kernel's receive windows fill and the senders slow down. That is the backpressure.
// A connection that sends an oversized frame is reported and closed; the others carry on.
// Connection errors are logged, never thrown.
//
// connections = N > 0: the listener stops after the Nth accepted connection, and run() returns
// once all N have been closed by their peers. connections = 0: run() returns after stop().
// It listens as soon as it is made, so that a port in use is an error at startup. Port 0
// listens on a port chosen by the kernel, which is logged and given by port().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "connectors/source.hpp"

namespace shardline::connectors {

class TcpSource final : public Source {
 public:
  /// Listens on `address`. Throws std::runtime_error if it is not "host:port" or if it cannot
  /// listen there ("source tcp ADDR: cannot listen on ADDR: reason"). [control thread]
  TcpSource(std::string address, Framing framing, std::uint32_t max_frame,
            std::uint32_t connections);
  ~TcpSource() override;

  /// Serves connections until done (see above). Call it once. [source thread]
  void run(FrameHandler& handler) override;
  /// Stops listening and closes every connection; run() returns soon after. What is still
  /// buffered is dropped, and reported. [any thread]
  void stop() override;
  /// "tcp host:port" as configured. [any thread]
  std::string describe() const override;
  std::string listens_on() const override;

  /// The port it listens on (the kernel's choice for port 0). [any thread, before run()]
  std::uint16_t port() const;

 private:
  struct Io;  // the listener and connections, on Asio, kept out of this header

  const std::string address_;
  const Framing framing_;
  const std::uint32_t max_frame_;
  const std::uint32_t connections_;
  /// Set by stop(): ends a delivery in progress after the chunk of frames being handed over,
  /// before the io_context gets to the posted shutdown. [any thread]
  std::atomic<bool> stop_{false};
  std::unique_ptr<Io> io_;
};

}  // namespace shardline::connectors
