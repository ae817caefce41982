#include "reload/file_watcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <spdlog/spdlog.h>
#include <stdexcept>

namespace shardline::reload {

namespace {
/// A file written in place, renamed into the directory, removed or renamed away; the directory
/// itself removed or moved.
constexpr std::uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF;
/// A file still missing this long after it went is reported as removed (a linker removes its
/// output and writes it anew within a moment).
constexpr std::chrono::seconds kGone{2};
/// How often a file that is settling is looked at.
constexpr std::chrono::milliseconds kLookAgain{100};

/// The file's stamp now; nothing if it is not there.
std::optional<FileStamp> stamp_of(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{st.st_size, std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}
}  // namespace

bool wait_until_settled(const std::filesystem::path& file, std::chrono::milliseconds quiet,
                        std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::optional<FileStamp> last;
  for (;;) {
    const auto now = stamp_of(file);
    const auto age = std::chrono::system_clock::now().time_since_epoch() -
                     std::chrono::nanoseconds(now ? now->mtime_ns : 0);
    if (now && now == last && age >= quiet) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    last = now;
    std::this_thread::sleep_for(kLookAgain);
  }
}

FileWatcher::FileWatcher(std::vector<Watched> files, std::chrono::milliseconds debounce)
    : debounce_(debounce) {
  inotify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_ < 0 || pipe2(wake_, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("cannot watch files: ") + std::strerror(errno));
  for (auto& w : files) {
    // A symbolic link (plugins/app.so -> ../build/app.so) is watched where it is, for a link
    // made anew, and where it leads, for a rebuild of its target.
    const auto target = follow_link(w);
    const std::string link = target.empty() ? "" : ", a link to " + target.string();
    const std::string watching = fmt::format("watching {} ({}){}", w.file.string(), w.what, link);
    add(std::move(w));
    spdlog::info("{}", watching);  // once it is so: a change from now on is seen
  }
  thread_ = std::thread([this] { run(); });
}

void FileWatcher::add(Watched w, std::filesystem::path link) {
  Entry e;
  e.w = std::move(w);
  e.dir = std::filesystem::absolute(e.w.file).parent_path();
  e.link = std::move(link);
  e.wd = inotify_add_watch(inotify_, e.dir.c_str(), kMask);
  if (e.wd < 0)
    throw std::runtime_error("cannot watch " + e.dir.string() + ": " + std::strerror(errno));
  entries_.push_back(std::move(e));
}

std::filesystem::path FileWatcher::follow_link(const Watched& w) {
  std::error_code ec;
  auto target = std::filesystem::canonical(w.file, ec);
  if (ec || target == std::filesystem::absolute(w.file).lexically_normal()) target.clear();
  if (const auto old = target_of(w.file); old != entries_.end()) {
    if (old->w.file == target) return target;
    // Its directory stays watched: other entries may share the watch (one per directory).
    entries_.erase(old);
  }
  if (target.empty()) return target;
  add(Watched{target, w.what, w.on_change, w.if_removed}, w.file);
  return target;
}

FileWatcher::~FileWatcher() {
  if (thread_.joinable()) {
    const char stop = 1;
    (void)!::write(wake_[1], &stop, 1);
    thread_.join();
  }
  // A change still settling (within the debounce time, or not yet read) is not acted on: say
  // so, or a rebuild that landed just before the run ended would leave no trace.
  if (inotify_ >= 0) read_events();
  for (const auto& e : entries_)
    if (e.pending)
      spdlog::info("{}: {} changed as the run ended; not acted on", e.w.what, e.w.file.string());
  for (int fd : {inotify_, wake_[0], wake_[1]})
    if (fd >= 0) ::close(fd);
}

bool FileWatcher::stable(Entry& e) {
  // The same size and time on two looks in a row; a file not there (yet) is not settled: its
  // build is still in progress.
  const auto now = stamp_of(e.w.file);
  const bool same = now && now == e.stamp;
  e.stamp = now;
  return same;
}

void FileWatcher::read_events() {
  alignas(inotify_event) char buf[16 * 1024];
  ssize_t n;
  while ((n = ::read(inotify_, buf, sizeof buf)) > 0) {
    for (char* p = buf; p < buf + n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      on_event(*ev);
    }
  }
}

void FileWatcher::run() {
  for (;;) {
    pollfd fds[2] = {{inotify_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const bool any_pending =
        std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.pending; });
    const bool any_lost =
        std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.wd < 0; });
    const int timeout_ms = any_pending ? 100 : any_lost ? static_cast<int>(debounce_.count()) : -1;
    if (::poll(fds, 2, timeout_ms) < 0 && errno != EINTR) return;
    if (fds[1].revents) return;
    if (fds[0].revents & POLLIN) read_events();
    if (any_lost) rewatch();
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<Watched, bool>> changed;  // bool: the file the topology names
    for (auto& e : entries_) {
      if (!e.pending || now - e.last_event < debounce_) continue;
      if (!stable(e)) {  // look again in 100 ms, unless it is gone
        if (!e.stamp && now - e.last_event >= kGone) {
          e.pending = false;
          spdlog::warn("{}: {} was removed; {}", e.w.what, e.w.file.string(), e.w.if_removed);
        }
        continue;
      }
      e.pending = false;
      e.stamp.reset();
      spdlog::info("{}: {} changed", e.w.what, e.w.file.string());
      changed.emplace_back(e.w, e.link.empty());
    }
    for (const auto& [w, named] : changed) {
      if (named) relink(w);  // a link made anew may lead to another file
      w.on_change();
    }
  }
}

