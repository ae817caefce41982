// registration_throws: its registration throws an int, not a std::exception. The SDK must
// still turn it into the manifest's error, so the host refuses the plugin instead of ending.
#include <string>
#include <string_view>

#include <shardline/plugin.hpp>

SHARDLINE_PLUGIN("registration_throws", "1.0.0", p) {
  p.decoder("line", [](std::string_view line) { return std::string(line); });
  throw 42;
}
