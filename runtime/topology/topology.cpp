#include "topology/topology.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <shardline/key.hpp>
#include <spdlog/fmt/fmt.h>
#include <toml++/toml.h>

#include "topology/address.hpp"

namespace shardline::topology {

std::string Position::str() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

namespace {
/// name(item) of each item, `sep` between them.
template <class Items, class Name>
std::string join(const Items& items, std::string_view sep, Name name) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += name(item);
  }
  return out;
}
constexpr auto as_is = [](std::string_view s) { return s; };

/// "file:line:column: what" of each error, by line and column (those at one place as found).
std::vector<std::string> in_file_order(std::vector<PlacedError> errors) {
  std::stable_sort(errors.begin(), errors.end(), [](const PlacedError& a, const PlacedError& b) {
    return std::tie(a.pos.line, a.pos.column) < std::tie(b.pos.line, b.pos.column);
  });
  std::vector<std::string> lines;
  for (const auto& e : errors) lines.push_back(e.pos.str() + ": " + e.what);
  return lines;
}
}  // namespace

TopologyError::TopologyError(std::vector<std::string> errs)
    : std::runtime_error(join(errs, "\n", as_is)), errors(std::move(errs)) {}

TopologyError::TopologyError(std::vector<PlacedError> errs)
    : TopologyError(in_file_order(std::move(errs))) {}

const StateSpec* Topology::state(std::string_view name) const {
  for (const auto& s : states)
    if (s.name == name) return &s;
  return nullptr;
}

const PluginSpec* Topology::plugin(std::string_view alias) const {
  for (const auto& p : plugins)
    if (p.alias == alias) return &p;
  return nullptr;
}

