// parse_topology and wire_topology: each error by its exact "FILE:LINE:COL: message", several
// errors at once, and the description of a valid wiring.
#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>


#include <shardline/key.hpp>

#include "test_support.hpp"
#include "topology/address.hpp"
#include "topology/topology.hpp"
#include "topology/wiring.hpp"

namespace fs = std::filesystem;
using shardline::topology::parse_topology;
using shardline::topology::TopologyError;
using shardline::topology::wire_topology;
using shardline_test::test_plugin;

namespace {

/// A fresh folder for this file's tests.
struct TempDir : shardline_test::TempDir {
  TempDir() : shardline_test::TempDir("shardline-topology-test-") {}
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

/// A topology file in its own folder. In the text, @EV@, @EXTRA@, @EV3@, @EV11@ and @NO_ABI@
/// stand for the absolute paths of the test plugins.
struct TopologyFile {
  explicit TopologyFile(std::string text) {
    text = replace_all(text, "@EV@", test_plugin("test_events").string());
    text = replace_all(text, "@EXTRA@", test_plugin("test_extra").string());
    text = replace_all(text, "@EV3@", test_plugin("test_events_v3").string());
    text = replace_all(text, "@EV11@", test_plugin("test_events_v11").string());
    text = replace_all(text, "@NO_ABI@", test_plugin("no_abi").string());
    file = dir.file("topology.toml", text);
  }
  /// "FILE:LINE:COL"
  std::string pos(int line, int column) const {
    return file.string() + ":" + std::to_string(line) + ":" + std::to_string(column);
  }
  /// "FILE:LINE:COL: what"
  std::string at(int line, int column, const std::string& what) const {
    return pos(line, column) + ": " + what;
  }
  TempDir dir;
  fs::path file;
};

/// The errors parse_topology reports (empty if it accepts the file).
std::vector<std::string> parse_errors(const fs::path& file) {
  try {
    parse_topology(file);
  } catch (const TopologyError& e) {
    return e.errors;
  }
  return {};
}

/// The errors wire_topology reports for a file parse_topology accepts.
std::vector<std::string> wire_errors(const fs::path& file) {
  auto topology = parse_topology(file);
  try {
    wire_topology(std::move(topology));
  } catch (const TopologyError& e) {
    return e.errors;
  }
  return {};
}

using Errors = std::vector<std::string>;

/// The warnings of the wiring of a file parse_topology and wire_topology accept, as
/// "FILE:LINE:COL: what".
Errors wire_warnings(const fs::path& file) {
  const auto wiring = wire_topology(parse_topology(file));
  Errors out;
  for (const auto& w : wiring->warnings) out.push_back(w.pos.str() + ": " + w.text);
  return out;
}

/// Lines 1-7 of most topologies below: test_events, its state "seqs", and a pipeline "events"
/// reading stdin; each test adds its steps and sink from line 8 on.
const std::string kEventsHead =
    "[plugins]\n"
    "ev = \"@EV@\"\n"
    "[states.seqs]\n"
    "factory = \"ev.last_seq\"\n"
    "[[pipelines]]\n"
    "name = \"events\"\n"
    "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n";

}  // namespace

TEST_CASE("a missing topology file", "[topology]") {
  TempDir dir;
  const auto file = dir.path / "nope.toml";
  CHECK(parse_errors(file) == Errors{file.string() + ": cannot open the topology file: No such file or directory"});
}

TEST_CASE("a TOML syntax error is reported at its position", "[topology]") {
  TopologyFile t(
      "shards = 2\n"
      "key_groups = = 64\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(2, 14, "TOML syntax error: Error while parsing value: could not determine value type")});
  // A string left open runs into the end of its line, which TOML++ names as a control character.
  TopologyFile unclosed(
      "[plugins]\n"
      "ev = \"/x.so\n");
  CHECK(parse_errors(unclosed.file) ==
        Errors{unclosed.at(2, 12, "TOML syntax error: Error while parsing string: unescaped "
                                  "control characters other than TAB (U+0009) are explicitly "
                                  "prohibited (is a string missing its closing quote on this "
                                  "line?)")});
  // TOML keeps an inline table on one line; a table of its own may span several.
  const std::string split =
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\",\n"
      "  decoder = \"ev.event_line\" }\n";
  TopologyFile inline_table(split);
  CHECK(parse_errors(inline_table.file) ==
        Errors{inline_table.at(5, 27, "TOML syntax error: Error while parsing inline table: "
                                      "expected key or closing '}', saw '\\n' (an inline table "
                                      "{ ... } must end on the line it starts on: join its lines, "
                                      "or write it as a table of its own, e.g. [pipelines.source] "
                                      "after the pipeline's other keys)")});
  TopologyFile table(replace_all(replace_all(split, "source = { kind = \"stdin\",\n",
                                             "[pipelines.source]\nkind = \"stdin\"\n"),
                                 " }\n", "\n"));
  CHECK(parse_errors(table.file).empty());
}

TEST_CASE("an unknown key is reported with what was expected", "[topology]") {
  SECTION("with a suggestion when a known key is close") {
    TopologyFile t(
        "shard = 2\n"
        "[plugins]\n"
        "ev = \"@EV@\"\n"
        "[[pipelines]]\n"
        "name = \"events\"\n"
        "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n");
    CHECK(parse_errors(t.file) ==
          Errors{t.at(1, 1, "unknown key 'shard' in the top level; expected one of: shards, "
                            "key_groups, batch_size, queue_batches, scheduling, canary, plugins, "
                            "states, pipelines (did you mean 'shards'?)")});
  }
  SECTION("in a nested table") {
    TopologyFile t(
        "[plugins]\n"
        "ev = \"@EV@\"\n"
        "[[pipelines]]\n"
        "name = \"events\"\n"
        "source = { kind = \"stdin\", decoder = \"ev.event_line\", framin = \"lines\" }\n"
        "colour = \"blue\"\n");
    CHECK(parse_errors(t.file) ==
          Errors{t.at(5, 55, "unknown key 'framin' in pipeline 'events' source; expected one "
                             "of: kind, listen, path, framing, max_frame, connections, rate, "
                             "decoder, start_after (did you mean 'framing'?)"),
                 t.at(6, 1, "unknown key 'colour' in pipeline 'events'; expected one of: name, "
                            "source, steps, sink, on_error, dead_letter")});
  }
}

TEST_CASE("a value of the wrong type or out of range", "[topology]") {
  TopologyFile t(
      "shards = \"two\"\n"
      "batch_size = 0\n"
      "[plugins]\n"
      "ev = 3\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"udp\", decoder = \"ev.event_line\" }\n"
      "on_error = true\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(1, 10, "'shards' must be an integer, not a string"),
               t.at(2, 14, "'batch_size' is 0; expected 1 to 65536"),
               // (Said once: its components are not reported again as unknown.)
               t.at(4, 6, "plugin 'ev' must be a path to a .so file (a string), not an integer"),
               t.at(7, 19, "'kind' is \"udp\"; expected one of: tcp, file, stdin"),
               t.at(8, 12, "'on_error' must be a string, not a boolean")});
}

TEST_CASE("an empty plugin path is reported once", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n");
  CHECK(parse_errors(t.file) == Errors{t.at(2, 6, "'ev' must not be empty")});
}

TEST_CASE("a quoted plugin name with a dot is reported once", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "\"ev.x\" = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(2, 10, "plugin name 'ev.x' contains a dot, but components are named "
                           "\"plugin.component\"; name the plugin without one")});
}

