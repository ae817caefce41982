// topology.toml, parsed and checked for shape. [control thread]
//
// parse_topology() reads the file with TOML++ and checks everything that can be checked
// without loading a plugin: unknown keys, wrong types, missing fields, values out of range,
// names that refer to nothing. It collects every error (not only the first), each as
// "file:line:column: what is wrong; what was expected / what exists". Resolving component names
// against the plugins' manifests and checking the types between steps is wire_topology()'s job
// (wiring.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <shardline/boundary.hpp>

namespace shardline::topology {

/// Where something was written: "topology.toml:12:5".
struct Position {
  std::string file;
  std::uint32_t line = 0;
  std::uint32_t column = 0;
  std::string str() const;
};

/// Something in a topology that works but deserves a look: printed, never refused (e.g. "source
/// file x.msg does not exist here; ... would not start ...").
struct Warning {
  Position pos;
  std::string text;
};

/// An error found in a topology, and where.
struct PlacedError {
  Position pos;
  std::string what;
};

/// Every error found in a topology, one complete line each.
struct TopologyError : std::runtime_error {
  explicit TopologyError(std::vector<std::string> errors);
  /// One round's errors, as "file:line:column: what" lines in the file's order (by line, then
  /// column; those at one place in the order found), however the checks that found them ran.
  explicit TopologyError(std::vector<PlacedError> errors);
  std::vector<std::string> errors;
  /// Some error is a type that two plugins were built from different definitions of: building
  /// them again together (or reloading them together) may fix it.
  bool two_builds_of_a_type = false;
};

/// "plugin.component" as written in the file.
struct ComponentRef {
  std::string plugin;
  std::string name;
  Position pos;
  std::string str() const { return plugin + "." + name; }
};

struct PluginSpec {
  std::string alias;             ///< the key under [plugins]
  std::filesystem::path path;    ///< resolved against the topology file's directory
  Position pos;
};

struct StateSpec {
  std::string name;
  ComponentRef factory;
  std::vector<std::uint64_t> keys;   ///< pre-declared keys, as engine keys, sorted, each once
  /// Whether they were written as strings or integers (keys_file: strings); where they were.
  std::optional<KeyKind> keys_kind;
  Position keys_pos;
  std::vector<std::string> key_strings;  ///< the string keys of `keys`, as written
  std::filesystem::path keys_file;       ///< resolved; empty if none
  /// A declared key as the topology wrote it ("AAPL", 42), for messages: string keys are
  /// looked up again in `keys` and keys_file (a rare path; the texts are not kept).
  std::string key_text(std::uint64_t key) const;
  bool reject_unknown_keys = false;  ///< unknown_keys = "reject"
  bool reset_on_reload = false;      ///< on_reload = "reset": a reload may start it afresh
  Position pos;
};

enum class SourceKind { tcp, file, stdin_lines };
enum class SinkKind { tcp, file, stdout_lines, discard };
enum class ErrorPolicy { skip, dead_letter, stop };
/// How the engine's threads ask Linux to schedule them (top-level key `scheduling`).
enum class Scheduling {
  throughput,  ///< SCHED_BATCH: a thread that wakes up does not preempt a running one
  latency,     ///< the default policy (SCHED_OTHER): a thread that wakes up may preempt at once
};

/// What a reload does when its canary finds the new build failing on more of the recent
/// messages than the old one (top-level key `canary`).
enum class CanaryPolicy {
  refuse,  ///< the reload is refused, and the old build runs on
  warn,    ///< the reload goes ahead, with a warning (a build that rejects them on purpose)
};

struct SourceSpec {
  SourceKind kind = SourceKind::file;
  std::string address;            ///< tcp: listen "host:port"; file: path
  Framing framing = Framing::length_prefixed;
  std::uint32_t max_frame = 1 << 20;
  std::uint32_t connections = 0;  ///< tcp: finish after this many connections closed (0: never)
  std::uint64_t rate = 0;         ///< file, stdin: frames per second to replay at (0: as read)
  std::string start_after;        ///< a pipeline whose input must be fully processed first
  ComponentRef decoder;
  Position pos;
};

struct SinkSpec {
  SinkKind kind = SinkKind::discard;
  std::string address;            ///< tcp: connect "host:port"; file: path
  Framing framing = Framing::length_prefixed;
  std::optional<ComponentRef> encoder;  ///< absent only for discard
  Position pos;
};

struct StepSpec {
  bool stateful = false;
  ComponentRef component;       ///< computation or state_computation
  std::string state;            ///< stateful only
  ComponentRef partition;       ///< stateful only
  Position pos;
};

struct PipelineSpec {
  std::string name;
  SourceSpec source;
  std::vector<StepSpec> steps;
  std::optional<SinkSpec> sink;
  ErrorPolicy on_error = ErrorPolicy::skip;
  std::filesystem::path dead_letter;  ///< on_error = "dead_letter"
  Position dead_letter_pos;           ///< where dead_letter is written
  Position pos;
};

struct Topology {
  std::filesystem::path file;
  std::uint32_t shards = 1;
  std::uint32_t key_groups = 4096;
  std::uint32_t batch_size = 256;
  std::uint32_t queue_batches = 64;
  Scheduling scheduling = Scheduling::throughput;
  CanaryPolicy canary = CanaryPolicy::refuse;
  std::vector<PluginSpec> plugins;
  std::vector<StateSpec> states;
  std::vector<PipelineSpec> pipelines;

  const StateSpec* state(std::string_view name) const;
  const PluginSpec* plugin(std::string_view alias) const;
  const PipelineSpec* pipeline(std::string_view name) const;
};

/// Reads and checks `file`. Throws TopologyError listing every problem found. With `shards`
/// (`run --shards`), that is the shard count instead of the file's, and key_groups is raised
/// to it if lower.
Topology parse_topology(const std::filesystem::path& file,
                        std::optional<std::uint32_t> shards = std::nullopt);

/// Whether two topology texts hold the same settings: they differ at most in comments, blank
/// space and the order of keys. False if either is not valid TOML.
bool same_settings(std::string_view a, std::string_view b);

}  // namespace shardline::topology