const PipelineSpec* Topology::pipeline(std::string_view name) const {
  for (const auto& p : pipelines)
    if (p.name == name) return &p;
  return nullptr;
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string one_of(std::initializer_list<std::string_view> names) {
  return join(names, ", ", as_is);
}

/// The settings of the topology itself (before any [table]).
constexpr std::string_view kTopLevelSettings[] = {"shards", "key_groups", "batch_size",
                                                  "queue_batches", "scheduling", "canary"};

/// Reads values out of TOML tables, recording an error (with position) for each problem.
class Checker {
 public:
  Checker(std::string file, std::vector<PlacedError>& errors)
      : file_(std::move(file)), errors_(errors) {}

  Position pos(const toml::node& n) const {
    const auto& s = n.source().begin;
    return {file_, static_cast<std::uint32_t>(s.line), static_cast<std::uint32_t>(s.column)};
  }
  void error(const Position& p, const std::string& what) { errors_.push_back({p, what}); }
  void error(const toml::node& n, const std::string& what) { error(pos(n), what); }
  /// [plugins] entries already reported as wrong: their components are not reported again.
  std::set<std::string> refused_plugins;
  /// Dotted state names written unquoted ([states.my.words]), already reported: the steps that
  /// name them are not reported again.
  std::set<std::string> refused_states;

  /// Reports key `key` of `t`, if present, as meaningless unless `applies` (to `what`).
  void only_for(const toml::table& t, std::string_view key, bool applies, std::string_view what) {
    if (const toml::node* n = t.get(key); n && !applies)
      error(*n, "'" + std::string(key) + "' applies to " + std::string(what) + "; remove it");
  }

  /// Reports every key of `t` that is not in `allowed`, suggesting the closest allowed key.
  void only_keys(const toml::table& t, std::string_view where,
                 std::initializer_list<std::string_view> allowed) {
    for (const auto& [key, value] : t) {
      const std::string_view k = key.str();
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      std::string msg = "unknown key '" + std::string(k) + "' in " + std::string(where) +
                        "; expected one of: " + one_of(allowed);
      for (auto a : allowed)
        if (edit_distance(k, a) <= 2) {
          msg += " (did you mean '" + std::string(a) + "'?)";
          break;
        }
      if (where != "the top level") msg += top_level_hint(k);
      error(Position{file_, static_cast<std::uint32_t>(key.source().begin.line),
                     static_cast<std::uint32_t>(key.source().begin.column)},
            msg);
    }
  }

  /// For a key found inside a table that is a top-level setting: why it landed there, and
  /// what to do; empty for any other key.
  static std::string top_level_hint(std::string_view key) {
    for (std::string_view top : kTopLevelSettings)
      if (key == top)
        return "; '" + std::string(key) + "' is a top-level setting, and TOML puts every key "
               "after a [table] or [[table]] header into that table: write it before the first "
               "header";
    return {};
  }

  /// Names appear in log lines and dead-letter records, one per line, tab-separated: a control
  /// character (a tab, a newline) in one would split them.
  void printable_name(const toml::node& at, std::string_view what, std::string_view name) {
    std::string shown;
    for (const char ch : name) {
      const auto u = static_cast<unsigned char>(ch);
      shown += u < 0x20 || u == 0x7f ? fmt::format("\\x{:02x}", u) : std::string(1, ch);
    }
    if (shown != name)
      error(at, std::string(what) + " name '" + shown + "' contains a control character; names " +
                    "appear in log lines and dead-letter records: use printable characters");
  }

  std::optional<std::string> string(const toml::table& t, std::string_view key,
                                    std::string_view where, bool required) {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required) error(t, "missing key '" + std::string(key) + "' in " + std::string(where));
      return std::nullopt;
    }
    if (auto v = n->value<std::string>()) {
      not_empty(*n, key, *v);
      return v;
    }
    error(*n, "'" + std::string(key) + "' must be a string, not " + type_of(*n));
    return std::nullopt;
  }

  /// Reports an empty string value of `key`; whether it is not empty.
  bool not_empty(const toml::node& n, std::string_view key, const std::string& value) {
    if (value.empty()) error(n, "'" + std::string(key) + "' must not be empty");
    return !value.empty();
  }

  std::optional<std::int64_t> integer(const toml::table& t, std::string_view key,
                                      std::int64_t min, std::int64_t max) {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    const auto v = n->value_exact<std::int64_t>();
    if (!v) {
      error(*n, "'" + std::string(key) + "' must be an integer, not " + type_of(*n));
    } else if (*v < min || *v > max) {
      error(*n, "'" + std::string(key) + "' is " + std::to_string(*v) + "; expected " +
                    std::to_string(min) + " to " + std::to_string(max));
    } else {
      return v;
    }
    return std::nullopt;
  }

  /// A string value that must be one of `choices`; returns its index.
  std::optional<std::size_t> choice(const toml::table& t, std::string_view key,
                                    std::initializer_list<std::string_view> choices) {
    auto s = string(t, key, "", false);
    if (!s) return std::nullopt;
    const auto it = std::find(choices.begin(), choices.end(), *s);
    if (it != choices.end()) return static_cast<std::size_t>(it - choices.begin());
    error(*t.get(key), "'" + std::string(key) + "' is \"" + *s + "\"; expected one of: " +
                           one_of(choices));
    return std::nullopt;
  }

  /// "plugin.component", where plugin is a key of [plugins].
  std::optional<ComponentRef> component(const toml::table& t, std::string_view key,
                                        std::string_view where, bool required,
                                        const Topology& topo) {
    auto s = string(t, key, where, required);
    if (!s) return std::nullopt;
    const toml::node& n = *t.get(key);
    const auto dot = s->find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == s->size()) {
      error(n, "'" + std::string(key) + "' is \"" + *s +
                   "\"; expected \"plugin.component\" (a name under [plugins], a dot, and a "
                   "component the plugin exports)");
      return std::nullopt;
    }
    ComponentRef ref{s->substr(0, dot), s->substr(dot + 1), pos(n)};
    if (refused_plugins.count(ref.plugin)) return std::nullopt;  // reported under [plugins]
    if (!topo.plugin(ref.plugin)) {
      const std::string known = join(topo.plugins, ", ", [](auto& p) { return p.alias; });
      error(n, "unknown plugin '" + ref.plugin + "' in \"" + *s + "\"; [plugins] defines: " +
                   (known.empty() ? "nothing" : known));
      return std::nullopt;
    }
    return ref;
  }

  const toml::table* table(const toml::table& t, std::string_view key, std::string_view where,
                           bool required) {
    const toml::node* n = t.get(key);
    if (!n) {
      if (required) error(t, "missing table '" + std::string(key) + "' in " + std::string(where));
      return nullptr;
    }
    if (const auto* tt = n->as_table()) return tt;
    error(*n, "'" + std::string(key) + "' must be a table, not " + type_of(*n));
    return nullptr;
  }

  static std::string type_of(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::table: return "a table";
      case toml::node_type::array: return "an array";
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      default: return "a date/time";
    }
  }

  const std::string& file() const { return file_; }

  /// Reports an address that is not "host:port" (an empty one is reported already).
  void host_port(const toml::node& n, const std::string& text) {
    if (text.empty()) return;
    try {
      parse_host_port(text);
    } catch (const std::runtime_error& e) {
      error(n, std::string(e.what()) +
                   " (e.g. \"127.0.0.1:7000\" or \"[::1]:7000\"; the port is 0 to 65535)");
    }
  }

 private:
  std::string file_;
  std::vector<PlacedError>& errors_;
};

std::filesystem::path relative_to(const std::filesystem::path& base, const std::string& p) {
  const std::filesystem::path path(p);
  return path.is_absolute() ? path : (base / path).lexically_normal();
}

