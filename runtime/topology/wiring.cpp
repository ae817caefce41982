#include "topology/wiring.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <shardline/abi.hpp>

#include "engine/message_buffer.hpp"  // is_std_string, as the dead-letter records decide it

namespace shardline::topology {

namespace {

std::string type_str(const TypeDesc* t) { return t ? std::string(t->name) : "nothing"; }

/// The same type, built from the same definition: name, size, alignment, triviality and
/// schema_version (the fingerprint). The members themselves cannot be compared, which is why
/// a changed layout needs a schema_version bump (docs/sdk.md).
bool same_type(const TypeDesc* a, const TypeDesc* b) {
  return a && b && a->fingerprint == b->fingerprint;
}

class Binder {
 public:
  Binder(Wiring& w, std::vector<PlacedError>& errors) : w_(w), errors_(errors) {}

  void load_plugins(const WireOptions& options) {
    for (const auto& spec : w_.topology.plugins) {
      const auto loaded = std::find_if(options.loaded.begin(), options.loaded.end(),
                                       [&](const auto& l) { return l.first == spec.alias; });
      if (loaded != options.loaded.end()) {
        w_.plugins.push_back(*loaded);
        continue;
      }
      std::filesystem::path file = spec.path;
      if (!options.plugin_dir.empty()) {
        const auto candidate = options.plugin_dir / spec.path.filename();
        if (std::filesystem::exists(candidate)) file = candidate;
      }
      try {
        w_.plugins.emplace_back(spec.alias,
                                loader::Plugin::load(file, options.try_in_copy
                                                               ? loader::Plugin::Trial::in_copy_first
                                                               : loader::Plugin::Trial::none));
      } catch (const loader::PluginError& e) {
        std::error_code ec;
        const bool missing = !std::filesystem::exists(file, ec);
        // "~/x.so" is a relative path here: only a shell makes it the home folder.
        const bool tilde = std::find(spec.path.begin(), spec.path.end(), "~") != spec.path.end();
        error(spec.pos, "plugin '" + spec.alias + "': " + e.what() +
                            (!missing ? ""
                             : tilde  ? " ('~' is not expanded in a topology: a shell does that, "
                                        "and TOML is not read by one; write the home folder's "
                                        "full path)"
                                      : " (a relative path is taken from the topology file's "
                                        "folder; --plugin-dir DIR looks for " +
                                            file.filename().string() + " in DIR first)"));
      }
    }
  }

  /// The component `ref` of `kind`, or null after recording why not.
  const ComponentInfo* resolve(const ComponentRef& ref, ComponentKind kind) {
    const auto plugin = find_plugin(ref.plugin);
    if (!plugin) return nullptr;  // failed to load: already reported
    const ComponentInfo* c = plugin->find(kind, ref.name);
    if (!c) {
      std::string why = "plugin '" + ref.plugin + "' (" + plugin->name() + " " +
                        plugin->version() + ") has no " + std::string(to_string(kind)) + " '" +
                        ref.name + "'; its " + std::string(to_string(kind)) + "s: " +
                        plugin->names_of(kind);
      // The name right, the kind wrong (a computation named where a state_computation is).
      for (const auto& other : plugin->manifest().components)
        if (other.name == ref.name)
          why += " ('" + ref.name + "' is a " + std::string(to_string(other.kind)) + ")";
      error(ref.pos, why);
      return nullptr;
    }
    return c;
  }

  std::shared_ptr<loader::Plugin> find_plugin(const std::string& alias) const {
    for (const auto& [a, p] : w_.plugins)
      if (a == alias) return p;
    return nullptr;
  }

  void error(const Position& p, const std::string& what) { errors_.push_back({p, what}); }

