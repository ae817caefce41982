// File and stdin sources: one file descriptor read in large chunks on the source thread.
//
// Both are finite: run() returns at end of input (after delivering a last line without a
// newline, or reporting a truncated frame). The descriptor is polled with a short timeout
// before each read so that stop() is honoured even when stdin (or a FIFO) stays silent; for a
// regular file the poll returns at once and costs one system call per megabyte. With a `rate`,
// a Pacer between the splitter and the pipeline hands the frames on at that rate.

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <utility>

#include <spdlog/spdlog.h>

#include "connectors/frame_splitter.hpp"
#include "connectors/pacer.hpp"
#include "connectors/source.hpp"

namespace shardline::connectors {

namespace {

/// At full speed a read fills the splitter's free space, at least 1 MiB (up to 2 MiB once the
/// buffer has doubled).
constexpr std::size_t kReadSize = std::size_t(1) << 20;
/// With a `rate`, reads are at most 64 KiB: a frame that falls due while the source copies a
/// read out of the page cache waits for the copy. A 2 MiB read holds about 37k Market Spread
/// orders and takes about 0.3 ms (9 ns per order): at 1M/s that alone set the p99 at about
/// 0.5 ms, against 0.2 ms with 32 or 128 KiB reads (bench/RESULTS.md, "Latency").
constexpr std::size_t kPacedReadSize = std::size_t(64) << 10;
constexpr int kStopCheckMs = 100;

class FileSource final : public Source {
 public:
  /// Reads `path`, or standard input when `path` is nullopt. [control thread]
  FileSource(std::optional<std::string> path, Framing framing, std::uint32_t max_frame,
             std::uint64_t rate)
      : path_(std::move(path)), framing_(framing), max_frame_(max_frame), rate_(rate) {
    // Checked now, not opened (a FIFO's open would wait for its writer): a file that cannot be
    // read stops the start of the run, before any sink empties its file.
    std::error_code ec;
    if (path_ && ::access(path_->c_str(), R_OK) != 0)
      throw std::runtime_error("cannot read source file " + *path_ + ": " + std::strerror(errno));
    if (path_ && std::filesystem::is_directory(*path_, ec))
      throw std::runtime_error("source file " + *path_ + " is a folder");
    // A stdin the caller closed (`<&-`) holds /dev/null opened write-only (cli/main.cpp):
    // refused now, rather than a read failing once the run has begun.
    if (!path_ && (::fcntl(STDIN_FILENO, F_GETFL) & O_ACCMODE) == O_WRONLY)
      throw std::runtime_error("source stdin: stdin is closed (the run was started with `<&-`); "
                               "give the run its input on stdin, or read a file instead");
  }

  void run(FrameHandler& next) override {  // [source thread]
    std::optional<Pacer> pacer;
    if (rate_) pacer.emplace(next, rate_, stop_);
    FrameHandler& handler = pacer ? static_cast<FrameHandler&>(*pacer) : next;
    const Input input(open_input());
    const int fd = input.fd;
    FrameSplitter splitter(framing_, max_frame_, describe(), &stop_,
                           "process the input again from that offset");
    // write_space() gives at least what is asked; a paced read takes no more than that.
    const std::size_t read_size = rate_ ? kPacedReadSize : kReadSize;
    bool ended = false;  // end of input reached
    while (!stop_.load(std::memory_order_relaxed)) {
      pollfd p{fd, POLLIN, 0};
      const int ready = ::poll(&p, 1, kStopCheckMs);
      if (ready == 0 || (ready < 0 && errno == EINTR)) continue;
      // A failure to read ends the run with an error (exit 3): pipelines that start after this
      // one (start_after) must not run as if its input had been read.
      if (ready < 0) throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
      const auto space = splitter.write_space(read_size);
      const ssize_t n = ::read(fd, space.data(), rate_ ? read_size : space.size());
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        throw std::runtime_error("read failed after " +
                                 std::to_string(splitter.bytes_received()) +
                                 " bytes: " + std::strerror(errno));
      }
      if (n == 0) {
        ended = true;
        splitter.finish(handler);
        spdlog::debug("source {}: end of input after {} bytes", describe(),
                      splitter.bytes_received());
        break;
      }
      splitter.commit(static_cast<std::size_t>(n));
      if (!splitter.deliver(handler)) break;  // already reported through on_bad_input
    }
    // Stopped between two reads (an interrupt, a sink that cannot write any more): the splitter
    // holds nothing to report, but the input may go on from where the reads ended.
    struct stat st {};
    const bool all_read = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                          static_cast<std::uint64_t>(st.st_size) <= splitter.bytes_received();
    if (stop_.load(std::memory_order_relaxed) && !ended && !all_read &&
        splitter.unprocessed().bytes == 0)
      spdlog::warn("source {}: the run stopped after {} bytes of it, all processed; process the "
                   "input again from that offset",
                   describe(), splitter.bytes_received());
  }

  void stop() override { stop_.store(true, std::memory_order_relaxed); }  // [any thread]

  std::string describe() const override {  // [any thread]
    return path_ ? "file " + *path_ : std::string("stdin");
  }

 private:
  /// Closes the descriptor however run() ends; stdin stays open for the rest of the process.
  struct Input {
    int fd;
    explicit Input(int f) : fd(f) {}
    Input(const Input&) = delete;
    Input& operator=(const Input&) = delete;
    ~Input() {
      if (fd != STDIN_FILENO) ::close(fd);
    }
  };

  int open_input() const {
    if (!path_) return STDIN_FILENO;
    // Non-blocking: a FIFO's open would otherwise wait for a writer where no stop() can end
    // it; the poll() in run() waits for one instead. The reads themselves block as usual.
    const int fd = ::open(path_->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
      throw std::runtime_error("cannot open source file " + *path_ + ": " + std::strerror(errno));
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint for larger read-ahead
    return fd;
  }

  const std::optional<std::string> path_;
  const Framing framing_;
  const std::uint32_t max_frame_;
  const std::uint64_t rate_;  ///< frames per second, 0: as fast as they can be read
  std::atomic<bool> stop_{false};
};

}  // namespace

// Declared in factory.cpp, the only caller.
std::unique_ptr<Source> make_file_source(const topology::SourceSpec& spec) {
  return std::make_unique<FileSource>(spec.address, spec.framing, spec.max_frame, spec.rate);
}

std::unique_ptr<Source> make_stdin_source(const topology::SourceSpec& spec) {
  return std::make_unique<FileSource>(std::nullopt, spec.framing, spec.max_frame, spec.rate);
}

}  // namespace shardline::connectors