void parse_plugins(Checker& c, const toml::table& root, Topology& topo) {
  const toml::table* plugins = c.table(root, "plugins", "the topology", true);
  if (!plugins) return;
  const auto dir = topo.file.parent_path();
  for (const auto& [key, value] : *plugins) {
    const std::string alias(key.str());
    c.printable_name(value, "plugin", alias);
    // Components are named "plugin.component": the first dot ends the plugin's name, so that
    // is what a refusal covers.
    const std::string prefix = alias.substr(0, alias.find('.'));
    if (alias.find('.') != std::string::npos) {
      c.error(value, "plugin name '" + alias + "' contains a dot, but components are named "
                     "\"plugin.component\"; name the plugin without one");
      c.refused_plugins.insert(prefix);
    }
    if (auto s = value.value<std::string>()) {
      if (!c.not_empty(value, alias, *s))  // (it would be the topology's folder)
        c.refused_plugins.insert(prefix);
      else
        topo.plugins.push_back({alias, relative_to(dir, *s), c.pos(value)});
    } else {
      std::string hint;
      if (const toml::table* t = value.as_table(); t && !t->empty())  // `my.market = "x.so"`
        hint = "; a plugin name cannot contain a dot either (TOML reads '" + alias + "." +
               std::string(t->begin()->first.str()) + " = ...' as a table '" + alias + "')";
      c.error(value, "plugin '" + alias + "' must be a path to a .so file (a string), not " +
                         Checker::type_of(value) + hint + Checker::top_level_hint(alias));
      c.refused_plugins.insert(prefix);
    }
  }
  if (plugins->empty()) c.error(*plugins, "[plugins] is empty; name at least one plugin");
}

/// Calls f(key) for each line of a keys_file: surrounding blanks trimmed, blank lines and
/// comments (a line whose first non-blank is '#') skipped.
template <class F>
void for_each_file_key(std::istream& in, F&& f) {
  std::string line;
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_last_not_of(" \t\r");
    f(std::string_view(line).substr(b, e - b + 1));
  }
}

void parse_keys(Checker& c, const toml::table& t, StateSpec& state, const Topology& topo) {
  // A state is keyed one way (the partition functions' KeyKind): mixing is a mistake.
  const auto kind = [&](KeyKind k, const toml::node& at) {
    if (!state.keys_kind) {
      state.keys_kind = k;
      state.keys_pos = c.pos(at);
    } else if (*state.keys_kind != k) {
      c.error(at, "a state's keys are all strings or all integers (as its partition function "
                  "returns them); this one mixes both");
    }
  };
  if (const toml::node* n = t.get("keys")) {
    const toml::array* arr = n->as_array();
    if (!arr) {
      c.error(*n, "'keys' must be an array of strings or integers, not " + Checker::type_of(*n));
    } else {
      for (const auto& k : *arr) {
        if (auto s = k.value_exact<std::string>()) {
          state.keys.push_back(key_of(*s));
          state.key_strings.push_back(*s);
          kind(KeyKind::string, k);
        } else if (auto i = k.value_exact<std::int64_t>()) {
          state.keys.push_back(static_cast<std::uint64_t>(*i));
          kind(KeyKind::integer, k);
        } else {
          c.error(k, "a key must be a string or an integer, not " + Checker::type_of(k));
        }
      }
    }
  }
  if (auto file = c.string(t, "keys_file", "", false); file && !file->empty()) {
    const auto path = relative_to(topo.file.parent_path(), *file);
    // The type first: a folder opens and reads as nothing, a FIFO blocks the open until a
    // writer comes, and a device (/dev/zero) may never end, taking memory all the while.
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_type type = fs::status(path, ec).type();
    const char* special = type == fs::file_type::fifo        ? "a FIFO"
                          : type == fs::file_type::character ? "a character device"
                          : type == fs::file_type::block     ? "a block device"
                          : type == fs::file_type::socket    ? "a socket"
                                                             : nullptr;
    std::ifstream in;
    if (type == fs::file_type::directory) {
      c.error(*t.get("keys_file"), "keys_file " + path.string() + " is a folder; name the file "
                                   "of keys in it (one key per line)");
    } else if (special) {
      c.error(*t.get("keys_file"), "keys_file " + path.string() + " is " + special +
                                       ", not a regular file: it is read whole when the "
                                       "topology is read, which might never end; name a file "
                                       "of keys (one key per line)");
    } else if (in.open(path); !in) {
      c.error(*t.get("keys_file"), "cannot open keys_file " + path.string() + ": " +
                                       std::strerror(errno));
    } else {
      state.keys_file = path;
      for_each_file_key(in, [&](std::string_view k) { state.keys.push_back(key_of(k)); });
      kind(KeyKind::string, *t.get("keys_file"));
    }
  }
  // A key declared twice (in both lists, or twice in a long keys_file) is one key.
  std::sort(state.keys.begin(), state.keys.end());
  state.keys.erase(std::unique(state.keys.begin(), state.keys.end()), state.keys.end());
}

