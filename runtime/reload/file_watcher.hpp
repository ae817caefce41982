// FileWatcher: notices when a watched file has been rewritten — a plugin rebuilt, the topology
// edited — and runs that file's action. [its own thread]
//
// Linkers unlink the output, write a new file in many pieces, close it, then chmod it; `cp`
// and `mv` produce other sequences. So the watcher watches each plugin's *directory* with
// inotify (the file's inode changes on every build; editors also save by renaming), reacts to
// IN_CLOSE_WRITE and IN_MOVED_TO on a watched file name, waits until nothing has happened to the
// file for the debounce time, and then until its size and mtime are the same on two looks in a
// row. Only then does it run the action (for a plugin, a reload request; the loader still checks
// that the file is a complete ELF before mapping it). A watched directory that is removed or
// moved away (a clean rebuild: `rm -rf build`) is looked for again every debounce period until
// it is back; the file is then treated as changed, since its new build may already be there.
// A file that is a symbolic link is watched both as the link and as the file it leads to; when
// the link changes, the file it now leads to is watched instead.
#pragma once

#include <sys/inotify.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace shardline::reload {

/// How long a file must have been left alone before it counts as written: a linker writes its
/// output in many pieces, and closes and renames it at the end.
inline constexpr std::chrono::milliseconds kDebounce{300};

/// Waits, as the watcher waits for a file it saw change, until `file` has been left alone for
/// `quiet` (by its mtime) and its size and mtime are the same on two looks in a row; for a file
/// that is not there, until it is. False if that takes longer than `limit`. For a file the
/// watcher did not see change, but which may be being written right now. [any thread]
bool wait_until_settled(const std::filesystem::path& file, std::chrono::milliseconds quiet,
                        std::chrono::milliseconds limit);

/// A file's size and modification time, as two looks compare them.
struct FileStamp {
  off_t size;
  std::int64_t mtime_ns;  ///< CLOCK_REALTIME
  bool operator==(const FileStamp&) const = default;
};

class FileWatcher {
 public:
  struct Watched {
    std::filesystem::path file;
    std::string what;                 ///< how the log names it: "plugin 'market'"
    std::function<void()> on_change;  ///< runs on the watcher's thread
    /// What the log says after "X was removed; " (what goes on meanwhile).
    std::string if_removed = "the build already loaded runs on, and a new file there will be "
                             "loaded";
  };

  /// Starts watching. Throws std::runtime_error if inotify cannot be set up.
  explicit FileWatcher(std::vector<Watched> files,
                       std::chrono::milliseconds debounce = kDebounce);
  ~FileWatcher();

 private:
  struct Entry {
    Watched w;
    std::filesystem::path dir;  ///< the absolute directory watched
    int wd = -1;                ///< -1 while the directory is gone
    bool pending = false;
    std::chrono::steady_clock::time_point last_event{};
    std::optional<FileStamp> stamp;  ///< at the last look; none if the file was not there
    std::filesystem::path link;  ///< for the file a link leads to: the link (else empty)
  };
  /// Watches `w.file`'s directory. Throws std::runtime_error if it cannot.
  void add(Watched w, std::filesystem::path link = {});
  /// Watches the file the link `w.file` leads to now, instead of the one it led to (if any);
  /// does nothing for a file that is not a link. Returns the file watched through the link.
  /// [constructor, the watcher's thread]
  std::filesystem::path follow_link(const Watched& w);
  /// follow_link() after the link changed, saying so in the log. [the watcher's thread]
  void relink(const Watched& w);
  /// The entry watching the file that `link` leads to, or end().
  std::vector<Entry>::iterator target_of(const std::filesystem::path& link);
  void run();
  bool stable(Entry& e);
  /// Handles the inotify events queued, without waiting for any. [the watcher's thread; the
  /// destructor, once it has stopped]
  void read_events();
  /// Handles one inotify event. [the watcher's thread; the destructor, once it has stopped]
  void on_event(const inotify_event& ev);
  /// Watches again the directories that have come back. [the watcher's thread]
  void rewatch();

  std::vector<Entry> entries_;
  std::chrono::milliseconds debounce_;
  int inotify_ = -1;
  int wake_[2] = {-1, -1};  ///< a pipe to stop the thread
  std::thread thread_;
};

}  // namespace shardline::reload
