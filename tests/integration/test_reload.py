"""Hot reload under continuous input: a pipeline keeps receiving events over TCP while the test
publishes new builds of its plugin (copy to a temporary name, then rename, as a build would).
Every event must come out exactly once, in order per key, with counters that continue across
each swap, and events after a swap must show the new version's behaviour. Broken builds must be
refused with a clear line while the old version keeps serving."""
import os
import shutil
import signal
import socket
import threading
import time
import unittest

from harness import (TEST_PLUGINS, TIMEOUT, TRACK, LiveRun, TempDirTest, connect, free_port,
                     host_has_asan, host_has_tsan, read, read_to_end, summary,
                     wait_until_pipe_full, with_sdk_version)

KEYS = 20


class Feeder(threading.Thread):
    """Sends "KEY SEQ" lines over one TCP connection, round-robin over KEYS keys, paced, until
    told to stop; records how many events it sent."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.sent, self.stop = port, 0, threading.Event()

    def run(self):
        with connect(self.port) as s:
            while not self.stop.is_set():
                burst = "".join(f"{(self.sent + i) % KEYS} {(self.sent + i) // KEYS + 1}\n"
                                for i in range(50))
                s.sendall(burst.encode())
                self.sent += 50
                time.sleep(0.005)  # about 10k events/s
            s.shutdown(socket.SHUT_WR)

    def wait_sent(self, n):
        deadline = time.monotonic() + TIMEOUT
        while self.sent < n:
            # A feeder that died (the run closed the connection) would leave this waiting.
            assert self.is_alive(), f"the feeder stopped after {self.sent} events"
            assert time.monotonic() < deadline, f"only {self.sent} events sent, {n} expected"
            time.sleep(0.01)


class ReloadTest(TempDirTest):
    """A live run fed by a Feeder; its plugins are copied beside the topology first."""

    def launch(self, plugins, extra_state="", steps=TRACK, watch=True, folder=".", link=None,
               factory="ev.last_seq", encoder="ev.tracked_line", extra_aliases=None, settings="",
               shards=2, feed=True):
        """With `link`, the topology names each plugin through a symbolic link in that folder.
        `extra_aliases` maps more aliases to the file of one of `plugins`. `settings`: more
        top-level settings. Without `feed`, no Feeder: no input arrives."""
        os.makedirs(self.path(folder), exist_ok=True)
        for name, built in plugins.items():
            shutil.copy(f"{TEST_PLUGINS}/{built}", self.path(f"{folder}/{name}.so"))
            if link:
                os.makedirs(self.path(link), exist_ok=True)
                os.symlink(f"../{folder}/{name}.so", self.path(f"{link}/{name}.so"))
        self.port = free_port()
        aliases = "".join(f'{name} = "{link or folder}/{name}.so"\n' for name in plugins)
        aliases += "".join(f'{alias} = "{link or folder}/{name}.so"\n'
                           for alias, name in (extra_aliases or {}).items())
        topology = self.write("topology.toml", f"""
