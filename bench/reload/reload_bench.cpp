// shardline-reload-bench: how long a hot reload pauses the sources, and how long it takes in
// all, for Market Spread with 1k, 100k and 1M symbols (one SymbolData state per symbol).
//
// For each key count it generates the initial NBBO of that many symbols, runs the real engine
// in this process (nbbo from a file; an orders TCP source that starts only once every NBBO has
// been processed, and keeps the engine running), then reloads the plugin file:
//   same layout  market_spread.so -> the same build again: every state kept as is;
//   migrated     market_spread.so -> market_spread_v2.so: every state saved and restored.
// Each reload is repeated; the table shows the median and the worst.
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <spdlog/spdlog.h>
#include <thread>

#include "engine/engine.hpp"
#include "topology/wiring.hpp"

namespace fs = std::filesystem;
using namespace shardline;

namespace {

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

/// True once something listens on the port: the orders source starts after every NBBO.
bool listening(int port) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

void publish(const fs::path& from, const fs::path& to) {
  fs::copy_file(from, to.string() + ".tmp", fs::copy_options::overwrite_existing);
  fs::rename(to.string() + ".tmp", to);
}

struct Row {
  std::string scenario;
  std::size_t keys;
  std::vector<double> pause, total;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measures hot-reload pause and total time for Market Spread state"};
  std::string build = "build";
  std::vector<std::size_t> key_counts{1000, 100000, 1000000};
  int repeat = 5;
  app.add_option("--build", build, "Build folder with shardline-gen and plugins/")->capture_default_str();
  app.add_option("--keys", key_counts, "Key counts to measure")->delimiter(',');
  app.add_option("--repeat", repeat, "Reloads per scenario")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  const fs::path dir = fs::temp_directory_path() / ("shardline-reload-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path v1 = fs::path(build) / "plugins" / "market_spread.so";
  const fs::path v2 = fs::path(build) / "plugins" / "market_spread_v2.so";
  std::vector<Row> rows;

  for (std::size_t keys : key_counts) {
    const fs::path nbbo = dir / "nbbo.msg";
    const std::string gen = (fs::path(build) / "shardline-gen").string() + " nbbo --symbols " +
                            std::to_string(keys) + " --count 0 --seed 1 --out " + nbbo.string() +
                            " > /dev/null";
    if (std::system(gen.c_str()) != 0) return 1;
    for (bool migrate : {false, true}) {
      const fs::path plugin = dir / "market.so";
      fs::copy_file(v1, plugin, fs::copy_options::overwrite_existing);
      const int port = free_port();
      std::ofstream(dir / "topology.toml")
          << "shards = 2\n[plugins]\nmarket = \"market.so\"\n"
             "[states.symbols]\nfactory = \"market.symbol_data\"\n"
             "[[pipelines]]\nname = \"nbbo\"\n"
             "source = { kind = \"file\", path = \"nbbo.msg\", decoder = \"market.nbbo\" }\n"
             "steps = [ { state_computation = \"market.update_nbbo\", state = \"symbols\", "
             "partition = \"market.nbbo_symbol\" } ]\n"
             "[[pipelines]]\nname = \"orders\"\n"
             "source = { kind = \"tcp\", listen = \"127.0.0.1:" << port << "\", "
             "decoder = \"market.order\", start_after = \"nbbo\" }\n"
             "steps = [ { state_computation = \"market.check_order\", state = \"symbols\", "
             "partition = \"market.order_symbol\" } ]\n"
             "sink = { kind = \"discard\" }\n";
      auto wiring = topology::wire_topology(topology::parse_topology(dir / "topology.toml"));
      engine::Engine engine(std::move(wiring));
      std::thread runner([&] { engine.run(); });
      while (!listening(port)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      // The orders source listens from the start, while the NBBOs are still being applied:
      // until every symbol has its state, a reload (of the same build: kept) finds fewer keys.
      while (engine.request_reload("market").get().keys_kept < keys)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));

      Row row{migrate ? "migrated (v1 <-> v2)" : "same layout (v1 -> v1)", keys, {}, {}};
      for (int i = 0; i < repeat; ++i) {
        // Migrated: alternate v1 -> v2 -> v1 ... (v2 restores v1's saved form and v1 v2's).
        if (migrate) publish(i % 2 == 0 ? v2 : v1, plugin);
        const auto report = engine.request_reload("market").get();
        if (!report.ok || report.keys_kept + report.keys_migrated != keys) {
          std::fprintf(stderr, "reload failed: %s\n", report.message.c_str());
          engine.request_stop();
          runner.join();
          return 1;
        }
        row.pause.push_back(report.pause_ms);
        row.total.push_back(report.total_ms);
      }
      engine.request_stop();
      runner.join();
      rows.push_back(row);
    }
  }
  std::printf("%-24s %9s %14s %14s %14s %14s\n", "scenario", "keys", "pause p50 ms",
              "pause max ms", "total p50 ms", "total max ms");
  for (const auto& r : rows)
    std::printf("%-24s %9zu %14.2f %14.2f %14.2f %14.2f\n", r.scenario.c_str(), r.keys,
                median(r.pause), *std::max_element(r.pause.begin(), r.pause.end()),
                median(r.total), *std::max_element(r.total.begin(), r.total.end()));
  fs::remove_all(dir);
  return 0;
}