TEST_CASE("a dotted plugin name, and a top-level setting after the tables", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "my.ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"my.event_line\" }\n"
      "shards = 2\n");
  // TOML reads `my.ev = ...` as a table "my" holding "ev".
  CHECK(parse_errors(t.file) ==
        Errors{t.at(2, 1, "plugin 'my' must be a path to a .so file (a string), not a table; a "
                          "plugin name cannot contain a dot either (TOML reads 'my.ev = ...' as "
                          "a table 'my')"),
               t.at(6, 1, "unknown key 'shards' in pipeline 'events'; expected one of: name, "
                          "source, steps, sink, on_error, dead_letter; 'shards' is a top-level "
                          "setting, and TOML puts every key after a [table] or [[table]] header "
                          "into that table: write it before the first header")});
}

TEST_CASE("a dotted state name written without quotes", "[topology]") {
  // TOML reads [states.my.seqs] as a table "seqs" inside a state "my"; the step that names
  // "my.seqs" is not reported again.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.my.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"my.seqs\", "
      "partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(3, 1, "[states.my] holds a table 'seqs', not a state's settings: TOML reads "
                          "[states.my.seqs] as a table inside [states.my]; to name the state "
                          "my.seqs, quote the name: [states.\"my.seqs\"]")});
  TopologyFile quoted(replace_all(shardline_test::read_file(t.file), "[states.my.seqs]",
                                  "[states.\"my.seqs\"]"));
  CHECK(parse_errors(quoted.file).empty());
}

TEST_CASE("a top-level setting after [plugins] or [states]", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "shards = 2\n"
      "[states]\n"
      "batch_size = 64\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n");
  const auto hint = [](const std::string& key) {
    return "; '" + key + "' is a top-level setting, and TOML puts every key after a [table] or "
           "[[table]] header into that table: write it before the first header";
  };
  CHECK(parse_errors(t.file) ==
        Errors{t.at(3, 10, "plugin 'shards' must be a path to a .so file (a string), not an "
                           "integer" + hint("shards")),
               t.at(5, 14, "[states.batch_size] must be a table, not an integer" +
                               hint("batch_size"))});
}

TEST_CASE("scheduling is throughput unless the topology asks for latency", "[topology]") {
  const std::string rest =
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n";
  CHECK(parse_topology(TopologyFile(rest).file).scheduling == shardline::topology::Scheduling::throughput);
  CHECK(parse_topology(TopologyFile("scheduling = \"latency\"\n" + rest).file).scheduling ==
        shardline::topology::Scheduling::latency);
  TopologyFile wrong("scheduling = \"fast\"\n" + rest);
  CHECK(parse_errors(wrong.file) ==
        Errors{wrong.at(1, 14, "'scheduling' is \"fast\"; expected one of: throughput, latency")});
}

TEST_CASE("a pipeline without a source", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "sink = { kind = \"discard\" }\n");
  CHECK(parse_errors(t.file) == Errors{t.at(4, 1, "missing table 'source' in pipeline 'events'")});
}

TEST_CASE("an empty pipelines array", "[topology]") {
  TopologyFile t(
      "pipelines = []\n"
      "[plugins]\n"
      "ev = \"@EV@\"\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(1, 13, "'pipelines' is empty; a topology needs at least one [[pipelines]] "
                           "section")});
}

TEST_CASE("a key that does not apply to the source's or the sink's kind", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\", path = \"in.txt\" }\n"
      "sink = { kind = \"discard\", framing = \"lines\" }\n"
      "[[pipelines]]\n"
      "name = \"more\"\n"
      "source = { kind = \"file\", path = \"in.txt\", listen = \"127.0.0.1:9000\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"out.txt\", connect = \"127.0.0.1:9001\", encoder = \"ev.text\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(5, 62, "'path' applies to file sources only; remove it"),
               t.at(6, 38, "'framing' applies to sinks that write, not to discard; remove it"),
               t.at(9, 53, "'listen' applies to tcp sources only; remove it"),
               t.at(10, 53, "'connect' applies to tcp sinks only; remove it")});
}

TEST_CASE("a source's rate", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"paced\"\n"
      "source = { kind = \"file\", path = \"in.bin\", rate = 250000, decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"zero\"\n"
      "source = { kind = \"stdin\", rate = 0, decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"tcp\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:9000\", rate = 5, decoder = \"ev.event_line\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(8, 35, "'rate' is 0; expected 1 to 10000000000"),
               t.at(11, 60, "'rate' applies to file and stdin sources only; remove it")});
  TopologyFile ok(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"paced\"\n"
      "source = { kind = \"file\", path = \"in.bin\", rate = 250000, decoder = \"ev.event_line\" }\n");
  CHECK(parse_topology(ok.file).pipelines[0].source.rate == 250'000);
}

TEST_CASE("a keys_file that cannot be opened", "[topology]") {
  const auto topology = [](const std::string& keys_file) {
    return "[plugins]\n"
           "ev = \"@EV@\"\n"
           "[states.seqs]\n"
           "factory = \"ev.last_seq\"\n"
           "keys_file = \"" + keys_file + "\"\n"
           "unknown_keys = \"reject\"\n"
           "[[pipelines]]\n"
           "name = \"events\"\n"
           "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
           "steps = [ { state_computation = \"ev.track\", state = \"seqs\", "
           "partition = \"ev.by_key\" } ]\n"
           "sink = { kind = \"discard\" }\n";
  };
  // Said once: that the state rejects unknown keys without declaring any follows from it.
  TopologyFile t(topology("no-such-keys.txt"));
  CHECK(parse_errors(t.file) ==
        Errors{t.at(5, 13, "cannot open keys_file " + (t.file.parent_path() / "no-such-keys.txt").string() +
                               ": No such file or directory")});
  // A folder opens, and reads as no keys at all.
  TopologyFile folder(topology("keys"));
  fs::create_directory(folder.file.parent_path() / "keys");
  CHECK(parse_errors(folder.file) ==
        Errors{folder.at(5, 13, "keys_file " + (folder.file.parent_path() / "keys").string() +
                                    " is a folder; name the file of keys in it (one key per "
                                    "line)")});
  // A device or a FIFO is refused before it is opened: /dev/zero would be read for ever, and
  // a FIFO's open waits for a writer.
  TopologyFile device(topology("/dev/zero"));
  CHECK(parse_errors(device.file) ==
        Errors{device.at(5, 13, "keys_file /dev/zero is a character device, not a regular file: "
                                "it is read whole when the topology is read, which might never "
                                "end; name a file of keys (one key per line)")});
}

