// What a topology's connectors need from the machine it runs on: hosts that resolve, listen
// addresses that are free, source files that can be read, folders for the files it writes.
// [control thread]
//
// None of this is an error in the topology itself (it may be written for another machine), so
// `shardline check` and `--watch` (an edited topology) report it as warnings, each the
// position in the topology file and one line of text.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "topology/topology.hpp"

namespace shardline::connectors {

struct MachineWarning {
  topology::Position pos;
  std::string text;  ///< e.g. "source file x.msg does not exist here; ... would not start ..."
};

/// Checks `topo` against this machine now. A TCP source whose address is in `held` is not
/// listened on: the running host holds it (and lets go of it when it stops).
std::vector<MachineWarning> machine_warnings(const topology::Topology& topo,
                                             const std::set<std::string>& held = {});

}  // namespace shardline::connectors