shards = {shards}
batch_size = 32
{settings}
[plugins]
{aliases}
[states.seqs]
factory = "{factory}"
{extra_state}
[[pipelines]]
name = "events"
source = {{ kind = "tcp", listen = "127.0.0.1:{self.port}", connections = 1, framing = "lines", decoder = "ev.event_line" }}
steps = [ {steps} ]
sink = {{ kind = "file", path = "out.txt", framing = "lines", encoder = "{encoder}" }}
""")
        self.run_ = LiveRun(topology, *(["--watch"] if watch else []))
        self.run_.wait_for("watching" if watch else "listening on")
        if feed:
            self.feeder = Feeder(self.port)
            self.feeder.start()

    def publish(self, plugin_file, name="ev.so"):
        """Replaces a plugin the way a build does: write a new file, then rename it over."""
        shutil.copy(plugin_file, self.path(name + ".tmp"))
        os.rename(self.path(name + ".tmp"), self.path(name))

    def finish(self, counters_continue=True, sent=None):
        """Ends the run (the Feeder's, or a test's own input of `sent` events, already over)
        and checks its output."""
        if sent is None:
            self.feeder.stop.set()
            self.feeder.join(60)
            sent = self.feeder.sent
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)
        lines = read(self.path("out.txt")).splitlines()
        self.assertEqual(len(lines), sent, "every event comes out exactly once")
        if not counters_continue:
            return lines, None
        versions = {}
        for line in lines:
            key, seq, count, status, *tag = line.split()
            self.assertEqual(status, "ok", f"out of order: {line}")
            self.assertEqual(int(count), int(seq), f"the counter did not continue: {line}")
            versions.setdefault(key, []).append(tag[0] if tag else "v1")
        return lines, versions


class HotReload(ReloadTest):
    def start(self, extra_state="", watch=True, settings="", shards=2, feed=True):
        self.launch({"ev": "test_events.so"}, extra_state=extra_state, watch=watch,
                    settings=settings, shards=shards, feed=feed)

    def assert_versions_in_order(self, versions, expected):
        """Per key: lines of each version in `expected`'s order, never back; every key ends
        with the last, and every version was seen."""
        order = {v: i for i, v in enumerate(expected)}
        for key, vs in versions.items():
            ranks = [order[v] for v in vs]
            self.assertEqual(ranks, sorted(ranks), f"key {key} went back to an older version")
        self.assertTrue(all(vs[-1] == expected[-1] for vs in versions.values()))
        self.assertEqual({v for vs in versions.values() for v in vs}, set(expected))

    def keep_then_migrate(self, keys):
        """Two reloads while the feeder sends, v2 (states kept) then v3 (migrated), and the run
        finished: `keys` states each time, the feeder's lines in order, nothing lost."""
        self.feeder.wait_sent(2000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        kept = self.run_.wait_for("reloaded plugin 'ev'", 1)
        self.feeder.wait_sent(self.feeder.sent + 2000)
        self.publish(f"{TEST_PLUGINS}/test_events_v3.so")
        migrated = self.run_.wait_for("reloaded plugin 'ev'", 2)
        self.feeder.wait_sent(self.feeder.sent + 2000)
        _, versions = self.finish()
        self.assertIn(f"test_events 1.0.0 -> 2.0.0; keys kept {keys}, migrated 0", kept)
        self.assertIn(f"test_events 2.0.0 -> 3.0.0; keys kept 0, migrated {keys}", migrated)
        self.assert_versions_in_order(versions, ["v1", "v2", "v3"])
        self.assertEqual(summary(self.run_.stderr)["state:seqs"], keys)

    def test_swaps_keep_state_and_lose_nothing(self):
        self.start()
        self.feeder.wait_sent(2000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")       # same layout: kept as is
        kept = self.run_.wait_for("reloaded plugin 'ev'", 1)
        self.feeder.wait_sent(self.feeder.sent + 2000)
        self.publish(f"{TEST_PLUGINS}/test_events_v3.so")       # new layout: migrated
        migrated = self.run_.wait_for("reloaded plugin 'ev'", 2)
        self.feeder.wait_sent(self.feeder.sent + 2000)
        self.publish(f"{TEST_PLUGINS}/test_events_v4.so")       # new layout, no restore()
        refused = self.run_.wait_for("reload of plugin 'ev' refused")
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()

        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20, migrated 0", kept)
        self.assertIn("old library unloaded", kept)
        self.assertIn("test_events 2.0.0 -> 3.0.0; keys kept 0, migrated 20", migrated)
        self.assertIn("old library unloaded", migrated)
        self.assertIn("still running test_events 3.0.0", refused)
        self.assertIn("state 'seqs': LastSeq (schema 3, 24 bytes) changed to LastSeq (schema 4, "
                      "24 bytes), and the new version has no restore()", refused)
        self.assert_versions_in_order(versions, ["v1", "v2", "v3"])
        self.assertEqual(summary(self.run_.stderr)["state:seqs"], KEYS)

    def test_a_shard_run_by_its_source_thread_is_reloaded_the_same_way(self):
        # scheduling = "latency" with one shard: no shard thread to pause, the source's thread
        # runs the steps; a reload pauses it between reads, and keeps or migrates the states.
        self.start(settings='scheduling = "latency"', shards=1)
        self.run_.wait_for("its source thread runs the shard's steps")
        self.keep_then_migrate(KEYS)

    def test_two_sources_running_the_shard_are_reloaded_together(self):
        # scheduling = "latency" with one shard and a second stateful pipeline, a paced file of
        # other keys: both sources' threads run the shard, in turn; a reload pauses both, and
        # keeps or migrates the states of both pipelines' keys. Nothing is lost or reordered.
        other = [f"{1000 + i % KEYS} {i // KEYS + 1}" for i in range(KEYS * 1000)]
        self.write("more.txt", "\n".join(other) + "\n")
        more = """
[[pipelines]]
name = "more"
source = { kind = "file", path = "more.txt", framing = "lines", rate = 5000, decoder = "ev.event_line" }
steps = [ { state_computation = "ev.track", state = "seqs", partition = "ev.by_key" } ]
sink = { kind = "file", path = "more-out.txt", framing = "lines", encoder = "ev.tracked_line" }
"""
        self.start(extra_state=more, settings='scheduling = "latency"', shards=1)
        self.run_.wait_for("taking turns with the other sources that do")
        self.keep_then_migrate(2 * KEYS)
        out = read(self.path("more-out.txt")).splitlines()
        self.assertEqual(len(out), len(other), "every event of the file comes out exactly once")
        seen = {}
        for line in out:
            key, seq, count, status, *tag = line.split()
            self.assertEqual((status, int(count)), ("ok", int(seq)), line)
            seen.setdefault(key, []).append(tag[0] if tag else "v1")
        ranks = {"v1": 0, "v2": 1, "v3": 2}
        for key, vs in seen.items():
            self.assertEqual(vs, sorted(vs, key=ranks.get), f"key {key} went back")

    def test_broken_builds_are_refused_and_the_old_version_keeps_serving(self):
        self.start()
        self.feeder.wait_sent(1000)
        half = read(f"{TEST_PLUGINS}/test_events_v2.so", "rb")
        with open(self.path("half.so"), "wb") as f:
            f.write(half[: len(half) // 2])
        self.write("junk.so", "not a plugin\n")
        cases = [
            (self.path("half.so"), "truncated ELF file"),
            (self.path("junk.so"), "not an ELF file"),
            (f"{TEST_PLUGINS}/wrong_abi.so", "ABI mismatch"),
            # Without the check, a host without ASan would be ended by this build's runtime.
            (f"{TEST_PLUGINS}/asan_built.so", "the new version does not fit the topology: "
             if host_has_asan() else "built with AddressSanitizer (it needs libasan.so.8)"),
            (f"{TEST_PLUGINS}/test_events_v7.so",
             "the new version does not fit the topology: ") ,
            (f"{TEST_PLUGINS}/test_events_v12.so",
             "state 'seqs' would be keyed with string keys instead of integer keys: no key it "
             "holds would be found again"),
            (f"{TEST_PLUGINS}/test_events_v4.so", "and the new version has no restore()"),
            (f"{TEST_PLUGINS}/test_events_v5.so", "cannot migrate LastSeq from schema 0"),
            (f"{TEST_PLUGINS}/test_events_v6.so",
             "(of 64 recent messages: on copies of their keys' states, 64 failed with the new "
             "version, 0 with the old; on fresh states, 64 failed with the new version, 0 with "
             "the old); if the new build rejects these messages on purpose, set canary = "
             "\"warn\" at the top of the topology (a restart applies it)"),
            # A decoder has no state: its failures are counted once, and it is not a step.
            (f"{TEST_PLUGINS}/test_events_v17.so",
             ("canary: pipeline 'events' decoder 'ev.event_line': version 17 rejects every "
              "event, e.g. seq ", " (of 64 recent messages, 64 failed with the new version, 0 "
              "with the old); if the new build rejects these messages on purpose")),
            # Under ASan a copy's crash ends with AddressSanitizer's exit status instead.
            (f"{TEST_PLUGINS}/crash_on_load.so",
             self.path("ev.so") + ": loading it crashed: " +
             ("exit status 1" if host_has_asan() else
              "SIGSEGV (invalid memory access) in plugin code: the loading of " +
              self.path("ev.so") + " (static constructors, registrations)")),
            (f"{TEST_PLUGINS}/test_events_v8.so",
             "canary: the new version crashed on recent messages: " +
             ("exit status 1" if host_has_asan() else
              "SIGSEGV (invalid memory access) in plugin code: ev.track (the reload's canary), "
              "pipeline 'events'")),
            (f"{TEST_PLUGINS}/test_events_v16.so",
             "canary: the new version crashed on recent messages: " +
             ("exit status 1" if host_has_asan() else
              "SIGSEGV (invalid memory access) in plugin code: save() and restore() of LastSeq "
              "(the reload's canary)")),
            (f"{TEST_PLUGINS}/test_events_v9.so",
             "canary: on recent messages, the new version did not finish within 5 s (an endless "
             "loop, or a wait that never ends)" +
             ("" if host_has_tsan() else
              " in plugin code: ev.track (the reload's canary), pipeline 'events'")),
        ]
        for i, (plugin, message) in enumerate(cases, start=1):
            self.publish(plugin)
            line = self.run_.wait_for("reload of plugin 'ev' refused", i)
            self.assertIn("still running test_events 1.0.0", line)
            for part in message if isinstance(message, tuple) else (message,):
                self.assertIn(part, line)
            self.feeder.wait_sent(self.feeder.sent + 300)
        lines, versions = self.finish()
        self.assertEqual({v for vs in versions.values() for v in vs}, {"v1"})
        self.assertIn("has no state_computation 'track'", self.run_.stderr)
        # A missing component is not a type two plugins share: no advice to rebuild others.
        self.assertNotIn("reloaded together", self.run_.stderr)


    def test_a_reload_before_any_input_says_the_new_build_was_not_tried(self):
        # No message has arrived yet: the canary has nothing to try the new build on, so v8,
        # which crashes on every event, goes in. The line must not pass it for a tried build.
        self.start(feed=False)
        self.publish(f"{TEST_PLUGINS}/test_events_v8.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("[warning] reloaded plugin 'ev': test_events 1.0.0 -> 8.0.0; keys kept 0",
                      line)
        self.assertTrue(line.endswith("old library unloaded; canary: no recent input, the new "
                                      "build was not tried on messages"), line)
        self.run_.interrupt()
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)

    def test_with_canary_warn_a_build_failing_more_is_reloaded_with_a_warning(self):
        # The same build the default refuses (see above): one that rejects these messages on
        # purpose. Its failures then count as errors, and nothing else is lost.
        self.start(settings='canary = "warn"')
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v6.so")
        warning = self.run_.wait_for("the reload goes on (canary = \"warn\")")
        self.run_.wait_for("reloaded plugin 'ev'")
        self.feeder.wait_sent(self.feeder.sent + 500)
        self.feeder.stop.set()
        self.feeder.join(60)
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)
        self.assertIn("canary: pipeline 'events' step 'ev.track': version 6 rejects every event, "
                      "e.g. seq ", warning)
        self.assertIn(" (of 64 recent messages: on copies of their keys' states, 64 failed with "
                      "the new version, 0 with the old; on fresh states, 64 failed with the new "
                      "version, 0 with the old); the reload goes on", warning)
        counts = summary(self.run_.stderr)["events"]
        out = read(self.path("out.txt")).splitlines()
        self.assertGreater(counts["errors"], 0)
        self.assertEqual((counts["in"], len(out) + counts["errors"]),
                         (self.feeder.sent, self.feeder.sent))
        self.assertNotIn(" v6", "".join(out))  # version 6 emitted nothing: every event failed

    def test_a_build_with_an_older_sdk_is_reloaded_with_a_warning_for_its_lines_sink(self):
        # The sink is framed as lines, and its encoder's plugin becomes an SDK 0.2.3 build of
        # the same ABI: the reload goes on, and says once that newlines are not checked.
        self.start()
        self.feeder.wait_sent(500)
        with_sdk_version(f"{TEST_PLUGINS}/test_events_v2.so", self.path("older.so"), "0.2.3")
        self.publish(self.path("older.so"))
        self.run_.wait_for("reloaded plugin 'ev'", 1)
        line = self.run_.wait_for("reload of plugin 'ev': ")
        self.assertIn(f"topology.toml:15:72: plugin 'ev' ({self.path('ev.so')}) was built with SDK "
                      "0.2.3, whose encoders do not reject a newline inside a message: with "
                      "framing = \"lines\", encoder 'ev.tracked_line' would write such a "
                      "message as two lines", line)
        # An edit under --watch is checked with it, and says it too.
        self.write("topology.toml", read(self.path("topology.toml")).replace("shards = 2",
                                                                              "shards = 3"))
        self.run_.wait_for("restart shardline to apply it; warnings (plugins and this machine):")
        self.run_.wait_for("was built with SDK 0.2.3, whose encoders do not reject a newline", 2)
        # A reload to another build of that SDK does not say it again.
        with_sdk_version(f"{TEST_PLUGINS}/test_events.so", self.path("older.so"), "0.2.3")
        self.publish(self.path("older.so"))
        self.run_.wait_for("reloaded plugin 'ev'", 2)
        self.feeder.wait_sent(self.feeder.sent + 500)
        self.finish()
        self.assertEqual(self.run_.stderr.count("reload of plugin 'ev': "), 1, self.run_.stderr)

    def test_an_edited_topology_is_checked_at_once_and_the_run_goes_on(self):
        self.start()
        self.feeder.wait_sent(500)
        text = read(self.path("topology.toml"))
        self.write("topology.toml", text.replace("shards = 2", "shards = 3"))
        self.run_.wait_for("the topology: " + self.path("topology.toml") + " changed")
        self.run_.wait_for("the edited topology is valid, but a running host keeps the topology "
                           "it started with: restart shardline to apply it")
        # Valid, but a restart with it would fail on this machine now: its new port is taken.
        # (The port the host itself listens on is its own, and not reported.)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.write("topology.toml", text.replace(f"127.0.0.1:{self.port}",
                                                     f"127.0.0.1:{port}"))
            self.run_.wait_for("restart shardline to apply it; warnings (plugins and this machine):")
            line = self.run_.wait_for(f"cannot listen on 127.0.0.1:{port}")
            self.assertIn("topology.toml:", line)
            self.assertIn("`shardline run` would not start now", line)
        # The host's own port, spelled another way: free once it stops, so no warning.
        self.write("topology.toml", text.replace(f"127.0.0.1:{self.port}", f"0.0.0.0:{self.port}"))
        line = self.run_.wait_for("the edited topology is valid", 3)
        self.assertTrue(line.endswith("restart shardline to apply it"), line)
        self.write("topology.toml", text.replace("shards = 2", "shard = 3"))
        self.run_.wait_for("the edited topology has 1 error(s); the running topology is "
                           "unchanged")
        self.run_.wait_for("topology.toml:2:1: unknown key 'shard' in the top level")
        # Wired against the running plugins: a component they do not export is an error too.
        self.write("topology.toml", text.replace('"ev.track"', '"ev.trak"'))
        self.run_.wait_for("the edited topology has 1 error(s)", 2)
        self.run_.wait_for("plugin 'ev' (test_events 1.0.0) has no state_computation 'trak'")
        # A plugin path that leads nowhere: checked, not taken for the running plugin's file.
        self.write("topology.toml", text.replace('ev = "./ev.so"', 'ev = "./missing.so"'))
        self.run_.wait_for("the edited topology has 1 error(s)", 3)
        self.run_.wait_for("plugin 'ev': " + self.path("missing.so") + ": no such plugin file")
        # Comments and layout only: nothing a restart would change.
        self.write("topology.toml", "# the events pipeline\n" + text.replace(" = ", "="))
        self.run_.wait_for("the topology file differs from the one running only in comments or "
                           "layout: nothing to apply")
        self.write("topology.toml", text)  # the edit undone
        self.run_.wait_for("the topology file is back to the one running: nothing to apply")
        # An edit naming a component only a new build has: refused, then valid once that
        # build is reloaded (checked again after the reload, not only when the file changes).
        self.write("topology.toml",
                   text.replace("steps = [ ", 'steps = [ { computation = "ev.pass" }, '))
        self.run_.wait_for("the edited topology has 1 error(s)", 4)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        self.run_.wait_for("reloaded plugin 'ev'")
        self.run_.wait_for("the edited topology is valid, but a running host keeps the topology "
                           "it started with: restart shardline to apply it", 4)
        self.write("topology.toml", text)
        self.run_.wait_for("the topology file is back to the one running: nothing to apply", 2)
        # Moved away for a while: said, in the topology's own words; back: checked again.
        os.rename(self.path("topology.toml"), self.path("elsewhere.toml"))
        self.run_.wait_for("the topology: " + self.path("topology.toml") + " was removed; the run "
                           "goes on with the topology it started with, and a new file there will "
                           "be checked")
        os.rename(self.path("elsewhere.toml"), self.path("topology.toml"))
        self.run_.wait_for("the topology file is back to the one running: nothing to apply", 3)
        self.feeder.wait_sent(self.feeder.sent + 500)
        lines, versions = self.finish()
        self.assertEqual({vs[-1] for vs in versions.values()}, {"v2"})

    def test_an_edited_topology_is_read_with_the_runs_plugin_dir_and_shards(self):
        # A restart with the same command line would look for each plugin in --plugin-dir
        # first and run --shards shards: the edit is checked as that restart would read it.
        os.makedirs(self.path("dir"))
        for name in ("ev", "other"):
            shutil.copy(f"{TEST_PLUGINS}/test_events.so", self.path(f"dir/{name}.so"))
        port = free_port()
        text = f"""
shards = 4
key_groups = 2
[plugins]
ev = "nowhere/ev.so"
[states.seqs]
factory = "ev.last_seq"
[[pipelines]]
name = "events"
source = {{ kind = "tcp", listen = "127.0.0.1:{port}", framing = "lines", decoder = "ev.event_line" }}
steps = [ {TRACK} ]
sink = {{ kind = "discard" }}
"""
        topology = self.write("topology.toml", text)
        live = LiveRun(topology, "--watch", "--plugin-dir", self.path("dir"), "--shards", "2")
        live.wait_for("watching " + self.path("dir/ev.so") + " (plugin 'ev')")
        live.wait_for("watching " + topology + " (the topology)")
        self.write("topology.toml", text.replace("nowhere/ev.so", "elsewhere/other.so"))
        live.wait_for("the edited topology is valid, but a running host keeps the topology it "
                      "started with: restart shardline to apply it")
        live.interrupt()
        self.assertEqual(live.wait(), 0, live.stderr)
        self.assertNotIn("the edited topology has", live.stderr)

    def test_a_plugin_folder_removed_and_built_again_is_watched_again(self):
        # A clean rebuild: the build folder goes, then comes back with a new build in it.
        self.launch({"ev": "test_events.so"}, folder="build")
        self.feeder.wait_sent(1000)
        shutil.rmtree(self.path("build"))
        self.run_.wait_for("plugin 'ev': the folder " + self.path("build") + " was removed or "
                           "moved; watching for it to come back")
        os.makedirs(self.path("build"))
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so", "build/ev.so")
        self.run_.wait_for("watching " + self.path("build/ev.so") + " again (plugin 'ev')")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))

    def test_a_plugin_named_through_a_link_is_reloaded_when_its_target_is_rebuilt(self):
        self.launch({"ev": "test_events.so"}, folder="build", link="plugins")
        self.run_.wait_for("watching " + self.path("plugins/ev.so") + " (plugin 'ev'), a link to " +
                           os.path.realpath(self.path("build/ev.so")))
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so", "build/ev.so")  # the build's output
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))

    def test_a_link_pointed_elsewhere_is_followed_to_its_new_target(self):
        self.launch({"ev": "test_events.so"}, folder="build", link="plugins")
        self.feeder.wait_sent(1000)
        # The link now leads to another build folder's output (ln -sfn, done atomically).
        os.makedirs(self.path("build2"))
        shutil.copy(f"{TEST_PLUGINS}/test_events_v2.so", self.path("build2/ev.so"))
        os.symlink("../build2/ev.so", self.path("plugins/ev.so.new"))
        os.rename(self.path("plugins/ev.so.new"), self.path("plugins/ev.so"))
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.run_.wait_for("plugin 'ev': " + self.path("plugins/ev.so") + " now leads to " +
                           os.path.realpath(self.path("build2/ev.so")) + "; watching that file")
        self.feeder.wait_sent(self.feeder.sent + 1000)
        # A rebuild in the new folder is noticed; one in the old folder no longer is.
        self.publish(f"{TEST_PLUGINS}/test_events_v3.so", "build/ev.so")
        self.publish(f"{TEST_PLUGINS}/test_events_v3.so", "build2/ev.so")
        line = self.run_.wait_for("reloaded plugin 'ev'", 2)
        self.assertIn("test_events 2.0.0 -> 3.0.0", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v3" for vs in versions.values()))
        self.assertNotIn(self.path("build/ev.so") + " changed", self.run_.stderr)

    def test_sighup_reloads_without_a_watcher(self):
        self.start(watch=False)
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        self.run_.proc.send_signal(signal.SIGHUP)
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.assertIn("old library unloaded", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))

    def test_a_plugin_file_removed_is_reported_and_a_new_one_loaded(self):
        self.start()
        self.feeder.wait_sent(1000)
        os.remove(self.path("ev.so"))
        self.run_.wait_for("plugin 'ev': " + self.path("ev.so") + " was removed; the build "
                           "already loaded runs on, and a new file there will be loaded")
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))

    def test_two_aliases_of_one_file_are_reloaded_in_one_pause(self):
        # ev2 names the same file as ev: one rebuild, one reload of both, so no message is
        # keyed by one build and tracked by the other.
        self.launch({"ev": "test_events.so"},
                    steps='{ state_computation = "ev.track", state = "seqs", '
                          'partition = "ev2.by_key" }', extra_aliases={"ev2": "ev"})
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        line = self.run_.wait_for("reloaded plugins 'ev' and 'ev2' together")
        self.assertIn("test_events 1.0.0 -> 2.0.0, test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))
        self.assertNotIn("reloaded plugin 'ev'", self.run_.stderr)
        self.assertNotIn("reloaded plugin 'ev2'", self.run_.stderr)

    def test_a_slow_plugin_with_a_backlog_is_reloaded_once_the_backlog_has_drained(self):
        # slow_tracked takes 2 ms an event on the only shard, and its inbox holds 128 batches
        # of 32: the events sent at once make a backlog of many seconds, while the source waits
        # on the full inbox. The reload waits for the source to pause and for the backlog to
        # drain, as long as events are being processed, instead of giving up after a few
        # seconds (and holding every source again at each retry).
        self.launch({"ev": "test_events.so"}, steps=TRACK + ', { computation = "ev.slow_tracked" }',
                    settings="queue_batches = 128", shards=1, feed=False)
        backlog, after = 10000, 200
        events = lambda first, n: "".join(f"{i % KEYS} {i // KEYS + 1}\n"
                                          for i in range(first, first + n)).encode()
        with connect(self.port) as s:
            # Sent from a thread: the kernel's buffers may not hold it all, and the source reads
            # only as the shard makes room.
            sender = threading.Thread(target=s.sendall, args=(events(0, backlog),), daemon=True)
            sender.start()
            self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
            line = self.run_.wait_for("reloaded plugin 'ev'")
            sender.join(TIMEOUT)
            s.sendall(events(backlog, after))
            s.shutdown(socket.SHUT_WR)
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        lines, versions = self.finish(sent=backlog + after)
        self.assertNotIn("refused", self.run_.stderr)
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))

    def test_a_build_under_another_plugin_name_says_so(self):
        self.start()
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v15.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> test_events_renamed 15.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v15" for vs in versions.values()))

    def test_a_state_holding_the_old_builds_code_keeps_that_build_loaded(self):
        # Labeller holds a std::function made by the build that created the state, and has no
        # save(): it is kept as is, so the old build must stay loaded or its next call crashes.
        self.launch({"ev": "test_events.so"}, factory="ev.labeller", encoder="ev.text",
                    steps='{ state_computation = "ev.label", state = "seqs", '
                          'partition = "ev.by_key" }')
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("keys kept 20", line)
        self.assertIn("old build test_events 1.0.0 kept loaded for state 'seqs', kept as is", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, _ = self.finish(counters_continue=False)
        # Each key's function is still the first build's: no tag, before the swap and after.
        self.assertEqual(sorted(lines), sorted(f"{i % KEYS} seq {i // KEYS + 1}"
                                               for i in range(self.feeder.sent)))

    def test_sighup_with_a_plugin_file_gone_runs_on_with_the_build_loaded(self):
        # As the watcher has it: a removed file is no new build (a clean rebuild under way).
        self.start(watch=False)
        self.feeder.wait_sent(1000)
        os.remove(self.path("ev.so"))
        self.run_.proc.send_signal(signal.SIGHUP)
        self.run_.wait_for("[warning] plugin 'ev': " + self.path("ev.so") + " was removed; the "
                           "build already loaded runs on")
        self.run_.wait_for("every other plugin file holds the build already running; nothing "
                           "to reload")
        self.feeder.wait_sent(self.feeder.sent + 1000)
        self.finish()
        self.assertNotIn("refused", self.run_.stderr)

    def test_a_reload_refused_while_the_sink_is_blocked_is_tried_again(self):
        # out.txt is a pipe that nobody reads at first: once it is full, the sink blocks, the
        # pipelines cannot pause, and the rebuild is refused, naming the sink; a SIGHUP then is
        # refused too, without pausing anything, and does not cancel the retry; once the pipe
        # is read, the retry goes through, and nothing is lost meanwhile.
        os.mkfifo(self.path("out.txt"))
        pipe = os.open(self.path("out.txt"), os.O_RDONLY | os.O_NONBLOCK)  # so the sink can open
        self.start()
        wait_until_pipe_full(pipe)  # the sink blocks...
        # ... but a reload refuses to wait on a sink only once it has been inside one write for a
        # while (a full pipe alone let the reload through): the host's warning, after 10 s,
        # says the sink has been for long enough.
        self.run_.wait_for("sink file " + self.path("out.txt") + " of pipeline 'events' has "
                           "been inside one write for ")
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        refused = self.run_.wait_for("reload of plugin 'ev' refused")
        self.assertIn("still running test_events 1.0.0: ", refused)
        self.assertIn("sink file " + self.path("out.txt") + " of pipeline 'events' has been "
                      "inside one write for ", refused)
        self.run_.wait_for("plugin 'ev': the reload is tried again in 5 s, or when it is rebuilt "
                           "again")
        self.run_.proc.send_signal(signal.SIGHUP)
        refused = self.run_.wait_for("reload of plugin 'ev' refused", 2)
        self.assertIn("(a receiver that reads slowly or not at all, or is gone): nothing was paused", refused)
        self.run_.wait_for("the rebuilt plugins: the reload is tried again in 5 s, or at the next "
                           "SIGHUP")
        received = bytearray()
        reader = threading.Thread(target=lambda: received.extend(read_to_end(pipe)), daemon=True)
        reader.start()
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        self.feeder.stop.set()
        self.feeder.join(60)
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)
        reader.join(60)
        os.close(pipe)
        lines = received.decode().splitlines()
        self.assertEqual(len(lines), self.feeder.sent, "every event comes out exactly once")
        for key in range(KEYS):
            mine = [l.split() for l in lines if l.startswith(f"{key} ")]
            self.assertEqual([int(l[2]) for l in mine], list(range(1, len(mine) + 1)))
            self.assertEqual(mine[-1][-1], "v2")
        self.assertEqual(self.run_.stderr.count("reload of plugin 'ev' refused"), 2)

    def test_a_check_the_replay_itself_trips_does_not_refuse_the_build(self):
        # v13 rejects an event seen before: the canary's replay of messages already applied to
        # the live states trips it, but on fresh states it passes, as the live run then does.
        self.start()
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v13.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 13.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v13" for vs in versions.values()))

    def reload_with_key_13_failing(self, **launch):
        """Key 13, always among the recent messages, fails with both versions: the canary
        counts it against both alike, as the running pipeline does, instead of refusing."""
        self.launch({"ev": "test_events.so"}, **launch)
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 19", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        self.feeder.stop.set()
        self.feeder.join(60)
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)
        lines = read(self.path("out.txt")).splitlines()
        key13 = sum(1 for i in range(self.feeder.sent) if i % KEYS == 13)
        self.assertEqual(len(lines), self.feeder.sent - key13)
        self.assertFalse([l for l in lines if l.startswith("13 ")])
        self.assertEqual(summary(self.run_.stderr)["events"]["errors"], key13)
        self.assertTrue(lines[-1].endswith(" v2"))

    def test_a_key_whose_state_factory_throws_does_not_block_a_reload(self):
        self.reload_with_key_13_failing(factory="ev.picky")  # refuses key 13's state

    def test_a_key_whose_partition_function_fails_does_not_block_a_reload(self):
        # The message goes no further, in the canary as on the running pipeline.
        self.reload_with_key_13_failing(steps='{ state_computation = "ev.track", state = "seqs", '
                                              'partition = "ev.by_key_but_13" }')

    def test_a_migration_that_crashes_on_a_key_the_canary_missed_is_refused(self):
        # Key 999 is declared and never gets an event; v14's restore() crashes on such a state.
        # The canary's recent messages never touch it: only trying the whole migration in a
        # copy of the host first keeps the host (and every state) alive.
        self.start(extra_state="keys = [999]")
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v14.so")
        refused = self.run_.wait_for("reload of plugin 'ev' refused")
        self.assertIn("still running test_events 1.0.0: migrating the states crashed in a copy "
                      "of the host: " + ("exit status 1" if host_has_asan() else
                                         "SIGSEGV (invalid memory access) in plugin code: save() "
                                         "and restore() of LastSeq (the reload's migration)"),
                      refused)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertEqual({v for vs in versions.values() for v in vs}, {"v1"})
        self.assertEqual(summary(self.run_.stderr)["state:seqs"], KEYS + 1)

    def test_a_new_build_that_crashes_on_a_state_it_cannot_copy_is_refused(self):
        # x.history holds a vector and has no save(): the canary cannot copy it, and fresh
        # states hide v3's crash on a history that is not empty. In the copy of the host, the
        # canary also runs on the live states themselves.
        shutil.copy(f"{TEST_PLUGINS}/test_extra.so", self.path("x.so"))
        port = free_port()
        topology = self.write("topology.toml", f"""
shards = 2
[plugins]
ev = "{TEST_PLUGINS}/test_events.so"
x = "x.so"
[states.history]
factory = "x.history"
[[pipelines]]
name = "events"
source = {{ kind = "tcp", listen = "127.0.0.1:{port}", connections = 1, framing = "lines", decoder = "ev.event_line" }}
steps = [ {{ state_computation = "x.remember", state = "history", partition = "ev.by_key" }} ]
""")
        self.run_ = LiveRun(topology, "--watch")
        self.run_.wait_for("watching")
        feeder = Feeder(port)
        feeder.start()
        feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_extra_v3.so", "x.so")
        refused = self.run_.wait_for("reload of plugin 'x' refused")
        self.assertIn("still running test_extra 0.2.0: canary: the new version crashed on recent "
                      "messages: " + ("exit status 1" if host_has_asan() else
                                      "SIGSEGV (invalid memory access) in plugin code: x.remember "
                                      "(the reload's canary), pipeline 'events'"), refused)
        feeder.wait_sent(feeder.sent + 500)
        feeder.stop.set()
        feeder.join(60)
        self.assertEqual(self.run_.wait(), 0, self.run_.stderr)
        self.assertEqual(summary(self.run_.stderr)["events"]["in"], feeder.sent)

    def test_reset_when_the_topology_allows_it(self):
        self.start(extra_state='on_reload = "reset"')
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_events_v4.so")       # new layout, no restore()
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("keys kept 0, migrated 0, reset 20", line)
        warning = self.run_.wait_for("every key starts again from a new state")
        self.assertIn("[warning] reload of plugin 'ev': state 'seqs': ", warning)
        self.assertIn("(on_reload = \"reset\")", warning)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, _ = self.finish(counters_continue=False)
        # Per key: the count runs 1..n, then starts again at 1 after the reset, in order.
        restarts = {}
        for line in lines:
            key, seq, count, status = line.split()[:4]
            self.assertEqual(status, "ok")
            if count == "1" and seq != "1":
                restarts[key] = restarts.get(key, 0) + 1
        self.assertEqual(set(restarts.values()), {1})
        self.assertEqual(len(restarts), KEYS)


