// ELF inspection of a plugin file before it is loaded. [control thread]
//
// dlopen of a truncated shared object can kill the process with SIGBUS, and half of one can
// even "load". So the loader first reads the whole file and checks that the ELF header, every
// program header and segment, and the section header table lie inside it; then it reads the
// plugin's ABI record from its section and the libraries it needs, all without running any of
// the plugin's code.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace shardline::loader {

class ElfFile {
 public:
  /// Reads the file. Throws PluginError if it cannot be read.
  explicit ElfFile(const std::filesystem::path& path);

  /// Empty if the file is a complete 64-bit shared object for this machine; otherwise why not.
  std::string check_complete() const;

  /// The bytes of the named section, if the file has it (call after check_complete()).
  std::optional<std::span<const std::byte>> section(std::string_view name) const;

  /// The libraries the file names as needed (DT_NEEDED), e.g. "libstdc++.so.6".
  std::vector<std::string> needed() const;

  /// The dynamic symbols bound STB_GNU_UNIQUE (mangled names). g++ gives that binding to some
  /// inline statics unless built with -fno-gnu-unique, and a library that has one is never
  /// unmapped by dlclose.
  std::vector<std::string> unique_symbols() const;

  /// The whole file as it was read.
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::filesystem::path path_;
  std::vector<std::byte> bytes_;
};

}  // namespace shardline::loader
