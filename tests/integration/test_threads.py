"""The engine's threads as Linux sees them: named after what they run, and scheduled as the
topology's `scheduling` asks (SCHED_BATCH for "throughput", the default; the normal policy for
"latency"); with "latency" and one shard, the source's thread runs the shard."""
import os
import subprocess
import time
import unittest

from harness import TEST_PLUGINS, TIMEOUT, TRACK, Run, TempDirTest

SCHED_OTHER, SCHED_BATCH = 0, 3
ENGINE_THREADS = {"shard 0", "shard 1", "source events", "sink events"}


def thread_policies(pid):
    """{thread name: scheduling policy} of a running process, from /proc."""
    result = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().rstrip("\n")
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        result[name] = int(fields[41 - 3])  # field 41 of stat; the split starts at field 3
    return result


class EngineThreads(TempDirTest):
    def policies_with(self, scheduling_line, expected, threads=ENGINE_THREADS, shards=2):
        """The engine threads' policies once `threads` are all `expected` (or, if they never
        are, after TIMEOUT). A thread is named first and then changes its policy: a thread seen
        with its name may not have changed it yet."""
        topo = self.write("topology.toml", f"""
shards = {shards}
{scheduling_line}
[plugins]
ev = "{TEST_PLUGINS}/test_events.so"
[states.seqs]
factory = "ev.last_seq"
[[pipelines]]
name = "events"
source = {{ kind = "stdin", decoder = "ev.event_line" }}
steps = [ {TRACK} ]
sink = {{ kind = "discard" }}
""")
        run = Run(topo, stdin=subprocess.PIPE)
        try:
            deadline = time.time() + TIMEOUT
            while True:  # the threads start while the engine wires itself up
                policies = thread_policies(run.proc.pid)
                mine = {name: policies.get(name) for name in threads}
                if mine == {name: expected for name in threads} or time.time() > deadline:
                    break
                time.sleep(0.05)
        finally:
            status = run.wait(b"1 1\n2 1\n1 2\n")
        self.assertEqual(status, 0, run.stderr)
        self.assertIn("pipeline events: 3 in, 3 out", run.stderr)
        return policies

    def test_throughput_scheduling_is_the_default(self):
        policies = self.policies_with("", SCHED_BATCH)
        self.assertEqual({name: policies.get(name) for name in ENGINE_THREADS},
                         {name: SCHED_BATCH for name in ENGINE_THREADS}, policies)

    def test_latency_scheduling_keeps_the_normal_policy(self):
        policies = self.policies_with('scheduling = "latency"', SCHED_OTHER)
        self.assertEqual({name: policies.get(name) for name in ENGINE_THREADS},
                         {name: SCHED_OTHER for name in ENGINE_THREADS}, policies)

    def test_latency_scheduling_with_one_shard_runs_it_on_the_source_thread(self):
        threads = {"source events", "sink events"}
        policies = self.policies_with('scheduling = "latency"', SCHED_OTHER, threads, shards=1)
        self.assertEqual({name: policies.get(name) for name in threads},
                         {name: SCHED_OTHER for name in threads}, policies)
        self.assertNotIn("shard 0", policies, "the source's thread runs the shard")

    def test_throughput_scheduling_with_one_shard_keeps_its_thread(self):
        threads = {"shard 0", "source events", "sink events"}
        policies = self.policies_with("", SCHED_BATCH, threads, shards=1)
        self.assertEqual({name: policies.get(name) for name in threads},
                         {name: SCHED_BATCH for name in threads}, policies)


if __name__ == "__main__":
    unittest.main()