void parse_states(Checker& c, const toml::table& root, Topology& topo) {
  const toml::table* states = c.table(root, "states", "the topology", false);
  if (!states) return;
  for (const auto& [key, value] : *states) {
    const std::string name(key.str());
    c.printable_name(value, "state", name);
    const toml::table* t = value.as_table();
    if (!t) {
      c.error(value, "[states." + name + "] must be a table, not " + Checker::type_of(value) +
                         Checker::top_level_hint(name));
      continue;
    }
    const std::string where = "[states." + name + "]";
    // `[states.my.words]`: TOML reads the dot as nested tables, 'words' inside [states.my].
    bool only_tables = true;
    for (const auto& [key, inner] : *t) {
      only_tables = only_tables && inner.is_table();
      if (!inner.is_table()) continue;
      const std::string meant = name + "." + std::string(key.str());
      c.error(inner, where + " holds a table '" + std::string(key.str()) + "', not a state's "
                     "settings: TOML reads [states." + meant + "] as a table inside " + where +
                     "; to name the state " + meant + ", quote the name: [states.\"" + meant +
                     "\"]");
      c.refused_states.insert(meant);
    }
    if (only_tables && !t->empty()) continue;
    c.only_keys(*t, where, {"factory", "keys", "keys_file", "unknown_keys", "on_reload"});
    StateSpec s;
    s.name = name;
    s.pos = c.pos(*t);
    if (auto f = c.component(*t, "factory", where, true, topo)) s.factory = *f;
    parse_keys(c, *t, s, topo);
    if (auto u = c.choice(*t, "unknown_keys", {"create", "reject"})) s.reject_unknown_keys = *u == 1;
    if (auto r = c.choice(*t, "on_reload", {"carry", "reset"})) s.reset_on_reload = *r == 1;
    // (A keys_file that could not be read is reported already: it may well hold keys.)
    const bool keys_file_refused = t->get("keys_file") && s.keys_file.empty();
    if (s.reject_unknown_keys && s.keys.empty() && !keys_file_refused)
      c.error(*t, s.keys_file.empty()
                      ? where + " rejects unknown keys but declares none; add 'keys' or 'keys_file'"
                      : where + " rejects unknown keys, but its keys_file " + s.keys_file.string() +
                            " holds none (only blank or comment lines); add keys to it or to "
                            "'keys'");
    topo.states.push_back(std::move(s));
  }
}

/// A source's or sink's address under `key`: a file's "path" (resolved against the topology's
/// folder) or a tcp endpoint's "host:port" (checked here). Empty if absent or wrong.
std::string address(Checker& c, const toml::table& t, std::string_view key,
                    const std::string& where, bool required, const Topology& topo) {
  const bool path = key == "path";
  const auto text =
      c.string(t, key, where + (path ? " (file needs a path)" : " (tcp needs \"host:port\")"),
               required);
  if (!text) return {};
  if (path) return relative_to(topo.file.parent_path(), *text).string();
  c.host_port(*t.get(key), *text);
  return *text;
}

