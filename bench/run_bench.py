#!/usr/bin/env python3
"""Runs every Shardline benchmark and prints one table. Called by bench/run.sh.

Scenarios (bench/RESULTS.md explains each and what the numbers mean):
  baseline    Market Spread as a plain single-threaded loop (baseline_market_spread), and
              the hand-written sharded limit (the same tool with --shards N)
  inproc      Market Spread in-process (market_spread_inproc): file sources, NBBO first, then
              the orders (timed); discard sink with and without the encoder; 1/2/4 shards
  tcp         Market Spread over TCP on 127.0.0.1: shardline-gen send -> shardline run ->
              shardline-gen receive
  latency     orders over TCP at 50% of the maximum rate measured the same way, and at a light
              load (shardline-latency), scheduling = "latency", all orders rejected so that
              each is a sample; with 1 shard (run by the source's thread: one thread from read
              to write) and with 2; each also through a null pipeline, the floor the harness and
              the machine set; the same orders replayed from a file at a fixed rate (the
              source's `rate`), with no harness process, with 1 and 2 shards; NBBO and orders
              replayed at once with 1 shard, which both sources' threads run; how long the
              machine stops a spinning thread; and how long a sleeping thread takes to run once
              woken
  wordcount   word count on a generated text (in-process driver)
  micro       Google Benchmark micro-benchmarks (micro_bench)

--tiny runs each scenario once at a tiny size and checks the results for consistency
(runtime vs baseline rejected orders, frames received, words counted); it never looks at
speed. Exit status 1 if any scenario failed or a check did not hold.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ORDER_FRAME = 57
NBBO_FRAME = 46

# ---------------------------------------------------------------------------- configuration


class Sizes:
    def __init__(self, tiny):
        self.tiny = tiny
        if tiny:
            self.symbols = [350]
            self.orders = 20_000
            self.nbbo_updates = 2_000
            self.inproc = [(350, 2, "encode")]
            self.reps = 1
            self.oversub = []
            self.baseline_xxh3 = []
            self.limit = [(350, 2)]
            self.pairs = [350]
            self.tcp_shards = [2]
            self.tcp_symbols = 350
            self.latency_symbols = 350
            self.latency_max_count = 5_000
            self.latency_rate = 20_000
            self.latency_low_rate = None
            self.latency_seconds = 0.25
            self.latency_warmup = 0.0
            self.replay_rate = 100_000
            self.stall_seconds = 0.2
            self.wakeups = 500
            self.wc_bytes = 256 * 1024
            self.wc_shards = [2]
            self.micro_min_time = "0.001"
        else:
            self.symbols = [350, 10_000, 1_000_000]
            self.orders = 10_000_000
            self.nbbo_updates = 1_000_000
            self.inproc = [(s, n, sink) for s in self.symbols for n in (1, 2, 4)
                           for sink in ("count", "encode")]
            self.reps = 5
            self.oversub = [(10_000, 8, "encode")]
            self.baseline_xxh3 = [10_000]
            self.limit = [(s, n) for s in (350, 10_000) for n in (1, 2, 4)]
            self.pairs = [350, 10_000]
            self.tcp_shards = [1, 2, 4]
            self.tcp_symbols = 10_000
            self.latency_symbols = 10_000
            self.latency_max_count = 5_000_000
            self.latency_rate = None  # 50% of the measured maximum
            self.latency_low_rate = 100_000  # and a light load, for the shape of the curve
            self.latency_seconds = 6.0
            self.latency_warmup = 1.0
            self.replay_rate = None  # 50% of the replay's maximum, and the TCP rows' 50% load
            self.stall_seconds = 3.0
            self.wakeups = 10_000
            self.wc_bytes = 64 * 1024 * 1024
            self.wc_shards = [1, 2]
            self.micro_min_time = "0.2"


# ---------------------------------------------------------------------------- helpers


class Failed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_json(cmd, timeout, what):
    """Runs cmd, returns (json of its last stdout line, max RSS in KiB from wait4)."""
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise Failed(f"{what}: timed out after {timeout} s\n{err[-2000:]}")
    if proc.returncode != 0:
        raise Failed(f"{what}: exit status {proc.returncode}\n{err[-2000:]}")
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise Failed(f"{what}: no result on stdout\n{err[-2000:]}")
    return json.loads(lines[-1])


def wait4(proc, timeout, what):
    """Waits for a Popen child; returns (status, rusage, time it ended)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            ended = time.monotonic()
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru, ended
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise Failed(f"{what}: timed out after {timeout} s")
        time.sleep(0.0005)


