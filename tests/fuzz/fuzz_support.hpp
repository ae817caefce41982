// What the fuzz targets share: a scratch file for parsers that read a path, and a check that
// stops the run (a crash libFuzzer reports, with its input) when an invariant fails.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace shardline_fuzz {

/// `name` in a folder of this process's own, removed at exit (the topology target resolves
/// relative paths against it, so it holds nothing else).
inline std::filesystem::path scratch_path(const std::string& name) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("shardline-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    static const struct Remove {
      std::filesystem::path d;
      ~Remove() {
        std::error_code ignored;
        std::filesystem::remove_all(d, ignored);
      }
    } remove{d};
    return d;
  }();
  return dir / name;
}

inline void write_file(const std::filesystem::path& file, const std::uint8_t* data,
                       std::size_t size) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", file.c_str());
    std::abort();
  }
}

/// An invariant of the code under test: abort (a finding) if it does not hold.
#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

}  // namespace shardline_fuzz
