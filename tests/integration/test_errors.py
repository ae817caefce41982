"""Bad input and failing plugin code: each is reported, counted and handled by the pipeline's
error policy, and never crashes the runtime or loses the other messages."""
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest


from harness import (PLUGINS, read, SHARDLINE, TEST_PLUGINS, TRACK, LiveRun, Run, TempDirTest,
                     check, connect, events_topology, free_port, free_ports, frame, host_has_asan,
                     host_has_tsan, read_to_end, run, send_all, summary, tcp_listen,
                     wait_until_pipe_full)

EVENTS = f'{TEST_PLUGINS}/test_events.so'


def run_to_crash(*args, env=None):
    """Runs shardline expecting it to crash: no core file is written."""
    return subprocess.run([SHARDLINE, *args], capture_output=True, text=True, timeout=60, env=env,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))


class PluginErrors(TempDirTest):
    def topology(self, on_error="", lines=50, steps='{ computation = "ev.explode" }, ' + TRACK):
        self.write("events.txt", "".join(f"{k % 5} {k + 1}\n" for k in range(lines)) + "garbage\n")
        return self.write("topology.toml", events_topology(2, steps, extra=on_error))

    def test_skip_counts_and_continues(self):
        status, _, err = run(self.topology())
        self.assertEqual(status, 0, err)
        out = read(self.path("out.txt")).splitlines()
        cursed = [s for s in range(1, 51) if s % 7 == 0]
        self.assertEqual(sorted(int(l.split()[1]) for l in out),
                         [s for s in range(1, 51) if s % 7 != 0])
        counts = summary(err)["events"]
        self.assertEqual(counts["in"], 50)          # "garbage" did not decode
        self.assertEqual(counts["errors"], 1 + len(cursed))
        self.assertEqual(counts["out"], 50 - len(cursed))
        self.assertIn("pipeline 'events' step 'ev.explode': seq 7 is cursed", err)
        # A frame the decoder rejects is named by where it was read: "garbage" is line 51.
        self.assertIn("pipeline 'events' step 'ev.event_line': file " + self.path("events.txt") +
                      ", line 51: ", err)
        # Lines held back are not lost at the end of the run: the last is shown, with their number.
        self.assertIn("pipeline 'events' step 'ev.explode': seq 49 is cursed", err)

    def test_a_crash_in_plugin_code_names_the_component(self):
        # A segfault cannot be survived in-process, but the host says where it happened, then
        # ends with the same signal. (Under the asan preset, AddressSanitizer reports it.)
        if host_has_asan():
            self.skipTest("AddressSanitizer reports the crash itself")
        topo = self.topology(steps='{ computation = "ev.segfault" }, ' + TRACK)
        p = run_to_crash("run", topo)
        self.assertEqual(p.returncode, -signal.SIGSEGV, p.stderr)
        self.assertIn("shardline: fatal SIGSEGV (invalid memory access) in plugin code: "
                      "ev.segfault, pipeline 'events', thread 'source events'. The host cannot "
                      "recover from a crash inside a plugin", p.stderr)

    def test_plugin_code_calling_exit_is_named(self):
        if host_has_tsan():
            # exit() on a source thread runs static destructors while the shards still run:
            # ThreadSanitizer reports that race, and ends the process with its own status.
            self.skipTest("ThreadSanitizer reports the race that exit() itself starts")
        topo = self.topology(steps='{ computation = "ev.exit_at_5" }, ' + TRACK)
        p = run_to_crash("run", topo)
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertIn("shardline: plugin code called exit(7): ev.exit_at_5, pipeline 'events'; "
                      "the host ends with it, without draining its pipelines or printing a "
                      "summary", p.stderr)

    def test_a_stack_overflow_in_plugin_code_names_the_component(self):
        # Plugin code recursing without end leaves no stack for the report: each thread has an
        # alternate stack for it, the source's as a shard's.
        if host_has_asan():
            self.skipTest("AddressSanitizer reports the crash itself")
        for steps, where in (('{ computation = "ev.overflow" }, ' + TRACK,
                              "ev.overflow, pipeline 'events', thread 'source events'"),
                             (TRACK + ', { computation = "ev.overflow_tracked" }',
                              "ev.overflow_tracked, pipeline 'events', thread 'shard ")):
            with self.subTest(where):
                p = run_to_crash("run", self.topology(steps=steps))
                self.assertEqual(p.returncode, -signal.SIGSEGV, p.stderr)
                self.assertIn("shardline: fatal SIGSEGV (invalid memory access) in plugin code: " +
                              where, p.stderr)

    def stuck_topology(self, plugin):
        """One shard; test_events_v9's track never returns, so the shard never drains."""
        self.write("events.txt", "1 1\n2 1\n")
        return self.write("topology.toml", events_topology(1).replace(EVENTS, plugin))

    def stop_stuck(self, live):
        """Two interrupts end a run whose plugin code never returns, without draining."""
        live.interrupt()
        live.proc.send_signal(signal.SIGINT)
        self.assertEqual(live.wait(), 4, live.stderr)

    def test_plugin_code_that_never_returns_is_named_and_a_second_interrupt_ends_the_run(self):
        if host_has_tsan():
            self.skipTest("ThreadSanitizer keeps the spinning thread from answering")
        topo = self.stuck_topology(f"{TEST_PLUGINS}/test_events_v9.so")
        live = LiveRun(topo)
        # While running: the pipeline stalls without an error, so the host says why.
        live.wait_for("plugin code has not returned for 10 s (an endless loop, or a wait that "
                      "never ends?); its pipeline makes no progress meanwhile:")
        where = "shardline: thread 'shard 0' is in plugin code: ev.track, pipeline 'events'"
        live.wait_for(where)
        live.interrupt()
        live.wait_for("still draining 5 s after the interrupt")
        live.wait_for(where, 2)  # named again, after the interrupt
        live.proc.send_signal(signal.SIGINT)
        self.assertEqual(live.wait(), 4, live.stderr)
        self.assertIn("still not stopped 5 s after the second interrupt; threads in plugin code, "
                      "if any, follow; ending without draining", live.stderr)
        self.assertEqual(live.stderr.count("thread 'shard 0' is in plugin code: ev.track"), 3)
        self.assertEqual(live.stderr.count("plugin code has not returned"), 1)  # told once

    def test_a_shard_waiting_for_a_blocked_sink_is_not_named_as_plugin_code(self):
        # Backpressure is not a plugin call that never returns: a shard waiting for room in a
        # full sink queue is in the host's code. The watch for stuck plugin calls looks after
        # 10 s, so the sink stays blocked for longer than that (and is named); then everything
        # arrives.
        os.mkfifo(self.path("out.txt"))
        pipe = os.open(self.path("out.txt"), os.O_RDONLY | os.O_NONBLOCK)  # so the sink opens
        lines = 200_000
        self.write("events.txt", "".join(f"{k % 5} {k // 5 + 1}\n" for k in range(lines)))
        # Batches large enough that a chunk of output fills up, and waits, inside one batch.
        self.write("topology.toml", "queue_batches = 2\n" + events_topology(1, batch_size=20000))
        live = LiveRun(self.path("topology.toml"))
        wait_until_pipe_full(pipe)
        # The stall is named for what it is: the sink.
        line = live.wait_for("sink file " + self.path("out.txt") + " of pipeline 'events' has "
                             "been inside one write for ")
        self.assertRegex(line, r"for 1\d s \(a receiver that reads slowly or not at all, or is gone\): its "
                               r"pipeline waits, and so does every pipeline whose messages "
                               r"share its shards$")
        time.sleep(1)
        self.assertEqual([l for l in live.lines if "plugin code" in l], [])
        received = read_to_end(pipe)
        os.close(pipe)
        self.assertEqual(live.wait(), 0, live.stderr)
        self.assertEqual(len(received.splitlines()), lines)
        self.assertNotIn("plugin code", live.stderr)

    def test_a_second_interrupt_abandons_a_pipe_nobody_reads(self):
        # A blocking write into a full pipe must still give way to the second interrupt, and
        # the run end with its summary and the lost output counted.
        self.write("events.txt", "".join(f"{k % 5} {k // 5 + 1}\n" for k in range(200_000)))
        self.write("topology.toml", "queue_batches = 2\n" + events_topology(1, sink='kind = "stdout"'))
        live = LiveRun(self.path("topology.toml"), stdout=subprocess.PIPE)
        wait_until_pipe_full(live.proc.stdout.fileno())
        live.interrupt()  # taken before the second: pending interrupts would merge into one
        live.proc.send_signal(signal.SIGINT)
        status = live.wait()  # the pipe is never read
        live.proc.stdout.close()
        err = live.stderr
        self.assertEqual(status, 4, err)
        self.assertNotIn("ending without draining", err)
        self.assertGreater(summary(err)["events"]["lost"], 0)

    def test_a_second_run_writing_the_same_file_is_refused(self):
        # Two runs on one output file would garble it, both reporting success.
        first = LiveRun(self.write("first.toml", events_topology(1, source='kind = "stdin"')),
                        stdin=subprocess.PIPE)
        first.proc.stdin.write("1 1\n")
        first.proc.stdin.flush()
        deadline = time.time() + 60
        while not os.path.exists(self.path("out.txt")) or not read(self.path("out.txt")):
            self.assertLess(time.time(), deadline, "the first run wrote nothing")
            time.sleep(0.05)
        self.write("events.txt", "2 1\n")
        status, _, err = run(self.write("topology.toml", events_topology(1)))
        self.assertEqual(status, 1, err)
        self.assertIn("cannot open sink file " + self.path("out.txt") + ": another process "
                      "writes it (it holds a lock on it: another shardline run?)", err)
        first.proc.stdin.write("1 2\n")
        first.proc.stdin.close()
        self.assertEqual(first.wait(), 0, first.stderr)
        self.assertEqual(read(self.path("out.txt")).splitlines(), ["1 1 1 ok", "1 2 2 ok"])

    def test_a_receiver_restarted_in_the_documented_order_loses_nothing(self):
        # topology.md: a receiver going away closes its listener, shuts down its sending side
        # and reads to the end of the stream; the sink then reconnects to the next receiver.
        port_in, port_out = free_ports(2)

        def listener():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port_out))
            s.listen(1)
            s.settimeout(60)
            return s

        def read_to_end(conn, into):
            while chunk := conn.recv(1 << 16):
                into += chunk

        first = listener()
        self.write("topology.toml", events_topology(
            2, source=tcp_listen(port_in, connections=1),
            sink=f'kind = "tcp", connect = "127.0.0.1:{port_out}"'))
        live = LiveRun(self.path("topology.toml"))
        events = [f"{k % 7} {k // 7 + 1}\n" for k in range(2000)]
        with connect(port_in) as source:
            source.sendall("".join(events[:1000]).encode())
            conn, _ = first.accept()
            conn.settimeout(60)
            got_first = bytearray()
            while got_first.count(b"\n") < 1000:
                got_first += conn.recv(1 << 16)
            first.close()
            conn.shutdown(socket.SHUT_WR)
            reader = threading.Thread(target=read_to_end, args=(conn, got_first))
            reader.start()
            second = listener()
            source.sendall("".join(events[1000:]).encode())
            source.shutdown(socket.SHUT_WR)
            conn2, _ = second.accept()
            conn2.settimeout(60)
            got_second = bytearray()
            read_to_end(conn2, got_second)
            reader.join(60)
            conn.close(), conn2.close(), second.close()
        self.assertEqual(live.wait(), 0, live.stderr)
        self.assertIn("connection closed by the peer", live.stderr)
        self.assertNotIn("sink_resets", summary(live.stderr)["events"])  # nothing was lost
        seen = sorted(tuple(map(int, l.split()[:2])) for l in
                      (got_first + got_second).decode().splitlines())
        self.assertEqual(seen, sorted(tuple(map(int, e.split())) for e in events))

    def test_a_receiver_that_resets_its_connection_is_counted_in_the_summary(self):
        # What a receiver that resets had not read yet is lost, and no sender can count it:
        # the summary says that it happened, and how often.
        port_in, port_out = free_ports(2)
        listener = socket.create_server(("127.0.0.1", port_out))
        listener.settimeout(60)
        self.write("topology.toml", events_topology(
            2, source=tcp_listen(port_in, connections=1),
            sink=f'kind = "tcp", connect = "127.0.0.1:{port_out}"'))
        live = LiveRun(self.path("topology.toml"))
        with connect(port_in) as source:
            source.sendall(b"".join(b"%d 1\n" % k for k in range(100)))
            conn, _ = listener.accept()
            conn.settimeout(60)
            conn.recv(1)  # some output was written to it
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset
            source.sendall(b"".join(b"%d 2\n" % k for k in range(100)))
            source.shutdown(socket.SHUT_WR)
            conn2, _ = listener.accept()
            conn2.settimeout(60)
            while conn2.recv(1 << 16):
                pass
            conn2.close(), listener.close()
        self.assertEqual(live.wait(), 0, live.stderr)
        # (Found before the next chunk, or by that chunk's send.)
        self.assertRegex(live.stderr, r"connection (reset by the peer \(whatever it had not read "
                                      r"yet of the results written to it is lost with it\)|lost: "
                                      r"Connection reset by peer)")
        self.assertIn("[warning] done in", live.stderr)
        self.assertEqual(summary(live.stderr)["events"]["sink_resets"], 1)

    def test_a_fifo_source_no_process_writes_to_stops_at_the_first_interrupt(self):
        # Opening a FIFO waits for its writer; the source waits in poll() instead, where the
        # interrupt reaches it.
        os.mkfifo(self.path("events.fifo"))
        topo = self.write("topology.toml",
                          events_topology(1).replace('"events.txt"', '"events.fifo"'))
        live = LiveRun(topo, "--stats", "0.1")
        live.wait_for("pipeline events: 0 in")
        live.proc.send_signal(signal.SIGINT)
        self.assertEqual(live.wait(), 0, live.stderr)
        self.assertEqual(summary(live.stderr)["events"]["in"], 0)

    def test_an_interrupt_reports_what_an_open_connection_sent_and_was_not_processed(self):
        # The kernel has acknowledged the cut line to the sender: the run says it dropped it.
        port = free_port()
        topo = self.write("topology.toml", events_topology(1, source=tcp_listen(port)))
        live = LiveRun(topo, "--stats", "0.1")
        with connect(port) as s:
            s.sendall(b"1 1\n2 1\n3 ")
            live.wait_for("pipeline events: 2 in")
            live.proc.send_signal(signal.SIGINT)
            self.assertEqual(live.wait(), 0, live.stderr)
        self.assertIn("the run stopped with 2 bytes received from it and not processed (from "
                      "stream offset 8); send them again", live.stderr)
        self.assertEqual(summary(live.stderr)["events"]["out"], 2)

    def test_sighup_while_the_run_drains_is_ignored_and_says_so(self):
        live = LiveRun(self.stuck_topology(f"{TEST_PLUGINS}/test_events_v9.so"), "--stats", "0.1")
        live.wait_for("pipeline events: 2 in")  # both read, and the shard stuck on the first
        live.interrupt()
        live.proc.send_signal(signal.SIGHUP)
        live.wait_for("SIGHUP ignored: the run is stopping, and nothing is reloaded while it "
                      "drains")
        live.proc.send_signal(signal.SIGINT)
        self.assertEqual(live.wait(), 4, live.stderr)
        self.assertNotIn("SIGHUP: reloading", live.stderr)

    def test_a_reload_that_cannot_drain_names_the_plugin_code_that_holds_it(self):
        if host_has_tsan():
            self.skipTest("ThreadSanitizer keeps the spinning thread from answering")
        shutil.copy(f"{TEST_PLUGINS}/test_events_v9.so", self.path("ev.so"))
        live = LiveRun(self.stuck_topology(self.path("ev.so")), "--watch", "--stats", "0.1")
        live.wait_for("pipeline events: 2 in")  # both read, and sent to the shard
        shutil.copy(f"{TEST_PLUGINS}/test_events_v2.so", self.path("ev.so.tmp"))
        os.rename(self.path("ev.so.tmp"), self.path("ev.so"))
        stats_before = sum("running;" in l for l in live.lines)
        refused = live.wait_for("reload of plugin 'ev' refused")
        # The 5 s the reload waited for the drain, the stats lines went on (every 0.1 s).
        waited = live.lines[:live.lines.index(refused)]
        self.assertGreater(sum("running;" in l for l in waited) - stats_before, 20)
        # Nothing moved for 5 s: given up on, naming the shard that holds the messages.
        self.assertIn("still running test_events 9.0.0: in-flight messages did not drain: "
                      "nothing was processed for 5 s (shard 0 has processed none of its 2 queued "
                      "messages for 5 s); a sink that is blocked, or plugin code that does not "
                      "return: the threads in plugin code, if any, are named above", refused)
        live.wait_for("shardline: thread 'shard 0' is in plugin code: ev.track, pipeline 'events'")
        self.stop_stuck(live)

    def two_pipelines(self, a_sink, b_source=""):
        """Pipelines "a" (a.txt to `a_sink`) and "b" (b.txt to b.out), each turning "KEY SEQ"
        lines into "KEY:SEQ" text; `b_source` ends b's source table."""
        return self.write("topology.toml", f"""
[plugins]
ev = "{EVENTS}"
[[pipelines]]
name = "a"
source = {{ kind = "file", path = "a.txt", framing = "lines", decoder = "ev.event_line" }}
steps = [ {{ computation = "ev.to_text" }} ]
sink = {{ {a_sink}, encoder = "ev.text" }}
[[pipelines]]
name = "b"
source = {{ kind = "file", path = "b.txt", framing = "lines", decoder = "ev.event_line"{b_source} }}
steps = [ {{ computation = "ev.to_text" }} ]
sink = {{ kind = "file", path = "b.out", framing = "lines", encoder = "ev.text" }}
""")

    def test_a_closed_stdout_is_reported_and_not_taken_by_another_sink(self):
        # Started with stdout closed (`>&-`): the file sink must not get descriptor 1, or the
        # stdout sink would write into its file.
        self.write("a.txt", "1 1\n2 2\n")
        self.write("b.txt", "3 3\n")
        topo = self.two_pipelines('kind = "stdout"')
        p = subprocess.run([SHARDLINE, "run", topo], stderr=subprocess.PIPE, text=True,
                           timeout=60, preexec_fn=lambda: os.close(1))
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn("sink stdout: cannot write: Bad file descriptor; the rest of the output is "
                      "lost", p.stderr)
        self.assertEqual(read(self.path("b.out")), "3:3\n")
        counts = summary(p.stderr)
        self.assertEqual((counts["a"]["out"], counts["a"]["lost"]), (2, 2))

    def test_a_closed_stdin_is_refused_at_start(self):
        topo = self.write("topology.toml", events_topology(1).replace(
            'kind = "file", path = "events.txt"', 'kind = "stdin"'))
        p = subprocess.run([SHARDLINE, "run", topo], capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: os.close(0))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("pipeline 'events': source stdin: stdin is closed (the run was started "
                      "with `<&-`); give the run its input on stdin, or read a file instead",
                      p.stderr)

    def test_a_fifo_without_a_reader_is_refused_at_start_instead_of_waited_for(self):
        # Waiting in open(2) would hang the start of the run where no signal can end it.
        self.write("events.txt", "1 1\n")
        os.mkfifo(self.path("out.fifo"))
        topo = self.write("topology.toml", events_topology(1).replace('"out.txt"', '"out.fifo"'))
        status, _, err = run(topo)
        self.assertEqual(status, 1, err)
        self.assertIn("cannot open sink file " + self.path("out.fifo") + ": it is a FIFO that "
                      "no process reads yet; start its reader first", err)
        topo = self.write("topology.toml", events_topology(1, extra='on_error = "dead_letter"\n'
                                                           'dead_letter = "out.fifo"'))
        status, _, err = run(topo)
        self.assertEqual(status, 1, err)
        self.assertIn("pipeline 'events': cannot open dead-letter file " + self.path("out.fifo") +
                      ": it is a FIFO that no process reads yet; start its reader first", err)

    def test_output_that_cannot_be_written_is_counted_lost_and_ends_with_status_4(self):
        self.write("events.txt", "1 1\n2 1\n3 1\n")
        topo = self.write("topology.toml", events_topology(2).replace('path = "out.txt"',
                                                                      'path = "/dev/full"'))
        status, _, err = run(topo)
        self.assertEqual(status, 4, err)
        self.assertIn("sink file /dev/full: cannot write: No space left on device; the rest of "
                      "the output is lost", err)
        counts = summary(err)["events"]
        self.assertEqual((counts["out"], counts["lost"]), (3, 3))

    def test_a_sink_that_cannot_write_stops_its_source_and_the_other_pipelines_go_on(self):
        # 500,000 lines (4.4 MB, several reads): reading them all only to lose them would lose
        # all of them; the source stops after the first reads and leaves the rest unread.
        lines = 500_000
        self.write("a.txt", "".join(f"{i % 1000} {i}\n" for i in range(lines)))
        self.write("b.txt", "3 3\n")
        topo = self.two_pipelines('kind = "file", path = "/dev/full", framing = "lines"')
        status, _, err = run(topo)
        self.assertEqual(status, 4, err)
        self.assertIn("pipeline 'a': its sink file /dev/full cannot write any more: its source "
                      "stops reading", err)
        # (Stopped in the middle of a read's frames, or between two reads.)
        self.assertRegex(err, r"source file \S*/a\.txt: the run stopped (with \d+ bytes received "
                              r"from it and not processed \(from stream offset \d+\)|after \d+ "
                              r"bytes of it, all processed); process the input again from that "
                              r"offset")
        counts = summary(err)
        self.assertLess(counts["a"]["in"], lines // 2)
        self.assertEqual(counts["a"]["lost"], counts["a"]["out"])
        self.assertEqual(read(self.path("b.out")), "3:3\n")

    def test_a_sink_that_cannot_write_keeps_the_pipelines_waiting_for_it_from_starting(self):
        # "a" is cut short: the rest of its input is left unread, so "b", which waits for all
        # of it to be processed, must not start as if it had been (as when a source fails).
        self.write("a.txt", "".join(f"{i % 1000} {i}\n" for i in range(500_000)))
        self.write("b.txt", "3 3\n")
        topo = self.two_pipelines('kind = "file", path = "/dev/full", framing = "lines"',
                                  b_source=', start_after = "a"')
        status, _, err = run(topo)
        self.assertEqual(status, 4, err)
        self.assertIn("pipeline 'b' did not start: pipeline 'a' did not process all its input "
                      "(its sink file /dev/full could not write any more); its source file " +
                      self.path("b.txt") + " was not read", err)
        self.assertEqual(summary(err)["b"]["in"], 0)
        self.assertEqual(read(self.path("b.out")), "")

    def test_frames_a_decoder_drops_on_purpose_are_counted_apart_from_errors(self):
        self.write("events.txt", "# a comment\n1 1\n2 1\n# another\nnot an event\n1 2\n")
        topo = self.write("topology.toml", events_topology(1, steps=TRACK).replace(
            'decoder = "ev.event_line"', 'decoder = "x.event_or_comment"').replace(
            "[plugins]", f'[plugins]\nx = "{TEST_PLUGINS}/test_extra.so"'))
        status, _, err = run(topo)
        self.assertEqual(status, 0, err)
        counts = summary(err)["events"]
        self.assertEqual((counts["in"], counts["errors"], counts["dropped_by_the_decoder"],
                          counts["out"]), (3, 1, 2, 3))

    def test_dead_letter_file(self):
        status, _, err = run(self.topology('on_error = "dead_letter"\ndead_letter = "dead.tsv"'))
        self.assertEqual(status, 0, err)
        dead = read(self.path("dead.tsv")).splitlines()
        self.assertEqual(len(dead), 1 + 7)
        decode = [l for l in dead if "\tev.event_line\t" in l]
        self.assertEqual(len(decode), 1)
        self.assertTrue(decode[0].endswith("\t" + b"garbage".hex()), decode[0])
        cursed = [l.split("\t") for l in dead if "\tev.explode\t" in l]
        self.assertEqual(cursed[0][:3], ["events", "ev.explode", "seq 7 is cursed"])
        # The payload is the Event's bytes: key 1 (7-1 = 6 % 5), seq 7, little-endian u64s.
        self.assertEqual(bytes.fromhex(cursed[0][3]), struct.pack("<QQ", 1, 7))

    def test_a_dead_letter_of_a_string_message_holds_its_text(self):
        self.write("events.txt", "".join(f"{k} 1\n" for k in range(20)))
        self.write("topology.toml", events_topology(
            1, steps='{ computation = "ev.to_text" }, { computation = "ev.no_13" }',
            extra='on_error = "dead_letter"\ndead_letter = "dead.tsv"').replace(
            '"ev.tracked_line"', '"ev.text"'))
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 0, err)
        dead = [l.split("\t") for l in read(self.path("dead.tsv")).splitlines()]
        self.assertEqual(dead, [["events", "ev.no_13", "no text for key 13", b"13:1".hex()]])

    def test_a_dead_letter_of_a_message_with_save_holds_its_saved_form(self):
        self.write("events.txt", "".join(f"{k} 1\n" for k in range(20)))
        self.write("topology.toml", events_topology(
            1, steps='{ computation = "x.to_note" }, { computation = "x.no_note_13" }',
            extra='on_error = "dead_letter"\ndead_letter = "dead.tsv"').replace(
            "[plugins]", f'[plugins]\nx = "{TEST_PLUGINS}/test_extra.so"').replace(
            'sink = { kind = "file", path = "out.txt", framing = "lines", '
            'encoder = "ev.tracked_line" }', 'sink = { kind = "discard" }'))
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 0, err)
        dead = [l.split("\t") for l in read(self.path("dead.tsv")).splitlines()]
        # Note::save writes the key (big-endian u64), then the text.
        self.assertEqual(dead, [["events", "x.no_note_13", "no note for key 13",
                                 (struct.pack(">Q", 13) + b"seq 1").hex()]])

    def test_a_dead_letter_file_that_cannot_be_written_counts_the_messages_lost(self):
        status, _, err = run(self.topology('on_error = "dead_letter"\ndead_letter = "/dev/full"'))
        self.assertEqual(status, 4, err)
        self.assertEqual(err.count("cannot write the dead-letter file /dev/full: No space left on "
                                   "device; failed messages are counted as dead letters lost "
                                   "from now on"), 1)
        counts = summary(err)["events"]
        # Apart from the sink's "lost": that one counts output the sink could not deliver.
        self.assertEqual((counts["errors"], counts["dead_letters_lost"]), (1 + 7, 1 + 7))
        self.assertNotIn("lost", counts)

    def test_error_text_quoting_raw_bytes_stays_one_readable_line(self):
        topo = self.topology('on_error = "dead_letter"\ndead_letter = "dead.tsv"')
        with open(self.path("events.txt"), "wb") as f:
            f.write(b"1 1\n7\t8\x00\xff\r\n2 2\n")
        status, _, err = run(topo)
        self.assertEqual(status, 0, err)
        self.assertIn('got \"7\\x098\\x00\\xff\"', err)  # a NUL byte does not end the text
        dead = read(self.path("dead.tsv")).splitlines()
        self.assertEqual(len(dead), 1)
        fields = dead[0].split("\t")
        self.assertEqual(len(fields), 4, dead[0])
        self.assertEqual(fields[:2], ["events", "ev.event_line"])
        self.assertEqual(fields[2], "file " + self.path("events.txt") + ', line 2: expected '
                         '"KEY SEQ" (two unsigned integers), got "7\\x098\\x00\\xff"')
        self.assertEqual(bytes.fromhex(fields[3]), b"7\t8\x00\xff")  # the frame, exactly

    def test_a_source_that_fails_while_reading_stops_the_run_before_start_after(self):
        # /proc/self/mem opens, then fails to read (nothing is mapped at offset 0): the
        # pipeline waiting for it must not run as if its input had been read, and the run ends
        # with status 3.
        self.write("events.txt", "1 1\n2 1\n")
        self.write("topology.toml", events_topology(1).replace('"events.txt"', '"/proc/self/mem"') + f"""
[[pipelines]]
name = "after"
source = {{ kind = "file", path = "events.txt", framing = "lines", decoder = "ev.event_line", start_after = "events" }}
steps = [ {TRACK} ]
sink = {{ kind = "discard" }}
""")
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 3, err)
        self.assertIn("stopped: pipeline 'events' source file /proc/self/mem: read failed after "
                      "0 bytes: Input/output error", err)
        self.assertEqual(summary(err)["after"]["in"], 0)

    def test_a_pipeline_still_waiting_to_start_when_the_run_stops_says_so(self):
        # "after" waits for "events", whose TCP source waits for its one connection: an
        # interrupt stops the run, and the summary's "0 in" for "after" comes with why (its
        # whole input is unread).
        port = free_port()
        self.write("events.txt", "1 1\n")
        topo = self.write("topology.toml", events_topology(1, source=tcp_listen(port, 1)) + f"""
[[pipelines]]
name = "after"
source = {{ kind = "file", path = "events.txt", framing = "lines", decoder = "ev.event_line", start_after = "events" }}
steps = [ {TRACK} ]
sink = {{ kind = "discard" }}
""")
        r = LiveRun(topo)
        r.wait_for("pipeline 'after': waiting for pipeline 'events' to be fully processed")
        r.proc.send_signal(signal.SIGINT)
        self.assertEqual(r.wait(), 0, r.stderr)
        self.assertIn("pipeline 'after' did not start: the run stopped while it waited for "
                      "pipeline 'events'; its source file " + self.path("events.txt") +
                      " was not read", r.stderr)
        self.assertEqual(summary(r.stderr)["after"]["in"], 0)

    def test_a_source_that_cannot_be_read_stops_the_start_and_leaves_the_outputs_alone(self):
        # The last run's output survives a run that cannot start: the sink empties its file only
        # once every input and output has opened, and a file it created is removed again.
        os.makedirs(self.path("somedir"))
        self.write("out.txt", "the last run's output\n")
        self.write("topology.toml", events_topology(
            1, extra='on_error = "dead_letter"\ndead_letter = "dead.txt"').replace(
            '"events.txt"', '"somedir"') + f"""
[[pipelines]]
name = "second"
source = {{ kind = "file", path = "missing.txt", framing = "lines", decoder = "ev.event_line" }}
steps = [ {TRACK} ]
sink = {{ kind = "file", path = "new.txt", framing = "lines", encoder = "ev.tracked_line" }}
""")
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 1, err)
        self.assertIn("topology.toml:9:10: pipeline 'events': source file " + self.path("somedir") +
                      " is a folder", err)
        self.assertEqual(read(self.path("out.txt")), "the last run's output\n")
        self.assertFalse(os.path.exists(self.path("new.txt")))
        self.assertFalse(os.path.exists(self.path("dead.txt")))
        self.write("topology.toml", read(self.path("topology.toml")).replace('"somedir"',
                                                                             '"events.txt"'))
        self.write("events.txt", "1 1\n")
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 1, err)
        self.assertIn("pipeline 'second': cannot read source file " + self.path("missing.txt") +
                      ": No such file or directory", err)
        self.assertEqual(read(self.path("out.txt")), "the last run's output\n")

    def test_a_dead_letter_file_that_cannot_be_opened_is_one_cause_among_the_others(self):
        self.write("events.txt", "1 1\n")
        self.write("topology.toml", events_topology(
            1, extra='on_error = "dead_letter"\ndead_letter = "nodir/dead.txt"').replace(
            '"events.txt"', '"missing.txt"').replace('"out.txt"', '"nodir/out.txt"'))
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 1, err)
        self.assertEqual(err.splitlines(), [
            self.path("topology.toml") + ":13:15: pipeline 'events': cannot open dead-letter "
            "file " + self.path("nodir/dead.txt") + ": No such file or directory",
            self.path("topology.toml") + ":9:10: pipeline 'events': cannot read source file " +
            self.path("missing.txt") + ": No such file or directory",
            self.path("topology.toml") + ":11:8: pipeline 'events': cannot open sink file " +
            self.path("nodir/out.txt") + ": No such file or directory"])

    def test_stop_policy_exits_with_error(self):
        status, _, err = run(self.topology('on_error = "stop"'))
        self.assertEqual(status, 3, err)
        self.assertIn("stopping (on_error = \"stop\")", err)

    def test_stop_policy_stops_at_the_failing_frames_chunk_not_after_the_whole_read(self):
        # A bad line near the start of a large file: the run stops within the chunk of 1,024
        # frames that held it, instead of processing the rest of its 1 MiB read (and the reads
        # after it) first.
        topo = self.topology('on_error = "stop"', steps=TRACK)
        self.write("events.txt", "1 1\nbad\n" + "".join(f"{i % 5} {i // 5 + 2}\n"
                                                       for i in range(300_000)))
        status, _, err = run(topo)
        self.assertEqual(status, 3, err)
        counts = summary(err)["events"]
        self.assertEqual(counts["errors"], 1)
        self.assertEqual(counts["in"], 1023, err)  # the failing frame's chunk, less itself

    def test_a_paced_source_stopping_reports_exactly_the_lines_it_did_not_hand_on(self):
        # With a rate, the source stops between two frames of a chunk: the frames after the
        # last one it handed on are not processed, and the warning's offset must start at the
        # first of them (resending from it loses nothing).
        topo = self.topology('on_error = "stop"', lines=2000)
        text = read(topo).replace('framing = "lines", decoder', 'framing = "lines", rate = 1000, decoder')
        self.write("topology.toml", text)
        lines = read(self.path("events.txt")).splitlines(keepends=True)
        status, _, err = run(topo)
        self.assertEqual(status, 3, err)
        taken = summary(err)["events"]["in"]
        self.assertTrue(7 <= taken < 2000, err)  # seq 7 failed: the source stopped soon after
        offset = sum(len(l) for l in lines[:taken])
        total = sum(len(l) for l in lines)
        self.assertIn(f"source file {self.path('events.txt')}: the run stopped with "
                      f"{total - offset} bytes received from it and not processed (from stream "
                      f"offset {offset}); process the input again from that offset", err)

    def test_stop_policy_stops_a_tcp_source_within_the_chunk_and_says_so_once(self):
        # A TCP read holds tens of thousands of short lines: the source stops after the chunk
        # of 1,024 frames that failed, as a file does; the failures of the frames already on
        # their way are counted and logged as usual, not each as another "stopping".
        port = free_port()
        topo = self.write("topology.toml", events_topology(1, '{ computation = "ev.explode" }',
                                                           extra='on_error = "stop"').replace(
            'kind = "file", path = "events.txt", framing = "lines"',
            f'kind = "tcp", listen = "127.0.0.1:{port}", framing = "lines"').replace(
            '"ev.tracked_line"', '"ev.text"').replace(
            '{ computation = "ev.explode" }', '{ computation = "ev.explode" }, '
                                              '{ computation = "ev.to_text" }'))
        r = Run(topo)
        with connect(port) as s:
            try:
                s.sendall("".join(f"{i % 5} {i + 1}\n" for i in range(100_000)).encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the run stopped, and closed the connection, while this was sending
        self.assertEqual(r.wait(), 3, r.stderr)
        counts = summary(r.stderr)["events"]
        # Up to the end of the failing frame's chunk (1,024 frames), plus at most the six
        # before it if a short first read held only those.
        self.assertTrue(7 <= counts["in"] <= 6 + 1024, r.stderr)
        self.assertEqual(counts["errors"], counts["in"] // 7, r.stderr)  # seq 7, 14, ...
        self.assertEqual(r.stderr.count('stopping (on_error = "stop")'), 1, r.stderr)
        # What it had read past that chunk is reported, from the first line not processed.
        offset = sum(len(f"{i % 5} {i + 1}\n") for i in range(counts["in"]))
        self.assertRegex(r.stderr, r"source tcp 127\.0\.0\.1:\d+ connection from [^:]+:\d+: the "
                         r"run stopped with \d+ bytes received from it and not processed \(from "
                         rf"stream offset {offset}\)")

    def test_state_factory_throwing(self):
        topo = self.topology(steps=TRACK)
        text = read(topo).replace('factory = "ev.last_seq"', 'factory = "ev.picky"')
        self.write("topology.toml", text)
        self.write("events.txt", "".join(f"{k} 1\n" for k in range(20)))
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 0, err)
        self.assertIn("the state factory threw: no state for key 13", err)
        self.assertEqual(summary(err)["events"]["out"], 19)
        # A run with errors ends on a warning, which --log-level warn still shows; a clean run's
        # summary is an info line.
        self.assertIn("[warning] done in", err)
        _, _, quiet = run(self.path("topology.toml"), "--log-level", "warn")
        self.assertEqual(summary(quiet)["events"]["errors"], 1)
        self.write("events.txt", "1 1\n")
        _, _, clean = run(self.path("topology.toml"), "--log-level", "warn")
        self.assertNotIn("done in", clean)

    def test_a_crash_in_a_state_factory_names_it(self):
        if host_has_asan():
            self.skipTest("AddressSanitizer reports the crash itself")
        topo = self.topology(steps=TRACK)
        self.write("topology.toml", read(topo).replace('factory = "ev.last_seq"',
                                                       'factory = "ev.picky"'))
        self.write("events.txt", "1 1\n666 1\n")
        p = run_to_crash("run", self.path("topology.toml"))
        self.assertEqual(p.returncode, -signal.SIGSEGV, p.stderr)
        self.assertRegex(p.stderr, r"shardline: fatal SIGSEGV \(invalid memory access\) in "
                         r"plugin code: ev\.picky, pipeline 'events', thread 'shard \d'\.")

    def test_a_declared_key_whose_state_factory_throws_stops_the_start_at_its_line(self):
        topo = self.topology(steps=TRACK)
        self.write("topology.toml", read(topo).replace('factory = "ev.last_seq"',
                                                       'factory = "ev.picky"\nkeys = [1, 13]'))
        why = ("topology.toml:7:9: state 'seqs': the factory threw while creating declared key "
               "13: no state for key 13")
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 1, err)
        self.assertIn(why, err)
        # Why a run was refused is printed whatever the log level.
        status, _, err = run(self.path("topology.toml"), "--log-level", "off")
        self.assertEqual((status, err.strip()), (1, self.path(why)))

    def test_partition_throwing(self):
        # A message whose partition function throws is dropped alone: every other message still
        # reaches its key's shard, in order, across many small batches (batch_size 3). With one
        # shard, each decoder call's messages cross uncopied unless a partition failed: each
        # call with key 13 leaves a batch open, which must go before the next call's.
        others = [k for k in range(20) if k != 13]
        lines = [f"{k % 20} {k // 20 + 1}" for k in range(400)]
        lines += [f"{others[j % 19]} {j // 19 + 21}" for j in range(19 * 100)]
        self.write("events.txt", "\n".join(lines) + "\n")
        steps = TRACK.replace("ev.by_key", "ev.by_key_but_13")
        for shards in (1, 2):
            with self.subTest(shards=shards):
                self.write("topology.toml", events_topology(shards, steps, batch_size=3))
                status, _, err = run(self.path("topology.toml"))
                self.assertEqual(status, 0, err)
                self.assertIn("pipeline 'events' step 'ev.by_key_but_13': key 13 has no partition",
                              err)
                counts = summary(err)["events"]
                self.assertEqual((counts["in"], counts["errors"], counts["out"]), (2300, 20, 2280))
                out = [l.split() for l in read(self.path("out.txt")).splitlines()]
                self.assertEqual(sorted((int(k), int(s)) for k, s, _, _ in out),
                                 [(k, s) for k in others for s in range(1, 121)])
                self.assertEqual({ok for _, _, _, ok in out}, {"ok"})  # per-key order held

    def test_undeclared_key_rejected(self):
        topo = self.topology(steps=TRACK)
        text = read(topo).replace('factory = "ev.last_seq"',
                                         'factory = "ev.last_seq"\nkeys = [1, 2]\nunknown_keys = "reject"')
        self.write("topology.toml", text)
        # 2^64 - 3: the 64 bits of -3, named as the topology's `keys` would write them.
        self.write("events.txt", "1 1\n2 1\n3 1\n1 2\n18446744073709551613 1\n")
        status, _, err = run(self.path("topology.toml"))
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(read(self.path("out.txt")).split("\n"))[1:],
                         ["1 1 1 ok", "1 2 2 ok", "2 1 1 ok"])
        self.assertIn("key 3 is not declared in state 'seqs' (its keys/keys_file) and the state "
                      "has unknown_keys = \"reject\"", err)
        self.assertIn("key -3 is not declared in state 'seqs'", err)


