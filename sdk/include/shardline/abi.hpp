// shardline/abi.hpp — the ABI record every plugin carries.
//
// A plugin is C++ compiled against this SDK, so it can only run in a host built with the same
// SDK ABI, the same compiler major version, the same libstdc++ string ABI and the same spdlog.
// SHARDLINE_PLUGIN places an AbiRecord in the ELF section `shardline_abi`; the host reads that
// section from the file *before* dlopen (so no plugin code, not even a static constructor, runs
// in a host it does not fit) and refuses a mismatch with a message naming both sides.
#pragma once

#include <cstdint>
#include <spdlog/version.h>

namespace shardline {

/// Bumped whenever a type in <shardline/boundary.hpp> changes layout or meaning.
inline constexpr std::uint32_t kSdkAbiVersion = 2;

/// Human-readable SDK version (semantic version of the headers).
#define SHARDLINE_SDK_VERSION "0.3.0"

/// Plain integers and fixed arrays only: the host reads this from the file, unrelocated.
struct AbiRecord {
  char magic[8];                 ///< "SHRDLN\0\0"
  std::uint32_t sdk_abi;         ///< kSdkAbiVersion
  std::uint32_t compiler_major;  ///< __GNUC__
  std::uint32_t compiler_minor;  ///< __GNUC_MINOR__ (informational)
  std::uint32_t cxx11_abi;       ///< _GLIBCXX_USE_CXX11_ABI
  std::uint32_t spdlog_version;  ///< SPDLOG_VER_MAJOR*10000 + MINOR*100 + PATCH
  char sdk_version[16];          ///< SHARDLINE_SDK_VERSION
};

inline constexpr AbiRecord kAbiRecord{
    {'S', 'H', 'R', 'D', 'L', 'N', 0, 0},
    kSdkAbiVersion,
    __GNUC__,
    __GNUC_MINOR__,
    _GLIBCXX_USE_CXX11_ABI,
    SPDLOG_VER_MAJOR * 10000 + SPDLOG_VER_MINOR * 100 + SPDLOG_VER_PATCH,
    SHARDLINE_SDK_VERSION,
};

/// Name of the ELF section holding the record, and of the exported entry point.
inline constexpr const char* kAbiSection = "shardline_abi";
inline constexpr const char* kEntryPoint = "shardline_plugin_manifest";

}  // namespace shardline
