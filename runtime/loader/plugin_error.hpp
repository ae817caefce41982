// The one error type of plugin loading: its message is a complete line for the user.
#pragma once

#include <stdexcept>

namespace shardline::loader {

struct PluginError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace shardline::loader
