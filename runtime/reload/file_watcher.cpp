#include "reload/file_watcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace shardline::reload {

FileWatcher::FileWatcher(std::vector<Watched> files, std::chrono::milliseconds debounce)
    : debounce_(debounce) {
  inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_ < 0 || pipe2(wake_, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("cannot watch files: ") + std::strerror(errno));
  for (auto& w : files) {
    Entry e;
    e.w = std::move(w);
    const auto dir = std::filesystem::absolute(e.w.file).parent_path();
    e.wd = inotify_add_watch(inotify_, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
    if (e.wd < 0)
      throw std::runtime_error("cannot watch " + dir.string() + ": " + std::strerror(errno));
    spdlog::info("watching {} ({})", e.w.file.string(), e.w.what);
    entries_.push_back(std::move(e));
  }
  thread_ = std::thread([this] { run(); });
}

FileWatcher::~FileWatcher() {
  if (thread_.joinable()) {
    const char stop = 1;
    (void)!::write(wake_[1], &stop, 1);
    thread_.join();
  }
  for (int fd : {inotify_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
}

bool FileWatcher::stable(Entry& e) {
  struct stat st {};
  if (::stat(e.w.file.c_str(), &st) != 0) {
    e.size = -1;  // not there (yet): the build is still in progress
    return false;
  }
  const std::int64_t mtime = std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  const bool same = st.st_size == e.size && mtime == e.mtime_ns;
  e.size = st.st_size;
  e.mtime_ns = mtime;
  return same;
}

void FileWatcher::run() {
  alignas(inotify_event) char buf[16 * 1024];
  for (;;) {
    pollfd fds[2] = {{inotify_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const bool any_pending =
        std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.pending; });
    const int timeout_ms = any_pending ? 100 : -1;
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    if (fds[0].revents & POLLIN) {
      ssize_t n;
      while ((n = ::read(inotify_, buf, sizeof buf)) > 0) {
        for (char* p = buf; p < buf + n;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(p);
          p += sizeof(inotify_event) + ev->len;
          if (!ev->len) continue;
          for (auto& e : entries_)
            if (e.wd == ev->wd && e.w.file.filename() == ev->name) {
              e.pending = true;
              e.last_event = std::chrono::steady_clock::now();
            }
        }
      }
    }
    const auto now = std::chrono::steady_clock::now();
    for (auto& e : entries_) {
      if (!e.pending || now - e.last_event < debounce_) continue;
      if (!stable(e)) continue;  // look again in 100 ms
      e.pending = false;
      e.size = -1;
      spdlog::info("{}: {} changed", e.w.what, e.w.file.string());
      e.w.on_change();
    }
  }
}

}  // namespace shardline::reload
