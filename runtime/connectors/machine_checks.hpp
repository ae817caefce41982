// What a topology's connectors need from the machine it runs on: hosts that resolve, listen
// addresses that are free, source files that can be read, folders for the files it writes, and
// the right to write those files (or to create them in their folder).
// [control thread]
//
// None of this is an error in the topology itself (it may be written for another machine), so
// `shardline check` and `--watch` (an edited topology) report it as warnings, each the
// position in the topology file and one line of text.
#pragma once

#include <string>
#include <vector>

#include "topology/topology.hpp"
#include "topology/wiring.hpp"

namespace shardline::connectors {

/// Checks `topo` against this machine now. With `running` (the topology of the host running
/// now, for an edit of it), a TCP port it listens on is not tried (the host holds it, and lets
/// go of it when it stops), and a host it names is not resolved again.
std::vector<topology::Warning> machine_warnings(const topology::Topology& topo,
                                                const topology::Topology* running = nullptr);

/// Everything `check` warns about: the wiring's own warnings, then machine_warnings() of its
/// topology (`running` as there).
std::vector<topology::Warning> all_warnings(const topology::Wiring& wiring,
                                            const topology::Topology* running = nullptr);

}  // namespace shardline::connectors