TEST_CASE("no output may overwrite the topology, a plugin or a keys_file", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys_file = \"keys.txt\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"topology.toml\", encoder = \"ev.text\" }\n"
      "on_error = \"dead_letter\"\n"
      "dead_letter = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:0\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"./keys.txt\", encoder = \"ev.text\" }\n");
  std::ofstream(t.file.parent_path() / "keys.txt") << "a\n";
  const std::string dir = t.file.parent_path().string();
  const std::string ev = test_plugin("test_events").string();
  CHECK(parse_errors(t.file) ==
        Errors{t.at(9, 8, "pipeline 'a' sink would overwrite " + dir + "/topology.toml, the "
                              "topology file itself; give the sink a file of its own"),
               t.at(11, 15, "pipeline 'a' dead_letter " + ev + " is the library of plugin 'ev': "
                              "give it a file of its own"),
               t.at(15, 8, "pipeline 'b' sink would overwrite " + dir + "/keys.txt, the "
                               "keys_file of state 'seqs'; give the sink a file of its own")});
}

TEST_CASE("a declared key is named as the topology wrote it", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.words]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [\"the\"]\n"
      "keys_file = \"words.txt\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [-1, 42]\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n");
  // keys_file: one key per line, surrounding blanks trimmed, blank lines and comments skipped.
  std::ofstream(t.file.parent_path() / "words.txt") << "# common words\n  of \n\nand\n";
  const auto topo = parse_topology(t.file);
  const auto named = [&](const std::string& name) {
    return *std::find_if(topo.states.begin(), topo.states.end(),
                         [&](const auto& st) { return st.name == name; });
  };
  const auto& words = named("words");
  REQUIRE(words.keys.size() == 3);
  CHECK(words.key_text(shardline::key_of("the")) == "'the'");
  CHECK(words.key_text(shardline::key_of("of")) == "'of'");
  CHECK(words.key_text(shardline::key_of("and")) == "'and'");
  CHECK(words.key_text(shardline::key_of("but")) ==
        "with hash " + std::to_string(shardline::key_of("but")));
  CHECK(named("seqs").key_text(static_cast<std::uint64_t>(-1)) == "-1");
  CHECK(named("seqs").key_text(42) == "42");
}

TEST_CASE("a plugin or a state that nothing uses is a warning", "[topology]") {
  // "seqs" is misspelt in [states]: the step names another state, and "sqes" is left unused.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "extra = \"@EXTRA@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "[states.sqes]\n"
      "factory = \"ev.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", "
      "partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  CHECK(wire_warnings(t.file) ==
        Errors{t.at(3, 9, "plugin 'extra' is not used: no component of it is named in the "
                          "topology; remove it from [plugins], or check the names that should "
                          "use it (\"extra.component\")"),
               t.at(6, 1, "state 'sqes' is not used: no state_computation step names it; remove "
                          "[states.sqes], or check the steps' state = \"...\" (a misspelt "
                          "name?)")});
}

TEST_CASE("a dead-letter file that would get a message type without its bytes is a warning",
          "[topology]") {
  const auto topology = [](const std::string& steps) {
    return TopologyFile("[plugins]\n"
                        "ev = \"@EV@\"\n"
                        "extra = \"@EXTRA@\"\n"
                        "[[pipelines]]\n"
                        "name = \"events\"\n"
                        "on_error = \"dead_letter\"\n"
                        "dead_letter = \"dead.txt\"\n"
                        "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
                        "steps = [ " + steps + " ]\n"
                        "sink = { kind = \"discard\" }\n");
  };
  // Event (trivially copyable) is written as it is; Words holds strings and has no save().
  const TopologyFile words = topology("{ computation = \"extra.to_words\" }, "
                                      "{ computation = \"extra.count_words\" }");
  CHECK(wire_warnings(words.file) ==
        Errors{words.at(7, 15, "pipeline 'events': a message of type Words that fails goes into "
                               "the dead-letter file without its bytes (it is not trivially "
                               "copyable, not a std::string, and has no save()); give Words a "
                               "`void save(shardline::Writer&) const` to keep what failed")});
  // Note has a save(), and a std::string is written as its text.
  CHECK(wire_warnings(topology("{ computation = \"extra.to_note\" }, "
                               "{ computation = \"extra.no_note_13\" }").file)
            .empty());
  CHECK(wire_warnings(topology("{ computation = \"extra.relay\" }, "
                               "{ computation = \"ev.to_text\" }, "
                               "{ computation = \"ev.no_13\" }").file)
            .empty());
}

TEST_CASE("a plugin name with a dot", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "\"e.v\" = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"e.v.event_line\" }\n");
  CHECK(parse_errors(t.file).front() ==
        t.at(2, 9, "plugin name 'e.v' contains a dot, but components are named "
                   "\"plugin.component\"; name the plugin without one"));
}

TEST_CASE("a lines sink whose encoder was built without the newline check is a warning",
          "[topology]") {
  TempDir dir;
  const auto older = shardline_test::with_sdk_version(dir, "older.so",
                                                      test_plugin("test_events"), "0.2.3");
  REQUIRE_FALSE(older.empty());
  const auto topology = [&](const fs::path& plugin, const std::string& framing) {
    return TopologyFile("[plugins]\n"
                        "ev = \"" + plugin.string() + "\"\n"
                        "[[pipelines]]\n"
                        "name = \"events\"\n"
                        "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
                        "steps = [ { computation = \"ev.to_text\" } ]\n"
                        "sink = { kind = \"stdout\", encoder = \"ev.text\"" + framing + " }\n");
  };
  const TopologyFile lines = topology(older, "");  // stdout's default framing: lines
  CHECK(wire_warnings(lines.file) ==
        Errors{lines.at(7, 37,
                        "plugin 'ev' (" + older.string() +
                            ") was built with SDK 0.2.3, whose encoders do not reject a newline "
                            "inside a message: with framing = \"lines\", encoder 'ev.text' "
                            "would write such a message as two lines; rebuild the plugin "
                            "against SDK 0.2.4 or later (this host's is " SHARDLINE_SDK_VERSION
                            ")")});
  CHECK(wire_warnings(topology(older, ", framing = \"length\"").file).empty());
  CHECK(wire_warnings(topology(test_plugin("test_events"), "").file).empty());
}

