// What a hot reload would do, decided before anything is touched. [control thread]
//
// Comparing the running version of a plugin with a new build of it answers, for each state
// type, how its values cross over:
//   keep     same fingerprint (name, size, alignment, trivially copyable or not,
//            schema_version) and no vtable, and trivially copyable or without save()/restore():
//            the state objects stay where they are, untouched — O(1) per state, whatever the
//            key count;
//   migrate  the old type can save() and the new one can restore() from the old schema
//            version, and the layout changed or the type is not trivially copyable (so no value
//            keeps anything the old code made): every value is saved by the old code and
//            restored by the new;
//   reset    neither, but the topology allows it (on_reload = "reset"): the new version
//            starts from empty state (declared keys are created again);
//   blocked  neither, and reset is not allowed: the reload is refused, saying why.
// The same comparison backs `shardline check --against OLD.so NEW.so`, and plan_reload() the
// first two steps of a reload, for the engine and for `check TOPOLOGY --against OLD.so NEW.so`.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <shardline/boundary.hpp>

#include "loader/plugin.hpp"
#include "topology/wiring.hpp"

namespace shardline::reload {

enum class Carry { keep, migrate, reset, blocked };
/// "keep", "migrate", "reset", "blocked".
const char* to_string(Carry carry);

struct StateCarry {
  Carry carry;
  std::string why;    ///< one line: what will happen, or why it cannot
  bool warn = false;  ///< it will happen, but `why` says what may go wrong: logged as a warning
};

/// How values of `from` (the running version) become values of `to` (the new version).
StateCarry plan_state(const TypeDesc& from, const TypeDesc& to, bool reset_allowed);

/// Differences between two versions of a plugin, for `check --against`.
struct PluginDiff {
  /// Components removed, added, or whose types changed, and what happens to each state type:
  /// one line each.
  std::vector<std::string> lines;
  /// A topology using what differs would refuse the reload: a component removed, a partition
  /// function returning the other kind of key, or a state that cannot be carried over.
  bool refused = false;
  /// A component consumes or produces another type: the plugins it exchanges them with must
  /// have the same definition.
  bool types_changed = false;
};
PluginDiff compare_plugins(const loader::Plugin& from, const loader::Plugin& to);

/// A new build of one plugin of a running topology: the file it is loaded from.
struct NewBuild {
  std::string alias;
  std::filesystem::path file;
};

/// What a reload of `builds` into `running` would do, touching nothing that runs: each new
/// build loaded (in a copy of the process first: a build that crashes as it loads ends only
/// the copy), the topology wired again with them beside the plugins that stay, and each state's
/// crossing decided. The canary and the migration, which need the running states, are the
/// engine's.
struct ReloadPlan {
  std::string refused;      ///< why the reload cannot be done; empty when it can
  bool split_type = false;  ///< refused: a type another plugin exchanges changed in one build
  std::string versions;     ///< "test_events 1.0.0 -> 2.0.0", one per plugin
  std::unique_ptr<topology::Wiring> fresh;  ///< the topology wired with the new builds
  std::vector<StateCarry> carries;          ///< one per state, in the topology's order
};
ReloadPlan plan_reload(const topology::Wiring& running, const std::vector<NewBuild>& builds);

}  // namespace shardline::reload
