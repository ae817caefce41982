// TCP sink: connects to "host:port" and writes the encoded chunks, reconnecting when needed.
// [sink thread, except abandon() and describe(): any thread]
//
// A chunk is a run of complete frames, and it is the unit of retry: when the connection fails
// part-way through a chunk, the sink reconnects and sends the whole chunk again on the new
// connection, which therefore starts at a frame boundary. (The peer may have received the
// beginning of that chunk on the old connection; chunks the kernel accepted before the peer
// died cannot be known lost without acknowledgements, which this protocol does not have.
// To narrow that window the sink checks, before each chunk, whether the peer has closed; and a
// connection reset after output was written to it is counted, for the run's summary.)
//
// Reconnection backs off from 10 ms, doubling up to 1 s; the first failure of an outage is
// logged at once, then at most one warning every 30 s while it lasts.
// Plain non-blocking sockets with poll() are used rather than Asio so that every wait (connect,
// a full send buffer, the backoff) also watches an eventfd: abandon() writes to it and any
// blocked write() returns at once, saying how many bytes it sent.

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

#include "topology/address.hpp"
#include "connectors/sink.hpp"

namespace shardline::connectors {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMinBackoffMs = 10;
constexpr int kMaxBackoffMs = 1000;
constexpr int kConnectTimeoutMs = 3000;
constexpr auto kWarnInterval = std::chrono::seconds(30);  // an outage of hours stays readable

class TcpSink final : public Sink {
 public:
  /// Throws std::runtime_error if `address` is not "host:port". [control thread]
  explicit TcpSink(std::string address)
      : address_(std::move(address)), where_(topology::parse_host_port(address_)) {
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_ < 0)
      throw std::runtime_error("sink " + describe() + ": eventfd: " + std::strerror(errno));
  }

  ~TcpSink() override {
    if (fd_ >= 0) ::close(fd_);
    ::close(wake_);
  }

  void open() override {}  // the first connection is made by the first write()

  std::size_t write(const std::byte* data, std::size_t n) override {
    // Once abandoned, a write still goes out as far as the connection takes it without
    // waiting (a healthy receiver loses nothing); every wait gives up at once instead.
    for (;;) {
      if (const Peer peer = fd_ >= 0 ? peer_state() : Peer::open; peer != Peer::open) {
        if (peer == Peer::reset) count_reset();
        failure(peer == Peer::reset
                    ? "connection reset by the peer (whatever it had not read yet of the "
                      "results written to it is lost with it)"
                    : "connection closed by the peer");
        disconnect();
        // A receiver going away may still listen for a moment: reconnecting at once would
        // write into a connection it never accepts.
        if (!back_off()) return 0;
        continue;
      }
      if (fd_ < 0 && abandoned_.load(std::memory_order_relaxed)) return 0;  // no reconnecting
      if (fd_ >= 0 || connect()) {
        // What a failed connection took of the chunk does not count: it is sent again whole.
        const std::size_t sent = send_all(data, n);
        if (sent == n) {
          backoff_ms_ = kMinBackoffMs;
          return n;
        }
        if (abandoned_.load(std::memory_order_relaxed)) return sent;
        disconnect();  // send_all recorded why
      }
      if (!back_off()) return 0;
    }
  }