TEST_CASE("a component of an unknown plugin alias", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "extra = \"@EXTRA@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"evt.event_line\" }\n"
      "steps = [ { computation = \"ev.to_text\" }, { computation = \"to_text\" } ]\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(6, 38, "unknown plugin 'evt' in \"evt.event_line\"; [plugins] defines: ev, extra"),
               t.at(7, 59, "'computation' is \"to_text\"; expected \"plugin.component\" (a name under "
                           "[plugins], a dot, and a component the plugin exports)")});
}

TEST_CASE("an unknown component lists what the plugin exports", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_sequence\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_lines\" }\n"
      "steps = [ { state_computation = \"ev.trak\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"stdout\", encoder = \"ev.track\" }\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(4, 11, "plugin 'ev' (test_events 1.0.0) has no state 'last_sequence'; its states: "
                           "last_seq, labeller, picky"),
               t.at(7, 38, "plugin 'ev' (test_events 1.0.0) has no decoder 'event_lines'; its decoders: "
                           "event_line"),
               t.at(8, 33, "plugin 'ev' (test_events 1.0.0) has no state_computation 'trak'; its "
                           "state_computations: track, retrack, label"),
               t.at(9, 37, "plugin 'ev' (test_events 1.0.0) has no encoder 'track'; its encoders: "
                           "tracked_line, text ('track' is a state_computation)")});
}

TEST_CASE("a plugin that fails to load is reported at its [plugins] entry", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "bad = \"@NO_ABI@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"bad.event_line\" }\n"
      "steps = [ { computation = \"ev.nope\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  // The other plugins' components are still checked: one round shows every error.
  CHECK(wire_errors(t.file) ==
        Errors{t.at(3, 7, "plugin 'bad': " + test_plugin("no_abi").string() +
                              ": not a Shardline plugin: it has no shardline_abi record (define it with "
                              "SHARDLINE_PLUGIN and build it with shardline_add_plugin())"),
               t.at(7, 27, "plugin 'ev' (test_events 1.0.0) has no computation 'nope'; its "
                           "computations: explode, segfault, exit_at_5, overflow, "
                           "overflow_tracked, slow_tracked, to_text, no_13")});
}

TEST_CASE("a plugin file that is not there says where it was looked for", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"build/ev.so\"\n"
      "home = \"~/plugins/ev.so\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"discard\" }\n");
  const fs::path dir = t.file.parent_path();
  CHECK(wire_errors(t.file) ==
        Errors{t.at(2, 6, "plugin 'ev': " + (dir / "build/ev.so").string() + ": no such plugin "
                          "file (a relative path is taken from the topology file's folder; "
                          "--plugin-dir DIR looks for ev.so in DIR first)"),
               t.at(3, 8, "plugin 'home': " + (dir / "~/plugins/ev.so").string() + ": no such "
                          "plugin file ('~' is not expanded in a topology: a shell does that, and "
                          "TOML is not read by one; write the home folder's full path)")});
}

TEST_CASE("a step that consumes another type than the step before produces", "[topology]") {
  TopologyFile t(
      kEventsHead +
      "steps = [\n"
      "  { computation = \"ev.to_text\" },\n"
      "  { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" },\n"
      "]\n"
      "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(10, 25, "pipeline 'events' step 2 'ev.track' consumes Event, but step 1 'ev.to_text' "
                            "produces std::string"),
               t.at(12, 37, "encoder 'ev.text' consumes std::string, but step 2 'ev.track' produces Tracked; "
                            "encoders of Tracked: ev.tracked_line")});
}

TEST_CASE("an encoder of another type names the encoders of the type there is", "[topology]") {
  // No plugin writes Event: the mistake is the missing step (or encoder), not the name.
  TopologyFile t(kEventsHead + "sink = { kind = \"stdout\", encoder = \"ev.tracked_line\" }\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(8, 37, "encoder 'ev.tracked_line' consumes Tracked, but decoder "
                           "'ev.event_line' produces Event; no plugin in [plugins] has an "
                           "encoder of Event")});
}

TEST_CASE("a partition that keys another type than its step consumes", "[topology]") {
  TopologyFile t(
      kEventsHead +
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_text\" } ]\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(8, 73, "partition 'ev.by_text' keys std::string, but pipeline 'events' step 1 "
                           "'ev.track' consumes Event")});
}

TEST_CASE("a state computation on a state of another type", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "extra = \"@EXTRA@\"\n"
      "[states.counts]\n"
      "factory = \"extra.counter\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"counts\", partition = \"ev.by_key\" } ]\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(9, 33, "pipeline 'events' step 1 'ev.track' updates a LastSeq, but state 'counts' "
                           "holds Counter (built by 'extra.counter')")});
}

TEST_CASE("pipelines sharing a state must key it the same way", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "extra = \"@EXTRA@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"by_number\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n"
      "[[pipelines]]\n"
      "name = \"by_text\"\n"
      "source = { kind = \"file\", path = \"in.txt\", decoder = \"ev.event_line\" }\n"
      "steps = [\n"
      "  { computation = \"ev.to_text\" },\n"
      "  { state_computation = \"extra.observe_text\", state = \"seqs\", partition = \"ev.by_text\" },\n"
      "]\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(16, 75, "partition 'ev.by_text' returns string keys, but 'ev.by_key' keys the same "
                            "state 'seqs' with integer keys; every pipeline sharing a state must key it "
                            "the same way")});
}

