// How each engine thread presents itself to Linux. [called first on every source, shard and
// sink thread]
#pragma once

#include <string_view>

#include "topology/topology.hpp"

namespace shardline::engine {

/// Names the calling thread (what top -H, perf and gdb show; Linux keeps 15 characters), has
/// its plugin calls watched (loader::watch_plugin_calls), and
/// applies the topology's scheduling. With "throughput", the thread runs under SCHED_BATCH:
/// on a machine with fewer cores than busy threads, a shard woken by its source no longer
/// preempts the source at once, which saves most context switches (measured in
/// bench/RESULTS.md). If the policy cannot be set, one warning is logged and the thread keeps
/// the default policy.
void setup_thread(std::string_view name, topology::Scheduling scheduling);

}  // namespace shardline::engine