/// `from_here`: the names of this source's pipeline and of those declared after it, for what
/// start_after says when it names one of them.
SourceSpec parse_source(Checker& c, const toml::table& t, const std::string& where,
                        const Topology& topo, std::span<const std::string> from_here) {
  SourceSpec s;
  s.pos = c.pos(t);
  c.only_keys(t, where, {"kind", "listen", "path", "framing", "max_frame", "connections", "rate", "decoder", "start_after"});
  const auto kind = c.choice(t, "kind", {"tcp", "file", "stdin"});
  if (!t.get("kind")) c.error(t, "missing key 'kind' in " + where + "; expected one of: tcp, file, stdin");
  if (kind) s.kind = static_cast<SourceKind>(*kind);
  if (s.kind == SourceKind::tcp) s.address = address(c, t, "listen", where, kind.has_value(), topo);
  if (s.kind == SourceKind::file) s.address = address(c, t, "path", where, kind.has_value(), topo);
  s.framing = s.kind == SourceKind::stdin_lines ? Framing::lines : Framing::length_prefixed;
  if (auto f = c.choice(t, "framing", {"length", "lines"})) s.framing = static_cast<Framing>(*f);
  if (auto m = c.integer(t, "max_frame", 1, 1 << 30)) s.max_frame = static_cast<std::uint32_t>(*m);
  if (auto n = c.integer(t, "connections", 0, 1 << 20)) s.connections = static_cast<std::uint32_t>(*n);
  if (auto r = c.integer(t, "rate", 1, 10'000'000'000)) s.rate = static_cast<std::uint64_t>(*r);
  if (kind) {
    c.only_for(t, "listen", s.kind == SourceKind::tcp, "tcp sources only");
    c.only_for(t, "connections", s.kind == SourceKind::tcp, "tcp sources only");
    c.only_for(t, "rate", s.kind != SourceKind::tcp, "file and stdin sources only");
    c.only_for(t, "path", s.kind == SourceKind::file, "file sources only");
  }
  if (auto d = c.component(t, "decoder", where, true, topo)) s.decoder = *d;
  if (auto a = c.string(t, "start_after", where, false)) {
    // Only an earlier pipeline: that keeps the waits free of cycles.
    const PipelineSpec* earlier = topo.pipeline(*a);
    if (earlier && earlier->source.kind == SourceKind::tcp && earlier->source.connections == 0) {
      c.error(*t.get("start_after"), "'start_after' names \"" + *a + "\", whose tcp source never "
                                     "ends (without 'connections' it accepts connections until "
                                     "the run is stopped), so this pipeline would never start; "
                                     "start_after needs that source to end: give it connections "
                                     "= N, and it ends once N connections have closed");
    } else if (earlier) {
      s.start_after = *a;
    } else if (!from_here.empty() && *a == from_here.front()) {
      c.error(*t.get("start_after"), "'start_after' names this pipeline itself; it can only "
                                     "wait for a pipeline declared before it");
    } else if (std::find(from_here.begin(), from_here.end(), *a) != from_here.end()) {
      c.error(*t.get("start_after"), "'start_after' names \"" + *a +
                                         "\", which is declared after this pipeline; a pipeline "
                                         "can only wait for one declared before it: move the "
                                         "[[pipelines]] section of \"" + *a + "\" before this one");
    } else {
      const std::string known = join(topo.pipelines, ", ", [](auto& p) { return p.name; });
      c.error(*t.get("start_after"), "'start_after' names \"" + *a +
                                         "\", which is not a pipeline declared before this one (" +
                                         (known.empty() ? "there is none" : "declared before: " + known) + ")");
    }
  }
  return s;
}

SinkSpec parse_sink(Checker& c, const toml::table& t, const std::string& where,
                    const Topology& topo) {
  SinkSpec s;
  s.pos = c.pos(t);
  c.only_keys(t, where, {"kind", "connect", "path", "framing", "encoder"});
  const auto kind = c.choice(t, "kind", {"tcp", "file", "stdout", "discard"});
  if (!t.get("kind"))
    c.error(t, "missing key 'kind' in " + where + "; expected one of: tcp, file, stdout, discard");
  if (kind) s.kind = static_cast<SinkKind>(*kind);
  if (s.kind == SinkKind::tcp) s.address = address(c, t, "connect", where, kind.has_value(), topo);
  if (s.kind == SinkKind::tcp && !s.address.empty()) {
    try {
      // Port 0 means "any free port" to a listener; there is nothing to connect to there.
      if (parse_host_port(s.address).port == 0)
        c.error(*t.get("connect"), "'connect' names port 0; a tcp sink connects to the port its "
                                   "receiver listens on");
    } catch (const std::runtime_error&) {
      // reported by address()
    }
  }
  if (s.kind == SinkKind::file) s.address = address(c, t, "path", where, kind.has_value(), topo);
  s.framing = s.kind == SinkKind::stdout_lines ? Framing::lines : Framing::length_prefixed;
  if (auto f = c.choice(t, "framing", {"length", "lines"})) s.framing = static_cast<Framing>(*f);
  if (kind) {
    c.only_for(t, "connect", s.kind == SinkKind::tcp, "tcp sinks only");
    c.only_for(t, "path", s.kind == SinkKind::file, "file sinks only");
    c.only_for(t, "framing", s.kind != SinkKind::discard, "sinks that write, not to discard");
  }
  s.encoder = c.component(t, "encoder", where, s.kind != SinkKind::discard && kind.has_value(), topo);
  return s;
}

StepSpec parse_step(Checker& c, const toml::table& t, const std::string& where,
                    const Topology& topo) {
  StepSpec s;
  s.pos = c.pos(t);
  c.only_keys(t, where, {"computation", "state_computation", "state", "partition"});
  const bool has_comp = t.get("computation") != nullptr;
  const bool has_state_comp = t.get("state_computation") != nullptr;
  if (has_comp == has_state_comp) {
    c.error(t, where + " must name exactly one of 'computation' or 'state_computation'");
    return s;
  }
  s.stateful = has_state_comp;
  if (auto ref = c.component(t, s.stateful ? "state_computation" : "computation", where, true, topo))
    s.component = *ref;
  if (!s.stateful) {
    for (auto key : {"state", "partition"})
      if (t.get(key))
        c.error(*t.get(key), "'" + std::string(key) +
                                 "' belongs to a state_computation step, not a computation");
    return s;
  }
  if (auto st = c.string(t, "state", where + " (the state this step updates)", true)) {
    s.state = *st;
    if (!topo.state(*st) && !c.refused_states.count(*st)) {
      const std::string known = join(topo.states, ", ", [](auto& x) { return x.name; });
      c.error(*t.get("state"), "unknown state '" + *st + "'; [states] defines: " +
                                   (known.empty() ? "nothing" : known));
    }
  }
  if (auto p = c.component(t, "partition", where + " (the function that keys each message)", true, topo))
    s.partition = *p;
  return s;
}

void parse_pipelines(Checker& c, const toml::table& root, Topology& topo) {
  const toml::node* n = root.get("pipelines");
  if (!n) {
    c.error(root, "no [[pipelines]]; a topology needs at least one pipeline");
    return;
  }
  const toml::array* arr = n->as_array();
  if (arr && arr->empty()) {
    c.error(*n, "'pipelines' is empty; a topology needs at least one [[pipelines]] section");
    return;
  }
  if (!arr || !arr->is_array_of_tables()) {
    c.error(*n, "'pipelines' must be an array of tables ([[pipelines]] sections)");
    return;
  }
  std::vector<std::string> declared;  // every pipeline's name, for start_after's errors
  for (const toml::node& pipeline : *arr) {
    const auto* name = pipeline.as_table()->get_as<std::string>("name");
    declared.push_back(name ? name->get() : std::string());
  }
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::table& t = *arr->get(i)->as_table();
    PipelineSpec p;
    p.pos = c.pos(t);
    p.name = c.string(t, "name", "[[pipelines]] #" + std::to_string(i + 1), true).value_or("#" + std::to_string(i + 1));
    if (const toml::node* name = t.get("name")) c.printable_name(*name, "pipeline", p.name);
    const std::string where = "pipeline '" + p.name + "'";
    if (const PipelineSpec* first = topo.pipeline(p.name))
      c.error(t, "duplicate pipeline name '" + p.name + "': the pipeline at " + first->pos.str() +
                     " has it too; give each pipeline its own name");
    c.only_keys(t, where, {"name", "source", "steps", "sink", "on_error", "dead_letter"});
    if (const auto* src = c.table(t, "source", where, true))
      p.source = parse_source(c, *src, where + " source", topo,
                              std::span<const std::string>(declared).subspan(i));
    if (const toml::node* steps = t.get("steps")) {
      const toml::array* sa = steps->as_array();
      if (!sa || !(sa->empty() || sa->is_array_of_tables())) {
        c.error(*steps, "'steps' must be an array of tables, e.g. [ { computation = \"plugin.name\" } ]");
      } else {
        for (std::size_t j = 0; j < sa->size(); ++j)
          p.steps.push_back(parse_step(c, *sa->get(j)->as_table(),
                                       where + " step " + std::to_string(j + 1), topo));
      }
    }
    if (const auto* sink = c.table(t, "sink", where, false))
      p.sink = parse_sink(c, *sink, where + " sink", topo);
    if (auto e = c.choice(t, "on_error", {"skip", "dead_letter", "stop"})) p.on_error = static_cast<ErrorPolicy>(*e);
    if (p.on_error == ErrorPolicy::dead_letter && !t.get("dead_letter"))
      c.error(*t.get("on_error"), "on_error = \"dead_letter\" needs dead_letter = \"PATH\", the "
                                  "file failed messages are appended to; add it to " + where);
    if (auto dl = c.string(t, "dead_letter", where, false)) {
      p.dead_letter = relative_to(topo.file.parent_path(), *dl);
      p.dead_letter_pos = c.pos(*t.get("dead_letter"));
    }
    if (t.get("dead_letter") && p.on_error != ErrorPolicy::dead_letter)
      c.error(*t.get("dead_letter"), "'dead_letter' is set but on_error is not \"dead_letter\"");
    topo.pipelines.push_back(std::move(p));
  }
}

/// The addresses a listening host name stands for ("localhost": 127.0.0.1 and ::1), as text;
/// the name itself if it does not resolve (reported when the source starts).
std::set<std::string> addresses_of(const std::string& host) {
  std::set<std::string> out;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) == 0) {
    for (const addrinfo* a = found; a; a = a->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      int family = a->ai_family;
      const void* at = &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr;
      if (family == AF_INET6) {
        const in6_addr& v6 = reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr;
        // An IPv4-mapped address (::ffff:127.0.0.1) is the IPv4 address itself to a listener.
        at = IN6_IS_ADDR_V4MAPPED(&v6) ? static_cast<const void*>(v6.s6_addr + 12) : &v6;
        family = IN6_IS_ADDR_V4MAPPED(&v6) ? AF_INET : AF_INET6;
      }
      if (::inet_ntop(family, at, text, sizeof text)) out.insert(text);
    }
    ::freeaddrinfo(found);
  }
  if (out.empty()) out.insert(host);
  return out;
}

