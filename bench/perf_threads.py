#!/usr/bin/env python3
"""Per-thread hot functions from a `perf record` of market_spread_inproc (bench/profile.sh).

perf cannot name functions of a plugin: the runtime dlopens an unlinked shadow copy of it.
Their addresses are resolved here with addr2line against the plugin file itself (the same
bytes). The engine names its threads ("source orders", "shard 0", "sink orders"); the driver's
own two threads are told apart by the order of its list of thread ids (run.json): main, then
the phase watcher.
"""
import argparse
import collections
import json
import re
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--perf-data", required=True)
    ap.add_argument("--run-json", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--min", type=float, default=0.5, help="hide functions below this %% of samples")
    args = ap.parse_args()

    report = subprocess.run(["perf", "report", "-i", args.perf_data, "--no-children", "--sort",
                             "pid,dso,sym", "--stdio", "-g", "none"],
                            capture_output=True, text=True, check=True).stdout
    rows = []
    comm = {}
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\d+):(.*?)\s{2,}(\S+)\s+\[(.)\] (.*)$", line)
        if m:
            rows.append((float(m[1]), int(m[2]), m[4], m[6].strip()))
            comm[int(m[2])] = m[3]
    plugin_dso = re.compile(r"^market_spread.*\.so$")
    hexes = sorted({sym for _, _, dso, sym in rows if plugin_dso.match(dso) and sym.startswith("0x")})
    names = {}
    if hexes:
        out = subprocess.run(["addr2line", "-f", "-C", "-e", args.plugin] + hexes,
                             capture_output=True, text=True).stdout.splitlines()
        for i, h in enumerate(hexes):
            names[h] = "[plugin] " + re.sub(r"\(.*", "", out[2 * i])
    by_thread = collections.defaultdict(collections.Counter)
    for pct, tid, dso, sym in rows:
        if plugin_dso.match(dso):
            name = names.get(sym, "[plugin] " + re.sub(r"\(.*", "", sym))
        elif dso.startswith("[kernel"):
            name = "[kernel] " + sym
        else:
            name = re.sub(r"\(.*", "", sym)
        by_thread[tid][name] += pct

    # The driver lists the threads alive when the orders file was opened, by id, its own two
    # first; the engine's threads carry their names (in perf's samples and in /proc).
    run = json.load(open(args.run_json))
    alive = [t["tid"] for t in run["threads"]]
    label = dict(comm)  # threads that ended before the orders phase (source nbbo)
    label.update({t["tid"]: t["name"] for t in run["threads"]})
    label.update(zip(alive, ["main (control)", "phase watcher"]))
    cpu = {t["tid"]: t for t in run["threads"]}
    print(f"run: {run['messages']} orders at {run['msgs_per_s'] / 1e6:.2f}M/s; {run['summary']}")
    print("CPU per order during the orders phase (from /proc/self/task/*/schedstat), and time "
          "runnable but waiting for a CPU:")
    for tid in alive:
        t = cpu[tid]
        print(f"  {label.get(tid, 'other'):16s} {t['cpu_s'] / run['messages'] * 1e9:6.1f} ns/order CPU, "
              f"{t['runq_s'] / run['messages'] * 1e9:6.1f} ns/order waiting")
    total = sum(t["cpu_s"] for t in run["threads"]) / run["messages"] * 1e9
    print(f"  {'all threads':16s} {total:6.1f} ns/order CPU\n")
    print("per thread: % of all samples (all threads together: 100%), then its hot functions "
          "(% of all samples); whole run, NBBO phase included\n")
    for tid in sorted(by_thread, key=lambda t: -sum(by_thread[t].values())):
        total = sum(by_thread[tid].values())
        print(f"{label.get(tid, 'other')} (tid {tid}): {total:.1f}%")
        for name, pct in by_thread[tid].most_common():
            if pct < args.min:
                break
            print(f"  {pct:5.1f}%  {name[:100]}")


if __name__ == "__main__":
    main()
