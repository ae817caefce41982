#include "connectors/tcp_source.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <list>
#include <stdexcept>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "topology/address.hpp"
#include "connectors/frame_splitter.hpp"

namespace shardline::connectors {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Large reads keep system calls few under load; a read returns whatever has arrived.
constexpr std::size_t kReadSize = 256 * 1024;
// After a failed accept (e.g. out of file descriptors), wait instead of spinning.
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);
constexpr auto kAcceptWarnEvery = std::chrono::seconds(30);

std::uint64_t open_file_limit() {
  rlimit limit{};
  return ::getrlimit(RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_cur : 0;
}

std::string to_string(const tcp::endpoint& e) {
  const auto a = e.address();
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(e.port());
}

struct Connection {
  Connection(tcp::socket s, FrameSplitter splitter)
      : socket(std::move(s)), splitter(std::move(splitter)) {}
  tcp::socket socket;
  FrameSplitter splitter;
};

}  // namespace

// Everything here is touched only by the thread running io (the source thread), except `io`
// itself, which stop() posts to.
struct TcpSource::Io {
  Io(const TcpSource& s) : source(s) {}

  void start_accept() {
    acceptor.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || stopping) return;
      if (ec) {
        warn_accept_failed(ec);
        accept_retry.expires_after(kAcceptRetry);
        accept_retry.async_wait([this](error_code wait_ec) {
          if (!wait_ec && !stopping) start_accept();
        });
        return;
      }
      ++accepted;
      accept_failures = 0;
      error_code peer_ec;
      const auto peer = socket.remote_endpoint(peer_ec);
      const std::string origin = source.describe() + " connection from " +
                                 (peer_ec ? std::string("an unknown peer") : to_string(peer));
      spdlog::debug("source {}: accepted connection {}", origin, accepted);
      const auto it = connections.emplace(
          connections.end(), std::move(socket),
          FrameSplitter(source.framing_, source.max_frame_, origin, &source.stop_));
      start_read(it);
      if (source.connections_ == 0 || accepted < source.connections_) {
        start_accept();
      } else {
        acceptor.close(ec);  // the Nth connection: run() ends when the last one closes
      }
    });
  }

  void start_read(std::list<Connection>::iterator it) {
    const auto space = it->splitter.write_space(kReadSize);
    it->socket.async_read_some(
        asio::buffer(space.data(), space.size()), [this, it](error_code ec, std::size_t n) {
          Connection& c = *it;
          if (n > 0) {
            c.splitter.commit(n);
            // May block in the handler: no socket is read meanwhile (backpressure).
            // (what a stop leaves in the splitter, it reports as the connection goes)
            if (!c.splitter.deliver(*handler)) return close(it);
          }
          if (ec == asio::error::operation_aborted || stopping) {
            connections.erase(it);  // stop(): what is still buffered is reported, and dropped
            return;
          }
          if (!ec) return start_read(it);
          if (ec == asio::error::eof) {
            spdlog::debug("source {}: closed by the peer after {} bytes", c.splitter.origin(),
                          c.splitter.bytes_received());
          } else if (c.splitter.bytes_received() == 0) {  // nothing lost (a port probe, say)
            spdlog::debug("source {}: connection failed before any byte: {}", c.splitter.origin(),
                          ec.message());
          } else {
            spdlog::warn("source {}: connection failed after {} bytes: {}",
                         c.splitter.origin(), c.splitter.bytes_received(), ec.message());
          }
          c.splitter.finish(*handler, ec == asio::error::eof);  // reports a frame cut short
          close(it);
        });
  }

  void close(std::list<Connection>::iterator it) {
    error_code ignored;
    it->socket.shutdown(tcp::socket::shutdown_both, ignored);
    it->socket.close(ignored);
    connections.erase(it);
    ++closed;
    // With connections = N, the acceptor is closed after the Nth accept and nothing else is
    // pending once the Nth connection closes, so io.run() returns by itself.
  }

  /// Out of file descriptors, accept fails every kAcceptRetry until one is closed: said at
  /// the first failure, then every kAcceptWarnEvery with the count, not ten times a second.
  void warn_accept_failed(const error_code& ec) {
    const auto now = std::chrono::steady_clock::now();
    if (accept_failures++ > 0 && now - accept_warned < kAcceptWarnEvery) return;
    accept_warned = now;
    const bool no_fds = ec == asio::error::no_descriptors || ec.value() == ENFILE;
    spdlog::warn("source {}: accept failed{}: {}; retrying every {} ms{}", source.describe(),
                 accept_failures > 1 ? fmt::format(" ({} times so far)", accept_failures) : "",
                 ec.message(), kAcceptRetry.count(),
                 no_fds ? fmt::format(" (out of file descriptors: this process may have {} "
                                      "open, `ulimit -n`; raise that, or bound the clients with "
                                      "the source's connections)",
                                      open_file_limit())
                        : "");
  }

  // Posted by stop(). [source thread]
  void shut_down() {
    stopping = true;
    error_code ignored;
    acceptor.close(ignored);
    accept_retry.cancel();
    for (auto& c : connections) c.socket.close(ignored);  // their reads end as aborted
  }

  const TcpSource& source;
  asio::io_context io{1};  // concurrency hint: one thread runs it
  tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};
  std::list<Connection> connections;  // live ones; an iterator stays valid until erased
  FrameHandler* handler = nullptr;
  std::uint32_t accepted = 0;
  std::uint64_t accept_failures = 0;  ///< in a row
  std::chrono::steady_clock::time_point accept_warned;
  std::uint32_t closed = 0;  ///< connections closed before the run ended (EOF, error, refused)
  bool stopping = false;
};

