// The local sinks: a file, standard output, and discard (for benchmarks). [sink thread]
//
// File and stdout write each chunk of encoded output as it comes, in order, with write(2):
// someone watching the output (tail -f) sees it as it is produced, and a chunk that cannot be
// written is counted as lost with its messages. Chunks are up to 256 KiB, and at most a few
// thousand per second reach a sink when traffic is light, so a system call per chunk costs
// little. A write error other than an interruption is not retried (a full disk or a closed pipe
// does not heal by itself here): it is logged as an error, and write() takes nothing from then
// on (it returns how many bytes reached the file), so the loss is never silent; its pipeline's
// source then stops reading (engine/sink_port.hpp).

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "connectors/sink.hpp"

namespace shardline::connectors {

namespace {

constexpr int kAbandonCheckMs = 100;

class FdSink final : public Sink {
 public:
  /// Writes to `path` (created or emptied), or to standard output when `path` is nullopt.
  /// [control thread]
  explicit FdSink(std::optional<std::string> path) : path_(std::move(path)) {}

  ~FdSink() override {
    if (path_ && created_ && !begun_) ::unlink(path_->c_str());  // the run never started
    close();
  }

  void open() override {  // [control thread]
    if (!path_) {
      fd_ = STDOUT_FILENO;
    } else {
      try {
        fd_ = open_output(*path_, false, &created_);
      } catch (const std::runtime_error& e) {
        throw std::runtime_error("cannot open sink file " + *path_ + ": " + e.what());
      }
    }
    struct stat st {};
    const bool known = ::fstat(fd_, &st) == 0;
    pipe_ = known && S_ISFIFO(st.st_mode);
    // Two runs writing one file would garble it, each reporting success: the first holds a
    // lock on a regular file for as long as it runs, and a second is refused at start.
    // (Only a lock held elsewhere refuses: a file system without locks is written unlocked.)
    if (path_ && known && S_ISREG(st.st_mode) && ::flock(fd_, LOCK_EX | LOCK_NB) != 0 &&
        errno == EWOULDBLOCK)
      throw std::runtime_error("cannot open sink file " + *path_ +
                               ": another process writes it (it holds a lock on it: another "
                               "shardline run?); stop that one, or give this sink another path");
  }

  void begin() override {  // [control thread]
    // A FIFO or a device has nothing to empty (as O_TRUNC would have ignored them).
    struct stat st {};
    if (path_ && ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && ::ftruncate(fd_, 0) != 0)
      throw std::runtime_error("cannot empty sink file " + *path_ + ": " + std::strerror(errno));
    begun_ = true;
  }

  std::size_t write(const std::byte* data, std::size_t n) override {  // [sink thread]
    if (failed_ || fd_ < 0) return 0;
    return write_all(data, n);
  }

  void close() override {  // [sink thread]
    if (fd_ < 0) return;
    if (path_ && ::close(fd_) != 0)
      spdlog::error("sink {}: closing failed: {}", describe(), std::strerror(errno));
    fd_ = -1;
  }

  void abandon() override { abandoned_.store(true, std::memory_order_relaxed); }  // [any thread]

  std::string describe() const override {  // [any thread]
    return path_ ? "file " + *path_ : "stdout";
  }

 private:
  /// How many of the `n` bytes were written.
  std::size_t write_all(const std::byte* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      std::size_t piece = n - done;
      if (pipe_) {
        // A blocking write to a pipe whose reader stopped never returns, and abandon() could
        // not end it: wait for room here instead, then write no more than the pipe then takes
        // without blocking (PIPE_BUF bytes fit once poll() says it is writable).
        pollfd pfd{fd_, POLLOUT, 0};
        if (::poll(&pfd, 1, kAbandonCheckMs) <= 0) {  // no room yet (or interrupted)
          if (abandoned_.load(std::memory_order_relaxed)) return done;
          continue;
        }
        piece = std::min<std::size_t>(piece, PIPE_BUF);
      }
      const ssize_t w = ::write(fd_, p + done, piece);
      if (w >= 0) {
        done += static_cast<std::size_t>(w);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {  // stdout may be a non-blocking pipe whose reader is slow
        if (abandoned_.load(std::memory_order_relaxed)) return done;
        pollfd pfd{fd_, POLLOUT, 0};
        ::poll(&pfd, 1, kAbandonCheckMs);
        continue;
      }
      spdlog::error("sink {}: cannot write: {}; the rest of the output is lost", describe(),
                    std::strerror(errno));
      failed_ = true;
      return done;
    }
    return done;
  }

  const std::optional<std::string> path_;
  int fd_ = -1;
  bool created_ = false;  ///< open() made the file: removed again if the run never begins
  bool begun_ = false;
  bool failed_ = false;
  bool pipe_ = false;  ///< a pipe or FIFO: written a PIPE_BUF at a time, once it has room
  std::atomic<bool> abandoned_{false};
};

/// Writes nothing; counts what it was given, and logs the total at close.
class DiscardSink final : public Sink {
 public:
  void open() override {}
  std::size_t write(const std::byte*, std::size_t n) override {
    bytes_ += n;
    return n;
  }
  void close() override {
    // Without an encoder, messages reach the sink as a count only (the summary's "out").
    if (bytes_) spdlog::info("sink discard: discarded {} encoded bytes", bytes_);
  }
  void abandon() override {}
  std::string describe() const override { return "discard"; }

 private:
  std::uint64_t bytes_ = 0;  // [sink thread]
};

}  // namespace

int open_output(const std::string& path, bool append, bool* created) {
  // Non-blocking, so that a FIFO without a reader fails (ENXIO) instead of waiting; the
  // descriptor blocks again once open, as for any file.
  const int flags = O_WRONLY | O_CLOEXEC | O_NONBLOCK | (append ? O_APPEND : 0);
  int fd = -1;
  if (created) {  // created here, or already there
    fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL, 0644);
    *created = fd >= 0;
  }
  if (fd < 0 && (!created || errno == EEXIST)) fd = ::open(path.c_str(), flags | O_CREAT, 0644);
  if (fd < 0 && errno == ENXIO)
    throw std::runtime_error("it is a FIFO that no process reads yet; start its reader first");
  if (fd < 0) throw std::runtime_error(std::strerror(errno));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

// Declared in factory.cpp, the only caller.
std::unique_ptr<Sink> make_file_sink(const topology::SinkSpec& spec) {
  return std::make_unique<FdSink>(spec.address);
}

std::unique_ptr<Sink> make_stdout_sink(const topology::SinkSpec&) {
  return std::make_unique<FdSink>(std::nullopt);
}

std::unique_ptr<Sink> make_discard_sink(const topology::SinkSpec&) {
  return std::make_unique<DiscardSink>();
}

}  // namespace shardline::connectors