TEST_CASE("declared keys are of the kind the state's partition returns", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [\"a\", \"b\"]\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(5, 9, "state 'seqs' declares string keys, but partition 'ev.by_key' keys it "
                          "with integer keys: no message would reach the declared states")});
  TopologyFile mixed(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [1, \"a\"]\n");
  CHECK(parse_errors(mixed.file) ==
        Errors{mixed.at(1, 1, "no [[pipelines]]; a topology needs at least one pipeline"),
               mixed.at(5, 12, "a state's keys are all strings or all integers (as its "
                               "partition function returns them); this one mixes both")});
  // A key written twice is one key; a negative one is what a partition function returning
  // that signed integer gives (the same 64 bits).
  TopologyFile twice(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [3, 1, 3, -1]\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  const auto topo = shardline::topology::parse_topology(twice.file);
  CHECK(topo.states.at(0).keys ==
        std::vector<std::uint64_t>{1, 3, static_cast<std::uint64_t>(std::int64_t{-1})});
  CHECK(topo.states.at(0).key_text(static_cast<std::uint64_t>(std::int64_t{-1})) == "-1");
}

TEST_CASE("a state updated by another build of its type", "[topology]") {
  // What a reload of one of two plugins sharing a state type meets: test_events_v3's LastSeq
  // has a field more.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "ev3 = \"@EV3@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev3.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  const auto errors = wire_errors(t.file);
  REQUIRE(!errors.empty());
  CHECK(errors.front() ==
        t.at(9, 33, "pipeline 'events' step 1 'ev3.track' updates a LastSeq, but state 'seqs' "
                    "holds LastSeq (built by 'ev.last_seq'); two builds of LastSeq, of 24 and 16 "
                    "bytes (schema 3 and 0): rebuild every plugin that uses it from the same definition"));
}

TEST_CASE("a message type of the same size but another schema_version does not wire",
          "[topology]") {
  // test_events_v11's Event declares schema_version 2 (its layout changed, its size did not);
  // test_extra's relay was built with the Event of schema 0.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV11@\"\n"
      "x = \"@EXTRA@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { computation = \"x.relay\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  const auto errors = wire_errors(t.file);
  REQUIRE(!errors.empty());
  CHECK_THAT(errors.front(),
             Catch::Matchers::Contains("two builds of Event, of 16 and 16 bytes (schema 0 and 2): "
                                       "rebuild every plugin that uses it from the same "
                                       "definition"));
}

TEST_CASE("a file sink that is a hard link to a source's input is refused", "[topology]") {
  // Another name of the same file (same device and inode) would have the input truncated.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"c\"\n"
      "source = { kind = \"file\", path = \"in.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"link.txt\", encoder = \"ev.text\" }\n");
  const auto dir = t.file.parent_path();
  std::ofstream(dir / "in.txt") << "1 1\n";
  std::filesystem::create_hard_link(dir / "in.txt", dir / "link.txt");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(6, 8, "pipeline 'c' sink would overwrite " + (dir / "link.txt").string() +
                              ", the input of pipeline 'c' (" + t.pos(5, 10) + ")")});
}

TEST_CASE("a pipeline whose last step emits needs a sink", "[topology]") {
  TopologyFile t(
      kEventsHead +
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n");
  CHECK(wire_errors(t.file) ==
        Errors{t.at(5, 1, "pipeline 'events' has no sink, but step 1 'ev.track' produces Tracked, "
                          "which would be dropped; add a sink (kind = \"discard\" drops the "
                          "output on purpose)")});
}

TEST_CASE("a step or a sink after a step that emits nothing", "[topology]") {
  const std::string head =
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "extra = \"@EXTRA@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n";
  SECTION("a sink") {
    TopologyFile t(head +
                   "steps = [ { state_computation = \"extra.observe\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
                   "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n");
    CHECK(wire_errors(t.file) ==
          Errors{t.at(10, 8, "pipeline 'events' has a sink, but step 1 'extra.observe' emits nothing; "
                             "remove the sink or emit a message")});
  }
  SECTION("a step") {
    TopologyFile t(head +
                   "steps = [\n"
                   "  { state_computation = \"extra.observe\", state = \"seqs\", partition = \"ev.by_key\" },\n"
                   "  { computation = \"ev.to_text\" },\n"
                   "]\n");
    CHECK(wire_errors(t.file) ==
          Errors{t.at(11, 3, "pipeline 'events' step 2 'ev.to_text' has no input: step 1 'extra.observe' "
                             "emits nothing")});
  }
  SECTION("a discard sink, or no sink, is fine") {
    TopologyFile t(head +
                   "steps = [ { state_computation = \"extra.observe\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
                   "sink = { kind = \"discard\" }\n");
    CHECK(wire_errors(t.file).empty());
  }
}

TEST_CASE("start_after must name a pipeline declared before", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"first\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\", start_after = \"second\" }\n"
      "[[pipelines]]\n"
      "name = \"second\"\n"
      "source = { kind = \"file\", path = \"x\", decoder = \"ev.event_line\", start_after = \"nope\" }\n"
      "[[pipelines]]\n"
      "name = \"third\"\n"
      "source = { kind = \"file\", path = \"y\", decoder = \"ev.event_line\", start_after = \"second\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(5, 69, "'start_after' names \"second\", which is declared after this pipeline; a "
                           "pipeline can only wait for one declared before it: move the [[pipelines]] "
                           "section of \"second\" before this one"),
               t.at(8, 80, "'start_after' names \"nope\", which is not a pipeline declared before this one "
                           "(declared before: first)")});
  // A pipeline that waits for itself, and a name that no pipeline has, with none before.
  TopologyFile self(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"first\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\", start_after = \"nope\" }\n"
      "[[pipelines]]\n"
      "name = \"second\"\n"
      "source = { kind = \"file\", path = \"x\", decoder = \"ev.event_line\", start_after = \"second\" }\n");
  CHECK(parse_errors(self.file) ==
        Errors{self.at(5, 69, "'start_after' names \"nope\", which is not a pipeline declared before "
                              "this one (there is none)"),
               self.at(8, 80, "'start_after' names this pipeline itself; it can only wait for a "
                              "pipeline declared before it")});
}

TEST_CASE("start_after cannot wait for a tcp source that never ends", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"ref\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7000\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"counted\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7001\", connections = 2, "
      "decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"main\"\n"
      "source = { kind = \"file\", path = \"x\", decoder = \"ev.event_line\", "
      "start_after = \"ref\" }\n"
      "[[pipelines]]\n"
      "name = \"later\"\n"
      "source = { kind = \"file\", path = \"y\", decoder = \"ev.event_line\", "
      "start_after = \"counted\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(11, 80, "'start_after' names \"ref\", whose tcp source never ends (without "
                            "'connections' it accepts connections until the run is stopped), so "
                            "this pipeline would never start; start_after needs that source to "
                            "end: give it connections = N, and it ends once N connections have "
                            "closed")});
}

TEST_CASE("on_error = \"dead_letter\" without a dead-letter file", "[topology]") {
  TopologyFile t(kEventsHead +
                 "sink = { kind = \"discard\" }\n"
                 "on_error = \"dead_letter\"\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(9, 12, "on_error = \"dead_letter\" needs dead_letter = \"PATH\", the file "
                           "failed messages are appended to; add it to pipeline 'events'")});
}

TEST_CASE("two pipelines with the same name", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"file\", path = \"x\", decoder = \"ev.event_line\" }\n");
  CHECK(parse_errors(t.file) == Errors{t.at(6, 1, "duplicate pipeline name 'events': the pipeline "
                                                  "at " + t.pos(3, 1) + " has it too; give each "
                                                  "pipeline its own name")});
}