def wait_for_line(stream, pattern, timeout, what):
    """Reads lines from a text stream until one matches; returns the match."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise Failed(f"{what}: did not print /{pattern}/\n{''.join(seen)[-2000:]}")


def summary_counts(text, pipeline):
    m = re.search(rf"pipeline {pipeline}: (\d+) in, (\d+) out, (\d+) errors", text)
    if not m:
        raise Failed(f"no summary for pipeline {pipeline} in:\n{text[-2000:]}")
    return tuple(int(x) for x in m.groups())


_UNITS_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def summary_latency(text, pipeline):
    """{"p50_us": .., "p99_us": .., "p999_us": .., "p9999_us": .., "max_us": ..} from the last
    "latency of PIPELINE (source to sink): p50 152us, ..." of a run's log (None if absent)."""
    found = re.findall(rf"latency of {pipeline} \(source to sink\): ([^;\n]+)", text)
    if not found:
        return None
    out = {}
    for part in found[-1].split(", "):
        name, value = part.split(" ")
        m = re.fullmatch(r"([\d.]+)(ns|us|ms|s)", value)
        key = "max_us" if name == "max" else name.replace(".", "") + "_us"
        out[key] = float(m.group(1)) * _UNITS_US[m.group(2)]
    return out


def fmt_count(n):
    if n is None:
        return "-"
    return f"{n:,}".replace(",", "_") if isinstance(n, int) else str(n)


def fmt_rate(r):
    if r is None:
        return "-"
    if r >= 1e6:
        return f"{r / 1e6:.2f}M"
    if r >= 1e3:
        return f"{r / 1e3:.1f}k"
    return f"{r:.0f}"


def fmt_us(v):
    return "-" if v is None else (f"{v:.0f} us" if v >= 100 else f"{v:.1f} us")


def fmt_rss(kb):
    return "-" if kb is None else f"{kb / 1024:.0f} MiB"


# ---------------------------------------------------------------------------- the suite