class SharedTypeReload(ReloadTest):
    """Two plugins that share a message type: test_events decodes Event, test_extra's relay step
    passes it on to test_events' track. A new layout of Event has to reach both at once."""

    def start(self, watch=True):
        self.launch({"ev": "test_events.so", "x": "test_extra.so"},
                    steps='{ computation = "x.relay" }, { state_computation = "ev.track", '
                          'state = "seqs", partition = "ev.by_key" }', watch=watch)

    def finish_reloaded_together(self):
        """Both reloaded in one pause ('ev' first, as a SIGHUP or ev's change brings them),
        then the run finished: nothing lost, no refusal."""
        line = self.run_.wait_for("reloaded plugins 'ev' and 'x' together")
        self.assertIn("test_events 1.0.0 -> 10.0.0, test_extra 0.2.0 -> 0.3.0; keys kept 20",
                      line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.check_versions(versions)
        self.assertNotIn("refused", self.run_.stderr)

    def check_versions(self, versions):
        for key, vs in versions.items():
            self.assertEqual(vs, sorted(vs, key=lambda v: v != "v1"), f"key {key} went back")
            self.assertEqual(vs[-1], "v10")

    def test_a_plugin_with_no_state_of_its_own_reports_no_keys(self):
        # x only relays: its reload carries no state, so it reports none of ev's keys.
        self.start()
        self.feeder.wait_sent(1000)
        self.publish(f"{TEST_PLUGINS}/test_extra_v3.so", "x.so")
        line = self.run_.wait_for("reloaded plugin 'x'")
        self.assertIn("test_extra 0.2.0 -> 0.4.0; keys kept 0, migrated 0, reset 0", line)
        self.feeder.wait_sent(self.feeder.sent + 500)
        self.finish()

    def test_a_rebuild_of_both_is_reloaded_together(self):
        self.start()
        self.feeder.wait_sent(1000)
        # One of the two rebuilt: it cannot fit alone, and the old pair keeps serving. Not an
        # error: it waits for the other.
        self.publish(f"{TEST_PLUGINS}/test_events_v10.so")
        waiting = self.run_.wait_for("plugin 'ev': waiting for the plugins it shares a type with")
        self.assertIn("[warning] plugin 'ev': waiting for the plugins it shares a type with to be "
                      "rebuilt too, to reload them together; until then it runs test_events "
                      "1.0.0: the new version does not fit the topology: ", waiting)
        self.assertIn("two builds of Event, of 16 and 24 bytes: rebuild every plugin that uses "
                      "it from the same definition", waiting)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        # The other one rebuilt too: both go in, in one pause, and the state carries over.
        self.publish(f"{TEST_PLUGINS}/test_extra_v2.so", "x.so")
        line = self.run_.wait_for("reloaded plugins 'x' and 'ev' together")
        self.assertIn("test_extra 0.2.0 -> 0.3.0, test_events 1.0.0 -> 10.0.0; keys kept 20",
                      line)
        self.assertIn("old libraries unloaded", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.check_versions(versions)

    def test_a_partner_still_being_written_is_taken_in_once_it_has_settled(self):
        # x.so is written in pieces over about 3 s, as a slow linker writes it, while ev's new
        # build lands: the reload of ev, which cannot fit alone, takes x in only once its file
        # has settled, not half-written ("not an ELF file", "truncated ELF file").
        self.start()
        self.feeder.wait_sent(1000)
        image = read(f"{TEST_PLUGINS}/test_extra_v2.so", "rb")
        step = len(image) // 30 + 1
        with open(self.path("x.so"), "wb") as f:  # the linker's output, rewritten in place
            f.write(image[:step])
            f.flush()
            self.publish(f"{TEST_PLUGINS}/test_events_v10.so")
            for at in range(step, len(image), step):
                time.sleep(0.1)
                f.write(image[at:at + step])
                f.flush()
        self.finish_reloaded_together()
        self.assertNotIn("ELF file", self.run_.stderr)

    def test_sighup_with_one_plugin_file_gone_reloads_the_others(self):
        self.start(watch=False)
        self.feeder.wait_sent(1000)
        os.remove(self.path("x.so"))
        self.publish(f"{TEST_PLUGINS}/test_events_v2.so")
        self.run_.proc.send_signal(signal.SIGHUP)
        self.run_.wait_for("[warning] plugin 'x': " + self.path("x.so") + " was removed; the "
                           "build already loaded runs on")
        line = self.run_.wait_for("reloaded plugin 'ev'")
        self.assertIn("test_events 1.0.0 -> 2.0.0; keys kept 20", line)
        self.feeder.wait_sent(self.feeder.sent + 1000)
        lines, versions = self.finish()
        self.assertTrue(all(vs[-1] == "v2" for vs in versions.values()))
        self.assertNotIn("refused", self.run_.stderr)

    def test_sighup_reloads_every_plugin_at_once(self):
        self.start(watch=False)
        self.feeder.wait_sent(1000)
        # Nothing rebuilt yet: nothing to reload, and nothing pauses.
        self.run_.proc.send_signal(signal.SIGHUP)
        self.run_.wait_for("every plugin file holds the build already running; nothing to "
                           "reload")
        self.publish(f"{TEST_PLUGINS}/test_events_v10.so")
        self.publish(f"{TEST_PLUGINS}/test_extra_v2.so", "x.so")
        self.run_.proc.send_signal(signal.SIGHUP)
        self.finish_reloaded_together()


if __name__ == "__main__":
    unittest.main()
