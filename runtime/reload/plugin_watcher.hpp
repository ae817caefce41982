// PluginWatcher: notices when a plugin file has been rebuilt. [its own thread]
//
// Linkers unlink the output, write a new file in many pieces, close it, then chmod it; `cp`
// and `mv` produce other sequences. So the watcher watches each plugin's *directory* with
// inotify (the file's inode changes on every build), reacts to IN_CLOSE_WRITE and IN_MOVED_TO
// on a plugin's file name, waits until nothing has happened to the file for the debounce time,
// and then until its size and mtime are the same on two looks in a row. Only then does it ask
// for a reload; the loader still checks that the file is a complete ELF before mapping it.
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

class PluginWatcher {
 public:
  struct Watched {
    std::string alias;
    std::filesystem::path file;
  };
  using OnChange = std::function<void(const std::string& alias)>;

  /// Starts watching. Throws std::runtime_error if inotify cannot be set up.
  PluginWatcher(std::vector<Watched> files, OnChange on_change,
                std::chrono::milliseconds debounce = std::chrono::milliseconds(300));
  ~PluginWatcher();

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
  OnChange on_change_;
  std::chrono::milliseconds debounce_;
  int inotify_ = -1;
  int wake_[2] = {-1, -1};  ///< a pipe to stop the thread
  std::thread thread_;
};

}  // namespace shardline::reload