  void close() override {
    if (fd_ < 0) return;
    // Sending FIN after the data lets the peer read everything, then see EOF. Input left
    // unread at close() would make the kernel send a reset instead, which can discard data
    // the peer has not read yet: drain it first (a sink's peer is not expected to talk).
    ::shutdown(fd_, SHUT_WR);
    char scratch[4096];
    while (::recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT) > 0) {
    }
    ::close(fd_);
    fd_ = -1;
  }

  std::uint64_t connections_reset() const override {  // [any thread]
    return resets_.load(std::memory_order_relaxed);
  }

  void abandon() override {  // [any thread]
    abandoned_.store(true, std::memory_order_relaxed);
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto ignored = ::write(wake_, &one, sizeof one);
  }

  std::string describe() const override { return "tcp " + address_; }  // [any thread]

 private:
  enum class Wait { ready, timeout, abandoned };

  /// Waits for `events` on `fd` (or only for abandon() when fd < 0), up to `timeout_ms`.
  Wait wait_for(int fd, short events, int timeout_ms) {
    pollfd p[2] = {{wake_, POLLIN, 0}, {fd, events, 0}};
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const int r = ::poll(p, fd >= 0 ? 2 : 1, timeout_ms);
      if (r < 0 && errno == EINTR) {
        if (timeout_ms >= 0) {
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
              deadline - Clock::now());
          timeout_ms = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        continue;
      }
      if (p[0].revents != 0) return Wait::abandoned;
      return r > 0 ? Wait::ready : Wait::timeout;
    }
  }

  bool connect() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(where_.port);
    if (const int rc = ::getaddrinfo(where_.host.c_str(), port.c_str(), &hints, &found)) {
      failure(std::string("cannot resolve ") + where_.host + ": " + ::gai_strerror(rc));
      return false;
    }
    // A name may resolve to several addresses (::1 and 127.0.0.1): one that answers is enough,
    // so only the last error is reported, and only if none answers.
    std::string error = "no address";
    for (const addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      const int s = ::socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (s < 0) {
        error = std::string("socket: ") + std::strerror(errno);
        continue;
      }
      error = connect_socket(s, a);
      if (error.empty()) {
        fd_ = s;
      } else {
        ::close(s);
      }
    }
    ::freeaddrinfo(found);
    if (fd_ < 0) {
      if (!abandoned_.load(std::memory_order_relaxed)) failure("cannot connect: " + error);
      return false;
    }
    // Chunks are written whole, so there is nothing for Nagle's algorithm to coalesce.
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (failures_ > 0) {
      spdlog::info("sink {}: connected after {} failed attempt{}", describe(), failures_,
                   failures_ == 1 ? "" : "s");
    } else {
      spdlog::debug("sink {}: connected", describe());
    }
    failures_ = 0;
    last_warning_ = {};  // the next outage is a new story: its first failure is logged at once
    return true;
  }

  /// Connects the non-blocking socket `s`; returns why not, or "" once connected.
  std::string connect_socket(int s, const addrinfo* a) {
    if (::connect(s, a->ai_addr, a->ai_addrlen) == 0) return {};
    if (errno != EINPROGRESS) return std::strerror(errno);
    switch (wait_for(s, POLLOUT, kConnectTimeoutMs)) {
      case Wait::abandoned: return "abandoned";
      case Wait::timeout: return "timed out";
      case Wait::ready: break;
    }
    int error = 0;
    socklen_t len = sizeof error;
    if (::getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    return error == 0 ? std::string() : std::strerror(error);
  }

  /// How many of the `n` bytes the connection took: all of them, or fewer if it failed or
  /// the sink was abandoned meanwhile.
  std::size_t send_all(const std::byte* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = ::send(fd_, p + done, n - done, MSG_NOSIGNAL);
      if (w >= 0) {
        done += static_cast<std::size_t>(w);
        written_ += static_cast<std::size_t>(w);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {  // the peer is slow: wait for room (backpressure), or abandon()
        if (wait_for(fd_, POLLOUT, -1) == Wait::abandoned) return done;
        continue;
      }
      const int error = errno;
      count_reset();
      failure(std::string("connection lost: ") + std::strerror(error));
      return done;
    }
    return done;
  }

  enum class Peer { open, closed, reset };
  /// Whether the peer has closed (FIN) or reset the connection since the last chunk. Costs one
  /// poll() per chunk, which is what lets a restarted peer get the next chunk whole.
  Peer peer_state() {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return Peer::open;
    if (p.revents & POLLERR) return Peer::reset;
    if (p.revents & (POLLRDHUP | POLLHUP)) return Peer::closed;
    char scratch[4096];
    for (;;) {  // the peer sent something: not expected, discarded, unless it is EOF
      const ssize_t r = ::recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT);
      if (r == 0) return Peer::closed;
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) return Peer::open;
      if (r < 0) return Peer::reset;
    }
  }

  /// The connection failed: if anything was written to it, its receiver may have lost what it
  /// had not read yet. Counted once per connection.
  void count_reset() {
    if (written_ > 0) resets_.fetch_add(1, std::memory_order_relaxed);
    written_ = 0;
  }

  void disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    written_ = 0;
  }

  /// Records why the last attempt failed; warns at most once per kWarnInterval.
  void failure(const std::string& why) {
    ++failures_;
    const auto now = Clock::now();
    if (now - last_warning_ < kWarnInterval) return;
    last_warning_ = now;
    spdlog::warn("sink {}: {}; retrying (backoff {} ms, {} failed attempt{})", describe(), why,
                 backoff_ms_, failures_, failures_ == 1 ? "" : "s");
  }

  /// Sleeps for the current backoff, then doubles it. False if abandoned meanwhile.
  bool back_off() {
    if (wait_for(-1, 0, backoff_ms_) == Wait::abandoned) return false;
    backoff_ms_ = std::min(backoff_ms_ * 2, kMaxBackoffMs);
    return true;
  }

  const std::string address_;
  const topology::HostPort where_;
  int fd_ = -1;    ///< the connection, or -1
  int wake_ = -1;  ///< eventfd written by abandon()
  std::atomic<bool> abandoned_{false};
  int backoff_ms_ = kMinBackoffMs;
  std::uint32_t failures_ = 0;  ///< since the last successful connect
  Clock::time_point last_warning_{};
  std::uint64_t written_ = 0;  ///< bytes the current connection took (0 once disconnected)
  std::atomic<std::uint64_t> resets_{0};
};

}  // namespace

// Declared in factory.cpp, the only caller.
std::unique_ptr<Sink> make_tcp_sink(const topology::SinkSpec& spec) {
  return std::make_unique<TcpSink>(spec.address);
}

}  // namespace shardline::connectors
