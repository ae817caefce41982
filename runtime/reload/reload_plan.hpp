// What a hot reload would do, decided before anything is touched. [control thread]
//
// Comparing the running version of a plugin with a new build of it answers, for each state
// type, how its values cross over:
//   keep     same fingerprint (name, size, alignment, schema_version) and no vtable: the state
//            objects stay where they are, untouched — O(1) per state, whatever the key count;
//   migrate  the old type can save() and the new one can restore() from the old schema
//            version: every value is saved by the old code and restored by the new;
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

/// Differences between two versions of a plugin: components removed, added, or whose types
/// changed, and what happens to each state type. One line each, for `check --against`.
std::vector<std::string> compare_plugins(const loader::Plugin& from, const loader::Plugin& to);

}  // namespace shardline::reload
