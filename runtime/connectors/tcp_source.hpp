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
// Port 0 listens on a port chosen by the kernel, which is logged and given by wait_for_port().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "connectors/source.hpp"

namespace shardline::connectors {

class TcpSource final : public Source {
 public:
  /// Throws std::runtime_error if `address` is not "host:port". [control thread]
  TcpSource(std::string address, Framing framing, std::uint32_t max_frame,
            std::uint32_t connections);
  ~TcpSource() override;

  /// Listens, then serves connections until done (see above). Throws std::runtime_error
  /// ("cannot listen on ADDR: reason") if it cannot listen. Call it once. [source thread]
  void run(FrameHandler& handler) override;
  /// Stops listening and closes every connection; run() returns soon after. A partial frame
  /// still buffered is dropped. [any thread]
  void stop() override;
  /// "tcp host:port" as configured. [any thread]
  std::string describe() const override;

  /// Blocks until run() is listening and returns the port it listens on (the kernel's choice
  /// for port 0), or returns 0 if run() failed to listen. [any thread]
  std::uint16_t wait_for_port();

 private:
  struct Io;  // the listener and connections, on Asio, kept out of this header

  void publish_port(std::uint16_t port);

  const std::string address_;
  const Framing framing_;
  const std::uint32_t max_frame_;
  const std::uint32_t connections_;
  std::unique_ptr<Io> io_;

  std::mutex port_mutex_;
  std::condition_variable port_cv_;
  bool port_known_ = false;  ///< guarded by port_mutex_
  std::uint16_t port_ = 0;   ///< guarded by port_mutex_
};

}  // namespace shardline::connectors
