"""Shared pieces of the integration tests: they run the real `shardline` binary on real
topologies, real files and real TCP sockets on 127.0.0.1, and check its output against results
computed here, independently of the runtime.

Environment (set by CTest): SHARDLINE_BUILD (the build folder: shardline, shardline-gen,
plugins/, tests/plugins/) and SHARDLINE_SHARED_DATA (the Market Spread and word-count data).
"""
import array
import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
import unittest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")  # the source tree
BUILD = os.environ.get("SHARDLINE_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))
DATA = os.environ.get("SHARDLINE_SHARED_DATA",
                      os.path.join(os.path.dirname(__file__), "../../../shared/data"))
SHARDLINE = os.path.join(BUILD, "shardline")
GEN = os.path.join(BUILD, "shardline-gen")
PLUGINS = os.path.join(BUILD, "plugins")
TEST_PLUGINS = os.path.join(BUILD, "tests", "plugins")
TIMEOUT = 180  # seconds: generous, the CI machine is small and shared


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def sdk_version():
    """This SDK's version, as sdk/include/shardline/abi.hpp defines it."""
    text = read(os.path.join(ROOT, "sdk", "include", "shardline", "abi.hpp"))
    return re.search(r'#define SHARDLINE_SDK_VERSION "([^"]+)"', text).group(1)


def with_sdk_version(plugin, copy, version):
    """Writes to `copy` the plugin file `plugin` with its ABI record saying it was built with
    SDK `version` (of the same ABI): what the host sees of a build with another SDK release."""
    image = read(plugin, "rb")
    # The record: an 8-byte magic, five 32-bit numbers, then the version in 16 bytes.
    current = sdk_version().encode().ljust(16, b"\0")
    at = image.find(b"SHRDLN\0\0")
    while at != -1 and image[at + 28:at + 44] != current:
        at = image.find(b"SHRDLN\0\0", at + 1)
    assert at != -1, f"no ABI record of SDK {sdk_version()} in {plugin}"
    with open(copy, "wb") as f:
        f.write(image[:at + 28] + version.encode().ljust(16, b"\0") + image[at + 44:])


def host_libraries():
    return subprocess.run(["ldd", SHARDLINE], capture_output=True, text=True).stdout


def host_has_asan():
    """True when shardline itself was built with AddressSanitizer (the asan preset)."""
    return "libasan.so" in host_libraries()


def host_has_tsan():
    """True when shardline itself was built with ThreadSanitizer (the tsan preset). TSan holds
    a signal back until its thread calls into the C library, so a thread spinning in plugin
    code never answers the host's "where are you?" signal."""
    return "libtsan.so" in host_libraries()


def pipe_bytes(fd):
    """How many bytes wait unread in a pipe."""
    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


def pipe_is_full(fd):
    """True when the pipe or FIFO whose reading end is `fd` has no room left, so its writer
    waits: poll() finds none for a second writing end, opened through /proc. (A pipe holds 16
    pages, and a write that does not fit in the last page takes a page of its own, so a byte
    count cannot tell.)"""
    probe = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(probe, select.POLLOUT)
        return not p.poll(0)
    finally:
        os.close(probe)


def wait_until_pipe_full(fd, timeout=TIMEOUT):
    """Until a pipe nobody reads is full, so its writer waits (for as long as it stays unread)."""
    deadline = time.monotonic() + timeout
    while not pipe_is_full(fd):
        assert time.monotonic() < deadline, f"the pipe never filled: {pipe_bytes(fd)} bytes in it"
        time.sleep(0.05)


def read_to_end(fd):
    """Everything a pipe or FIFO (blocking from now on) holds and will hold, to its end."""
    os.set_blocking(fd, True)
    data = bytearray()
    while chunk := os.read(fd, 1 << 16):
        data += chunk
    return bytes(data)


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """`n` different ports of 127.0.0.1 that nothing listened on a moment ago (each socket is
    held until all are chosen: two calls to free_port() may return the same port)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_started = []  # every shardline process a test started: ended by TempDirTest.tearDown


def _start(args, **kwargs):
    proc = subprocess.Popen([SHARDLINE, *args], **kwargs)
    _started.append(proc)
    return proc


def _threads_of(pid):
    """What each thread of a process that did not end is doing: its stacks where gdb is
    installed (optional), else each thread's name, state and the kernel function it waits in.
    A hang seen once on a busy machine is then diagnosed from its test's output alone."""
    def field(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"
    lines = []
    for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        stat = field(f"/proc/{pid}/task/{tid}/stat")
        state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
        lines.append(f"  thread {tid} '{field(f'/proc/{pid}/task/{tid}/comm')}': state {state}, "
                     f"waiting in {field(f'/proc/{pid}/task/{tid}/wchan')}")
    text = "\n".join(lines)
    try:
        gdb = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                             capture_output=True, text=True, timeout=120)
        text += "\n" + gdb.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    return text


def _hung(proc, collect_log):
    """Kills a shardline that did not end within TIMEOUT; the error says what it was doing."""
    threads = _threads_of(proc.pid)
    proc.kill()
    return AssertionError(f"shardline did not end within {TIMEOUT} s; its threads:\n{threads}\n"
                          f"its log (the end):\n{collect_log()[-20000:]}")


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def split_frames(data: bytes):
    """The payloads of a stream of 4-byte big-endian length-prefixed frames."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert pos == len(data), f"trailing partial frame: {len(data) - pos} bytes"
    return out


def connect(port, retry_for=TIMEOUT):
    """A socket connected to 127.0.0.1:port; while the connection is refused (nothing listens
    there yet), tries again for up to `retry_for` seconds.

    A port from free_port() is an ephemeral one. While nothing listens on it, a connect() could
    be given that same port as its own (Linux hands connect() even ports first and bind() odd
    ones, so this is rare): TCP then connects the socket to itself, what is sent goes nowhere,
    and the run that listens there later waits for ever. Such a connection is tried again."""
    deadline = time.time() + retry_for
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            if s.getsockname() != s.getpeername():
                return s
            s.close()
        except ConnectionRefusedError:
            if time.time() > deadline:
                raise
        time.sleep(0.05)


def send_all(port, data: bytes, retry_for=TIMEOUT):
    """Connects (retrying while nothing listens yet), sends everything, closes."""
    with connect(port, retry_for) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)


class Receiver:
    """Accepts one connection on a port and collects everything until the peer closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.data = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(TIMEOUT)
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                self.data += chunk
        self.sock.close()

    def wait(self):
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "receiver did not see the sink close"
        return bytes(self.data)


class Run:
    """A running `shardline run` process; stderr is collected for the summary and logs."""

    def __init__(self, topology, *args, stdin=None):
        self.proc = _start(["run", *args, topology], stdin=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)

    def wait(self, stdin_data=None):
        try:
            self.stdout, err = self.proc.communicate(stdin_data, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise _hung(self.proc, lambda: self.proc.communicate()[1].decode(errors="replace")) \
                from None
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode


class LiveRun:
    """A `shardline run` whose stderr is read as it is written, to wait for log lines. Its
    stdin and stdout are `stdin` and `stdout` (subprocess.PIPE: self.proc.stdin, .stdout)."""

    def __init__(self, topology, *args, stdin=None, stdout=subprocess.DEVNULL, **popen):
        self.proc = _start(["run", *args, topology], stdin=stdin, stdout=stdout,
                           stderr=subprocess.PIPE, text=True, **popen)
        self.lines = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()

    def wait_for(self, text, count=1, timeout=TIMEOUT):
        """Waits until `count` log lines contain `text`; returns the last of them."""
        deadline = time.time() + timeout
        with self._cv:
            while True:
                found = [l for l in self.lines if text in l]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.time()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line with {text!r}; log:\n" + "\n".join(self.lines))
                self._cv.wait(min(left, 0.5))

    def interrupt(self):
        """Sends SIGINT, and waits until the run has taken it: a second one sent before then
        would merge with it (the signal thread takes pending signals one at a time)."""
        taken = sum("stopping the sources and draining" in l for l in self.lines)
        self.proc.send_signal(signal.SIGINT)
        self.wait_for("stopping the sources and draining", taken + 1)

    def wait(self):
        try:
            status = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            def log():
                self.proc.wait()
                self._reader.join(TIMEOUT)
                return "\n".join(self.lines)
            raise _hung(self.proc, log) from None
        self._reader.join(TIMEOUT)
        self.proc.stderr.close()
        self.stderr = "\n".join(self.lines)
        return status


def run(topology, *args, stdin_data=None):
    """Runs shardline to completion. Returns (exit status, stdout bytes, stderr text)."""
    r = Run(topology, *args, stdin=subprocess.PIPE if stdin_data is not None else None)
    status = r.wait(stdin_data)
    return status, r.stdout, r.stderr


def summary(stderr):
    """{pipeline: {"in": n, "out": n, "errors": n, ...}} parsed from the final summary line."""
    line = [l for l in stderr.splitlines() if "done in" in l][-1]
    result = {}
    for m in re.finditer(r"pipeline (\S+): ([^;]+)", line):
        counts = {}
        for part in m.group(2).split(", "):
            n, what = part.split(" ", 1)
            counts[what.replace(" ", "_")] = int(n)
        result[m.group(1)] = counts
    for m in re.finditer(r"state (\S+): (\d+) keys?", line):
        result["state:" + m.group(1)] = int(m.group(2))
    return result


def latency(line, pipeline):
    """{"p50": us, "p99": us, "p99.9": us, "p99.99": us, "max": us} from a summary or --stats
    line's "latency of PIPELINE (source to sink): p50 152us, ..."; None if it has none."""
    m = re.search(rf"latency of {pipeline} \(source to sink\): ([^;\n]+)", line)
    if not m:
        return None
    units = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    result = {}
    for part in m.group(1).split(", "):
        name, value = part.split(" ")
        number, unit = re.fullmatch(r"([\d.]+)(ns|us|ms|s)", value).groups()
        result[name] = float(number) * units[unit]
    return result


TRACK = '{ state_computation = "ev.track", state = "seqs", partition = "ev.by_key" }'


FILE_SOURCE = 'kind = "file", path = "events.txt"'
FILE_SINK = 'kind = "file", path = "out.txt"'


def tcp_listen(port, connections=None):
    """What events_topology's `source` takes for a TCP source on 127.0.0.1:port."""
    more = f", connections = {connections}" if connections is not None else ""
    return f'kind = "tcp", listen = "127.0.0.1:{port}"{more}'


def events_topology(shards, steps=TRACK, batch_size=None, extra="", source=FILE_SOURCE,
                    sink=FILE_SINK):
    """The TOML of one pipeline, "events", through the test_events plugin: "KEY SEQ" lines read
    from events.txt, through `steps` (state "seqs" is built by ev.last_seq), written to out.txt
    as tracked lines. `extra` ends the pipeline's table (on_error, dead_letter); `source` and
    `sink` replace where the lines come from and go to (e.g. tcp_listen(port))."""
    batch = f"batch_size = {batch_size}\n" if batch_size is not None else ""
    return f"""
shards = {shards}
{batch}[plugins]
ev = "{TEST_PLUGINS}/test_events.so"
[states.seqs]
factory = "ev.last_seq"
[[pipelines]]
name = "events"
source = {{ {source}, framing = "lines", decoder = "ev.event_line" }}
steps = [ {steps} ]
sink = {{ {sink}, framing = "lines", encoder = "ev.tracked_line" }}
{extra}
"""


def check(topology, *args):
    p = subprocess.run([SHARDLINE, "check", *args, topology], capture_output=True, text=True,
                       timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def gen(*args):
    subprocess.run([GEN, *args], check=True, capture_output=True, timeout=TIMEOUT)


class TempDirTest(unittest.TestCase):
    """A test with its own temporary folder, removed afterwards."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="shardline-test-")
        self.dir = self._tmp.name

    def tearDown(self):
        # A test that failed half-way may leave a run going (waiting for input, or stuck): end
        # it, or it holds its ports and files, and the CPU, while the next tests run.
        while _started:
            proc = _started.pop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)
