// crash_on_load: a valid plugin whose static constructor writes through a null pointer, so the
// host crashes inside dlopen; it must say that loading this file is where.
#include <cstdint>

#include <shardline/plugin.hpp>

namespace {
struct CrashesWhenBuilt {
  CrashesWhenBuilt() {
    volatile std::uintptr_t null = 0;  // volatile: a real store, not a trap the compiler chose
    *reinterpret_cast<volatile int*>(null) = 1;
  }
};
const CrashesWhenBuilt crashes;
}  // namespace

SHARDLINE_PLUGIN("crash_on_load", "1.0.0", p) {
  p.partition("key", [](const std::uint64_t& v) { return v; });
}
