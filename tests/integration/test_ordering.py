"""Per-key ordering and shard-count independence with the test_events plugin: many keys with
interleaved, increasing sequence numbers go through 4 shards; every key's events must be seen
in order, and 1 and 4 shards must produce the same lines."""
import random
import time
import unittest

from harness import TEST_PLUGINS, TRACK, TempDirTest, check, events_topology, read, run, summary


class Ordering(TempDirTest):
    def events(self, keys=500, per_key=200, seed=3):
        rng = random.Random(seed)
        pending = {k: 0 for k in range(keys)}
        lines = []
        while pending:
            k = rng.choice(list(pending))
            pending[k] += 1
            lines.append(f"{k} {pending[k]}")
            if pending[k] == per_key:
                del pending[k]
        return lines

    def run_events(self, shards, lines, steps=TRACK, extra="", batch_size=64, queue_batches=None,
                   rate=None, settings=""):
        self.write("events.txt", "\n".join(lines) + "\n")
        text = settings + "\n" + events_topology(shards, steps, batch_size=batch_size, extra=extra)
        if rate is not None:
            text = text.replace('framing = "lines", decoder', f'framing = "lines", rate = {rate}, decoder')
        if queue_batches is not None:
            text = f"queue_batches = {queue_batches}\n" + text
        topology = self.write("topology.toml", text)
        status, _, err = run(topology)
        return status, read(self.path("out.txt")).splitlines(), err

    def test_the_smallest_batches_and_queues(self):
        # One message per batch and one batch per queue: the source blocks on a full queue after
        # every message, and each such queue must wake its shard (below the usual wake-up
        # threshold of 4 batches). Everything comes out, in order per key.
        lines = self.events(keys=50, per_key=40)
        status, out, err = self.run_events(4, lines, batch_size=1, queue_batches=1)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(out), len(lines))
        self.assertFalse([l for l in out if not l.endswith(" ok")], "events seen out of order")

    def test_per_key_order_on_four_shards(self):
        lines = self.events()
        status, out, err = self.run_events(4, lines)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(out), len(lines))
        self.assertFalse([l for l in out if not l.endswith(" ok")], "events seen out of order")
        seen = {}
        for l in out:
            key, seq, count, _ = l.split()
            self.assertEqual(int(seq), seen.get(key, 0) + 1)
            self.assertEqual(int(count), int(seq))
            seen[key] = int(seq)
        self.assertEqual(summary(err)["state:seqs"], 500)

    def test_a_paced_source_keeps_its_schedule_and_order(self):
        # 4,000 events at 20,000/s: never sooner than 0.2 s, everything out, in order per key.
        lines = self.events(keys=40, per_key=100)
        started = time.monotonic()
        status, out, err = self.run_events(2, lines, rate=20000)
        self.assertGreaterEqual(time.monotonic() - started, (len(lines) - 1) / 20000)
        self.assertEqual(status, 0, err)
        self.assertEqual(len(out), len(lines))
        self.assertFalse([l for l in out if not l.endswith(" ok")], "events seen out of order")
        self.assertEqual(summary(err)["events"]["in"], len(lines))

    def test_one_shard_run_by_its_source_thread_keeps_the_order(self):
        # scheduling = "latency" with one shard: the source's thread runs both stateful steps
        # itself, each batch of the second step processed after the batch that made it. Small
        # batches, so that one read makes many of both. Every event comes out once, in order
        # per key, counted once in each state; the same lines as with the shard's own thread.
        lines = self.events(keys=100, per_key=50)
        steps = TRACK + (', { state_computation = "ev.retrack", state = "again", '
                         'partition = "ev.tracked_by_key" }')
        again = '[states.again]\nfactory = "ev.last_seq"'
        status, out, err = self.run_events(1, lines, steps, again, batch_size=8,
                                           settings='scheduling = "latency"')
        self.assertEqual(status, 0, err)
        self.assertIn("pipeline 'events': its source thread runs the shard's steps", err)
        self.assertEqual(len(out), len(lines))
        self.assertFalse([l for l in out if not l.endswith(" ok")], "events seen out of order")
        self.assertFalse([l for l in out if l.split()[1] != l.split()[2]], "counted once each")
        counts = summary(err)
        self.assertEqual((counts["state:seqs"], counts["state:again"]), (100, 100))
        status, described, err = check(self.path("topology.toml"))
        self.assertEqual(status, 0, err)
        self.assertIn("scheduling for latency (the source of pipeline events runs the shard's "
                      "steps and writes the sinks: one thread from read to write)", described)
        status, threaded, err = self.run_events(1, lines, steps, again, batch_size=8)
        self.assertEqual(status, 0, err)
        self.assertNotIn("runs the shard's steps", err)
        self.assertEqual(out, threaded)

    def test_two_sources_take_turns_running_one_shard(self):
        # scheduling = "latency" with one shard and two pipelines with a stateful step on the
        # same state, read at the same time: each source's thread runs the shard for its own
        # batches, one thread at a time. Keys 0-49 come from one file, 50-99 from the other;
        # every event comes out once, in order per key, as with the shard's own thread.
        lines = self.events(keys=100, per_key=1000)
        self.write("a.txt", "\n".join(l for l in lines if int(l.split()[0]) < 50) + "\n")
        self.write("b.txt", "\n".join(l for l in lines if int(l.split()[0]) >= 50) + "\n")

        def topology(scheduling):
            pipes = "".join(f"""
[[pipelines]]
name = "{name}"
source = {{ kind = "file", path = "{name}.txt", framing = "lines", decoder = "ev.event_line" }}
steps = [ {TRACK} ]
sink = {{ kind = "file", path = "{name}-out.txt", framing = "lines", encoder = "ev.tracked_line" }}
""" for name in ("a", "b"))
            return self.write("topology.toml", f"""
shards = 1
batch_size = 8
scheduling = "{scheduling}"
[plugins]
ev = "{TEST_PLUGINS}/test_events.so"
[states.seqs]
factory = "ev.last_seq"
{pipes}""")

        outputs = {}
        for scheduling in ("latency", "throughput"):
            status, _, err = run(topology(scheduling))
            self.assertEqual(status, 0, err)
            taking_turns = [f"pipeline '{n}': its source thread runs the shard's steps and writes "
                            f"the sinks (scheduling = \"latency\", one shard, taking turns with "
                            f"the other sources that do)" for n in ("a", "b")]
            for line in taking_turns:
                (self.assertIn if scheduling == "latency" else self.assertNotIn)(line, err)
            out = {n: read(self.path(f"{n}-out.txt")).splitlines() for n in ("a", "b")}
            self.assertEqual(len(out["a"]) + len(out["b"]), len(lines))
            self.assertFalse([l for n in out for l in out[n] if not l.endswith(" ok")],
                             "events seen out of order")
            self.assertEqual(summary(err)["state:seqs"], 100)
            outputs[scheduling] = out
        self.assertEqual(outputs["latency"], outputs["throughput"])
        status, described, err = check(topology("latency"))
        self.assertEqual(status, 0, err)
        self.assertIn("scheduling for latency (the sources of pipelines a, b run the shard's steps, "
                      "one at a time, and write the sinks: one thread from read to write)", described)

    def test_one_and_four_shards_agree(self):
        lines = self.events(keys=100, per_key=50)
        s1, one, e1 = self.run_events(1, lines)
        s4, four, e4 = self.run_events(4, lines)
        self.assertEqual((s1, s4), (0, 0), e1 + e4)
        self.assertEqual(len(one), len(lines))  # two empty outputs would agree too
        self.assertFalse([l for l in one if not l.endswith(" ok")], "events seen out of order")
        self.assertEqual(sorted(one), sorted(four))


if __name__ == "__main__":
    unittest.main()