TcpSource::TcpSource(std::string address, Framing framing, std::uint32_t max_frame,
                     std::uint32_t connections)
    : address_(std::move(address)),
      framing_(framing),
      max_frame_(max_frame),
      connections_(connections),
      io_(std::make_unique<Io>(*this)) {
  const topology::HostPort where = topology::parse_host_port(address_);
  // Listening here, before any thread starts, makes a port in use a startup error (like a sink
  // file that cannot be opened), and lets clients connect while a start_after source waits:
  // the kernel queues them.
  Io& io = *io_;
  try {
    tcp::resolver resolver(io.io);
    const tcp::endpoint endpoint =
        resolver
            .resolve(where.host, std::to_string(where.port),
                     tcp::resolver::passive | tcp::resolver::numeric_service)
            .begin()
            ->endpoint();
    io.acceptor.open(endpoint.protocol());
    io.acceptor.set_option(tcp::acceptor::reuse_address(true));
    io.acceptor.bind(endpoint);
    io.acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    const bool in_use = e.code() == asio::error::address_in_use;
    throw std::runtime_error("source " + describe() + ": cannot listen on " + address_ + ": " +
                             e.code().message() +
                             (in_use ? " (another process listens there: `ss -ltnp` names it)"
                                     : ""));
  }
}

TcpSource::~TcpSource() = default;

std::string TcpSource::describe() const { return "tcp " + address_; }

std::uint16_t TcpSource::port() const {
  error_code ec;  // closed once run() has returned
  const auto endpoint = io_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

std::string TcpSource::listens_on() const {
  error_code ec;
  const auto endpoint = io_->acceptor.local_endpoint(ec);
  return ec ? std::string() : to_string(endpoint);
}

void TcpSource::run(FrameHandler& handler) {
  Io& io = *io_;
  io.handler = &handler;

  io.start_accept();
  io.io.run();

  error_code ignored;
  io.acceptor.close(ignored);
  io.connections.clear();
  spdlog::debug("source {}: done after {} connection{} ({} closed before the run ended)",
                describe(), io.accepted, io.accepted == 1 ? "" : "s", io.closed);
}

void TcpSource::stop() {
  stop_.store(true, std::memory_order_relaxed);
  Io* io = io_.get();
  asio::post(io->io, [io] { io->shut_down(); });
}

}  // namespace shardline::connectors
