// wrong_abi: what SHARDLINE_PLUGIN defines, by hand, with an ABI record claiming SDK ABI 999.
// The host reads the record from the file and refuses the plugin without running its code.
#include <shardline/abi.hpp>
#include <shardline/boundary.hpp>

namespace {
constexpr shardline::AbiRecord wrong_record() {
  shardline::AbiRecord r = shardline::kAbiRecord;
  r.sdk_abi = 999;
  return r;
}
}  // namespace

extern "C" SHARDLINE_API __attribute__((used, section("shardline_abi")))
const shardline::AbiRecord shardline_abi_record = wrong_record();

extern "C" SHARDLINE_API const shardline::Manifest* shardline_plugin_manifest() {
  static const shardline::Manifest manifest{"wrong_abi", "1.0.0", {}, {}};
  return &manifest;
}