/// Two tcp sources cannot listen on one port, two sources read stdin, and a file cannot be
/// written by two sinks or be both a sink (or a dead-letter file) and a source: at run time
/// the second would fail to start, or the data would be garbled, so it is said now, where the
/// second use is written, naming the first.
void check_endpoints(Checker& c, const Topology& topo) {
  struct Use {
    const PipelineSpec* pipeline;
    const Position* pos;
    std::string str() const { return "pipeline '" + pipeline->name + "' (" + pos->str() + ")"; }
  };
  const auto any_host = [](const std::string& h) { return h == "0.0.0.0" || h == "::"; };
  const auto same_file = [](const std::string& a, const std::string& b) {
    // Absolute first: weakly_canonical leaves a relative path whose first part does not exist
    // as it is ("out.bin" and "../here/out.bin" would then differ).
    std::error_code ec1, ec2;
    const auto ca = std::filesystem::weakly_canonical(std::filesystem::absolute(a, ec1), ec1);
    const auto cb = std::filesystem::weakly_canonical(std::filesystem::absolute(b, ec2), ec2);
    if (ec1 || ec2 ? a == b : ca == cb) return true;
    // Two names of one existing file (a hard link, /dev/stdin and /proc/self/fd/0): the same
    // device and inode.
    std::error_code ec;
    return std::filesystem::equivalent(a, b, ec) && !ec;
  };
  const auto same_host = [](const std::string& a, const std::string& b) {
    if (a == b) return true;
    const auto as = addresses_of(a), bs = addresses_of(b);
    return std::any_of(as.begin(), as.end(), [&](const std::string& x) { return bs.count(x); });
  };
  // The names by which a file source or sink reaches the process's own stdin or stdout
  // (compared as written: resolving them would lead to whatever stdin happens to be now).
  const auto names_fd = [](const std::string& path, int fd) {
    std::error_code ec;
    const auto p = std::filesystem::absolute(path, ec).lexically_normal();
    const std::string n = std::to_string(fd);
    return !ec && (p == (fd == 0 ? "/dev/stdin" : "/dev/stdout") || p == "/dev/fd/" + n ||
                   p == "/proc/self/fd/" + n);
  };
  // The files the run itself is made of: writing into one would destroy it for the next run.
  const auto run_file = [&](const std::string& path) -> std::string {
    if (same_file(path, topo.file.string())) return "the topology file itself";
    for (const auto& plugin : topo.plugins)
      if (same_file(path, plugin.path.string()))
        return "the library of plugin '" + plugin.alias + "'";
    for (const auto& st : topo.states)
      if (!st.keys_file.empty() && same_file(path, st.keys_file.string()))
        return "the keys_file of state '" + st.name + "'";
    return {};
  };
  std::vector<std::pair<HostPort, Use>> listening;
  std::vector<std::pair<std::string, Use>> read, written;
  std::optional<Use> stdin_use;
  for (const auto& p : topo.pipelines) {
    const SourceSpec& src = p.source;
    if (src.kind == SourceKind::file && !src.address.empty() && !names_fd(src.address, 0))
      read.push_back({src.address, {&p, &src.pos}});
    if (src.kind == SourceKind::stdin_lines ||
        (src.kind == SourceKind::file && names_fd(src.address, 0))) {
      if (stdin_use)
        c.error(src.pos, "pipeline '" + p.name + "' source reads stdin, as " + stdin_use->str() +
                             " does: two sources would split its input between them; give one "
                             "of them another source");
      else
        stdin_use = Use{&p, &src.pos};
    }
    if (src.kind != SourceKind::tcp) continue;
    HostPort at;
    try {
      at = parse_host_port(src.address);
    } catch (const std::runtime_error&) {
      continue;  // reported where it was read
    }
    for (const auto& [other, use] : listening)
      if (at.port != 0 && other.port == at.port &&
          (any_host(other.host) || any_host(at.host) || same_host(other.host, at.host)))
        c.error(src.pos, "pipeline '" + p.name + "' source listens on " + src.address + ", and " +
                             use.str() + " on " + use.pipeline->source.address +
                             ": one port, one tcp source; give each its own port");
    listening.push_back({at, {&p, &src.pos}});
  }
  // Outputs. The process's stdin and stdout are recognised by name, never resolved: what
  // they lead to differs from run to run (and `check` has its own). Writing stdin would
  // overwrite or feed back into the input; two writers of stdout would cut each other's
  // frames (each writes whole chunks, but not in step with the other).
  std::optional<Use> stdout_writer;  // the first sink that writes stdout
  for (const auto& p : topo.pipelines) {
    if (!p.sink) continue;
    const SinkSpec& sink = *p.sink;
    const bool file = sink.kind == SinkKind::file && !sink.address.empty();
    const std::string& path = sink.address;
    if (file && names_fd(path, 0)) {
      c.error(sink.pos, "pipeline '" + p.name + "' sink writes " + path + ", which is stdin: " +
                            "it would overwrite or feed back into the input; give the sink a file");
      continue;
    }
    if (sink.kind == SinkKind::stdout_lines || (file && names_fd(path, 1))) {
      if (stdout_writer)
        c.error(sink.pos, "pipeline '" + p.name + "' sink writes stdout" +
                              (file ? " (" + path + ")" : "") + ", as the sink of " +
                              stdout_writer->str() + " does: their output would be cut into " +
                              "each other; give one of them a file sink");
      else
        stdout_writer = Use{&p, &sink.pos};
      continue;
    }
    if (!file) continue;
    for (const auto& [other, use] : written)
      if (same_file(other, path))
        c.error(sink.pos, "pipeline '" + p.name + "' sink writes " + path + ", as " + use.str() +
                              " does: give each file sink its own path" +
                              (same_file(path, "/dev/null") ? " (kind = \"discard\" drops the "
                                                              "output without a file)" : ""));
    for (const auto& [other, use] : read)
      if (same_file(other, path))
        c.error(sink.pos, "pipeline '" + p.name + "' sink would overwrite " + path +
                              ", the input of " + use.str());
    if (const std::string own = run_file(path); !own.empty())
      c.error(sink.pos, "pipeline '" + p.name + "' sink would overwrite " + path + ", " + own +
                            "; give the sink a file of its own");
    written.push_back({path, {&p, &sink.pos}});
  }
  // Dead-letter files are appended to line by line, so pipelines may share one; but not with
  // a sink's output or a source's input.
  for (const auto& p : topo.pipelines) {
    if (p.on_error != ErrorPolicy::dead_letter || p.dead_letter.empty()) continue;
    const std::string path = p.dead_letter.string();
    const std::string dl = "pipeline '" + p.name + "' dead_letter " + path;
    const bool is_stdin = names_fd(path, 0), is_stdout = names_fd(path, 1);
    if (is_stdin)
      c.error(p.dead_letter_pos, dl + " is stdin: the records would be written into the input; "
                                      "give it a file of its own");
    if (is_stdout && stdout_writer)
      c.error(p.dead_letter_pos, dl + " is stdout, the output of " + stdout_writer->str() +
                                     ": give it a file of its own");
    if (is_stdin || is_stdout) continue;
    if (const std::string own = run_file(path); !own.empty())
      c.error(p.dead_letter_pos, dl + " is " + own + ": give it a file of its own");
    for (const auto* uses : {&written, &read})
      for (const auto& [other, use] : *uses)
        if (same_file(other, path))
          c.error(p.dead_letter_pos, dl + " is also " +
                                         (uses == &read ? "the input of " : "the output of ") +
                                         use.str() + ": give it a file of its own");
  }
}

}  // namespace