TEST_CASE("a tcp address that is not host:port", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"tcp\", listen = \"localhost:99999\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"tcp\", connect = \"collector\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7001 \", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"tcp\", connect = \" 127.0.0.1:7002\", encoder = \"ev.text\" }\n");
  const std::string hint = " (e.g. \"127.0.0.1:7000\" or \"[::1]:7000\"; the port is 0 to 65535)";
  // A blank before the host would pass as part of its name, and never resolve.
  CHECK(parse_errors(t.file) ==
        Errors{t.at(5, 35, "expected host:port, got 'localhost:99999'" + hint),
               t.at(6, 34, "expected host:port, got 'collector'" + hint),
               t.at(9, 35, "expected host:port without blanks, got '127.0.0.1:7001 '" + hint),
               t.at(10, 34, "expected host:port without blanks, got ' 127.0.0.1:7002'" + hint)});
  // Port 0 lets a source listen on any free port; a sink has nothing to connect to there.
  TopologyFile zero(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:0\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"tcp\", connect = \"127.0.0.1:0\", encoder = \"ev.text\" }\n");
  CHECK(parse_errors(zero.file) ==
        Errors{zero.at(6, 34, "'connect' names port 0; a tcp sink connects to the port its "
                              "receiver listens on")});
}

TEST_CASE("pipelines that would collide on a port or a file", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7000\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"out.txt\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"tcp\", listen = \"0.0.0.0:7000\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"./out.txt\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"c\"\n"
      "source = { kind = \"file\", path = \"in.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"in.txt\", encoder = \"ev.text\" }\n"
      "on_error = \"dead_letter\"\n"
      "dead_letter = \"out.txt\"\n"
      "[[pipelines]]\n"
      "name = \"d\"\n"  // two hosts on one port, port 0 twice: all fine
      "source = { kind = \"tcp\", listen = \"127.0.0.2:7001\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"g\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.3:7001\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"e\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:0\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"f\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:0\", decoder = \"ev.event_line\" }\n");
  const std::string out = (t.file.parent_path() / "out.txt").string();
  const std::string in = (t.file.parent_path() / "in.txt").string();
  CHECK(parse_errors(t.file) ==
        Errors{t.at(9, 10, "pipeline 'b' source listens on 0.0.0.0:7000, and pipeline 'a' (" +
                               t.pos(5, 10) +
                               ") on 127.0.0.1:7000: one port, one tcp source; give each its own "
                               "port"),
               t.at(10, 8, "pipeline 'b' sink writes " + out + ", as pipeline 'a' (" +
                               t.pos(6, 8) +
                               ") does: give each file sink its own path"),
               t.at(14, 8, "pipeline 'c' sink would overwrite " + in + ", the input of pipeline 'c' (" +
                               t.pos(13, 10) + ")"),
               t.at(16, 15, "pipeline 'c' dead_letter " + out + " is also the output of pipeline 'a' (" +
                               t.pos(6, 8) + "): give it a file of its own"),
               t.at(16, 15, "pipeline 'c' dead_letter " + out + " is also the output of pipeline 'b' (" +
                               t.pos(10, 8) + "): give it a file of its own")});
}

TEST_CASE("two file sinks on /dev/null are told of the discard sink", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"file\", path = \"a.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"/dev/null\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"file\", path = \"b.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"/dev/null\", encoder = \"ev.text\" }\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(10, 8, "pipeline 'b' sink writes /dev/null, as pipeline 'a' (" + t.pos(6, 8) +
                               ") does: give each file sink its own path (kind = \"discard\" "
                               "drops the output without a file)")});
}

TEST_CASE("one endpoint spelled two ways is still one endpoint", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7100\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"new.bin\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"tcp\", listen = \"localhost:7100\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"../@DIR@/new.bin\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"c\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"d\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "[[pipelines]]\n"
      "name = \"e\"\n"
      "source = { kind = \"tcp\", listen = \"[::ffff:127.0.0.1]:7100\", decoder = \"ev.event_line\" }\n");
  const std::string text = shardline_test::read_file(t.file);  // read before it is rewritten
  std::ofstream(t.file) << replace_all(text, "@DIR@", t.file.parent_path().filename().string());
  // Given as a relative path, as `shardline check topology.toml` in its folder does: the sink
  // paths stay relative, and new.bin does not exist yet.
  const auto was = fs::current_path();
  fs::current_path(t.file.parent_path());
  const auto errors = parse_errors("topology.toml");
  fs::current_path(was);
  REQUIRE(errors.size() == 5);
  CHECK(errors[0] == "topology.toml:9:10: pipeline 'b' source listens on localhost:7100, and "
                     "pipeline 'a' (topology.toml:5:10) on 127.0.0.1:7100: one port, one tcp "
                     "source; give each its own port");
  CHECK(errors[1].rfind("topology.toml:10:8: pipeline 'b' sink writes ../", 0) == 0);
  CHECK(errors[1].find("/new.bin, as pipeline 'a' (topology.toml:6:8) does: give each file sink "
                       "its own path") != std::string::npos);
  CHECK(errors[2] == "topology.toml:16:10: pipeline 'd' source reads stdin, as pipeline 'c' "
                     "(topology.toml:13:10) does: two sources would split its input between "
                     "them; give one of them another source");
  // The IPv4-mapped spelling of 127.0.0.1 is the same address to a listener.
  CHECK(errors[3] == "topology.toml:19:10: pipeline 'e' source listens on "
                     "[::ffff:127.0.0.1]:7100, and pipeline 'a' (topology.toml:5:10) on "
                     "127.0.0.1:7100: one port, one tcp source; give each its own port");
  CHECK(errors[4] == "topology.toml:19:10: pipeline 'e' source listens on "
                     "[::ffff:127.0.0.1]:7100, and pipeline 'b' (topology.toml:9:10) on "
                     "localhost:7100: one port, one tcp source; give each its own port");
}

TEST_CASE("stdin and stdout are recognised under their file names", "[topology]") {
  // A file source at /dev/stdin reads the same input as a stdin source, and a file sink at
  // /dev/fd/1 writes between a stdout sink's lines.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"file\", path = \"/dev/stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"/dev/fd/1\", encoder = \"ev.text\" }\n");
  const auto errors = parse_errors(t.file);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0] == t.at(9, 10, "pipeline 'b' source reads stdin, as pipeline 'a' (" +
                                     t.pos(5, 10) + ") does: two sources would split its input between them; "
                                     "give one of them another source"));
  CHECK(errors[1] == t.at(10, 8, "pipeline 'b' sink writes stdout (/dev/fd/1), as the sink of "
                                 "pipeline 'a' (" + t.pos(6, 8) + ") does: their output would be "
                                 "cut into each other; give one of them a file sink"));
}

