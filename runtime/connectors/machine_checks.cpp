#include "connectors/machine_checks.hpp"

#include <netdb.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "connectors/source.hpp"
#include "topology/address.hpp"

namespace shardline::connectors {

namespace {

/// What the running host already uses: not looked at again.
struct InUse {
  std::set<std::uint16_t> ports;  ///< its TCP sources listen there
  std::set<std::string> hosts;    ///< resolved when it started
};

InUse in_use(const topology::Topology* running) {
  InUse u;
  if (!running) return u;
  for (const auto& p : running->pipelines) {
    if (p.source.kind == topology::SourceKind::tcp) {
      const auto where = topology::parse_host_port(p.source.address);
      if (where.port != 0) u.ports.insert(where.port);
      u.hosts.insert(where.host);
    }
    if (p.sink && p.sink->kind == topology::SinkKind::tcp)
      u.hosts.insert(topology::parse_host_port(p.sink->address).host);
  }
  return u;
}

/// Empty when `address`'s host resolves here (or the running host resolved it), else why not.
std::string unresolved(const std::string& address, const InUse& known) {
  const auto where = topology::parse_host_port(address);
  if (known.hosts.count(where.host)) return {};
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(where.host.c_str(), nullptr, &hints, &found))
    return "cannot resolve " + where.host + " here (" + ::gai_strerror(rc) + ")";
  ::freeaddrinfo(found);
  return {};
}

/// A file to write whose folder is missing or that is a folder (`run` cannot open it), or a
/// FIFO (`run` opens it only while something reads it), or that this process may not write:
/// the file if it exists (`run` writes it in place), else its folder (`run` creates it there).
void check_output(std::vector<topology::Warning>& out, const topology::Position& pos,
                  const std::string& what, const std::filesystem::path& path) {
  std::error_code ec;
  const auto folder = path.parent_path();
  if (!folder.empty() && !std::filesystem::is_directory(folder, ec)) {
    out.push_back({pos, what + ": the folder " + folder.string() +
                            " does not exist here; `shardline run` would not start unless it is "
                            "created first"});
  } else if (std::filesystem::is_directory(path, ec)) {
    out.push_back({pos, what + " is a folder here; `shardline run` would not start"});
  } else if (std::filesystem::is_fifo(path, ec)) {
    // Not opened to see whether it has a reader: a reader waiting for a writer would take the
    // open and close for the end of its input.
    out.push_back({pos, what + " is a FIFO: `shardline run` starts only while a process reads "
                               "it (start its reader first)"});
  } else if (std::filesystem::exists(path, ec)) {
    // access() answers for this process's user, as `run`'s open would (another user's file, a
    // read-only mount), without opening it: that would create the file or lock it.
    if (::access(path.c_str(), W_OK) != 0)
      out.push_back({pos, what + " cannot be written here (" + std::strerror(errno) +
                              "); `shardline run` would not start"});
  } else if (const auto dir = folder.empty() ? std::filesystem::path(".") : folder;
             ::access(dir.c_str(), W_OK | X_OK) != 0) {
    out.push_back({pos, what + ": the folder " + dir.string() + " cannot be written here (" +
                            std::strerror(errno) + "), so the file cannot be created in it; "
                            "`shardline run` would not start"});
  }
}

void check_source(std::vector<topology::Warning>& out, const topology::SourceSpec& source,
                  const InUse& known) {
  if (source.kind == topology::SourceKind::file) {
    // Checked by name, not opened: opening a FIFO would wait for its writer.
    std::error_code ec;
    const std::string& file = source.address;
    if (!std::filesystem::exists(file, ec))
      out.push_back({source.pos, "source file " + file +
                                     " does not exist here; `shardline run` would not start "
                                     "unless it is created first"});
    else if (::access(file.c_str(), R_OK) != 0)
      out.push_back({source.pos, "source file " + file + " cannot be read here (" +
                                     std::strerror(errno) + "); `shardline run` would not start"});
    else if (std::filesystem::is_directory(file, ec))
      out.push_back({source.pos, "source file " + file +
                                     " is a folder here; `shardline run` would not start"});
  }
  if (source.kind != topology::SourceKind::tcp) return;
  if (known.ports.count(topology::parse_host_port(source.address).port)) return;
  if (const auto why = unresolved(source.address, known); !why.empty()) {
    out.push_back({source.pos, "source tcp " + source.address + ": " + why +
                                   "; `shardline run` would not start"});
    return;
  }
  try {  // listens, as `run` would, and closes at once
    make_source(source);
  } catch (const std::exception& e) {
    out.push_back({source.pos, std::string(e.what()) + "; `shardline run` would not start now"});
  }
}

}  // namespace

std::vector<topology::Warning> machine_warnings(const topology::Topology& topo,
                                                const topology::Topology* running) {
  const InUse known = in_use(running);
  std::vector<topology::Warning> out;
  for (const auto& p : topo.pipelines) {
    if (p.on_error == topology::ErrorPolicy::dead_letter && !p.dead_letter.empty())
      check_output(out, p.dead_letter_pos,
                   "pipeline '" + p.name + "' dead_letter " + p.dead_letter.string(), p.dead_letter);
    check_source(out, p.source, known);
    if (!p.sink) continue;
    if (p.sink->kind == topology::SinkKind::tcp) {
      if (const auto why = unresolved(p.sink->address, known); !why.empty())
        out.push_back({p.sink->pos, "sink tcp " + p.sink->address + ": " + why +
                                        "; `shardline run` would keep retrying it"});
    }
    if (p.sink->kind == topology::SinkKind::file)
      check_output(out, p.sink->pos, "sink file " + p.sink->address, p.sink->address);
  }
  return out;
}

std::vector<topology::Warning> all_warnings(const topology::Wiring& wiring,
                                            const topology::Topology* running) {
  auto out = wiring.warnings;
  for (auto& w : machine_warnings(wiring.topology, running)) out.push_back(std::move(w));
  return out;
}

}  // namespace shardline::connectors
