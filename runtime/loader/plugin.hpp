// A loaded plugin: its library, its manifest, and the lookup of its components.
// [control thread loads; any thread may use components while it holds the Plugin]
//
// Loading never runs plugin code before the plugin is known to fit this host:
//   1. read the file; check it is a complete ELF shared object (a half-written build is
//      refused, not mapped);
//   2. read the ABI record from the `shardline_abi` section and compare it with the host's;
//   3. write the bytes just checked to a unique shadow path and dlopen that copy (RTLD_NOW | RTLD_LOCAL), so
//      a rebuilt file at the same path can later be loaded beside this one (dlopen of the same
//      path would return the already-open old library); optionally in a forked copy of the
//      process first (Trial::in_copy_first); the shadow copy is unlinked at once;
//   4. call the entry point and read the manifest.
// Everything made by the plugin (components, messages, states) must be destroyed before the
// last shared_ptr<Plugin> goes: holding the Plugin is what keeps its code mapped.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>

#include "loader/plugin_call.hpp"
#include "loader/plugin_error.hpp"

namespace boost::dll {
class shared_library;
}

namespace shardline::loader {

class Plugin {
 public:
  enum class Trial {
    none,
    /// Steps 3-4 run first in a copy of the process (crash_in_copy), on the shadow copy the
    /// host then loads: a build whose static constructors or registrations crash or hang there
    /// is refused ("FILE: loading it crashed: ...") and never runs in the host. [control thread]
    in_copy_first,
  };
  /// Loads `file` (steps 1-4 above). Throws PluginError with a one-line explanation.
  static std::shared_ptr<Plugin> load(const std::filesystem::path& file, Trial trial = Trial::none);
  ~Plugin();

  const std::filesystem::path& file() const { return file_; }
  /// The private copy that was loaded (unlinked at once; still visible in /proc/self/maps).
  const std::filesystem::path& shadow() const { return shadow_; }
  const std::string& name() const { return manifest_->plugin_name; }
  const std::string& version() const { return manifest_->plugin_version; }
  const Manifest& manifest() const { return *manifest_; }
  /// The SDK version the plugin was built with, from its ABI record (e.g. "0.2.4").
  const std::string& sdk_version() const { return sdk_version_; }
  /// Whether that version is MAJOR.MINOR.PATCH or later: checks the SDK compiles into a
  /// plugin's own code (inline) are missing from older builds of the same ABI.
  bool built_with_sdk(int major, int minor, int patch) const;
  /// Whether file() now holds another build than the one loaded (false if it cannot be read).
  /// [control thread]
  bool rebuilt() const;

  /// The component of that kind and name, or null.
  const ComponentInfo* find(ComponentKind kind, std::string_view name) const;
  /// "a, b, c" — the names of every component of that kind ("none" if there is none).
  std::string names_of(ComponentKind kind) const;

 private:
  Plugin() = default;
  /// Steps 3 (dlopen of the shadow copy) and 4.
  void open();
  std::filesystem::path file_;
  std::filesystem::path shadow_;
  std::size_t build_hash_ = 0;  ///< of the bytes loaded
  std::string sdk_version_;
  std::unique_ptr<boost::dll::shared_library> library_;
  const Manifest* manifest_ = nullptr;
};

/// Describes the ABI record of a file or the host, e.g. "SDK ABI 2 (SDK 0.2.0, g++ 12.2, ...)".
std::string describe(const AbiRecord& abi);

}  // namespace shardline::loader