TEST_CASE("outputs never write stdin, and stdout has one writer", "[topology]") {
  // Whatever check's own stdin and stdout are: the names are compared, never resolved.
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"a\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n"
      "on_error = \"dead_letter\"\n"
      "dead_letter = \"/dev/stdin\"\n"
      "[[pipelines]]\n"
      "name = \"b\"\n"
      "source = { kind = \"file\", path = \"in.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n"
      "on_error = \"dead_letter\"\n"
      "dead_letter = \"/proc/self/fd/1\"\n"
      "[[pipelines]]\n"
      "name = \"c\"\n"
      "source = { kind = \"file\", path = \"in.txt\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"file\", path = \"/dev/fd/0\", encoder = \"ev.text\" }\n");
  const auto errors = parse_errors(t.file);
  REQUIRE(errors.size() == 4);
  CHECK(errors[0] == t.at(8, 15, "pipeline 'a' dead_letter /dev/stdin is stdin: the records would "
                                "be written into the input; give it a file of its own"));
  CHECK(errors[1] == t.at(12, 8, "pipeline 'b' sink writes stdout, as the sink of pipeline 'a' (" +
                                     t.pos(6, 8) + ") does: their output would be cut into each "
                                     "other; give one of them a file sink"));
  CHECK(errors[2] == t.at(14, 15, "pipeline 'b' dead_letter /proc/self/fd/1 is stdout, the output "
                                "of pipeline 'a' (" + t.pos(6, 8) + "): give it a file of its own"));
  CHECK(errors[3] == t.at(18, 8, "pipeline 'c' sink writes /dev/fd/0, which is stdin: it would "
                                 "overwrite or feed back into the input; give the sink a file"));
}

TEST_CASE("a keys_file with no keys is named when the state rejects unknown keys", "[topology]") {
  TopologyFile t(
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys_file = \"keys.txt\"\n"
      "unknown_keys = \"reject\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"discard\" }\n");
  const auto keys = t.dir.file("keys.txt", "# no keys yet\n\n");
  CHECK(parse_errors(t.file) ==
        Errors{t.at(3, 1, "[states.seqs] rejects unknown keys, but its keys_file " + keys.string() +
                              " holds none (only blank or comment lines); add keys to it or to "
                              "'keys'")});
}

TEST_CASE("run --shards replaces the file's shard count before key_groups is checked",
          "[topology]") {
  TopologyFile t(
      "shards = 7\n"
      "key_groups = 4\n"
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"stdin\", decoder = \"ev.event_line\" }\n"
      "sink = { kind = \"discard\" }\n");
  CHECK(parse_errors(t.file) == Errors{t.at(2, 14, "key_groups (4) must be at least shards (7)")});
  const auto fewer = parse_topology(t.file, 2);
  CHECK((fewer.shards == 2 && fewer.key_groups == 4));
  const auto more = parse_topology(t.file, 9);  // key_groups raised to the shards
  CHECK((more.shards == 9 && more.key_groups == 9));
}

TEST_CASE("every error of a topology is reported at once", "[topology]") {
  TopologyFile t(
      "shard = 2\n"
      "key_groups = \"many\"\n"
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "unknown_keys = \"reject\"\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"tcp\", decoder = \"ev.event_line\" }\n"
      "steps = [ { state_computation = \"ev.track\", state = \"sequences\", partition = \"ev.by_key\" } ]\n"
      "sink = { kind = \"file\", encoder = \"x.tracked_line\" }\n");
  try {
    parse_topology(t.file);
    FAIL("parse_topology accepted a topology with errors");
  } catch (const TopologyError& e) {
    const Errors expected = {
        t.at(1, 1, "unknown key 'shard' in the top level; expected one of: shards, key_groups, "
                   "batch_size, queue_batches, scheduling, canary, plugins, states, pipelines "
                   "(did you mean 'shards'?)"),
        t.at(2, 14, "'key_groups' must be an integer, not a string"),
        t.at(5, 1, "[states.seqs] rejects unknown keys but declares none; add 'keys' or 'keys_file'"),
        t.at(10, 10, "missing key 'listen' in pipeline 'events' source (tcp needs \"host:port\")"),
        t.at(11, 53, "unknown state 'sequences'; [states] defines: seqs"),
        t.at(12, 8, "missing key 'path' in pipeline 'events' sink (file needs a path)"),
        t.at(12, 35, "unknown plugin 'x' in \"x.tracked_line\"; [plugins] defines: ev"),
    };
    CHECK(e.errors == expected);
    std::string joined;
    for (const auto& line : expected) joined += (joined.empty() ? "" : "\n") + line;
    CHECK(std::string(e.what()) == joined);
  }
}