  /// What to say after "`wants` ..., but ... `has`" when the two are different builds of one type
  /// (plugins compiled from different versions of a shared definition); empty otherwise.
  std::string two_builds(const TypeDesc* wants, const TypeDesc* has) {
    if (!wants || !has || wants->name != has->name) return "";
    two_builds_seen_ = true;
    const std::string schemas = wants->schema_version == has->schema_version
                                    ? ""
                                    : " (schema " + std::to_string(wants->schema_version) +
                                          " and " + std::to_string(has->schema_version) + ")";
    return "; two builds of " + std::string(wants->name) + ", of " + std::to_string(wants->size) +
           " and " + std::to_string(has->size) + " bytes" + schemas +
           ": rebuild every plugin that uses it from the same definition";
  }
  bool two_builds_seen() const { return two_builds_seen_; }

  /// What to say after "encoder ... consumes X, but ... produces `t`": the encoders, in every
  /// plugin the topology loads, that could write `t` instead.
  std::string encoders_of(const TypeDesc* t) const {
    std::string names;
    for (const auto& [alias, plugin] : w_.plugins)
      for (const auto& c : plugin->manifest().components)
        if (c.kind == ComponentKind::encoder && same_type(c.input, t))
          names += (names.empty() ? "" : ", ") + alias + "." + c.name;
    return names.empty() ? "; no plugin in [plugins] has an encoder of " + type_str(t)
                         : "; encoders of " + type_str(t) + ": " + names;
  }