Topology parse_topology(const std::filesystem::path& file, std::optional<std::uint32_t> shards) {
  Topology topo;
  topo.file = file;
  const std::string name = file.string();
  {
    std::ifstream probe(file);
    if (!probe) throw TopologyError({name + ": cannot open the topology file: " + std::strerror(errno)});
  }
  toml::table root;
  try {
    root = toml::parse_file(name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    const std::string_view what = e.description();
    const auto says = [&](std::string_view a, std::string_view b) {
      return what.find(a) != std::string_view::npos && what.find(b) != std::string_view::npos;
    };
    std::string hint;
    // TOML++ meets the end of the line inside the string, and names the newline it finds.
    if (says("parsing string", "control characters"))
      hint = " (is a string missing its closing quote on this line?)";
    // An inline table continued on the next line (`source = { kind = "file",` then more).
    if (says("parsing inline table", "saw '\\n'"))
      hint = " (an inline table { ... } must end on the line it starts on: join its lines, or "
             "write it as a table of its own, e.g. [pipelines.source] after the pipeline's "
             "other keys)";
    throw TopologyError({name + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                         ": TOML syntax error: " + std::string(what) + hint});
  }
  std::vector<PlacedError> errors;
  Checker c(name, errors);
  c.only_keys(root, "the top level",
              {"shards", "key_groups", "batch_size", "queue_batches", "scheduling", "canary",
               "plugins", "states", "pipelines"});
  if (auto v = c.integer(root, "shards", 1, 1024)) topo.shards = static_cast<std::uint32_t>(*v);
  if (auto v = c.integer(root, "key_groups", 1, 1 << 20)) topo.key_groups = static_cast<std::uint32_t>(*v);
  if (auto v = c.integer(root, "batch_size", 1, 1 << 16)) topo.batch_size = static_cast<std::uint32_t>(*v);
  if (auto v = c.integer(root, "queue_batches", 1, 1 << 16)) topo.queue_batches = static_cast<std::uint32_t>(*v);
  if (auto s = c.choice(root, "scheduling", {"throughput", "latency"})) topo.scheduling = static_cast<Scheduling>(*s);
  if (auto s = c.choice(root, "canary", {"refuse", "warn"}))
    topo.canary = static_cast<CanaryPolicy>(*s);
  if (shards) {
    topo.shards = *shards;
    topo.key_groups = std::max(topo.key_groups, *shards);
  }
  if (topo.key_groups < topo.shards)
    c.error(*root.get("key_groups"), "key_groups (" + std::to_string(topo.key_groups) +
                                          ") must be at least shards (" + std::to_string(topo.shards) + ")");
  parse_plugins(c, root, topo);
  parse_states(c, root, topo);
  parse_pipelines(c, root, topo);
  check_endpoints(c, topo);
  if (!errors.empty()) throw TopologyError(std::move(errors));
  return topo;
}

bool same_settings(std::string_view a, std::string_view b) {
  try {
    return toml::parse(a) == toml::parse(b);
  } catch (const toml::parse_error&) {
    return false;
  }
}

std::string StateSpec::key_text(std::uint64_t key) const {
  if (keys_kind != KeyKind::string) return std::to_string(static_cast<std::int64_t>(key));
  for (const std::string& k : key_strings)
    if (key_of(k) == key) return "'" + k + "'";
  std::string found;
  if (std::ifstream in(keys_file); !keys_file.empty() && in)
    for_each_file_key(in, [&](std::string_view k) {
      if (found.empty() && key_of(k) == key) found = "'" + std::string(k) + "'";
    });
  return found.empty() ? "with hash " + std::to_string(key) : found;
}

}  // namespace shardline::topology
