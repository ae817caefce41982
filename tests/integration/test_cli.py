"""The command line: help, check's wiring printout, topology errors with file:line:column,
run's periodic statistics, and exit statuses."""
import os
import socket
import subprocess
import unittest

from harness import (FILE_SINK, GEN, PLUGINS, ROOT, SHARDLINE, TEST_PLUGINS, LiveRun,
                     TempDirTest, check, connect, events_topology, free_port, host_has_asan,
                     latency, read, sdk_version, tcp_listen, with_sdk_version)


def shardline(*args):
    return subprocess.run([SHARDLINE, *args], capture_output=True, text=True, timeout=60)


class Cli(TempDirTest):
    def test_help_names_the_subcommands_options_and_exit_statuses(self):
        p = shardline("--help")
        self.assertEqual(p.returncode, 0)
        for word in ("run", "check", "topology"):
            self.assertIn(word, p.stdout)
        p = shardline("run", "--help")
        self.assertEqual(p.returncode, 0)
        for word in ("TOPOLOGY", "--shards", "--log-level", "--plugin-dir", "--watch", "--stats",
                     "Exit status: 0 done; 1 refused at start"):
            self.assertIn(word, p.stdout)
        self.assertIn("Exit status: 0 valid", shardline("check", "--help").stdout)
        self.assertIn("--shards", shardline("check", "--help").stdout)
        # SIGHUP is not only for runs without --watch.
        self.assertIn("With or without it, SIGHUP reloads every rebuilt plugin",
                      shardline("run", "--help").stdout)

    def test_no_subcommand_is_a_usage_error_that_shows_the_help(self):
        p = shardline()
        self.assertEqual(p.returncode, 2)
        for word in ("Subcommands:", "run", "check"):
            self.assertIn(word, p.stderr)

    def test_help_command_and_words_that_are_no_command(self):
        p = shardline("help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("Subcommands:", p.stdout)
        p = shardline("help", "run")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--watch", p.stdout)
        p = shardline("frob", "t.toml")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "shardline: no command 'frob'; the commands are run and check "
                                   "(see shardline --help)\n")
        # An option before the command: named, and one of a command's own said to go after it.
        p = shardline("--bogus")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "shardline: no option '--bogus'; before the command, shardline "
                                   "takes only --help and --version (the commands are run and "
                                   "check: see shardline --help)\n")
        p = shardline("--shards=2", "run", "t.toml")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "shardline: --shards is an option of run and check: put it "
                                   "after the command (e.g. shardline run --shards=2 ... "
                                   "TOPOLOGY)\n")
        p = shardline("--plugin-dir", "build", "check", "t.toml")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--plugin-dir is an option of run and check: put it after the command",
                      p.stderr)
        p = shardline("help", "frob")
        self.assertEqual(p.returncode, 2)
        self.assertIn("no command 'frob'", p.stderr)
        p = shardline("check", "--against", f"{PLUGINS}/market_spread.so")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--against takes two plugin files, OLD.so NEW.so", p.stderr)

    def test_check_example_topologies(self):
        for topo in ("plugins/market_spread/topology.toml", "plugins/word_count/topology.toml"):
            with self.subTest(topology=topo):
                status, out, err = check(os.path.join(ROOT, topo), "--plugin-dir", PLUGINS)
                self.assertEqual(status, 0, err)
                self.assertIn("is valid", out)
                self.assertIn("pipeline ", out)

    def test_check_prints_the_wiring(self):
        topo = self.write("t.toml", f"""
shards = 3
[plugins]
market = "{PLUGINS}/market_spread.so"
[states.symbols]
factory = "market.symbol_data"
keys = ["AAPL", "MSFT"]
on_reload = "reset"
[[pipelines]]
name = "orders"
source = {{ kind = "tcp", listen = "127.0.0.1:7000", connections = 2, max_frame = 4096, decoder = "market.order" }}
steps = [ {{ state_computation = "market.check_order", state = "symbols", partition = "market.order_symbol" }} ]
sink = {{ kind = "stdout", encoder = "market.order_result" }}
""")
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn("3 shard(s)", out)
        # --shards N checks what run --shards N would run; key_groups is raised to N if lower.
        self.write("t.toml", read(topo).replace("shards = 3", "shards = 3\nkey_groups = 4"))
        status, out, err = check(topo, "--shards", "8")
        self.assertEqual(status, 0, err)
        self.assertIn("8 shard(s), 8 key groups", out)
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn("state symbols: market_spread::SymbolData built by market.symbol_data, 2 declared keys, "
                      "unknown keys created, reset by a reload that cannot carry it over", out)
        self.assertIn("source tcp listen 127.0.0.1:7000 (length-prefixed frames, frames up to 4096 bytes, "
                      "ends after 2 connection(s)) -> decoder market.order", out)
        self.assertIn("step 1: state_computation market.check_order on state symbols, keyed by "
                      "market.order_symbol (string key): market_spread::Order -> market_spread::OrderResult", out)

    def test_check_against_previews_a_reload(self):
        p = shardline("check", "--against", f"{PLUGINS}/market_spread.so",
                      f"{PLUGINS}/market_spread_v2.so")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("reload market_spread 1.0.0", p.stdout)
        self.assertIn("-> market_spread 2.0.0", p.stdout)
        # OLD.so stands for the running build, which it holds only if the host loaded it last.
        self.assertIn(f"  (against the build in {PLUGINS}/market_spread.so: a host runs it only "
                      "if it loaded that file last; after a refused reload the file holds the "
                      "refused build)\n", p.stdout)
        self.assertIn("state 'symbol_data': migrate: market_spread::SymbolData (schema 1) -> "
                      "market_spread::SymbolData (schema 2): every value saved and restored", p.stdout)
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v7.so")
        self.assertEqual(p.returncode, 1)
        self.assertIn("state_computation 'track': removed", p.stdout)
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v4.so")
        self.assertEqual(p.returncode, 1)
        self.assertIn("state 'last_seq': blocked: LastSeq (schema 0, 16 bytes) changed to LastSeq "
                      "(schema 4, 24 bytes), and the new version has no restore()", p.stdout)
        # A message type's new layout: both layouts shown, and what the reload then needs.
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v10.so")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("decoder 'event_line': types changed from nothing -> Event (16 bytes, "
                      "schema 0) to nothing -> Event (24 bytes, schema 0); every plugin it "
                      "exchanges them with must be rebuilt with the new definition and reloaded "
                      "with it", p.stdout)
        self.assertIn("state 'last_seq': keep: LastSeq has the same layout", p.stdout)
        # A partition's new key kind would orphan every key a state holds.
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v12.so")
        self.assertEqual(p.returncode, 1)
        self.assertIn("partition 'by_key': blocked: returns string keys instead of integer (no key "
                      "a state holds would be found again: a topology using it would refuse the "
                      "reload)", p.stdout)
        # A build that crashes while it loads is reported, not fatal to the command.
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/crash_on_load.so")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(f"{TEST_PLUGINS}/crash_on_load.so: loading it crashed: ", p.stderr)
        if not host_has_asan():
            self.assertIn("SIGSEGV (invalid memory access) in plugin code: the loading of "
                          f"{TEST_PLUGINS}/crash_on_load.so", p.stderr)


    def test_check_against_with_a_topology_says_whether_a_running_host_accepts(self):
        # Alone, a message type's new layout is only flagged: it depends on who else uses it.
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v10.so")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("whether the changed types still fit the plugins this one exchanges them "
                      "with, `shardline check TOPOLOGY --against OLD.so NEW.so` says", p.stdout)
        # test_extra's relay step consumes test_events' Event: the new layout alone cannot fit.
        topo = self.write("t.toml", events_topology(
            2, steps='{ computation = "x.relay" }, { state_computation = "ev.track", '
                     'state = "seqs", partition = "ev.by_key" }').replace(
            "[plugins]\n", f'[plugins]\nx = "{TEST_PLUGINS}/test_extra.so"\n'))
        p = shardline("check", topo, "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v10.so")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(f"in {topo}:\n  refused: the new version does not fit the topology: ",
                      p.stdout)
        self.assertIn("two builds of Event, of 16 and 24 bytes", p.stdout)
        # Where no other plugin uses the type, the same build is accepted, each state's fate said.
        topo = self.write("t.toml", events_topology(2))
        p = shardline("check", topo, "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v10.so")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(f"in {topo}:\n  state 'seqs': keep: LastSeq has the same layout", p.stdout)
        self.assertIn("ok: a running host would do this reload", p.stdout)
        # OLD.so must be the file the topology loads: a usage error, said before any comparison.
        p = shardline("check", topo, "--against", f"{TEST_PLUGINS}/test_events_v10.so",
                      f"{TEST_PLUGINS}/test_events.so")
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"test_events_v10.so is not the file of a plugin of {topo} (ev = "
                      f"{TEST_PLUGINS}/test_events.so)", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_check_against_previews_plugins_that_share_a_type_reloaded_together(self):
        # One --against per plugin: the two new builds of Event fit each other.
        topo = self.write("t.toml", events_topology(
            2, steps='{ computation = "x.relay" }, { state_computation = "ev.track", '
                     'state = "seqs", partition = "ev.by_key" }').replace(
            "[plugins]\n", f'[plugins]\nx = "{TEST_PLUGINS}/test_extra.so"\n'))
        p = shardline("check", topo, "--against", f"{TEST_PLUGINS}/test_events.so",
                      f"{TEST_PLUGINS}/test_events_v10.so", "--against",
                      f"{TEST_PLUGINS}/test_extra.so", f"{TEST_PLUGINS}/test_extra_v2.so")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("reload test_events 1.0.0", p.stdout)
        self.assertIn("reload test_extra 0.2.0", p.stdout)
        self.assertIn(f"in {topo}:\n  state 'seqs': keep: LastSeq has the same layout", p.stdout)
        self.assertIn("ok: a running host would do this reload", p.stdout)

    def test_check_against_given_a_topology_among_its_files_says_what_it_expects(self):
        # NEW.so forgotten: the topology was taken for it.
        topo = self.write("t.toml", events_topology(2))
        p = shardline("check", "--against", f"{TEST_PLUGINS}/test_events.so", topo)
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"shardline check: {topo} is a topology, but --against takes plugin files: "
                      "OLD.so NEW.so, the build running now, then the new one", p.stderr)
        self.assertNotIn("not an ELF file", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_check_against_takes_two_files_with_the_topology_before_or_after(self):
        # --against takes exactly OLD.so and NEW.so: a TOPOLOGY after them is the topology.
        topo = self.write("t.toml", events_topology(2))
        against = ["--against", f"{TEST_PLUGINS}/test_events.so",
                   f"{TEST_PLUGINS}/test_events_v10.so"]
        for args in (["check", topo, *against], ["check", *against, topo]):
            with self.subTest(args=args):
                p = shardline(*args)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertIn(f"in {topo}:\n  state 'seqs': keep: LastSeq has the same layout",
                              p.stdout)
                self.assertIn("ok: a running host would do this reload", p.stdout)
        # A third file is no third value of --against, but no second TOPOLOGY either.
        p = shardline("check", topo, *against, f"{TEST_PLUGINS}/test_events_v4.so")
        self.assertEqual(p.returncode, 2)
        self.assertIn(f"The following argument was not expected: {TEST_PLUGINS}/test_events_v4.so",
                      p.stderr)
    def test_topology_errors_name_file_line_column(self):
        topo = self.write("t.toml", f"""shard = 2
[plugins]
market = "{PLUGINS}/market_spread.so"
[[pipelines]]
name = "orders"
source = {{ kind = "tcp", listen = "127.0.0.1:7000", decoder = "market.ordr" }}
""")
        status, out, err = check(topo)
        self.assertEqual(status, 1)
        self.assertIn(f"{topo}:1:1: unknown key 'shard' in the top level; expected one of: shards, "
                      "key_groups, batch_size, queue_batches, scheduling, canary, plugins, states, pipelines "
                      "(did you mean 'shards'?)", err)
        self.assertIn("1 error(s)", err)
        # Fix the first error: the second (unknown component) shows with the plugin's exports.
        with open(topo) as f:
            fixed = f.read().replace("shard = 2", "shards = 2")
        with open(topo, "w") as f:
            f.write(fixed)
        status, out, err = check(topo)
        self.assertEqual(status, 1)
        self.assertIn(f"{topo}:6:63: plugin 'market' (market_spread 1.0.0) has no decoder 'ordr'; "
                      "its decoders: nbbo, order", err)
        # A plugin file that is not there: where relative paths start, and --plugin-dir.
        topo = self.write("t.toml", fixed.replace(f"{PLUGINS}/market_spread.so", "build/ms.so"))
        status, out, err = check(topo)
        self.assertEqual(status, 1)
        self.assertIn(f"{topo}:3:10: plugin 'market': {self.path('build/ms.so')}: no such plugin "
                      "file (a relative path is taken from the topology file's folder; "
                      "--plugin-dir DIR looks for ms.so in DIR first)", err)
        # A folder there is no missing file: said as a folder, without the hint for a missing one.
        os.mkdir(self.path("build"))
        topo = self.write("t.toml", fixed.replace(f"{PLUGINS}/market_spread.so", "build"))
        status, out, err = check(topo)
        self.assertEqual(status, 1)
        self.assertIn(f"{topo}:3:10: plugin 'market': {self.path('build')}: is a folder, not a "
                      "plugin file (name the .so in it)\n", err)

    def test_run_stats_log_counts_and_rates_while_running(self):
        port = free_port()
        topo = self.write("topology.toml", events_topology(2, source=tcp_listen(port, 1)))
        run = LiveRun(topo, "--stats", "0.1")
        run.wait_for(f"pipeline 'events' source tcp 127.0.0.1:{port}: listening on "
                     f"127.0.0.1:{port}")
        with connect(port) as s:
            s.sendall("".join(f"{k % 3} {k // 3 + 1}\n" for k in range(300)).encode())
            # Counted while the connection (and so the run) goes on: 300 in, 300 out (the
            # shards may count theirs an interval after the source).
            line = run.wait_for("300 out (")
            # (The rates are over the interval, which may be short: a monitor woken late
            # catches up with its grid.)
            self.assertRegex(line, r"running; pipeline events: 300 in \(\d+(\.\d)?[kM]?/s\), "
                                   r"300 out \(\d+(\.\d)?[kM]?/s\), 0 errors; "
                                   r"(latency of events \(source to sink\): [^;]+; )?"
                                   r"state seqs: 3 keys$")
            # The interval in which the results were written (this one or a later one) reports
            # their latency.
            line = run.wait_for("latency of events (source to sink): p50 ")
            self.assertLessEqual(latency(line, "events")["p50"], latency(line, "events")["max"])
            s.shutdown(socket.SHUT_WR)
        self.assertEqual(run.wait(), 0, run.stderr)
        self.assertIn("pipeline events: 300 in, 300 out, 0 errors", run.stderr)

    def test_an_encoder_built_without_the_newline_check_is_a_warning_for_a_lines_sink(self):
        # test_events as an SDK 0.2.3 build would be (same ABI): its record names that release.
        with_sdk_version(os.path.join(TEST_PLUGINS, "test_events.so"), self.path("older.so"),
                         "0.2.3")
        topo = self.write("topology.toml", """
[plugins]
ev = "older.so"
[[pipelines]]
name = "events"
source = { kind = "stdin", decoder = "ev.event_line" }
steps = [ { computation = "ev.to_text" } ]
sink = { kind = "stdout", encoder = "ev.text" }
""")
        warning = (f"topology.toml:8:37: plugin 'ev' ({self.path('older.so')}) was built with SDK "
                   "0.2.3, whose encoders do not reject a newline inside a message: with framing "
                   "= \"lines\", encoder 'ev.text' would write such a message as two lines; "
                   f"rebuild the plugin against SDK 0.2.4 or later (this host's is {sdk_version()})")
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn(warning.replace("topology.toml:8:37: ", "topology.toml:8:37: warning: "), err)
        self.assertIn("is valid", out)
        p = subprocess.run([SHARDLINE, "run", topo], input="1 1\n2 2\n", capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "1:1\n2:2\n")
        self.assertIn("[warning] " + self.path(warning), p.stderr)

    def test_check_warns_about_a_sink_host_that_does_not_resolve(self):
        topo = self.write("topology.toml", events_topology(
            2, sink='kind = "tcp", connect = "no-such-host.invalid:80"'))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)  # it may resolve where the topology runs
        self.assertIn(": warning: sink tcp no-such-host.invalid:80: cannot resolve "
                      "no-such-host.invalid here (", err)
        self.assertIn("is valid", out)

    def test_check_warns_about_a_listen_host_and_a_sink_folder_missing_here(self):
        topo = self.write("topology.toml", events_topology(
            2, source='kind = "tcp", listen = "999.1.1.1:7000"',
            sink='kind = "file", path = "no-such-folder/out.txt"'))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn(": warning: source tcp 999.1.1.1:7000: cannot resolve 999.1.1.1 here (", err)
        self.assertIn(": warning: sink file " + self.path("no-such-folder/out.txt") + ": the folder " +
                      self.path("no-such-folder") + " does not exist here", err)
        self.assertIn("is valid", out)

    def test_check_warns_about_outputs_that_cannot_be_opened_here(self):
        os.mkdir(self.path("a-folder"))
        topo = self.write("topology.toml", events_topology(2, extra='on_error = "dead_letter"\n'
                                                           'dead_letter = "gone/dl.txt"').replace(
            'path = "out.txt"', 'path = "a-folder"'))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn(": warning: sink file " + self.path("a-folder") + " is a folder here; "
                      "`shardline run` would not start", err)
        self.assertIn(": warning: pipeline 'events' dead_letter " + self.path("gone/dl.txt") +
                      ": the folder " + self.path("gone") + " does not exist here", err)
        self.assertIn("is valid", out)
        # A FIFO: `run` opens it only while something reads it (check does not open it: a
        # reader waiting for a writer would take that for the end of its input).
        os.mkfifo(self.path("out.fifo"))
        topo = self.write("topology.toml", events_topology(2).replace('path = "out.txt"',
                                                                      'path = "out.fifo"'))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn("topology.toml:11:8: warning: sink file " + self.path("out.fifo") +
                      " is a FIFO: `shardline run` starts only while a process reads it (start "
                      "its reader first)", err)

    def test_check_warns_about_outputs_this_user_cannot_write(self):
        # Even root may not create a file in /proc/1, nor write a read-only sysctl: access()
        # says so as it does for another user's folder or file.
        if os.access("/proc/1", os.W_OK) or os.access("/proc/sys/kernel/osrelease", os.W_OK):
            self.skipTest("this kernel lets root write /proc/1 or /proc/sys/kernel/osrelease")
        self.write("events.txt", "1 1\n")
        for sink, extra, warning, refusal in [
                ('kind = "file", path = "/proc/1/out.txt"', "",
                 "topology.toml:11:8: warning: sink file /proc/1/out.txt: the folder /proc/1 "
                 "cannot be written here (",
                 "topology.toml:11:8: pipeline 'events': cannot open sink file /proc/1/out.txt: "),
                (FILE_SINK, 'on_error = "dead_letter"\ndead_letter = "/proc/sys/kernel/osrelease"',
                 "topology.toml:13:15: warning: pipeline 'events' dead_letter "
                 "/proc/sys/kernel/osrelease cannot be written here (Permission denied); "
                 "`shardline run` would not start\n",
                 "topology.toml:13:15: pipeline 'events': cannot open dead-letter file "
                 "/proc/sys/kernel/osrelease: Permission denied")]:
            with self.subTest(sink=sink, extra=extra):
                topo = self.write("topology.toml", events_topology(2, sink=sink, extra=extra))
                status, out, err = check(topo)
                self.assertEqual(status, 0, err)
                self.assertIn(warning, err)
                self.assertIn("is valid", out)
                if "/proc/1/" in sink:  # (the errno depends on the kernel: EACCES or EPERM)
                    self.assertIn("), so the file cannot be created in it; `shardline run` would "
                                  "not start\n", err)
                # And `run` refuses it, as warned.
                r = shardline("run", topo)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(refusal, r.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "runs check as user nobody, which needs root")
    def test_check_warns_about_a_sink_folder_and_file_another_user_cannot_write(self):
        # The case as it happens: a folder and a file of root's, checked and run by another
        # user. (The temporary folder is root's; made readable, not writable, by others.)
        os.chmod(self.dir, 0o755)
        os.mkdir(self.path("tmp"))
        os.chmod(self.path("tmp"), 0o777)  # nobody's shadow copies of the plugins
        nobody = dict(user="nobody", env={**os.environ, "TMPDIR": self.path("tmp")},
                      capture_output=True, text=True, timeout=60)
        if subprocess.run([SHARDLINE, "--version"], **nobody).returncode != 0:
            self.skipTest(f"user nobody cannot run {SHARDLINE}")
        self.write("events.txt", "1 1\n")
        self.write("dl.txt", "")  # root's, 0644
        topo = self.write("topology.toml", events_topology(
            2, extra='on_error = "dead_letter"\ndead_letter = "dl.txt"'))
        p = subprocess.run([SHARDLINE, "check", topo], **nobody)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("warning: sink file " + self.path("out.txt") + ": the folder " + self.dir +
                      " cannot be written here (Permission denied), so the file cannot be "
                      "created in it; `shardline run` would not start", p.stderr)
        self.assertIn("warning: pipeline 'events' dead_letter " + self.path("dl.txt") +
                      " cannot be written here (Permission denied); `shardline run` would not "
                      "start", p.stderr)
        p = subprocess.run([SHARDLINE, "run", topo], **nobody)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("Permission denied", p.stderr)
        # As root, nothing to warn about.
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertNotIn("warning", err)

    def test_check_warns_about_a_source_file_missing_here(self):
        topo = self.write("topology.toml", events_topology(2))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn(": warning: source file " + self.path("events.txt") + " does not exist "
                      "here; `shardline run` would not start unless it is created first", err)
        self.assertIn("is valid", out)
        os.mkdir(self.path("events.txt"))
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertIn(": warning: source file " + self.path("events.txt") + " is a folder here",
                      err)
        os.rmdir(self.path("events.txt"))
        self.write("events.txt", "1 1\n")
        status, out, err = check(topo)
        self.assertEqual(status, 0, err)
        self.assertNotIn("warning", err)
        self.assertIn("is valid", out)

    def test_check_warns_about_a_listen_address_that_cannot_be_listened_on_here(self):
        def check_listen(address):
            topo = self.write("topology.toml", events_topology(
                2, source=f'kind = "tcp", listen = "{address}"'))
            status, out, err = check(topo)
            self.assertEqual(status, 0, err)  # it may work where, or when, the topology runs
            self.assertIn("is valid", out)
            return err
        # 192.0.2.1 is kept for documentation: no machine has it.
        self.assertIn(": warning: source tcp 192.0.2.1:7000: cannot listen on 192.0.2.1:7000: "
                      "Cannot assign requested address; `shardline run` would not start now",
                      check_listen("192.0.2.1:7000"))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = f"127.0.0.1:{taken.getsockname()[1]}"
            self.assertIn(f": warning: source tcp {address}: cannot listen on {address}: Address "
                          "already in use (another process listens there: `ss -ltnp` names it); "
                          "`shardline run` would not start now", check_listen(address))
        port = free_port()
        self.assertNotIn("warning", check_listen(f"127.0.0.1:{port}"))

    def test_a_port_in_use_is_refused_at_startup(self):
        # Two pipelines, both ports taken: both are reported, not only the first.
        with socket.socket() as taken, socket.socket() as also_taken:
            for s in (taken, also_taken):
                s.bind(("127.0.0.1", 0))
                s.listen()
            port, port2 = taken.getsockname()[1], also_taken.getsockname()[1]
            second = events_topology(2, source=tcp_listen(port2), sink='kind = "file", path = '
                                     '"out2.txt"').split("[[pipelines]]")[1].replace(
                'name = "events"', 'name = "more"')
            topo = self.write("topology.toml", events_topology(2, source=tcp_listen(port))
                              + "[[pipelines]]" + second)
            r = shardline("run", topo)
        self.assertEqual(r.returncode, 1, r.stderr)
        for p in (port, port2):
            self.assertIn(f"source tcp 127.0.0.1:{p}: cannot listen on 127.0.0.1:{p}: Address "
                          "already in use (another process listens there: `ss -ltnp` names it)",
                          r.stderr)
        self.assertIn("pipeline 'more'", r.stderr)
        self.assertNotIn("done in", r.stderr)  # refused before anything ran
        self.assertFalse(os.path.exists(self.path("out2.txt")))  # no output file left behind

    def test_usage_errors_exit_with_status_2(self):
        topo = self.write("topology.toml", "")
        for args, message in [
                (["run", "--stats", "-1", topo], "--stats: expected 0 or a number of seconds from "
                                                 "0.01 to 86400 (e.g. 10 or 0.5), got '-1'"),
                (["run", "--stats", "0.00001", topo], "got '0.00001'"),
                (["run", "--stats", "ten", topo], "got 'ten'"),
                # Decimal only: std::stod would have read these as hex, 16 s and 0.125 s.
                (["run", "--stats", "0x10", topo], "got '0x10'"),
                (["run", "--stats", "0x1p-3", topo], "got '0x1p-3'"),
                (["run", "--bogus", topo], "The following argument was not expected: --bogus"),
                (["run", "--shards", "0", topo], "--shards: expected a whole number of shards "
                                                 "from 1 to 1024, got '0'"),
                (["run", "--shards", "abc", topo], "--shards: expected a whole number of shards "
                                                   "from 1 to 1024, got 'abc'"),
                (["run", "--shards", "2.5", topo], "got '2.5'"),
                (["run", "--shards", "0x10", topo], "got '0x10'"),
                (["check", "--shards", "0", topo], "--shards: expected a whole number of shards "
                                                   "from 1 to 1024, got '0'"),
                (["check", "--against", "a.so"], "--against")]:
            with self.subTest(args=args):
                p = shardline(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)
        self.assertEqual(shardline("run", "--help").returncode, 0)
        p = shardline("--version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^shardline \d+\.\d+\.\d+ \(")


class GenReceive(TempDirTest):
    def test_receive_says_a_stream_of_lines_is_not_frames(self):
        # It counts length-prefixed frames: a lines sink's stream would read as one incomplete
        # frame of a huge length. Its help says what it reads, and the warning what it got.
        p = subprocess.run([GEN, "receive", "--help"], capture_output=True, text=True, timeout=60)
        self.assertIn("It counts length-prefixed frames", p.stdout)
        out = self.path("got.txt")
        recv = subprocess.Popen([GEN, "receive", "--listen", "127.0.0.1:0", "--out", out,
                                 "--timeout", "60"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        port = int(recv.stderr.readline().strip().rsplit(":", 1)[1])  # "listening on HOST:PORT"
        with connect(port) as s:
            s.sendall(b"1 1\n2 1\n1 2\n")
        stdout, stderr = recv.communicate(timeout=60)
        self.assertEqual(recv.returncode, 0, stderr)
        self.assertIn("received 0 frames (12 bytes)", stdout)
        self.assertIn("warning: the stream looks like lines of text, not frames", stderr)
        self.assertNotIn("the last frame is incomplete", stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"1 1\n2 1\n1 2\n")


if __name__ == "__main__":
    unittest.main()
