// FileWatcher: notices when a watched file has been rewritten — a plugin rebuilt, the topology
// edited — and runs that file's action. [its own thread]
//
// Linkers unlink the output, write a new file in many pieces, close it, then chmod it; `cp`
// and `mv` produce other sequences. So the watcher watches each plugin's *directory* with
// inotify (the file's inode changes on every build; editors also save by renaming), reacts to
// IN_CLOSE_WRITE and IN_MOVED_TO on a watched file name, waits until nothing has happened to the
// file for the debounce time, and then until its size and mtime are the same on two looks in a
// row. Only then does it run the action (for a plugin, a reload request; the loader still checks
// that the file is a complete ELF before mapping it).
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace shardline::reload {

class FileWatcher {
 public:
  struct Watched {
    std::filesystem::path file;
    std::string what;                 ///< how the log names it: "plugin 'market'"
    std::function<void()> on_change;  ///< runs on the watcher's thread
  };

  /// Starts watching. Throws std::runtime_error if inotify cannot be set up.
  explicit FileWatcher(std::vector<Watched> files,
                       std::chrono::milliseconds debounce = std::chrono::milliseconds(300));
  ~FileWatcher();

 private:
  struct Entry {
    Watched w;
    int wd = -1;
    bool pending = false;
    std::chrono::steady_clock::time_point last_event{};
    off_t size = -1;
    std::int64_t mtime_ns = -1;
  };
  void run();
  bool stable(Entry& e);

  std::vector<Entry> entries_;
  std::chrono::milliseconds debounce_;
  int inotify_ = -1;
  int wake_[2] = {-1, -1};  ///< a pipe to stop the thread
  std::thread thread_;
};

}  // namespace shardline::reload