TEST_CASE("a valid topology is wired and described", "[topology]") {
  TopologyFile t(
      "shards = 2\n"
      "key_groups = 64\n"
      "\n"
      "[plugins]\n"
      "ev = \"@EV@\"\n"
      "\n"
      "[states.seqs]\n"
      "factory = \"ev.last_seq\"\n"
      "keys = [1, 2, 3]\n"
      "\n"
      "[[pipelines]]\n"
      "name = \"events\"\n"
      "source = { kind = \"file\", path = \"in.txt\", framing = \"lines\", decoder = \"ev.event_line\" }\n"
      "steps = [\n"
      "  { computation = \"ev.explode\" },\n"
      "  { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" },\n"
      "]\n"
      "sink = { kind = \"file\", path = \"out/out.txt\", framing = \"lines\", encoder = \"ev.tracked_line\" }\n"
      "on_error = \"dead_letter\"\n"
      "dead_letter = \"dead.txt\"\n"
      "\n"
      "[[pipelines]]\n"
      "name = \"texts\"\n"
      "source = { kind = \"tcp\", listen = \"127.0.0.1:7000\", decoder = \"ev.event_line\", start_after = \"events\" }\n"
      "steps = [ { computation = \"ev.to_text\" } ]\n"
      "sink = { kind = \"stdout\", encoder = \"ev.text\" }\n");
  auto topology = parse_topology(t.file);
  CHECK(topology.shards == 2);
  CHECK(topology.key_groups == 64);
  REQUIRE(topology.states.size() == 1);
  CHECK(topology.states[0].keys == std::vector<std::uint64_t>{1, 2, 3});
  REQUIRE(topology.pipelines.size() == 2);
  CHECK(topology.pipelines[1].source.start_after == "events");
  CHECK(topology.pipelines[0].source.address == (t.dir.path / "in.txt").string());

  const auto wiring = wire_topology(std::move(topology));
  REQUIRE(wiring->pipelines.size() == 2);
  const auto& events = wiring->pipelines[0];
  CHECK(events.decoder->name == "event_line");
  REQUIRE(events.steps.size() == 2);
  CHECK(events.steps[0].component->name == "explode");
  CHECK(events.steps[0].partition == nullptr);
  CHECK(events.steps[1].component->name == "track");
  CHECK(events.steps[1].partition->name == "by_key");
  CHECK(events.steps[1].state == 0);
  REQUIRE(events.encoder);
  CHECK(events.encoder->name == "tracked_line");
  REQUIRE(wiring->states.size() == 1);
  CHECK(wiring->states[0].factory->name == "last_seq");

  const std::string dir = t.dir.path.string();
  const std::string expected =
      "topology " + t.file.string() + ": 2 shard(s), 64 key groups, batches of 256, queues of 64 "
      "batches, scheduling for throughput (sink threads write the sinks)\n"
      "plugin ev: test_events 1.0.0 (" + test_plugin("test_events").string() + ", 21 components)\n"
      "state seqs: LastSeq built by ev.last_seq, 3 declared keys, unknown keys created\n"
      "pipeline events:\n"
      "  source file " + dir + "/in.txt (lines) -> decoder ev.event_line -> Event\n"
      "  step 1: computation ev.explode: Event -> Event\n"
      "  step 2: state_computation ev.track on state seqs, keyed by ev.by_key (integer key): Event -> Tracked\n"
      "  sink file " + dir + "/out/out.txt (lines) <- encoder ev.tracked_line\n"
      "  on error: dead_letter to " + dir + "/dead.txt\n"
      "pipeline texts:\n"
      "  source tcp listen 127.0.0.1:7000 (length-prefixed frames) after pipeline events -> decoder ev.event_line -> Event\n"
      "  step 1: computation ev.to_text: Event -> std::string\n"
      "  sink stdout (lines) <- encoder ev.text\n"
      "  on error: skip\n";
  CHECK(wiring->describe() == expected);
  CHECK(wiring->sources_run_shard().empty());  // scheduling for throughput
}

TEST_CASE("with latency scheduling, one shard is run by the sources that feed it", "[topology]") {
  // Pipeline "counts" has a stateful step; "texts" only a stateless one, and never reaches the
  // shard. A third pipeline with a stateful step shares the shard with "counts": both sources
  // run it, in turn.
  const auto wired = [](const std::string& settings, bool second_stateful) {
    TopologyFile t(settings +
                   "[plugins]\n"
                   "ev = \"@EV@\"\n"
                   "[states.seqs]\n"
                   "factory = \"ev.last_seq\"\n"
                   "[[pipelines]]\n"
                   "name = \"texts\"\n"
                   "source = { kind = \"file\", path = \"a.txt\", framing = \"lines\", decoder = \"ev.event_line\" }\n"
                   "steps = [ { computation = \"ev.to_text\" } ]\n"
                   "sink = { kind = \"discard\" }\n"
                   "[[pipelines]]\n"
                   "name = \"counts\"\n"
                   "source = { kind = \"file\", path = \"b.txt\", framing = \"lines\", decoder = \"ev.event_line\" }\n"
                   "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
                   "sink = { kind = \"discard\" }\n" +
                   (second_stateful ? "[[pipelines]]\n"
                                      "name = \"more\"\n"
                                      "source = { kind = \"stdin\", framing = \"lines\", decoder = \"ev.event_line\" }\n"
                                      "steps = [ { state_computation = \"ev.track\", state = \"seqs\", partition = \"ev.by_key\" } ]\n"
                                      "sink = { kind = \"discard\" }\n"
                                    : ""));
    return wire_topology(parse_topology(t.file));
  };
  using Pipelines = std::vector<std::size_t>;
  const auto one = wired("shards = 1\nscheduling = \"latency\"\n", false);
  CHECK(one->sources_run_shard() == Pipelines{1});
  CHECK(one->describe().find("scheduling for latency (the source of pipeline counts runs the "
                             "shard's steps and writes the sinks: one thread from read to write)") !=
        std::string::npos);
  const auto two = wired("shards = 1\nscheduling = \"latency\"\n", true);
  CHECK(two->sources_run_shard() == Pipelines{1, 2});
  CHECK(two->describe().find("scheduling for latency (the sources of pipelines counts, more run "
                             "the shard's steps, one at a time, and write the sinks: one thread "
                             "from read to write)") != std::string::npos);
  CHECK(wired("shards = 2\nscheduling = \"latency\"\n", false)->sources_run_shard().empty());
  CHECK(wired("shards = 1\n", true)->sources_run_shard().empty());
}

TEST_CASE("host:port parsing", "[topology]") {
  using shardline::topology::parse_host_port;
  auto a = parse_host_port("127.0.0.1:7000");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 7000);
  a = parse_host_port("[::1]:0");
  CHECK(a.host == "::1");
  CHECK(a.port == 0);
  CHECK(parse_host_port("localhost:65535").port == 65535);
  for (const char* bad : {"nonsense", ":7000", "host:", "host:65536", "host:12x", "::1:80"}) {
    INFO(bad);
    CHECK_THROWS_WITH(parse_host_port(bad), std::string("expected host:port, got '") + bad + "'");
  }
  for (const char* blank : {" host:80", "host :80", "host:80\t"}) {
    INFO(blank);
    CHECK_THROWS_WITH(parse_host_port(blank),
                      std::string("expected host:port without blanks, got '") + blank + "'");
  }
}

TEST_CASE("names with control characters are refused", "[topology]") {
  // They would split log lines and dead-letter records (one per line, tab-separated).
  TopologyFile t(
      "[plugins]\n"
      "\"e\\tv\" = \"@EV@\"\n"
      "[states.\"s\\u007f\"]\n"
      "factory = \"x.last_seq\"\n"
      "[[pipelines]]\n"
      "name = \"a\\tb\\nc\"\n"
      "source = { kind = \"stdin\", decoder = \"x.event_line\" }\n"
      "sink = { kind = \"discard\" }\n");
  const auto errors = parse_errors(t.file);
  REQUIRE(errors.size() == 5);  // and the two references to plugin 'x', which is not there
  CHECK(errors[0] == t.at(2, 10, "plugin name 'e\\x09v' contains a control character; names "
                                 "appear in log lines and dead-letter records: use printable "
                                 "characters"));
  CHECK(errors[1] == t.at(3, 1, "state name 's\\x7f' contains a control character; names appear "
                                "in log lines and dead-letter records: use printable characters"));
  CHECK(errors[3] == t.at(6, 8, "pipeline name 'a\\x09b\\x0ac' contains a control character; "
                                "names appear in log lines and dead-letter records: use "
                                "printable characters"));
}
