// shardline — the host binary: `shardline run TOPOLOGY`, `shardline check TOPOLOGY`.
//
// The control thread parses the command line, loads and wires the topology, and runs the
// engine. SIGINT and SIGTERM are blocked in every thread and taken by a small signal thread:
// the first asks the engine to stop reading and drain, a second gives up on output that a sink
// cannot deliver.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "connectors/machine_checks.hpp"
#include "engine/engine.hpp"
#include "loader/plugin_call.hpp"
#include "loader/plugin.hpp"
#include "reload/reload_plan.hpp"
#include "topology/wiring.hpp"

using namespace shardline;

namespace {

struct CommonOptions {
  std::string topology;
  std::string plugin_dir;
  std::string log_level = "info";
};

void add_common(CLI::App& cmd, CommonOptions& o) {
  cmd.add_option("TOPOLOGY", o.topology, "Path to the topology file (topology.toml)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--plugin-dir", o.plugin_dir,
                 "Look for each plugin's file name in this folder first (e.g. build/plugins)")
      ->check(CLI::ExistingDirectory);
  cmd.add_option("--log-level", o.log_level, "Log level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("shardline");
  logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

/// Loads and wires the topology; prints every error and returns null on failure.
std::unique_ptr<topology::Wiring> load(const CommonOptions& o, std::optional<std::uint32_t> shards) {
  try {
    auto topo = topology::parse_topology(o.topology, shards);
    topology::WireOptions options;
    options.plugin_dir = o.plugin_dir;
    options.try_in_copy = true;  // a plugin that crashes while it loads is an error, not the end
    return topology::wire_topology(std::move(topo), options);
  } catch (const topology::TopologyError& e) {
    for (const auto& line : e.errors) std::fprintf(stderr, "%s\n", line.c_str());
    std::fprintf(stderr, "shardline: %zu error(s) in %s\n", e.errors.size(), o.topology.c_str());
  }
  return nullptr;
}

int run_command(const CommonOptions& o, const engine::EngineOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);   // reload every plugin rebuilt since it was loaded
  sigaddset(&signals, SIGUSR1);  // sent by main itself to end the signal thread
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // inherited by every thread started below

  auto wiring = load(o, options.shards);
  if (!wiring) return engine::exit_startup_failed;
  for (const auto& w : wiring->warnings) spdlog::warn("{}: {}", w.pos.str(), w.text);
  std::unique_ptr<engine::Engine> engine;
  try {
    engine = std::make_unique<engine::Engine>(std::move(wiring), options);
  } catch (const std::exception& e) {
    // One line per input or output refused. Printed as the topology's errors are, whatever
    // --log-level says: a run refused at start must say why.
    std::istringstream lines(e.what());
    for (std::string line; std::getline(lines, line);) std::fprintf(stderr, "%s\n", line.c_str());
    return engine::exit_startup_failed;
  }

  std::thread signal_thread([&] {
    // After an interrupt the engine is given kPatience to stop. Past it, plugin code that does
    // not return (an endless loop, a wait that never ends) is the usual cause: every thread in
    // plugin code is named, once after the first interrupt, and after the second the process
    // ends without draining, since the threads in plugin code cannot be stopped from outside.
    constexpr auto kPatience = std::chrono::seconds(5);
    int received = 0;
    std::optional<std::chrono::steady_clock::time_point> deadline;
    for (;;) {
      int sig = 0;
      if (deadline) {
        const auto left = std::max(*deadline - std::chrono::steady_clock::now(),
                                   std::chrono::steady_clock::duration::zero());
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        const timespec wait{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
        sig = sigtimedwait(&signals, nullptr, &wait);
        if (sig < 0 && errno == EINTR) continue;
        if (sig < 0) {  // the engine has not stopped in time
          deadline.reset();
          if (received == 1) {
            spdlog::warn("still draining {} s after the interrupt: a sink that cannot deliver, "
                         "or plugin code that does not return (threads in plugin code, if any, "
                         "follow); interrupt again to stop without draining", kPatience.count());
            loader::report_plugin_calls();
            continue;
          }
          spdlog::error("still not stopped {} s after the second interrupt; threads in plugin "
                        "code, if any, follow; ending without draining", kPatience.count());
          loader::report_plugin_calls();
          spdlog::default_logger()->flush();
          std::_Exit(engine::exit_output_lost);
        }
      } else if (sigwait(&signals, &sig) != 0) {
        return;
      }
      if (sig == SIGUSR1) return;
      if (sig == SIGHUP && received > 0) {
        spdlog::warn("SIGHUP ignored: the run is stopping, and nothing is reloaded while it "
                     "drains");
        continue;
      }
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP: reloading every plugin whose file holds a new build");
        engine->request_reload("*");  // the report is logged by the engine
        continue;
      }
      if (++received == 1) {
        spdlog::info("{}: stopping the sources and draining (again to abandon undelivered output)",
                     strsignal(sig));
        engine->request_stop();
      } else {
        spdlog::warn("{}: abandoning output that cannot be delivered", strsignal(sig));
        engine->abandon_output();
      }
      deadline = std::chrono::steady_clock::now() + kPatience;
    }
  });
  const int status = engine->run();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  return status;
}

/// What `check --against` says when it is not given two plugin files.
constexpr const char* kAgainstUsage =
    "shardline check: --against takes two plugin files, OLD.so NEW.so: the build running now, "
    "then the new one\n";

/// `check`: the wiring's warnings, and what depends on the machine the topology runs on, are
/// warnings, not errors (see connectors/machine_checks.hpp).
void print_warnings(const topology::Wiring& wiring) {
  for (const auto& w : connectors::all_warnings(wiring))
    std::fprintf(stderr, "%s: warning: %s\n", w.pos.str().c_str(), w.text.c_str());
}

/// `check [TOPOLOGY] --against OLD.so NEW.so [--against OLD.so NEW.so ...]`: what a reload of
/// each OLD into its NEW would do; with the topology, whether the running host would accept
/// them, reloaded together, as its reload decides (run with `shards`, if given). `against`
/// holds the pairs in turn.
int preflight(const CommonOptions& o, std::optional<std::uint32_t> shards,
              const std::vector<std::string>& against) {
  // Usage errors first, before anything is loaded or printed.
  for (const auto& file : against)
    if (std::filesystem::path(file).extension() == ".toml") {
      std::fprintf(stderr, "shardline check: %s is a topology, but --against takes plugin files: "
                           "OLD.so NEW.so, the build running now, then the new one (e.g. "
                           "shardline check %s --against build/x.so new/x.so)\n",
                   file.c_str(), file.c_str());
      return engine::exit_usage;
    }
  std::unique_ptr<topology::Wiring> wiring;
  std::vector<reload::NewBuild> builds;
  if (!o.topology.empty()) {
    wiring = load(o, shards);
    if (!wiring) return engine::exit_startup_failed;
    std::string files;
    for (const auto& [alias, plugin] : wiring->plugins)
      files += (files.empty() ? "" : ", ") + alias + " = " + plugin->file().string();
    for (std::size_t i = 0; i < against.size(); i += 2) {
      const std::size_t before = builds.size();
      for (const auto& [alias, plugin] : wiring->plugins) {
        std::error_code ec;
        if (std::filesystem::equivalent(plugin->file(), against[i], ec))
          builds.push_back({alias, against[i + 1]});
      }
      if (builds.size() == before) {
        std::fprintf(stderr, "shardline check: %s is not the file of a plugin of %s (%s); give the "
                             "file the topology loads as OLD.so\n",
                     against[i].c_str(), o.topology.c_str(), files.c_str());
        return engine::exit_usage;
      }
    }
  }
  // A build whose static constructors crash would end this command inside dlopen: each is
  // loaded in a copy of the process first, NEW beside OLD as a reload loads it.
  using Trial = loader::Plugin::Trial;
  bool refused = false, types_changed = false;
  for (std::size_t i = 0; i < against.size(); i += 2) {
    const std::string &old_file = against[i], &new_file = against[i + 1];
    try {
      const auto from = loader::Plugin::load(old_file, Trial::in_copy_first);
      const auto to = loader::Plugin::load(new_file, Trial::in_copy_first);
      std::cout << "reload " << from->name() << " " << from->version() << " (" << old_file
                << ") -> " << to->name() << " " << to->version() << " (" << new_file << "):\n";
      // What runs is what the host loaded last: after a refused reload, not the file's build.
      std::cout << "  (against the build in " << old_file << ": a host runs it only if it loaded "
                   "that file last; after a refused reload the file holds the refused build)\n";
      const reload::PluginDiff diff = reload::compare_plugins(*from, *to);
      for (const auto& line : diff.lines) std::cout << "  " << line << "\n";
      if (diff.lines.empty()) std::cout << "  no difference in components or state types\n";
      refused = refused || diff.refused;
      types_changed = types_changed || diff.types_changed;
    } catch (const loader::PluginError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return engine::exit_startup_failed;
    }
  }
  if (!wiring) {
    std::cout << (refused
                      ? "a topology using what is removed or blocked would refuse this reload\n"
                  : types_changed
                      ? "ok for every state, which can be kept or migrated; whether the changed "
                        "types still fit the plugins this one exchanges them with, `shardline "
                        "check TOPOLOGY --against OLD.so NEW.so` says\n"
                      : "ok: the reload can keep or migrate every state\n");
    return refused ? 1 : 0;
  }

  const reload::ReloadPlan plan = reload::plan_reload(*wiring, builds);
  std::cout << "in " << o.topology << ":\n";
  if (!plan.refused.empty()) {
    std::cout << "  refused: " << plan.refused << "\n";
    return 1;
  }
  for (std::size_t s = 0; s < plan.carries.size(); ++s) {
    const reload::StateCarry& c = plan.carries[s];
    std::cout << "  state '" << wiring->states[s].spec->name << "': " << to_string(c.carry)
              << ": " << c.why << "\n";
  }
  std::cout << "ok: a running host would do this reload, if the new build also passes the "
               "canary (recent input run through it first)\n";
  return 0;
}

/// What CLI11 alone would answer with "A subcommand is required": `shardline help [COMMAND]`,
/// a first word that is no command, and an option before the command other than --help and
/// --version. Returns the exit status when the first argument is one of these.
std::optional<int> answer_before_command(CLI::App& app, int argc, char** argv) {
  const auto commands = app.get_subcommands([](CLI::App*) { return true; });
  auto command = [&](std::string_view name) -> CLI::App* {
    for (CLI::App* sub : commands)
      if (sub->get_name() == name) return sub;
    return nullptr;
  };
  const std::string first = argv[1];
  if (first == "help") {
    CLI::App* about = argc > 2 ? command(argv[2]) : &app;
    if (!about) {
      std::fprintf(stderr, "shardline help: no command '%s'; the commands are run and check\n",
                   argv[2]);
      return engine::exit_usage;
    }
    std::cout << about->help();
    return 0;
  }
  if (!first.starts_with("-")) {
    if (command(first)) return std::nullopt;
    std::fprintf(stderr, "shardline: no command '%s'; the commands are run and check (see "
                         "shardline --help)\n", first.c_str());
    return engine::exit_usage;
  }
  const std::string name = first.substr(0, first.find('='));
  if (name == "--help" || name == "-h" || name == "--version") return std::nullopt;
  // A command's own option put first is named as such.
  std::string owners;
  for (CLI::App* sub : commands)
    if (sub->get_option_no_throw(name)) owners += (owners.empty() ? "" : " and ") + sub->get_name();
  if (!owners.empty())
    std::fprintf(stderr, "shardline: %s is an option of %s: put it after the command (e.g. "
                         "shardline %s %s ... TOPOLOGY)\n",
                 name.c_str(), owners.c_str(), owners.substr(0, owners.find(' ')).c_str(),
                 first.c_str());
  else
    std::fprintf(stderr, "shardline: no option '%s'; before the command, shardline takes only "
                         "--help and --version (the commands are run and check: see shardline "
                         "--help)\n", name.c_str());
  return engine::exit_usage;
}

}  // namespace

int main(int argc, char** argv) {
  // A standard stream the caller closed (`>&-`) must stay closed for the process's own use:
  // otherwise the next file opened (a sink's) takes its number, and the stdout sink writes
  // into it. /dev/null opened the other way round holds the number; reading or writing it
  // fails as the closed stream would.
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF)
      ::open("/dev/null", (fd == 0 ? O_WRONLY : O_RDONLY) | O_CLOEXEC);  // takes the lowest: fd
  // A closed stdout (`shardline run ... | head`) must be an error the stdout sink reports,
  // not a signal that kills the process before it can flush the other sinks.
  signal(SIGPIPE, SIG_IGN);
  // A SIGHUP (reload) sent as the process starts must not end it: held until the run takes it.
  // (SIGINT and SIGTERM keep their default action until then: they end the process at once.)
  sigset_t hangup;
  sigemptyset(&hangup);
  sigaddset(&hangup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hangup, nullptr);
  loader::install_crash_report();  // a crash inside a plugin names the plugin's component
  CLI::App app{
      "Shardline: a sharded stream-processing runtime for C++ plugins.\n"
      "Pipelines, plugins and partitioned states are described in a topology.toml file."};
  app.name("shardline");  // in usage lines, however the binary was invoked
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("shardline ") + SHARDLINE_SDK_VERSION + " (" +
                                        loader::describe(kAbiRecord) + ")");

  CommonOptions run_opts;
  std::optional<std::uint32_t> shards;
  auto* run = app.add_subcommand("run", "Run the pipelines of a topology until their inputs end "
                                        "(or SIGINT/SIGTERM), then print a summary");
  add_common(*run, run_opts);
  // Decimal digits only (CLI11's own conversion reads "0x10" as hex and "010" as octal), and
  // said as such: CLI::Range calls "abc" a value out of range.
  const CLI::Validator shard_count(
      [](std::string& text) -> std::string {
        unsigned n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc() || end != text.data() + text.size() || n < 1 || n > 1024)
          return "expected a whole number of shards from 1 to 1024, got '" + text + "'";
        text = std::to_string(n);  // what CLI11 then converts: no leading zero
        return {};
      },
      "1-1024");
  run->footer(
      "Exit status: 0 done; 1 refused at start (the topology, a plugin, an input, an output, or\n"
      "a state factory throwing for a declared key: nothing ran, and the last run's output files\n"
      "are as they were); 2 usage error (or no TOPOLOGY file there); 3 stopped by an error\n"
      "(on_error = \"stop\", a source failing while running); 4 some output could not be\n"
      "delivered (see 'lost' and 'dead letters lost' in the summary). When both 3 and 4 apply, 3.");
  run->add_option("--shards", shards,
                  "Override the topology's shard count (key_groups is raised to it if lower)")
      ->check(shard_count);
  engine::EngineOptions engine_options;
  run->add_flag("--watch", engine_options.watch,
                "Hot-reload a plugin when its file is rebuilt (state kept, no message lost), "
                "and check the topology file when it is edited (a restart applies it). "
                "With or without it, SIGHUP reloads every rebuilt plugin");
  double stats_seconds = 0;
  run->add_option("--stats", stats_seconds,
                  "Every SECONDS (0.01 to 86400), log each pipeline's counts so far, its rates "
                  "and its latency over the interval (0, the default: only the summary at the "
                  "end)")
      ->option_text("SECONDS")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // Decimal only: std::stod would also take "0x10" (16 s) and "0x1p-3" as hex.
            double seconds = -1;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                                   seconds, std::chars_format::general);
            if (ec != std::errc() || end != text.data() + text.size() ||
                !(seconds == 0 || (seconds >= 0.01 && seconds <= 86400)))
              return "expected 0 or a number of seconds from 0.01 to 86400 (e.g. 10 or 0.5), "
                     "got '" + text + "'";
            return {};
          },
          "SECONDS"));

  CommonOptions check_opts;
  std::vector<std::string> against;
  auto* check = app.add_subcommand(
      "check", "Validate a topology and load its plugins; print the wiring, run nothing.\n"
               "Warns about what depends on this machine (hosts, ports, files, folders).\n"
               "With --against OLD.so NEW.so: print what reloading OLD into NEW would do");
  add_common(*check, check_opts);
  check->footer(
      "Exit status: 0 valid (warnings included); 1 refused (with --against: the reload would be\n"
      "refused, a component the old build has is gone or a state is blocked); 2 usage error (or\n"
      "no TOPOLOGY file there).");
  check->get_option("TOPOLOGY")->required(false);
  check->add_option("--shards", shards,
                    "Check what run --shards N would run: N shards instead of the topology's "
                    "count (key_groups is raised to it if lower)")
      ->check(shard_count);
  check->add_option("--against", against,
                    "OLD.so NEW.so: compare two builds of a plugin; with TOPOLOGY (whose plugin "
                    "OLD.so is), also whether a running host would accept the reload. Once per "
                    "plugin for plugins reloaded together (a type they share changed)")
      ->expected(2)
      // Exactly two: a vector option otherwise takes every word after it, TOPOLOGY included
      // (`check --against OLD.so NEW.so topology.toml`). Each --against adds its pair.
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->check(CLI::ExistingFile);

  if (argc == 1) {  // no subcommand at all: show what there is, rather than one line of error
    std::cerr << app.help();
    return engine::exit_usage;
  }
  if (const auto status = answer_before_command(app, argc, argv)) return *status;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ArgumentMismatch& e) {
    // (CLI11 would say "At least 2 required", though exactly two are.)
    if (std::string_view(e.what()).starts_with("--against"))
      std::fputs(kAgainstUsage, stderr);
    else
      app.exit(e);
    return engine::exit_usage;
  } catch (const CLI::ParseError& e) {
    // Prints the help, the version, or what is wrong; usage errors all exit with one status.
    return app.exit(e) == 0 ? 0 : engine::exit_usage;
  }

  if (*run) {
    setup_logging(run_opts.log_level);
    engine_options.stats_every = std::chrono::milliseconds(std::llround(stats_seconds * 1000));
    engine_options.plugin_dir = run_opts.plugin_dir;
    engine_options.shards = shards;
    return run_command(run_opts, engine_options);
  }
  setup_logging(check_opts.log_level);
  pthread_sigmask(SIG_UNBLOCK, &hangup, nullptr);  // check runs no pipeline: a hang-up ends it
  if (against.size() % 2 != 0) {  // (CLI11 takes `--against OLD.so` alone, with TakeAll)
    std::fputs(kAgainstUsage, stderr);
    return engine::exit_usage;
  }
  if (!against.empty()) return preflight(check_opts, shards, against);
  if (check_opts.topology.empty()) {
    std::fprintf(stderr, "shardline check: give a TOPOLOGY, or --against OLD.so NEW.so\n");
    return engine::exit_usage;
  }
  auto wiring = load(check_opts, shards);
  if (!wiring) return engine::exit_startup_failed;
  std::cout << wiring->describe();
  print_warnings(*wiring);
  std::cout << "ok: " << check_opts.topology << " is valid\n";
  return 0;
}
