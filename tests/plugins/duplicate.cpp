// duplicate: registers two decoders with the same name. Registration fails, so the manifest
// carries an error and the host refuses the plugin.
#include <string>
#include <string_view>

#include <shardline/plugin.hpp>

SHARDLINE_PLUGIN("duplicate", "1.0.0", p) {
  p.decoder("same", [](std::string_view line) { return std::string(line); });
  p.decoder("same", [](std::string_view line) { return std::string(line).size(); });
}