 private:
  Wiring& w_;
  std::vector<PlacedError>& errors_;
  bool two_builds_seen_ = false;
};

/// A plugin no component is used of, or a state no step updates, works, but is most often a
/// misspelt name (the step's `state` names another, now unused state) or a leftover.
void warn_unused(Wiring& w) {
  const Topology& topo = w.topology;
  std::set<std::string> plugins, states;
  for (const auto& s : topo.states) plugins.insert(s.factory.plugin);
  for (const auto& p : topo.pipelines) {
    plugins.insert(p.source.decoder.plugin);
    for (const auto& s : p.steps) {
      plugins.insert(s.component.plugin);
      if (s.stateful) {
        plugins.insert(s.partition.plugin);
        states.insert(s.state);
      }
    }
    if (p.sink && p.sink->encoder) plugins.insert(p.sink->encoder->plugin);
  }
  for (const auto& p : topo.plugins)
    if (!plugins.count(p.alias))
      w.warnings.push_back({p.pos, "plugin '" + p.alias + "' is not used: no component of it is "
                                   "named in the topology; remove it from [plugins], or check "
                                   "the names that should use it (\"" + p.alias +
                                   ".component\")"});
  for (const auto& s : topo.states)
    if (!states.count(s.name))
      w.warnings.push_back({s.pos, "state '" + s.name + "' is not used: no state_computation "
                                   "step names it; remove [states." + s.name + "], or check the "
                                   "steps' state = \"...\" (a misspelt name?)"});
}

/// A dead-letter record holds a failed message's bytes when the host can write them: those of a
/// trivially-copyable type, the text of a std::string, or what the type's save() writes. Any
/// other message type (a struct holding a std::string, say) fails into the file as its error
/// alone, which a plugin author finds out only when there is a failure to look into.
void warn_dead_letters_without_bytes(Wiring& w, const WiredPipeline& wp) {
  std::vector<std::string_view> types;
  const auto consider = [&](const ComponentInfo* c) {
    const TypeDesc* t = c ? c->input : nullptr;
    if (!t || t->trivial || t->save || engine::is_std_string(*t) ||
        std::find(types.begin(), types.end(), t->name) != types.end())
      return;
    types.push_back(t->name);
  };
  for (const auto& step : wp.steps) consider(step.component);
  consider(wp.encoder);
  for (const auto type : types)
    w.warnings.push_back(
        {wp.spec->dead_letter_pos,
         "pipeline '" + wp.spec->name + "': a message of type " + std::string(type) +
             " that fails goes into the dead-letter file without its bytes (it is not "
             "trivially copyable, not a std::string, and has no save()); give " +
             std::string(type) + " a `void save(shardline::Writer&) const` to keep what failed"});
}

}  // namespace

std::unique_ptr<Wiring> wire_topology(Topology topology, const WireOptions& options) {
  auto w = std::make_unique<Wiring>();
  w->topology = std::move(topology);
  std::vector<PlacedError> errors;
  Binder b(*w, errors);
  // A plugin that did not load is reported once; the components of the others are still
  // checked (references to it resolve to nothing, silently), so one round shows every error.
  b.load_plugins(options);

  const Topology& topo = w->topology;
  for (const auto& s : topo.states) {
    w->states.push_back({&s, b.resolve(s.factory, ComponentKind::state)});
  }
  // Every partition function keying a state must produce the same kind of key.
  std::map<std::size_t, std::pair<KeyKind, const StepSpec*>> state_keys;

  for (const auto& p : topo.pipelines) {
    const std::size_t errors_before = errors.size();
    WiredPipeline wp{&p, b.resolve(p.source.decoder, ComponentKind::decoder), {}, nullptr};
    const TypeDesc* current = wp.decoder ? wp.decoder->output : nullptr;
    std::string producer = "decoder '" + p.source.decoder.str() + "'";
    bool known = wp.decoder != nullptr;  // false once a type is unknown: stop type checks

    for (std::size_t i = 0; i < p.steps.size(); ++i) {
      const StepSpec& s = p.steps[i];
      const std::string label = "pipeline '" + p.name + "' step " + std::to_string(i + 1) + " '" +
                                s.component.str() + "'";
      WiredStep step{&s, nullptr, nullptr, 0};
      step.component = b.resolve(s.component, s.stateful ? ComponentKind::state_computation
                                                         : ComponentKind::computation);
      if (s.stateful) {
        step.partition = b.resolve(s.partition, ComponentKind::partition);
        for (std::size_t k = 0; k < topo.states.size(); ++k)
          if (topo.states[k].name == s.state) step.state = k;
        const WiredState& ws = w->states[step.state];
        if (step.component && ws.factory && !same_type(step.component->state, ws.factory->state)) {
          const TypeDesc* updates = step.component->state;
          const TypeDesc* holds = ws.factory->state;
          b.error(s.component.pos,
                  label + " updates a " + type_str(updates) + ", but state '" + s.state +
                      "' holds " + type_str(holds) + " (built by '" + ws.spec->factory.str() +
                      "')" + b.two_builds(updates, holds));
        }
        if (step.component && step.partition &&
            !same_type(step.partition->input, step.component->input))
          b.error(s.partition.pos, "partition '" + s.partition.str() + "' keys " +
                                       type_str(step.partition->input) + ", but " + label +
                                       " consumes " + type_str(step.component->input) +
                                       b.two_builds(step.partition->input, step.component->input));
        if (step.partition) {
          auto [it, fresh] = state_keys.try_emplace(step.state, step.partition->key_kind, &s);
          if (!fresh && it->second.first != step.partition->key_kind)
            b.error(s.partition.pos,
                    "partition '" + s.partition.str() + "' returns " +
                        std::string(to_string(step.partition->key_kind)) +
                        " keys, but '" + it->second.second->partition.str() +
                        "' keys the same state '" + s.state + "' with " +
                        std::string(to_string(it->second.first)) +
                        " keys; every pipeline sharing a state must key it the same way");
        }
      }
      if (step.component && known) {
        if (!current) {
          b.error(s.pos, label + " has no input: " + producer + " emits nothing");
        } else if (!same_type(current, step.component->input)) {
          b.error(s.component.pos, label + " consumes " + type_str(step.component->input) +
                                       ", but " + producer + " produces " + type_str(current) +
                                       b.two_builds(step.component->input, current));
        }
      }
      known = known && step.component;
      current = step.component ? step.component->output : nullptr;
      producer = "step " + std::to_string(i + 1) + " '" + s.component.str() + "'";
      wp.steps.push_back(std::move(step));
    }

    if (p.sink && p.sink->encoder) {
      wp.encoder = b.resolve(*p.sink->encoder, ComponentKind::encoder);
      if (wp.encoder && known) {
        if (!current)
          b.error(p.sink->pos, "pipeline '" + p.name + "' has a sink, but " + producer +
                                   " emits nothing; remove the sink or emit a message");
        else if (!same_type(current, wp.encoder->input)) {
          const std::string builds = b.two_builds(wp.encoder->input, current);
          b.error(p.sink->encoder->pos,
                  "encoder '" + p.sink->encoder->str() + "' consumes " +
                      type_str(wp.encoder->input) + ", but " + producer + " produces " +
                      type_str(current) + (builds.empty() ? b.encoders_of(current) : builds));
        }
      }
      if (wp.encoder && p.sink->kind != SinkKind::discard && p.sink->framing == Framing::lines)
        if (const auto plugin = b.find_plugin(p.sink->encoder->plugin);
            plugin && !plugin->built_with_sdk(0, 2, 4))
          w->warnings.push_back(
              {p.sink->encoder->pos,
               "plugin '" + p.sink->encoder->plugin + "' (" + plugin->file().string() +
                   ") was built with SDK " +
                   (plugin->sdk_version().empty() ? "(unknown)" : plugin->sdk_version()) +
                   ", whose encoders do not reject a newline inside a message: with framing = "
                   "\"lines\", encoder '" + p.sink->encoder->str() +
                   "' would write such a message as two lines; rebuild the plugin against SDK "
                   "0.2.4 or later (this host's is " SHARDLINE_SDK_VERSION ")"});
    }
    // (Unless something before is already wrong: the output's type may then be a mistake.)
    if (!p.sink && known && current && errors.size() == errors_before)
      b.error(p.pos, "pipeline '" + p.name + "' has no sink, but " + producer + " produces " +
                         type_str(current) + ", which would be dropped; add a sink (kind = "
                         "\"discard\" drops the output on purpose)");
    if (p.on_error == ErrorPolicy::dead_letter) warn_dead_letters_without_bytes(*w, wp);
    w->pipelines.push_back(std::move(wp));
  }
  // Declared keys of the other kind would make states no message ever reaches.
  for (const auto& [state, keyed] : state_keys) {
    const StateSpec& spec = topo.states[state];
    if (spec.keys_kind && *spec.keys_kind != keyed.first) {
      b.error(spec.keys_pos, "state '" + spec.name + "' declares " + std::string(to_string(*spec.keys_kind)) +
                                 " keys, but partition '" + keyed.second->partition.str() +
                                 "' keys it with " + std::string(to_string(keyed.first)) +
                                 " keys: no message would reach the declared states");
    }
  }
  warn_unused(*w);
  if (!errors.empty()) {
    TopologyError e(std::move(errors));
    e.two_builds_of_a_type = b.two_builds_seen();
    throw e;
  }
  return w;
}

std::shared_ptr<loader::Plugin> Wiring::plugin(std::string_view alias) const {
  for (const auto& [a, p] : plugins)
    if (a == alias) return p;
  return nullptr;
}

namespace {
const char* framing_str(Framing f) {
  return f == Framing::lines ? "lines" : "length-prefixed frames";
}
}  // namespace

std::vector<std::size_t> Wiring::sources_run_shard() const {
  std::vector<std::size_t> found;
  if (topology.scheduling != Scheduling::latency || topology.shards != 1) return found;
  for (std::size_t i = 0; i < pipelines.size(); ++i) {
    const auto& steps = pipelines[i].steps;
    if (std::any_of(steps.begin(), steps.end(), [](const WiredStep& s) { return s.spec->stateful; }))
      found.push_back(i);
  }
  return found;
}

std::string Wiring::describe() const {
  std::ostringstream o;
  const Topology& t = topology;
  o << "topology " << t.file.string() << ": " << t.shards << " shard(s), " << t.key_groups
    << " key groups, batches of " << t.batch_size << ", queues of " << t.queue_batches
    << " batches, scheduling for ";
  if (t.scheduling == Scheduling::throughput) {
    o << "throughput (sink threads write the sinks)";
  } else if (const auto run = sources_run_shard(); run.size() == 1) {
    o << "latency (the source of pipeline " << pipelines[run[0]].spec->name
      << " runs the shard's steps and writes the sinks: one thread from read to write)";
  } else if (!run.empty()) {
    o << "latency (the sources of pipelines ";
    for (std::size_t i = 0; i < run.size(); ++i)
      o << (i ? ", " : "") << pipelines[run[i]].spec->name;
    o << " run the shard's steps, one at a time, and write the sinks: one thread from read to "
         "write)";
  } else {
    o << "latency (shards write the sinks)";
  }
  o << "\n";
  for (const auto& [alias, p] : plugins) {
    const std::size_t n = p->manifest().components.size();
    o << "plugin " << alias << ": " << p->name() << " " << p->version() << " ("
      << p->file().string() << ", " << n << (n == 1 ? " component)\n" : " components)\n");
  }
  for (const auto& s : states) {
    o << "state " << s.spec->name << ": " << type_str(s.factory->state) << " built by "
      << s.spec->factory.str();
    if (!s.spec->keys.empty()) o << ", " << s.spec->keys.size() << " declared keys";
    o << ", unknown keys " << (s.spec->reject_unknown_keys ? "rejected" : "created");
    if (s.spec->reset_on_reload) o << ", reset by a reload that cannot carry it over";
    o << "\n";
  }
  for (const auto& p : pipelines) {
    const PipelineSpec& ps = *p.spec;
    o << "pipeline " << ps.name << ":\n  source ";
    switch (ps.source.kind) {
      case SourceKind::tcp: o << "tcp listen " << ps.source.address; break;
      case SourceKind::file: o << "file " << ps.source.address; break;
      case SourceKind::stdin_lines: o << "stdin"; break;
    }
    o << " (" << framing_str(ps.source.framing);
    if (ps.source.max_frame != SourceSpec{}.max_frame)
      o << ", frames up to " << ps.source.max_frame << " bytes";
    if (ps.source.connections) o << ", ends after " << ps.source.connections << " connection(s)";
    if (ps.source.rate) o << ", replayed at " << ps.source.rate << " frames/s";
    o << ")";
    if (!ps.source.start_after.empty()) o << " after pipeline " << ps.source.start_after;
    o << " -> decoder " << ps.source.decoder.str() << " -> " << type_str(p.decoder->output) << "\n";
    for (std::size_t i = 0; i < p.steps.size(); ++i) {
      const WiredStep& s = p.steps[i];
      o << "  step " << i + 1 << ": ";
      if (s.spec->stateful)
        o << "state_computation " << s.spec->component.str() << " on state " << s.spec->state
          << ", keyed by " << s.spec->partition.str() << " ("
          << to_string(s.partition->key_kind) << " key)";
      else
        o << "computation " << s.spec->component.str();
      o << ": " << type_str(s.component->input) << " -> " << type_str(s.component->output)
        << "\n";
    }
    o << "  sink ";
    if (!ps.sink) {
      o << "none";
    } else {
      switch (ps.sink->kind) {
        case SinkKind::tcp: o << "tcp connect " << ps.sink->address; break;
        case SinkKind::file: o << "file " << ps.sink->address; break;
        case SinkKind::stdout_lines: o << "stdout"; break;
        case SinkKind::discard: o << "discard"; break;
      }
      if (ps.sink->encoder)
        o << " (" << framing_str(ps.sink->framing) << ") <- encoder " << ps.sink->encoder->str();
    }
    o << "\n  on error: "
      << (ps.on_error == ErrorPolicy::skip ? "skip"
          : ps.on_error == ErrorPolicy::stop ? "stop"
                                              : "dead_letter to " + ps.dead_letter.string())
      << "\n";
  }
  return o.str();
}

}  // namespace shardline::topology
