// Fuzz target: parse_topology (topology/topology.cpp) on any bytes as topology.toml.
//
// A topology is written by hand, so every mistake must come back as a TopologyError whose
// lines each name the file: never a crash, a hang, or another exception escaping (which
// `shardline check` and `run` would not report as the file's errors). Paths in it resolve
// against a scratch folder that holds only the file itself.
#include <cstring>
#include <exception>
#include <string>

#include "fuzz_support.hpp"
#include "topology/topology.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto file = shardline_fuzz::scratch_path("topology.toml");
  shardline_fuzz::write_file(file, data, size);
  try {
    const auto topo = shardline::topology::parse_topology(file);
    FUZZ_CHECK(!topo.plugins.empty());
    FUZZ_CHECK(topo.shards >= 1 && topo.key_groups >= topo.shards);
  } catch (const shardline::topology::TopologyError& e) {
    FUZZ_CHECK(!e.errors.empty());
    for (const std::string& line : e.errors) FUZZ_CHECK(line.starts_with(file.string() + ":"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parse_topology threw something other than TopologyError: %s\n",
                 e.what());
    std::abort();
  }
  return 0;
}