class BadFrames(TempDirTest):
    GOOD = frame(b"\x02" + b" ABC" + b"20160902-15:47:52.000" + struct.pack(">dd", 10.0, 10.01))

    def nbbo_topology(self, port, connections, on_error="skip"):
        return self.write("topology.toml", f"""
[plugins]
market = "{PLUGINS}/market_spread.so"
[states.symbols]
factory = "market.symbol_data"
[[pipelines]]
name = "nbbo"
source = {{ kind = "tcp", listen = "127.0.0.1:{port}", connections = {connections}, max_frame = 1000, decoder = "market.nbbo" }}
steps = [ {{ state_computation = "market.update_nbbo", state = "symbols", partition = "market.nbbo_symbol" }} ]
on_error = "{on_error}"
""")

    def test_malformed_and_oversized_frames_over_tcp(self):
        port = free_port()
        good = self.GOOD
        wrong_type = frame(b"\x07" + b"x" * 41)
        short = frame(b"\x02 ABC")
        r = Run(self.nbbo_topology(port, 2))
        send_all(port, good + wrong_type + short + good)           # 2 decoded, 2 decode errors
        send_all(port, good + struct.pack(">I", 5000) + b"x" * 10)  # 1 decoded, then oversized
        self.assertEqual(r.wait(), 0, r.stderr)
        counts = summary(r.stderr)["nbbo"]
        self.assertEqual(counts["in"], 3)
        self.assertEqual(counts["errors"], 2)
        self.assertEqual(counts["bad_input"], 1)
        self.assertIn("expected NBBO type byte 2, got 7", r.stderr)
        self.assertIn("exceeds max_frame 1000", r.stderr)
        self.assertEqual(summary(r.stderr)["state:symbols"], 1)

    def test_truncated_frame_at_end_of_connection(self):
        port = free_port()
        r = Run(self.nbbo_topology(port, 1))
        send_all(port, self.GOOD + self.GOOD[:20])                 # 1 decoded, then truncated
        self.assertEqual(r.wait(), 0, r.stderr)
        counts = summary(r.stderr)["nbbo"]
        self.assertEqual((counts["in"], counts["bad_input"]), (1, 1))
        # Named down to the connection: of several senders, which one has to send again.
        self.assertRegex(r.stderr, r"truncated frame at end of input: got 16 of 42 bytes, at "
                                   r"byte offset 46 of tcp 127\.0\.0\.1:\d+ connection from "
                                   r"127\.0\.0\.1:\d+")

    def test_bad_framing_on_one_connection_does_not_stop_the_run(self):
        # on_error is about messages plugin code throws on: a client cutting a frame short
        # closes its own connection, even with "stop", and the next one is served.
        port = free_port()
        r = Run(self.nbbo_topology(port, 3, on_error="stop"))
        send_all(port, self.GOOD + self.GOOD[:20])
        send_all(port, self.GOOD + self.GOOD)
        send_all(port, struct.pack(">I", 5000) + b"x" * 10)
        self.assertEqual(r.wait(), 0, r.stderr)
        counts = summary(r.stderr)["nbbo"]
        self.assertEqual((counts["in"], counts["bad_input"]), (3, 2))
        self.assertNotIn("stopping", r.stderr)
        # Two kinds of bad input within a second: neither is held back behind the other.
        self.assertIn("truncated frame at end of input", r.stderr)
        self.assertIn("exceeds max_frame 1000", r.stderr)
        self.assertNotIn("held back", r.stderr)


    def test_a_connection_reset_before_any_byte_is_no_warning(self):
        # A port probe, a health check: nothing was lost, so a hundred of them flood no log.
        port = free_port()
        topo = self.write("t.toml", events_topology(1, source=tcp_listen(port, 2)))
        live = LiveRun(topo, "--log-level", "debug")
        probe = connect(port)
        live.wait_for("accepted connection 1")
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        probe.close()  # a reset
        line = live.wait_for("connection failed before any byte")
        self.assertIn("[debug]", line)
        send_all(port, b"1 1\n")
        self.assertEqual(live.wait(), 0)
        self.assertFalse([l for l in live.lines if "[warning]" in l], live.lines)

    def test_out_of_file_descriptors_is_said_once_with_what_to_do(self):
        # Accept fails every 100 ms until a descriptor is free: one warning, not ten a second.
        if host_has_asan():
            # Its runtime needs descriptors too: checking that memory is readable opens a pipe,
            # and without one UBSan takes a valid object for one with an invalid vptr.
            self.skipTest("the sanitizers' runtime fails without file descriptors of its own")
        port = free_port()
        topo = self.write("t.toml", events_topology(1, source=tcp_listen(port)))
        limit = 48
        live = LiveRun(topo, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                   (limit, limit)))
        clients = [connect(port) for _ in range(limit + 16)]  # the kernel queues them
        line = live.wait_for("accept failed")
        self.assertIn(f"Too many open files; retrying every 100 ms (out of file descriptors: "
                      f"this process may have {limit} open, `ulimit -n`; raise that, or bound "
                      f"the clients with the source's connections)", line)
        time.sleep(1)  # ten more failures
        self.assertEqual(sum("accept failed" in l for l in live.lines), 1, live.lines)
        for c in clients:
            c.close()
        live.interrupt()
        self.assertEqual(live.wait(), 0)