class Suite:
    def __init__(self, build, sizes, only):
        self.build = Path(build).resolve()
        self.sizes = sizes
        self.only = only
        self.repo = Path(__file__).resolve().parent.parent
        self.shared = Path(os.environ.get("SHARDLINE_SHARED_DATA", self.repo.parent / "shared" / "data"))
        self.data = self.build / ("bench-data-tiny" if sizes.tiny else "bench-data")
        self.rows = []
        self.latency_notes = []
        self.pair_notes = []
        self.failures = []
        self.results = {}
        self.shardline = self.build / "shardline"
        self.gen = self.build / "shardline-gen"
        self.inproc = self.build / "bench" / "market_spread_inproc"
        self.baseline = self.build / "bench" / "baseline_market_spread"
        self.latency = self.build / "bench" / "shardline-latency"
        self.micro = self.build / "bench" / "micro_bench"
        self.plugin = self.build / "plugins" / "market_spread.so"
        self.wc_plugin = self.build / "plugins" / "word_count.so"
        for f in (self.shardline, self.gen, self.inproc, self.baseline, self.latency, self.plugin):
            if not f.exists():
                raise Failed(f"{f} is missing: build the benchmarks first")
        self.data.mkdir(exist_ok=True)
        self.work = self.data / "run"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()

    def wanted(self, name):
        return not self.only or name in self.only

    def row(self, scenario, shards="-", messages=None, rate=None, p50=None, p99=None, p999=None,
            rss=None, vs_base=None, allocs=None):
        self.rows.append([scenario, str(shards), fmt_count(messages), fmt_rate(rate), fmt_us(p50),
                          fmt_us(p99), fmt_us(p999), fmt_rss(rss),
                          "-" if vs_base is None else f"{vs_base:.2f}x",
                          "-" if allocs is None else f"{allocs:.2g}"])

    @staticmethod
    def engine_latency(text, pipeline):
        """The engine's own latency of `pipeline` from a run's summary: in the throughput rows,
        source arrival to sink write at full speed."""
        lat = summary_latency(text, pipeline)
        if not lat:
            raise Failed(f"no latency of {pipeline} in the summary:\n{text[-2000:]}")
        return lat

    def attempt(self, name, fn, *args):
        try:
            fn(*args)
        except Failed as e:
            self.failures.append(f"{name}: {e}")
            log(f"FAILED {name}: {e}")

    # ---- data

    def ms_files(self, symbols):
        d = self.data / f"ms-{symbols}"
        d.mkdir(exist_ok=True)
        nbbo, orders = d / "nbbo.msg", d / "orders.msg"
        stamp = d / "params"
        params = f"{symbols} {self.sizes.orders} {self.sizes.nbbo_updates} v1"
        if not (stamp.exists() and stamp.read_text() == params and nbbo.exists() and orders.exists()):
            log(f"generating Market Spread data: {symbols} symbols, {self.sizes.orders} orders")
            subprocess.run([self.gen, "nbbo", "--symbols", str(symbols), "--count",
                            str(self.sizes.nbbo_updates), "--seed", "2", "--out", nbbo],
                           check=True, stdout=subprocess.DEVNULL)
            subprocess.run([self.gen, "orders", "--symbols", str(symbols), "--count",
                            str(self.sizes.orders), "--seed", "1", "--out", orders],
                           check=True, stdout=subprocess.DEVNULL)
            stamp.write_text(params)
        return nbbo, orders

    def ms_topology(self, name, nbbo_source, orders_source, sink, shards=2, with_nbbo=True,
                    scheduling="throughput"):
        """A Market Spread topology: sources and sink as TOML inline tables."""
        text = [f"shards = {shards}", f'scheduling = "{scheduling}"', "", "[plugins]",
                f'market = "{self.plugin}"', "",
                "[states.symbols]", 'factory = "market.symbol_data"', ""]
        if with_nbbo:
            text += ["[[pipelines]]", 'name = "nbbo"', f"source = {nbbo_source}",
                     'steps = [ { state_computation = "market.update_nbbo", state = "symbols", '
                     'partition = "market.nbbo_symbol" } ]', ""]
        text += ["[[pipelines]]", 'name = "orders"', f"source = {orders_source}",
                 'steps = [ { state_computation = "market.check_order", state = "symbols", '
                 'partition = "market.order_symbol" } ]', f"sink = {sink}", ""]
        path = self.work / f"{name}.toml"
        path.write_text("\n".join(text))
        return path

    # ---- 5. baseline

    def run_baseline(self):
        for symbols in self.sizes.symbols:
            nbbo, orders = self.ms_files(symbols)
            for key in ["packed"] + (["xxh3"] if symbols in self.sizes.baseline_xxh3 else []):
                r = run_json([self.baseline, "--nbbo", nbbo, "--orders", orders, "--reps",
                              self.sizes.reps, "--key", key], 300, f"baseline {symbols} {key}")
                self.results[("baseline", symbols, key)] = r
                label = "" if key == "packed" else ", XXH3 string key"
                self.row(f"baseline loop, {symbols} sym{label}", 1, r["orders"], r["msgs_per_s"],
                         rss=r["max_rss_kb"])
                if r["bad"]:
                    raise Failed(f"baseline saw {r['bad']} bad frames")
        # The hand-written sharded limit: what moving messages between threads costs at best.
        for symbols, shards in self.sizes.limit:
            nbbo, orders = self.ms_files(symbols)
            r = run_json([self.baseline, "--nbbo", nbbo, "--orders", orders, "--reps",
                          self.sizes.reps, "--shards", shards], 300, f"limit {symbols} {shards}")
            self.results[("limit", symbols, shards)] = r
            base = self.results[("baseline", symbols, "packed")]
            if r["rejected"] != base["rejected"] or r["bad"]:
                raise Failed(f"sharded limit {symbols} sym {shards} shards: {r['rejected']} "
                             f"rejected, the loop rejected {base['rejected']}")
            self.row(f"hand-written sharded limit, {symbols} sym", shards, r["orders"],
                     r["msgs_per_s"], rss=r["max_rss_kb"],
                     vs_base=r["msgs_per_s"] / base["msgs_per_s"])

    # ---- 1. Market Spread in-process

    def inproc_once(self, symbols, shards, sink_kind):
        """One in-process Market Spread run (JSON of market_spread_inproc)."""
        nbbo, orders = self.ms_files(symbols)
        sink = ('{ kind = "discard", encoder = "market.order_result" }' if sink_kind == "encode"
                else '{ kind = "discard" }')
        topo = self.ms_topology(
            f"inproc-{symbols}-{sink_kind}",
            f'{{ kind = "file", path = "{nbbo}", decoder = "market.nbbo" }}',
            f'{{ kind = "file", path = "{orders}", decoder = "market.order", start_after = "nbbo" }}',
            sink)
        return run_json([self.inproc, "--topology", topo, "--shards", shards,
                         "--phase-file", orders, "--count-pipeline", "orders",
                         "--warm", nbbo, "--warm", orders], 300,
                        f"inproc {symbols} sym {shards} shards {sink_kind}")

    def run_inproc(self):
        configs = self.sizes.inproc + self.sizes.oversub
        for symbols, shards, sink_kind in configs:
            runs = [self.inproc_once(symbols, shards, sink_kind) for _ in range(self.sizes.reps)]
            runs.sort(key=lambda r: r["msgs_per_s"])
            r = runs[len(runs) // 2]  # the median run
            r["all_rates"] = [x["msgs_per_s"] for x in runs]
            self.results[("inproc", symbols, shards, sink_kind)] = r
            base = self.results.get(("baseline", symbols, "packed"))
            if base and r["out"] != base["rejected"]:
                raise Failed(f"inproc {symbols} sym {shards} shards: {r['out']} orders rejected, "
                             f"the baseline rejected {base['rejected']}")
            if r["status"] != 0 or r["errors"]:
                raise Failed(f"inproc: status {r['status']}, {r['errors']} errors")
            sink_label = "encode+discard" if sink_kind == "encode" else "count only"
            lat = self.engine_latency(r["summary"], "orders")
            self.row(f"MS in-process, {symbols} sym, {sink_label}", shards, r["messages"],
                     r["msgs_per_s"], lat["p50_us"], lat["p99_us"], lat["p999_us"],
                     rss=r["max_rss_kb"],
                     vs_base=r["msgs_per_s"] / base["msgs_per_s"] if base else None,
                     allocs=r["allocs_per_msg"])

    def run_pairs(self):
        """The targets' ratio measured in pairs: the loop and 2 shards alternate run by run, so
        both see the same moment of a shared machine; the median of the pairs' ratios."""
        for symbols in self.sizes.pairs:
            nbbo, orders = self.ms_files(symbols)
            ratios = []
            for _ in range(self.sizes.reps):
                base = run_json([self.baseline, "--nbbo", nbbo, "--orders", orders, "--reps", 1,
                                 "--key", "packed"], 300, f"baseline {symbols} (paired)")
                run = self.inproc_once(symbols, 2, "encode")
                if run["out"] != base["rejected"]:
                    raise Failed(f"paired {symbols} sym: {run['out']} orders rejected, the loop "
                                 f"rejected {base['rejected']}")
                ratios.append((run["msgs_per_s"] / base["msgs_per_s"], run["msgs_per_s"]))
            ratios.sort()
            median, rate = ratios[len(ratios) // 2]
            self.results[("pairs", symbols)] = {"ratios": [r for r, _ in ratios], "median": median}
            self.pair_notes.append(
                f"paired with the loop, 2 shards, {symbols} sym, encode+discard: median "
                f"{median:.2f}x at {fmt_rate(rate)}/s ({ratios[0][0]:.2f}-{ratios[-1][0]:.2f}x over "
                f"{len(ratios)} alternating pairs)")

    # ---- 2. Market Spread over TCP

    def start_receiver(self, port):
        recv = subprocess.Popen([str(self.gen), "receive", "--listen", f"127.0.0.1:{port}", "--out",
                                 "/dev/null", "--timeout", "60"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for_line(recv.stderr, r"listening on", 10, "shardline-gen receive")
        return recv

    def run_tcp(self):
        symbols = self.sizes.tcp_symbols
        nbbo, orders = self.ms_files(symbols)
        n_orders = orders.stat().st_size // ORDER_FRAME
        for shards in self.sizes.tcp_shards:
            p_nbbo, p_orders, p_sink = free_port(), free_port(), free_port()
            topo = self.ms_topology(
                f"tcp-{shards}",
                f'{{ kind = "tcp", listen = "127.0.0.1:{p_nbbo}", connections = 1, decoder = "market.nbbo" }}',
                f'{{ kind = "tcp", listen = "127.0.0.1:{p_orders}", connections = 1, '
                f'decoder = "market.order", start_after = "nbbo" }}',
                f'{{ kind = "tcp", connect = "127.0.0.1:{p_sink}", encoder = "market.order_result" }}',
                shards)
            recv = self.start_receiver(p_sink)
            log_path = self.work / f"tcp-{shards}.log"
            with open(log_path, "w") as log_file:
                host = subprocess.Popen([str(self.shardline), "run", str(topo), "--log-level", "info"],
                                        stdout=subprocess.DEVNULL, stderr=log_file)
                try:
                    subprocess.run([self.gen, "send", "--to", f"127.0.0.1:{p_nbbo}", "--file", nbbo],
                                   check=True, stdout=subprocess.PIPE, timeout=120)
                    sent = subprocess.run([self.gen, "send", "--to", f"127.0.0.1:{p_orders}",
                                           "--file", orders], check=True, stdout=subprocess.PIPE,
                                          text=True, timeout=300)
                    sent_end = time.monotonic()
                    m = re.search(r"sent (\d+) messages in ([\d.]+) s", sent.stdout)
                    connected = sent_end - float(m.group(2))
                    status, ru, ended = wait4(host, 300, "shardline run (tcp)")
                finally:
                    if host.poll() is None:
                        host.kill()
            rout, rerr = recv.communicate(timeout=60)
            text = log_path.read_text()
            if status != 0:
                raise Failed(f"tcp: shardline exit status {status}\n{text[-2000:]}")
            o_in, o_out, o_err = summary_counts(text, "orders")
            got = re.search(r"received (\d+) frames", rout)
            received = int(got.group(1)) if got else -1
            if o_in != n_orders or received != o_out:
                raise Failed(f"tcp: {o_in} of {n_orders} orders in, {o_out} results out, "
                             f"{received} received")
            base = self.results.get(("baseline", symbols, "packed"))
            if base and o_out != base["rejected"]:
                raise Failed(f"tcp: {o_out} orders rejected, the baseline rejected {base['rejected']}")
            rate = o_in / (ended - connected)
            self.results[("tcp", shards)] = {"orders": o_in, "out": o_out, "seconds": ended - connected,
                                             "msgs_per_s": rate, "max_rss_kb": ru.ru_maxrss}
            lat = self.engine_latency(text, "orders")
            self.row(f"MS over TCP, {symbols} sym", shards, o_in, rate, lat["p50_us"],
                     lat["p99_us"], lat["p999_us"], rss=ru.ru_maxrss,
                     vs_base=rate / base["msgs_per_s"] if base else None)

    # ---- 4. latency at a fixed offered load

    def latency_run(self, orders, shards, rate, count, warmup, label, null=False):
        """Runs shardline-latency against shardline (or against the null pipeline)."""
        p_orders, p_sink = free_port(), free_port()
        topo = self.ms_topology(
            f"latency-{label}", None,
            f'{{ kind = "tcp", listen = "127.0.0.1:{p_orders}", connections = 1, decoder = "market.order" }}',
            f'{{ kind = "tcp", connect = "127.0.0.1:{p_sink}", encoder = "market.order_result" }}',
            shards, with_nbbo=False, scheduling="latency")
        tool = subprocess.Popen([str(self.latency), "--to", f"127.0.0.1:{p_orders}", "--listen",
                                 f"127.0.0.1:{p_sink}", "--orders", str(orders), "--count", str(count),
                                 "--rate", str(rate), "--warmup", str(warmup), "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_line(tool.stderr, r"listening on", 10, "shardline-latency")
        log_path = self.work / f"latency-{label}.log"
        host_cmd = ([str(self.latency), "--null-pipeline", f"127.0.0.1:{p_orders}", "--to",
                     f"127.0.0.1:{p_sink}"] if null else
                    [str(self.shardline), "run", str(topo), "--log-level", "info"])
        with open(log_path, "w") as log_file:
            host = subprocess.Popen(host_cmd, stdout=subprocess.DEVNULL, stderr=log_file)
            try:
                out, err = tool.communicate(timeout=300)
                status, ru, _ = wait4(host, 60, "shardline run (latency)")
            finally:
                if host.poll() is None:
                    host.kill()
                if tool.poll() is None:
                    tool.kill()
        if tool.returncode != 0:
            raise Failed(f"latency {label}: shardline-latency failed\n{err[-2000:]}\n"
                         f"{log_path.read_text()[-2000:]}")
        r = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        if status != 0:
            raise Failed(f"latency {label}: shardline exit status {status}")
        if r["received"] != r["sent"] or r["unmatched"]:
            raise Failed(f"latency {label}: sent {r['sent']}, received {r['received']}, "
                         f"unmatched {r['unmatched']}")
        r["max_rss_kb"] = ru.ru_maxrss
        if not null:
            # Shardline's own measure: source arrival to sink write, without the loopback hops
            # and the harness's threads (over the whole run, warm-up included).
            r["engine"] = self.engine_latency(log_path.read_text(), "orders")
        return r

    def run_latency(self):
        _, orders = self.ms_files(self.sizes.latency_symbols)
        s = self.sizes
        # What the machine does to a thread that never sleeps: the floor under every hop.
        st = run_json([self.latency, "--stalls", s.stall_seconds], 60, "stalls")
        self.results[("latency", "stalls")] = st
        self.latency_notes.append(
            f"machine stalls of a spinning thread ({st['seconds']:.1f} s): "
            f"{st['over_100us_per_s']:.0f}/s over 100 us, longest {st['longest_us'] / 1e3:.1f} ms; "
            f"a message arriving at a random instant would wait > 100 us with probability "
            f"{st['wait_over_100us_share']:.2%}, > 1 ms with {st['wait_over_1ms_share']:.2%}")
        # ... and to a sleeping thread woken by another: the cost of every hand-off.
        wk = run_json([self.latency, "--wakeups", s.wakeups], 60, "wakeups")
        self.results[("latency", "wakeups")] = wk
        self.latency_notes.append(
            f"machine: waking a sleeping thread ({wk['wakeups']} futex wake-ups, 200 us apart): "
            f"p50 {wk['p50_us']:.0f} us, p99 {wk['p99_us']:.0f} us, p99.9 {wk['p999_us']:.0f} us, "
            f"p99.99 {wk['p9999_us']:.0f} us")
        # One shard is run by the source's own thread (no hand-off); two have threads of their own.
        for shards in (1, 2):
            self.latency_set(orders, shards)
        self.run_replay()
        self.run_replay_both()

    def latency_set(self, orders, shards):
        """The TCP latency rows of one shard count: its maximum, 50% of that and the light load,
        each with the null pipeline's floor at the same load."""
        s = self.sizes
        how = ", 1 thread read to write" if shards == 1 else ""
        mx = self.latency_run(orders, shards, 0, s.latency_max_count, 0, f"max-{shards}")
        self.results[("latency", shards, "max")] = mx
        self.row(f"MS TCP max, all rejected, {s.latency_symbols} sym{how}", shards, mx["received"],
                 mx["msgs_per_s"], mx["p50_us"], mx["p99_us"], mx["p999_us"], mx["max_rss_kb"])
        half = s.latency_rate or round(mx["msgs_per_s"] * 0.5)
        loads = [(half, "half", "50% of max" if not s.latency_rate else None)]
        if s.latency_low_rate:
            loads.append((s.latency_low_rate, "low", "light load"))
        for rate, name, why in loads:
            count = max(1000, int(rate * s.latency_seconds))
            r = self.latency_run(orders, shards, rate, count, s.latency_warmup, f"{name}-{shards}")
            r["offered_rate"] = rate
            self.results[("latency", shards, name)] = r
            at = f"{fmt_rate(rate)}/s, {shards} shard{'s' if shards > 1 else ''}"
            self.row(f"MS TCP latency @ {fmt_rate(rate)}/s" + (f" ({why})" if why else "") + how,
                     shards, r["samples"], r["msgs_per_s"], r["p50_us"], r["p99_us"], r["p999_us"],
                     r["max_rss_kb"])
            self.latency_notes.append(f"latency @ {at}: p99.99 {r['p9999_us']:.0f} us, "
                                      f"max {r['max_us']:.0f} us")
            e = r["engine"]
            self.row("  inside Shardline: source arrival to sink write", shards, None, None,
                     e["p50_us"], e["p99_us"], e["p999_us"])
            self.latency_notes.append(f"inside Shardline @ {at}: p99.99 "
                                      f"{e['p9999_us']:.0f} us, max {e['max_us']:.0f} us")
            # The floor under these numbers: the same load through a pipeline that does nothing.
            f = self.latency_run(orders, shards, rate, count, s.latency_warmup,
                                 f"{name}-{shards}-floor", null=True)
            self.results[("latency", shards, name + "-floor")] = f
            self.row(f"  floor: null pipeline @ {fmt_rate(rate)}/s (no Shardline)", "-",
                     f["samples"], f["msgs_per_s"], f["p50_us"], f["p99_us"], f["p999_us"],
                     f["max_rss_kb"])
            self.latency_notes.append(f"floor @ {at}: p99.99 {f['p9999_us']:.0f} us, "
                                      f"max {f['max_us']:.0f} us")

    def replay_once(self, orders, shards, rate, label, nbbo=None):
        """The latency topology with the orders replayed from the file at `rate` (0: at full
        speed) and the results written to /dev/null: the load is offered by the source itself,
        with no sender or receiver process and no loopback TCP. With `nbbo`, the NBBO updates
        are replayed at the same time, paced to last as long as the orders; only rejected
        orders come out then, so the orders read are counted instead of the results."""
        pace = f", rate = {rate}" if rate else ""
        expected = orders.stat().st_size // ORDER_FRAME
        nbbo_source = None
        if nbbo:
            updates = nbbo.stat().st_size // NBBO_FRAME
            npace = f", rate = {max(1, rate * updates // expected)}" if rate else ""
            nbbo_source = f'{{ kind = "file", path = "{nbbo}"{npace}, decoder = "market.nbbo" }}'
        topo = self.ms_topology(
            f"replay-{label}", nbbo_source,
            f'{{ kind = "file", path = "{orders}"{pace}, decoder = "market.order" }}',
            '{ kind = "file", path = "/dev/null", encoder = "market.order_result" }',
            shards, with_nbbo=nbbo is not None, scheduling="latency")
        warm = ["--warm", orders] + (["--warm", nbbo] if nbbo else [])
        r = run_json([self.inproc, "--topology", topo, "--phase-file", orders,
                      "--count-pipeline", "orders", "--count", "in" if nbbo else "out", *warm],
                     300, f"replay {label}")
        if r["status"] != 0 or r["errors"]:
            raise Failed(f"replay {label}: status {r['status']}, {r['errors']} errors")
        if r["messages"] != expected:  # without NBBO every order is rejected, so each comes out
            raise Failed(f"replay {label}: {r['messages']} orders counted, expected {expected}")
        r["engine"] = self.engine_latency(r["summary"], "orders")
        return r

    def run_replay(self):
        """Latency with the load offered by a paced file source, with 1 shard (one thread from
        read to write) and with 2: at 50% of the replay's own maximum, and at the TCP rows'
        50% load of the same shard count (the same rate with and without the harness)."""
        _, orders = self.ms_files(self.sizes.latency_symbols)
        for shards in (1, 2):
            how = ", 1 thread read to write" if shards == 1 else ""
            mx = self.replay_once(orders, shards, 0, f"max-{shards}")
            self.results[("replay", shards, "max")] = mx
            e = mx["engine"]
            self.row(f"MS file replay max, all rejected, {self.sizes.latency_symbols} sym{how}",
                     shards, mx["messages"], mx["msgs_per_s"], e["p50_us"], e["p99_us"],
                     e["p999_us"], mx["max_rss_kb"])
            if self.sizes.replay_rate:
                loads = [(self.sizes.replay_rate, "fixed", None)]
            else:
                loads = [(round(mx["msgs_per_s"] * 0.5), "half", "50% of max")]
                tcp_half = self.results.get(("latency", shards, "half"))
                if tcp_half:
                    loads.append((tcp_half["offered_rate"], "tcp-half", "the TCP 50% load"))
            for rate, name, why in loads:
                r = self.replay_once(orders, shards, rate, f"{name}-{shards}")
                self.results[("replay", shards, name)] = r
                e = r["engine"]
                self.row(f"MS file replay @ {fmt_rate(rate)}/s" + (f" ({why})" if why else "")
                         + how, shards, r["messages"], r["msgs_per_s"], e["p50_us"], e["p99_us"],
                         e["p999_us"], r["max_rss_kb"])
                self.latency_notes.append(
                    f"file replay @ {fmt_rate(rate)}/s, {shards} shard{'s' if shards > 1 else ''} "
                    f"(achieved {fmt_rate(r['msgs_per_s'])}/s): p99.99 {e['p9999_us']:.0f} us, "
                    f"max {e['max_us']:.0f} us")

    def run_replay_both(self):
        """Market Spread whole, with 1 shard: NBBO updates and orders replayed from their files
        at the same time, so that both sources' threads run the shard, in turn; at full speed,
        then at 50% of that. The orders' latency counts the rejected ones, the only ones
        written."""
        nbbo, orders = self.ms_files(self.sizes.latency_symbols)
        rate = 0
        for label in ("max", "half"):
            r = self.replay_once(orders, 1, rate, f"both-{label}", nbbo=nbbo)
            self.results[("replay-both", label)] = r
            e = r["engine"]
            what = (f"@ {fmt_rate(rate)}/s" + ("" if self.sizes.replay_rate else " (50% of max)")
                    if rate else "max")
            self.row(f"MS file replay {what}, NBBO + orders at once, sources run the shard", 1,
                     r["messages"], r["msgs_per_s"], e["p50_us"], e["p99_us"], e["p999_us"],
                     r["max_rss_kb"])
            self.latency_notes.append(f"file replay of NBBO + orders {what}, 1 shard (achieved "
                                      f"{fmt_rate(r['msgs_per_s'])}/s): p99.99 "
                                      f"{e['p9999_us']:.0f} us, max {e['max_us']:.0f} us")
            rate = self.sizes.replay_rate or round(r["msgs_per_s"] * 0.5)

    # ---- 3. word count

    def wc_text(self):
        path = self.data / "words.txt"
        stamp = self.data / "words.params"
        params = f"{self.sizes.wc_bytes} v1"
        if path.exists() and stamp.exists() and stamp.read_text() == params:
            return path
        source = (self.shared / "word-count" / "bill_of_rights.txt").read_text().splitlines()
        source = [l for l in source if l.strip()]
        log(f"generating {self.sizes.wc_bytes} bytes of text")
        out, size, copy = [], 0, 0
        # Each copy of the text tags every 7th word with the copy number (mod 4096), so the
        # vocabulary grows to tens of thousands of words instead of a few hundred.
        while size < self.sizes.wc_bytes:
            tag = format(copy % 4096, "x")
            for line in source:
                words = line.split(" ")
                for i in range(0, len(words), 7):
                    if words[i][:1].isalpha():
                        words[i] = words[i] + tag
                text = " ".join(words)
                out.append(text)
                size += len(text) + 1
            copy += 1
        path.write_text("\n".join(out) + "\n")
        stamp.write_text(params)
        return path

    @staticmethod
    def count_words(path):
        """Words as the word_count plugin splits them: runs of letters, digits and '."""
        return sum(1 for _ in re.finditer(rb"[A-Za-z0-9']+", path.read_bytes()))

    def run_wordcount(self):
        if not self.wc_plugin.exists():
            raise Failed(f"{self.wc_plugin} is missing")
        text = self.wc_text()
        topo = self.work / "wordcount.toml"
        topo.write_text("\n".join([
            "shards = 2", "[plugins]", f'wc = "{self.wc_plugin}"', "[states.words]",
            'factory = "wc.count"', "[[pipelines]]", 'name = "word_count"',
            f'source = {{ kind = "file", path = "{text}", framing = "lines", decoder = "wc.line" }}',
            'steps = [ { computation = "wc.split" }, '
            '{ state_computation = "wc.count", state = "words", partition = "wc.word" } ]',
            'sink = { kind = "discard", encoder = "wc.text" }', ""]))
        expected = self.count_words(text) if self.sizes.tiny else None
        for shards in self.sizes.wc_shards:
            r = run_json([self.inproc, "--topology", topo, "--shards", shards, "--phase-file", text,
                          "--count", "out", "--warm", text], 300, f"word count {shards} shards")
            if r["status"] != 0 or r["errors"]:
                raise Failed(f"word count: status {r['status']}, {r['errors']} errors")
            if expected is not None and r["messages"] != expected:
                raise Failed(f"word count: {r['messages']} words counted, expected {expected}")
            self.results[("wordcount", shards)] = r
            mb = text.stat().st_size / 2**20
            lat = self.engine_latency(r["summary"], "word_count")
            self.row(f"word count, {mb:.0f} MiB text ({r['state_keys']} words)" if mb >= 1
                     else f"word count, {text.stat().st_size // 1024} KiB text ({r['state_keys']} words)",
                     shards, r["messages"], r["msgs_per_s"], lat["p50_us"], lat["p99_us"],
                     lat["p999_us"], rss=r["max_rss_kb"],
                     allocs=r["allocs_per_msg"])

    # ---- 6. micro-benchmarks

    def run_micro(self):
        if not self.micro.exists():  # built only where Google Benchmark is installed
            self.row("micro: not built (Google Benchmark not found at configure time)")
            return
        out = self.work / "micro.json"
        cmd = [str(self.micro), f"--benchmark_min_time={self.sizes.micro_min_time}",
               f"--benchmark_out={out}", "--benchmark_out_format=json"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        if p.returncode != 0:
            raise Failed(f"micro_bench: exit status {p.returncode}\n{p.stderr[-2000:]}")
        data = json.loads(out.read_text())
        self.results["micro"] = data["benchmarks"]
        for b in data["benchmarks"]:
            ips = b.get("items_per_second")
            ns = 1e9 / ips if ips else None
            extra = ""
            if "overhead_B_per_key" in b:
                extra = f", {b['overhead_B_per_key']:.0f} B/key overhead"
            self.row(f"micro {b['name'].replace('/real_time', '')} ({ns:.2f} ns/msg{extra})"
                     if ns else f"micro {b['name']}", "-", None, ips)

    # ---- all

    def run(self):
        steps = [("baseline", self.run_baseline), ("inproc", self.run_inproc),
                 ("pairs", self.run_pairs),
                 ("tcp", self.run_tcp), ("latency", self.run_latency),
                 ("wordcount", self.run_wordcount), ("micro", self.run_micro)]
        for name, fn in steps:
            if self.wanted(name):
                t0 = time.monotonic()
                log(f"--- {name}")
                self.attempt(name, fn)
                log(f"--- {name}: {time.monotonic() - t0:.1f} s")

    def derived(self):
        """One-line figures the targets are stated in, from the runs above."""
        notes = []
        r = self.results
        for sym in self.sizes.symbols:
            run = r.get(("inproc", sym, 2, "encode")) or r.get(("inproc", sym, 2, "count"))
            if run and run["state_keys"]:
                notes.append(f"state overhead {sym} keys: {run['state_overhead_bytes'] / run['state_keys']:.0f} B/key")
        a, b = r.get(("inproc", 10_000, 2, "encode")), r.get(("inproc", 1_000_000, 2, "encode"))
        if a and b:
            notes.append(f"10k/1M symbols throughput ratio (2 shards): {a['msgs_per_s'] / b['msgs_per_s']:.2f}x")
        two, eight = r.get(("inproc", 10_000, 2, "encode")), r.get(("inproc", 10_000, 8, "encode"))
        if two and eight:
            notes.append(f"oversubscribed 8 vs 2 shards (10k symbols): {eight['msgs_per_s'] / two['msgs_per_s']:.2f}x")
        allocs = [(v["allocs_per_msg"], k) for k, v in r.items()
                  if isinstance(k, tuple) and k[0] == "inproc"]
        if allocs:
            worst = max(allocs)
            notes.append(f"steady-state allocations: at most {worst[0]:.1e} per message "
                         f"(inproc {worst[1][1]} sym, {worst[1][2]} shards)")
        return notes

    def table(self):
        head = ["scenario", "shards", "messages", "msg/s", "p50", "p99", "p99.9", "peak RSS",
                "vs baseline", "allocs/msg"]
        rows = [head] + self.rows
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = []
        for k, r in enumerate(rows):
            cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(head))]
            lines.append("| " + " | ".join(cells) + " |")
            if k == 0:
                lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--only", action="append", help="run only these scenarios (repeatable)")
    args = ap.parse_args()
    started = time.monotonic()
    try:
        suite = Suite(args.build_dir, Sizes(args.tiny), args.only)
    except Failed as e:
        log(f"run_bench: {e}")
        return 1
    suite.run()
    table = suite.table()
    print(table)
    elapsed = time.monotonic() - started
    notes = suite.pair_notes + suite.latency_notes + suite.derived()
    if notes:
        print("\n" + "\n".join(notes))
    print(f"\n({'tiny' if args.tiny else 'full'} run, {elapsed:.0f} s; messages/s: orders for Market "
          f"Spread, words for word count; 'vs baseline': msg/s over the single-threaded loop's "
          f"on the same data; p50/p99/p99.9: Shardline's own latency from source arrival to "
          f"sink write (upper bounds; at full speed mostly time in queues and output chunks), "
          f"except the 'MS TCP max' and 'MS TCP latency' rows: send -> receive through the "
          f"harness; allocs/msg: operator new calls per message in the steady state)")
    results = suite.data / "results.json"
    with open(results, "w") as f:
        json.dump({"rows": suite.rows, "failures": suite.failures,
                   "results": {" ".join(map(str, k)) if isinstance(k, tuple) else k: v
                               for k, v in suite.results.items()}}, f, indent=1)
    (suite.data / "results.txt").write_text(table + "\n")
    if suite.failures:
        print("\nFAILED:\n" + "\n".join(suite.failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
