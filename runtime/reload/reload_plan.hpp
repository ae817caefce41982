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
// The same comparison backs `shardline check --against OLD.so NEW.so`.
#pragma once

#include <string>
#include <vector>

#include <shardline/boundary.hpp>

#include "loader/plugin.hpp"

namespace shardline::reload {

enum class Carry { keep, migrate, reset, blocked };

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
};
PluginDiff compare_plugins(const loader::Plugin& from, const loader::Plugin& to);

}  // namespace shardline::reload
