// A topology resolved against its plugins: every name bound to a component, every edge
// type-checked. [control thread]
//
// wire_topology() loads each plugin named under [plugins], finds every component the
// pipelines name, and checks that each step consumes what the step before it produces, that
// each state computation holds the type its state's factory builds, and that every pipeline
// sharing a state keys it the same way. Errors carry the file:line:column of the reference and
// list what the plugin actually exports. The Wiring keeps the plugins loaded.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "loader/plugin.hpp"
#include "topology/topology.hpp"

namespace shardline::topology {

struct WiredState {
  const StateSpec* spec;
  const ComponentInfo* factory;
};

struct WiredStep {
  const StepSpec* spec;
  const ComponentInfo* component;   ///< computation or state_computation
  const ComponentInfo* partition;   ///< state_computation steps only
  std::size_t state = 0;            ///< index into Wiring::states (stateful steps)
};

struct WiredPipeline {
  const PipelineSpec* spec;
  const ComponentInfo* decoder;
  std::vector<WiredStep> steps;
  const ComponentInfo* encoder = nullptr;  ///< null: no sink, or a discard sink
};

struct Wiring {
  Topology topology;
  std::vector<std::pair<std::string, std::shared_ptr<loader::Plugin>>> plugins;
  std::vector<WiredState> states;
  std::vector<WiredPipeline> pipelines;
  /// What works but deserves a look (e.g. an encoder built without a check a sink relies on).
  std::vector<Warning> warnings;

  /// The plugin loaded under `alias`, or null.
  std::shared_ptr<loader::Plugin> plugin(std::string_view alias) const;
  /// A human-readable description of the wiring (`shardline check`).
  std::string describe() const;
  /// The pipelines whose source threads run the shard's steps themselves, instead of a shard
  /// thread: with scheduling = "latency" and one shard, every pipeline with a stateful step.
  /// Empty otherwise. With several, the source threads take turns (engine::Shard).
  std::vector<std::size_t> sources_run_shard() const;
};

struct WireOptions {
  /// If set, plugin files are looked up by file name in this folder before their own path.
  std::filesystem::path plugin_dir;
  /// Plugins already loaded, by alias: used as they are instead of loading their files (a
  /// reload wires the running topology again with one plugin replaced).
  std::vector<std::pair<std::string, std::shared_ptr<loader::Plugin>>> loaded;
  /// Load each plugin in a copy of the process first (loader::Plugin::Trial::in_copy_first): a
  /// plugin whose static constructors crash or never return is then one more error in the
  /// list, instead of the end of the process. A few milliseconds per plugin.
  bool try_in_copy = false;
};

/// Loads the plugins and binds the topology. Throws TopologyError listing every problem.
std::unique_ptr<Wiring> wire_topology(Topology topology, const WireOptions& options = {});

}  // namespace shardline::topology