std::vector<FileWatcher::Entry>::iterator FileWatcher::target_of(
    const std::filesystem::path& link) {
  return std::find_if(entries_.begin(), entries_.end(),
                      [&](const Entry& e) { return e.link == link; });
}

void FileWatcher::relink(const Watched& w) {
  const auto before = target_of(w.file);
  const auto was = before == entries_.end() ? std::filesystem::path{} : before->w.file;
  try {
    const auto now = follow_link(w);
    if (now != was && !now.empty())
      spdlog::info("{}: {} now leads to {}; watching that file", w.what, w.file.string(),
                   now.string());
  } catch (const std::exception& e) {
    spdlog::warn("{}: {}; a rebuild of the file {} leads to will not be noticed", w.what,
                 e.what(), w.file.string());
  }
}

void FileWatcher::on_event(const inotify_event& ev) {
  if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
    // The directory is gone, or now elsewhere (a moved directory keeps its watch: drop it).
    if (ev.mask & IN_MOVE_SELF) inotify_rm_watch(inotify_, ev.wd);
    for (auto& e : entries_) {
      if (e.wd != ev.wd) continue;
      e.wd = -1;
      e.pending = false;
      spdlog::warn("{}: the folder {} was removed or moved; watching for it to come back",
                   e.w.what, e.dir.string());
    }
    return;
  }
  if (!ev.len) return;
  for (auto& e : entries_)
    if (e.wd == ev.wd && e.w.file.filename() == ev.name) {
      e.pending = true;
      e.last_event = std::chrono::steady_clock::now();
    }
}

void FileWatcher::rewatch() {
  for (auto& e : entries_) {
    if (e.wd >= 0) continue;
    e.wd = inotify_add_watch(inotify_, e.dir.c_str(), kMask);
    if (e.wd < 0) continue;  // not back yet
    spdlog::info("watching {} again ({})", e.w.file.string(), e.w.what);
    // Its new version may have been written before the directory was watched again.
    struct stat st {};
    if (::stat(e.w.file.c_str(), &st) == 0) {
      e.pending = true;
      e.last_event = std::chrono::steady_clock::now();
    }
  }
}

}  // namespace shardline::reload
