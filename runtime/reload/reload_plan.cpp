#include "reload/reload_plan.hpp"

#include <optional>

namespace shardline::reload {

namespace {
std::string version_str(const TypeDesc& t) { return "schema " + std::to_string(t.schema_version); }
std::string type_str(const TypeDesc* t) {
  if (!t) return "nothing";
  return std::string(t->name) + " (" + std::to_string(t->size) + " bytes, " + version_str(*t) + ")";
}
}  // namespace

const char* to_string(Carry carry) {
  switch (carry) {
    case Carry::keep: return "keep";
    case Carry::migrate: return "migrate";
    case Carry::reset: return "reset";
    case Carry::blocked: return "blocked";
  }
  return "?";
}

StateCarry plan_state(const TypeDesc& from, const TypeDesc& to, bool reset_allowed) {
  const std::string name(to.name);
  const bool same_layout =
      from.fingerprint == to.fingerprint && !from.polymorphic && !to.polymorphic;
  const bool can_migrate = from.save && to.restore;
  // A value that is not trivially copyable may hold something made by the old library's code
  // (a std::function, a shared_ptr's control block, a member with virtual functions) that
  // would outlive it: such a value is rebuilt by the new code whenever it can be.
  if (same_layout && from.trivial)
    return {Carry::keep, name + " has the same layout (" + version_str(to) + "): kept as is"};
  if (same_layout && !can_migrate)
    return {Carry::keep,
            name + " has the same layout (" + version_str(to) + "): kept as is; it is not "
                   "trivially copyable and may hold something the old code made (a "
                   "std::function, a shared_ptr, an object with virtual functions), so the old "
                   "build stays loaded for it and such a thing goes on running the old code; "
                   "give it save() and restore() to have the new code rebuild every value"};
  if (same_layout)
    return {Carry::migrate, name + " (" + version_str(to) + ") is not trivially copyable: every "
                                   "value saved by the old code and restored by the new, so none "
                                   "holds anything of the old code"};
  if (can_migrate && from.fingerprint == to.fingerprint)  // a vtable: never kept as it is
    return {Carry::migrate, name + " (" + version_str(to) + ") has virtual functions: every "
                                   "value saved by the old code and restored by the new, so none "
                                   "points into the old build"};
  if (can_migrate && from.name == to.name && from.schema_version == to.schema_version)
    // restore() is told the version the values were saved with: the same number for two
    // layouts cannot tell it which form it reads.
    return {Carry::migrate,
            name + " (" + version_str(to) + ") changed layout (" + std::to_string(from.size) +
                " -> " + std::to_string(to.size) + " bytes) without a new schema_version: every "
                "value saved and restored, but restore() is told schema " +
                std::to_string(to.schema_version) + " for the old form too; bump schema_version "
                "when the layout (or what save() writes) changes",
            true};
  if (can_migrate && to.schema_version < from.schema_version)
    return {Carry::migrate,
            std::string(from.name) + " (" + version_str(from) + ") -> " + name + " (" +
                version_str(to) + "): every value saved and restored, but the schema goes back: "
                "the new restore() is given values saved in schema " +
                std::to_string(from.schema_version) + ", newer than its own; make sure it reads "
                "them, or give the new version a higher schema_version",
            true};
  if (can_migrate)
    return {Carry::migrate, std::string(from.name) + " (" + version_str(from) + ") -> " + name +
                                " (" + version_str(to) + "): every value saved and restored"};
  std::string why;
  if (from.fingerprint == to.fingerprint)
    why = name + " has a vtable, so its objects cannot outlive the old code";
  else
    why = std::string(from.name) + " (" + version_str(from) + ", " + std::to_string(from.size) +
          " bytes) changed to " + name + " (" + version_str(to) + ", " + std::to_string(to.size) +
          " bytes)";
  why += !from.save  ? ", and the running version has no save()"
         : !to.restore ? ", and the new version has no restore()"
                       : "";
  if (reset_allowed)
    return {Carry::reset,
            why + ": every key starts again from a new state (on_reload = \"reset\")", true};
  // (The topology's on_reload is the one the host started with: an edit applies at restart.)
  const std::string or_reset =
      "allow on_reload = \"reset\" for this state (a topology change, applied at the next start)";
  // A running build without save() cannot hand its values to any new build, whatever that one
  // has: the way on goes through a build that keeps them as they are and can save them. A type
  // with a vtable is never kept as it is, so for it there is no such way.
  if (!from.save && from.polymorphic)
    return {Carry::blocked, why + ": nothing can carry its values over (a type with a vtable is "
                                  "never kept as it is); " + or_reset + ", and give the state "
                                  "type save() and restore() so that later reloads migrate it"};
  if (!from.save)
    return {Carry::blocked,
            why + ": the running build cannot save its states; first publish a build that keeps "
                  "the old layout and adds save() and restore() (its states are kept as they "
                  "are), then one with the new layout (they are migrated); or " + or_reset};
  // (Keeping the layout does not help a type with a vtable: its objects never outlive the code.)
  return {Carry::blocked, why + "; give the new build's state type restore() (and save(), for the "
                              "reloads after it)" +
                              (from.fingerprint == to.fingerprint ? "" : ", keep its layout") +
                              ", or " + or_reset};
}

PluginDiff compare_plugins(const loader::Plugin& from, const loader::Plugin& to) {
  PluginDiff diff;
  std::vector<std::string>& lines = diff.lines;
  for (const auto& c : from.manifest().components) {
    const std::string what = std::string(to_string(c.kind)) + " '" + c.name + "'";
    const ComponentInfo* n = to.find(c.kind, c.name);
    if (!n) {
      lines.push_back(what + ": removed (a topology using it would refuse the reload)");
      diff.refused = true;
      continue;
    }
    auto same = [](const TypeDesc* a, const TypeDesc* b) {
      return (!a && !b) || (a && b && a->fingerprint == b->fingerprint);
    };
    if (!same(c.input, n->input) || !same(c.output, n->output)) {
      diff.types_changed = true;
      lines.push_back(what + ": types changed from " + type_str(c.input) + " -> " +
                      type_str(c.output) + " to " + type_str(n->input) + " -> " +
                      type_str(n->output) +
                      "; every plugin it exchanges them with must be rebuilt with the new "
                      "definition and reloaded with it");
    }
    if (c.kind == ComponentKind::partition && c.key_kind != n->key_kind) {
      diff.refused = true;
      lines.push_back(what + ": blocked: returns " +
                      std::string(to_string(n->key_kind)) + " keys instead of " +
                      std::string(to_string(c.key_kind)) +
                      " (no key a state holds would be found again: a topology using it "
                      "would refuse the reload)");
    }
    if (c.kind == ComponentKind::state) {
      const StateCarry carry = plan_state(*c.state, *n->state, false);
      lines.push_back(what + ": " + to_string(carry.carry) + ": " + carry.why);
      diff.refused = diff.refused || carry.carry == Carry::blocked;
    }
  }
  for (const auto& n : to.manifest().components)
    if (!from.find(n.kind, n.name))
      lines.push_back(std::string(to_string(n.kind)) + " '" + n.name + "': added");
  return diff;
}

namespace {
/// The kind of key state `s` is partitioned by in `w` (every step updating it agrees: wiring
/// checks that), or none if no step updates it.
std::optional<KeyKind> key_kind_of(const topology::Wiring& w, std::size_t s) {
  for (const auto& p : w.pipelines)
    for (const auto& step : p.steps)
      if (step.partition && step.state == s) return step.partition->key_kind;
  return std::nullopt;
}
}  // namespace

ReloadPlan plan_reload(const topology::Wiring& running, const std::vector<NewBuild>& builds) {
  ReloadPlan plan;
  auto refuse = [&](std::string why) {
    plan.refused = std::move(why);
    plan.fresh.reset();
    return std::move(plan);
  };
  topology::WireOptions options;
  options.loaded = running.plugins;
  for (std::size_t i = 0; i < builds.size(); ++i) {
    const std::string whose = builds.size() == 1 ? "" : "plugin '" + builds[i].alias + "': ";
    const auto old = running.plugin(builds[i].alias);
    if (!old) return refuse("the topology has no plugin named '" + builds[i].alias + "'");
    try {
      auto plugin = loader::Plugin::load(builds[i].file, loader::Plugin::Trial::in_copy_first);
      // A build that renamed its plugin says so: "a 1.0.0 -> b 1.0.1".
      plan.versions += (i == 0 ? "" : ", ") + old->name() + " " + old->version() + " -> " +
                       (plugin->name() == old->name() ? "" : plugin->name() + " ") +
                       plugin->version();
      for (auto& [alias, loaded] : options.loaded)
        if (alias == builds[i].alias) loaded = std::move(plugin);
    } catch (const loader::PluginError& e) {
      return refuse(whose + e.what());
    }
  }
  try {
    plan.fresh = topology::wire_topology(running.topology, options);
  } catch (const topology::TopologyError& e) {
    std::string all;
    for (const auto& line : e.errors) all += (all.empty() ? "" : "; ") + line;
    plan.split_type = e.two_builds_of_a_type;
    return refuse((builds.size() == 1 ? "the new version does not fit the topology: "
                                      : "the new builds do not fit the topology: ") + all);
  }
  for (std::size_t s = 0; s < running.states.size(); ++s) {
    const std::string& name = running.states[s].spec->name;
    // A string key and an integer key of the same item hash differently: every key held would
    // be orphaned, and each item would start again from a fresh state.
    const auto was = key_kind_of(running, s), now = key_kind_of(*plan.fresh, s);
    if (was && now && *was != *now)
      return refuse("state '" + name + "' would be keyed with " + std::string(to_string(*now)) +
                    " keys instead of " + std::string(to_string(*was)) +
                    " keys: no key it holds would be found again; return the same kind of key "
                    "from the partition function, or restart to begin from empty state");
    const TypeDesc& from = *running.states[s].factory->state;
    const TypeDesc& to = *plan.fresh->states[s].factory->state;
    const bool reset_allowed = running.states[s].spec->reset_on_reload;
    plan.carries.push_back(&from == &to ? StateCarry{Carry::keep, "unchanged plugin"}
                                        : plan_state(from, to, reset_allowed));
    if (plan.carries.back().carry == Carry::blocked)
      return refuse("state '" + name + "': " + plan.carries.back().why);
  }
  return plan;
}

}  // namespace shardline::reload
