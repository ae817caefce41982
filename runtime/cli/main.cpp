// shardline — the host binary: `shardline run TOPOLOGY`, `shardline check TOPOLOGY`.
//
// The control thread parses the command line, loads and wires the topology, and runs the
// engine. SIGINT and SIGTERM are blocked in every thread and taken by a small signal thread:
// the first asks the engine to stop reading and drain, a second gives up on output that a sink
// cannot deliver.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <thread>

#include "engine/engine.hpp"
#include "loader/plugin.hpp"
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
    auto topo = topology::parse_topology(o.topology);
    if (shards) topo.shards = *shards;
    if (topo.key_groups < topo.shards) topo.key_groups = topo.shards;
    return topology::wire_topology(std::move(topo), {o.plugin_dir});
  } catch (const topology::TopologyError& e) {
    for (const auto& line : e.errors) std::fprintf(stderr, "%s\n", line.c_str());
    std::fprintf(stderr, "shardline: %zu error(s) in %s\n", e.errors.size(), o.topology.c_str());
  }
  return nullptr;
}

int run_command(const CommonOptions& o, std::optional<std::uint32_t> shards) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);  // sent by main itself to end the signal thread
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // inherited by every thread started below

  auto wiring = load(o, shards);
  if (!wiring) return engine::exit_startup_failed;
  std::unique_ptr<engine::Engine> engine;
  try {
    engine = std::make_unique<engine::Engine>(std::move(wiring));
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return engine::exit_startup_failed;
  }

  std::thread signal_thread([&] {
    int received = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0 || sig == SIGUSR1) return;
      if (++received == 1) {
        spdlog::info("{}: stopping the sources and draining (again to abandon undelivered output)",
                     strsignal(sig));
        engine->request_stop();
      } else {
        spdlog::warn("{}: abandoning output that cannot be delivered", strsignal(sig));
        engine->abandon_output();
      }
    }
  });
  const int status = engine->run();
  pthread_kill(signal_thread.native_handle(), SIGUSR1);
  signal_thread.join();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Shardline: a sharded stream-processing runtime for C++ plugins.\n"
      "Pipelines, plugins and partitioned states are described in a topology.toml file."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("shardline ") + SHARDLINE_SDK_VERSION + " (" +
                                        loader::describe(kAbiRecord) + ")");

  CommonOptions run_opts;
  std::optional<std::uint32_t> shards;
  auto* run = app.add_subcommand("run", "Run the pipelines of a topology until their inputs end "
                                        "(or SIGINT/SIGTERM), then print a summary");
  add_common(*run, run_opts);
  run->add_option("--shards", shards, "Override the topology's shard count")
      ->check(CLI::Range(1, 1024));

  CommonOptions check_opts;
  auto* check = app.add_subcommand(
      "check", "Validate a topology and load its plugins; print the wiring, run nothing");
  add_common(*check, check_opts);

  CLI11_PARSE(app, argc, argv);

  if (*run) {
    setup_logging(run_opts.log_level);
    return run_command(run_opts, shards);
  }
  setup_logging(check_opts.log_level);
  auto wiring = load(check_opts, std::nullopt);
  if (!wiring) return engine::exit_startup_failed;
  std::cout << wiring->describe();
  std::cout << "ok: " << check_opts.topology << " is valid\n";
  return 0;
}