class BrokenPlugins(TempDirTest):
    def topology_with(self, plugin_path):
        return self.write("topology.toml", f"""
[plugins]
p = "{plugin_path}"
[[pipelines]]
name = "x"
source = {{ kind = "stdin", decoder = "p.event_line" }}
""")

    def test_each_broken_plugin_is_refused_clearly(self):
        cases = {
            "no_abi.so": "not a Shardline plugin: it has no shardline_abi record",
            "wrong_abi.so": "ABI mismatch: the plugin was built for SDK ABI 999",
            "no_entry.so": "not a Shardline plugin: no shardline_plugin_manifest entry point",
            "undefined_symbol.so": "undefined symbol: shardline_test_missing_function",
            "duplicate.so": "failed to register its components: duplicate decoder 'same'",
            "registration_throws.so": "plugin 'registration_throws' failed to register its "
                                      "components: an exception of type int",
        }
        for name, message in cases.items():
            with self.subTest(plugin=name):
                status, _, err = check(self.topology_with(f"{TEST_PLUGINS}/{name}"))
                self.assertEqual(status, 1, err)
                self.assertIn("topology.toml:3:5: plugin 'p': ", err)
                self.assertIn(message, err)

    def test_no_folder_for_shadow_copies_is_an_error_in_the_list(self):
        missing = self.path("no-such-folder")
        for command in ("check", "run"):
            with self.subTest(command=command):
                p = subprocess.run([SHARDLINE, command, self.topology_with(EVENTS)],
                                   capture_output=True, text=True, timeout=60,
                                   env={**os.environ, "TMPDIR": missing})
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(f"topology.toml:3:5: plugin 'p': {EVENTS}: no folder for its shadow "
                              f"copy: ", p.stderr)
                self.assertIn(f"(TMPDIR={missing}; point TMPDIR at a writable folder)", p.stderr)

    def test_plugin_built_with_asan_is_refused_not_fatal(self):
        # A host without AddressSanitizer would be ended by the plugin's ASan runtime in dlopen;
        # it refuses the plugin instead. (Under the asan preset the host has ASan and loads it.)
        if host_has_asan():
            self.skipTest("this host runs with AddressSanitizer")
        status, _, err = check(self.topology_with(f"{TEST_PLUGINS}/asan_built.so"))
        self.assertEqual(status, 1, err)
        self.assertIn("topology.toml:3:5: plugin 'p': ", err)
        self.assertIn("asan_built.so: built with AddressSanitizer (it needs libasan.so.8), but "
                      "this host is not", err)

    def test_a_plugin_crashing_while_it_loads_is_an_error_in_the_list(self):
        if host_has_asan():
            self.skipTest("AddressSanitizer reports the crash itself")
        plugin = f"{TEST_PLUGINS}/crash_on_load.so"
        tmp = self.path("tmp")  # where shadow copies are made
        os.mkdir(tmp)
        topology = self.topology_with(plugin)
        for command in ("check", "run"):
            with self.subTest(command=command):
                # Loaded in a copy of the process first: the crash ends only the copy.
                p = run_to_crash(command, topology, env={**os.environ, "TMPDIR": tmp})
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn(f"topology.toml:3:5: plugin 'p': {plugin}: loading it crashed: "
                              f"SIGSEGV (invalid memory access) in plugin code: the loading of "
                              f"{plugin} (static constructors, registrations)", p.stderr)
                self.assertIn("1 error(s)", p.stderr)
                self.assertEqual(os.listdir(tmp), [], "the crash leaves no shadow copy behind")

    def test_not_elf_and_truncated(self):
        self.write("not_elf.so", "this is not a shared library\n")
        data = read(EVENTS, "rb")
        with open(self.path("half.so"), "wb") as f:
            f.write(data[:len(data) // 2])
        for name, message in {"not_elf.so": "not an ELF file",
                              "half.so": "truncated ELF file"}.items():
            with self.subTest(plugin=name):
                status, _, err = check(self.topology_with(self.path(name)))
                self.assertEqual(status, 1, err)
                self.assertIn(message, err)

    def test_run_refuses_a_broken_plugin_file_before_starting(self):
        # `run` refuses a broken plugin before starting anything, with the same message.
        self.write("not_elf.so", "junk")
        status, _, err = run(self.topology_with(self.path("not_elf.so")))
        self.assertEqual(status, 1, err)
        self.assertIn("topology.toml:3:5: plugin 'p': ", err)
        self.assertIn("not an ELF file", err)
        self.assertNotIn("done in", err)  # nothing ran


if __name__ == "__main__":
    unittest.main()
