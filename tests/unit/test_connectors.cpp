// Real sources and sinks on real files and loopback sockets. Nothing here waits on a fixed
// delay: every wait is for an event (a log line, a connection, EOF) under a generous timeout.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include "connectors/sink.hpp"
#include "connectors/source.hpp"
#include "connectors/tcp_source.hpp"
#include "metrics/latency_histogram.hpp"
#include "test_support.hpp"

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using shardline::Frame;
using shardline::Framing;
using namespace shardline::connectors;
namespace topology = shardline::topology;
using shardline_test::FrameRecorder;
using shardline_test::kGenerous;
using shardline_test::LogWatch;
using shardline_test::length_prefixed;
using shardline_test::read_file;

namespace {

/// A file name in this process's own temporary folder, which is removed at exit.
std::filesystem::path temp_path(const std::string& name) {
  static const shardline_test::TempDir folder("shardline-connectors-");
  return folder.path / name;
}

/// Runs `source` to its end on another thread; stops it and fails if it takes too long.
void run_to_end(Source& source, FrameHandler& handler) {
  auto done = std::async(std::launch::async, [&] { source.run(handler); });
  if (done.wait_for(kGenerous) != std::future_status::ready) {
    source.stop();
    done.wait();
    FAIL("source did not finish: " << source.describe());
  }
  done.get();  // rethrows what run() threw
}

template <class T>
T get_within(std::future<T>& f, const char* what) {
  INFO(what);
  REQUIRE(f.wait_for(kGenerous) == std::future_status::ready);
  return f.get();
}

tcp::socket accept_within(tcp::acceptor& acceptor, asio::io_context& io) {
  std::optional<tcp::socket> accepted;
  acceptor.async_accept([&](error_code ec, tcp::socket s) {
    if (!ec) accepted.emplace(std::move(s));
  });
  io.restart();
  io.run_for(kGenerous);
  REQUIRE(accepted.has_value());
  return std::move(*accepted);
}

std::string read_to_eof(tcp::socket& s, asio::io_context& io) {
  std::string out;
  error_code result;
  asio::async_read(s, asio::dynamic_buffer(out), [&](error_code ec, std::size_t) { result = ec; });
  io.restart();
  io.run_for(kGenerous);
  CHECK(result == asio::error::eof);
  return out;
}

std::string read_exactly(tcp::socket& s, asio::io_context& io, std::size_t n) {
  std::string out(n, '\0');
  error_code result = asio::error::timed_out;
  asio::async_read(s, asio::buffer(out), [&](error_code ec, std::size_t) { result = ec; });
  io.restart();
  io.run_for(kGenerous);
  REQUIRE_FALSE(result);
  return out;
}

/// A listener on a port of 127.0.0.1 the system picks.
tcp::acceptor loopback_acceptor(asio::io_context& io) {
  return tcp::acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

std::uint16_t free_port() {
  asio::io_context io;
  return loopback_acceptor(io).local_endpoint().port();
}

/// The spec of a tcp sink that connects to 127.0.0.1:`port`.
topology::SinkSpec tcp_sink_to(std::uint16_t port) {
  topology::SinkSpec spec;
  spec.kind = topology::SinkKind::tcp;
  spec.address = "127.0.0.1:" + std::to_string(port);
  return spec;
}

/// Sends `data` in uneven pieces, then closes its sending side (EOF for the source).
void send_in_pieces(std::uint16_t port, const std::string& data) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  std::size_t at = 0;
  std::size_t piece = 1;
  error_code ec;
  while (at < data.size() && !ec) {
    const std::size_t n = std::min(piece, data.size() - at);
    asio::write(s, asio::buffer(data.data() + at, n), ec);  // the source may close first
    at += n;
    piece = (piece * 31 + 7) % 9001 + 1;
  }
  s.shutdown(tcp::socket::shutdown_send, ec);
  // Wait for the source to close its side, so the connection is over when this returns.
  char c;
  s.read_some(asio::buffer(&c, 1), ec);
}

std::vector<std::string> numbered(const std::string& prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

std::vector<std::string> with_prefix(const std::vector<std::string>& all, const std::string& p) {
  std::vector<std::string> v;
  std::copy_if(all.begin(), all.end(), std::back_inserter(v),
               [&](const std::string& s) { return s.rfind(p, 0) == 0; });
  return v;
}

}  // namespace

TEST_CASE("file source reads a whole file in both framings", "[connectors]") {
  SECTION("length-prefixed, several megabytes (many reads)") {
    std::vector<std::string> payloads;
    for (int i = 0; i < 6000; ++i)
      payloads.push_back(std::string(std::size_t(i * 7919 % 1500), char('a' + i % 26)) +
                         std::to_string(i));
    const auto path = temp_path("frames.bin");
    std::ofstream(path, std::ios::binary) << length_prefixed(payloads);

    topology::SourceSpec spec;
    spec.kind = topology::SourceKind::file;
    spec.address = path.string();
    spec.framing = Framing::length_prefixed;
    auto source = make_source(spec);
    CHECK(source->describe() == "file " + path.string());
    FrameRecorder c;
    run_to_end(*source, c);
    CHECK(c.frames == payloads);
    CHECK(c.bad.empty());
  }
  SECTION("lines") {
    const auto path = temp_path("lines.txt");
    std::ofstream(path, std::ios::binary) << "one\r\ntwo\n\nthree";
    topology::SourceSpec spec;
    spec.kind = topology::SourceKind::file;
    spec.address = path.string();
    spec.framing = Framing::lines;
    auto source = make_source(spec);
    FrameRecorder c;
    run_to_end(*source, c);
    CHECK(c.frames == std::vector<std::string>{"one", "two", "", "three"});
  }
  SECTION("a missing file or a folder is refused when the source is made") {
    topology::SourceSpec spec;
    spec.kind = topology::SourceKind::file;
    spec.address = temp_path("does-not-exist").string();
    CHECK_THROWS_WITH(make_source(spec), "cannot read source file " + spec.address +
                                             ": No such file or directory");
    spec.address = temp_path("").string();
    CHECK_THROWS_WITH(make_source(spec), "source file " + spec.address + " is a folder");
  }
}

TEST_CASE("file source stopped between two reads says where to resume", "[connectors]") {
  // 300,000 lines of 8 bytes (2.4 MB): more than the first read (1 or 2 MiB, which a whole
  // number of lines fills exactly). The handler asks the source to stop once that read is all
  // delivered, so nothing is left buffered to report, though the file goes on.
  std::string text;
  for (int i = 0; i < 300'000; ++i) text += std::to_string(1'000'000 + i) + "\n";
  const auto path = temp_path("stop-between-reads.txt");
  std::ofstream(path, std::ios::binary) << text;
  topology::SourceSpec spec;
  spec.kind = topology::SourceKind::file;
  spec.address = path.string();
  spec.framing = Framing::lines;
  auto source = make_source(spec);
  struct StopWhenCaughtUp : FrameRecorder {
    Source* source = nullptr;
    void on_caught_up() override {
      FrameRecorder::on_caught_up();
      source->stop();
    }
  } c;
  c.source = source.get();
  LogWatch log;
  run_to_end(*source, c);
  REQUIRE(c.caught_up.size() == 1);
  const std::size_t read = c.frames.size() * 8;  // every line the first read held, whole
  CHECK(read < text.size());
  CHECK(log.count("source file " + path.string() + ": the run stopped after " +
                  std::to_string(read) + " bytes of it, all processed; process the input again "
                  "from that offset") == 1);
}

TEST_CASE("file source with a rate hands each frame on when it is due", "[connectors]") {
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) payloads.push_back(std::to_string(i));
  const auto path = temp_path("paced.bin");
  std::ofstream(path, std::ios::binary) << length_prefixed(payloads);
  topology::SourceSpec spec;
  spec.kind = topology::SourceKind::file;
  spec.address = path.string();
  spec.framing = Framing::length_prefixed;
  spec.rate = 20'000;  // 0.15 s in all
  constexpr std::uint64_t kSecond = 1'000'000'000;

  SECTION("stamped with the time each call's first frame was due, never handed on early") {
    struct Timed : FrameRecorder {
      std::vector<std::size_t> first;        // index of each call's first frame
      std::vector<std::uint64_t> called_at;  // when each call came
      std::size_t on_frames(const Frame* f, std::size_t n, std::uint64_t at,
                            const shardline::connectors::FrameOrigin& origin) override {
        first.push_back(frames.size());
        called_at.push_back(shardline::metrics::now_ns());
        return FrameRecorder::on_frames(f, n, at, origin);
      }
    } c;
    auto source = make_source(spec);
    run_to_end(*source, c);
    CHECK(c.frames == payloads);
    const std::uint64_t start = c.arrived.front();
    for (std::size_t j = 0; j < c.calls; ++j) {
      INFO("call " << j << ", first frame " << c.first[j]);
      CHECK(c.arrived[j] == start + c.first[j] * kSecond / spec.rate);
      CHECK(c.called_at[j] >= c.arrived[j]);
    }
    // The last frame came no sooner than the schedule allows.
    CHECK(c.called_at.back() >= start + (payloads.size() - 1) * kSecond / spec.rate);
    CHECK(!c.caught_up.empty());
  }
  SECTION("a pipeline that only just keeps up is told it has caught up after every call") {
    // Each call takes until after the next frame is due, so the pacer never sleeps: the
    // outputs of each call must still go out then, not at the end of the read.
    struct Slow : FrameRecorder {
      std::uint64_t rate = 0;
      std::vector<std::size_t> first;
      std::size_t on_frames(const Frame* f, std::size_t n, std::uint64_t at,
                            const shardline::connectors::FrameOrigin& origin) override {
        first.push_back(frames.size());
        const std::uint64_t until = shardline::metrics::now_ns() + 3 * kSecond / rate / 2;
        while (shardline::metrics::now_ns() < until) {
        }
        return FrameRecorder::on_frames(f, n, at, origin);
      }
    } c;
    c.rate = spec.rate;
    auto source = make_source(spec);
    run_to_end(*source, c);
    CHECK(c.frames == payloads);
    CHECK(c.calls > 1);
    for (std::size_t j = 1; j < c.calls; ++j) {
      INFO("call " << j << ", first frame " << c.first[j]);
      CHECK(std::find(c.caught_up.begin(), c.caught_up.end(), c.first[j]) != c.caught_up.end());
    }
    CHECK(c.caught_up.back() == payloads.size());
  }
  SECTION("stop() ends the wait for the next frame") {
    spec.rate = 1;  // 3000 s in all
    auto source = make_source(spec);
    FrameRecorder c;
    auto done = std::async(std::launch::async, [&] { source->run(c); });
    source->stop();
    get_within(done, "run() returns after stop()");
    CHECK(c.frames.size() < payloads.size());
  }
}

/// Replaces fd 0 or 1 by one end of a pipe for the test's duration; the test holds the other.
class PipedFd {
 public:
  explicit PipedFd(int target) : target_(target), saved_(::dup(target)) {
    int ends[2];
    REQUIRE(::pipe(ends) == 0);
    const int theirs = target == STDIN_FILENO ? ends[0] : ends[1];
    ours_ = target == STDIN_FILENO ? ends[1] : ends[0];
    REQUIRE(::dup2(theirs, target) == target);
    ::close(theirs);
  }
  ~PipedFd() {
    restore();
    close_ours();
  }
  /// The writing end for stdin, the reading end for stdout.
  int ours() const { return ours_; }
  void close_ours() {
    if (ours_ >= 0) ::close(ours_);
    ours_ = -1;
  }
  /// Puts the original back; for stdout, the pipe then has no writer left and reads end.
  void restore() {
    if (saved_ < 0) return;
    ::dup2(saved_, target_);
    ::close(saved_);
    saved_ = -1;
  }

 private:
  int target_;
  int saved_;
  int ours_ = -1;
};

TEST_CASE("stdin source reads lines to EOF, and stops while stdin is silent", "[connectors]") {
  topology::SourceSpec spec;
  spec.kind = topology::SourceKind::stdin_lines;
  spec.framing = Framing::lines;
  SECTION("to EOF") {
    PipedFd in(STDIN_FILENO);
    const std::string text = "first\r\nsecond\nthird";
    REQUIRE(::write(in.ours(), text.data(), text.size()) == ssize_t(text.size()));
    in.close_ours();  // EOF after the text
    auto source = make_source(spec);
    CHECK(source->describe() == "stdin");
    FrameRecorder c;
    run_to_end(*source, c);
    CHECK(c.frames == std::vector<std::string>{"first", "second", "third"});
  }
  SECTION("stop() while nothing arrives") {
    PipedFd in(STDIN_FILENO);  // open, never written to
    auto source = make_source(spec);
    FrameRecorder c;
    auto done = std::async(std::launch::async, [&] { source->run(c); });
    source->stop();
    get_within(done, "run() returns after stop()");
    CHECK(c.frames.empty());
  }
}

TEST_CASE("tcp source serves two connections, then returns", "[connectors]") {
  TcpSource source("127.0.0.1:0", Framing::length_prefixed, 1 << 20, 2);
  FrameRecorder c;
  auto done = std::async(std::launch::async, [&] { source.run(c); });
  const std::uint16_t port = source.port();
  REQUIRE(port != 0);
  CHECK(source.listens_on() == "127.0.0.1:" + std::to_string(port));

  const auto first = numbered("first-", 20000);
  const auto second = numbered("second-", 30000);
  std::thread a(send_in_pieces, port, length_prefixed(first));
  std::thread b(send_in_pieces, port, length_prefixed(second));
  a.join();
  b.join();
  get_within(done, "run() returns once both connections are closed");

  CHECK(c.frames.size() == first.size() + second.size());
  CHECK(with_prefix(c.frames, "first-") == first);  // in order within each connection
  CHECK(with_prefix(c.frames, "second-") == second);
  CHECK(c.bad.empty());
}

TEST_CASE("tcp source closes only the connection that sent an oversized frame",
          "[connectors]") {
  TcpSource source("127.0.0.1:0", Framing::length_prefixed, 1000, 2);
  FrameRecorder c;
  auto done = std::async(std::launch::async, [&] { source.run(c); });
  const std::uint16_t port = source.port();
  REQUIRE(port != 0);

  const auto good = numbered("good-", 5000);
  const auto before = numbered("before-", 100);
  auto bad_stream = before;
  bad_stream.push_back(std::string(1001, 'x'));
  bad_stream.push_back("after-0");
  std::thread a(send_in_pieces, port, length_prefixed(bad_stream));
  std::thread b(send_in_pieces, port, length_prefixed(good));
  a.join();
  b.join();
  get_within(done, "run() returns once both connections are closed");

  CHECK(with_prefix(c.frames, "good-") == good);
  CHECK(with_prefix(c.frames, "before-") == before);
  CHECK(with_prefix(c.frames, "after-").empty());
  REQUIRE(c.bad.size() == 1);
  const std::string offset = std::to_string(length_prefixed(before).size());
  CHECK_THAT(c.bad[0], Catch::StartsWith("frame of 1001 bytes exceeds max_frame 1000 at byte "
                                         "offset " + offset + " of tcp 127.0.0.1:0 connection "
                                         "from 127.0.0.1:") &&
                           Catch::Contains("; closing this stream, since nothing after it can be "
                                           "framed for sure"));
}

TEST_CASE("tcp source stops on request, even with an idle client connected", "[connectors]") {
  TcpSource source("127.0.0.1:0", Framing::lines, 1 << 20, 0);
  FrameRecorder c;
  auto done = std::async(std::launch::async, [&] { source.run(c); });
  const std::uint16_t port = source.port();
  REQUIRE(port != 0);

  asio::io_context io;
  tcp::socket client(io);
  client.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::write(client, asio::buffer(std::string("hello\npartial")));
  // Whatever the source has accepted or read by now, stop() must end run().
  source.stop();
  get_within(done, "run() returns after stop()");
  // The connection is over: closed if it was accepted, reset if still in the backlog.
  char byte;
  error_code ec;
  client.read_some(asio::buffer(&byte, 1), ec);
  CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
  CHECK(c.bad.empty());  // the unterminated "partial" is dropped, not reported
}

TEST_CASE("tcp source reports an address it cannot listen on", "[connectors]") {
  asio::io_context io;
  tcp::acceptor taken = loopback_acceptor(io);
  const std::string address = "127.0.0.1:" + std::to_string(taken.local_endpoint().port());
  CHECK_THROWS_WITH(TcpSource(address, Framing::lines, 1 << 20, 0),
                    "source tcp " + address + ": cannot listen on " + address +
                        ": Address already in use (another process listens there: `ss -ltnp` "
                        "names it)");
  CHECK_THROWS_WITH(TcpSource("no-port", Framing::lines, 1, 0),
                    "expected host:port, got 'no-port'");
}

TEST_CASE("file sink, discard sink", "[connectors]") {
  SECTION("file: every chunk is in the file once write() returns, in order") {
    const auto path = temp_path("out.bin");
    topology::SinkSpec spec;
    spec.kind = topology::SinkKind::file;
    spec.address = path.string();
    auto sink = make_sink(spec);
    CHECK(sink->describe() == "file " + path.string());
    sink->open();
    std::string expected;
    for (std::size_t size : {10u, 3u << 20, 7u, 100000u, 1u << 20, 5u}) {
      const std::string chunk(size, char('a' + expected.size() % 26));
      CHECK(sink->write(reinterpret_cast<const std::byte*>(chunk.data()), chunk.size()) ==
            chunk.size());
      expected += chunk;
      CHECK(read_file(path) == expected);  // visible to a reader (tail -f) before close()
    }
    sink->close();
    CHECK(read_file(path) == expected);
  }
  SECTION("file: a write that fails is logged once, and every later one fails too") {
    LogWatch log;
    topology::SinkSpec spec;
    spec.kind = topology::SinkKind::file;
    spec.address = "/dev/full";  // every write: ENOSPC
    auto sink = make_sink(spec);
    sink->open();
    const std::byte b[3]{};
    CHECK(sink->write(b, 3) == 0);
    CHECK(sink->write(b, 3) == 0);
    sink->close();
    CHECK(log.count("sink file /dev/full: cannot write: No space left on device; the rest of "
                    "the output is lost") == 1);
  }
  SECTION("file: cannot open") {
    topology::SinkSpec spec;
    spec.kind = topology::SinkKind::file;
    spec.address = temp_path("no-such-dir/out.bin").string();
    auto sink = make_sink(spec);
    CHECK_THROWS_WITH(sink->open(), Catch::StartsWith("cannot open sink file "));
  }
  SECTION("stdout: each chunk written at once, fd 1 left open") {
    topology::SinkSpec spec;
    spec.kind = topology::SinkKind::stdout_lines;
    spec.framing = Framing::lines;
    std::string got;
    {
      PipedFd out(STDOUT_FILENO);
      auto sink = make_sink(spec);
      sink->open();
      const std::string a = "alpha\n", b = "beta\n";
      const bool ok =
          sink->write(reinterpret_cast<const std::byte*>(a.data()), a.size()) == a.size() &&
          sink->write(reinterpret_cast<const std::byte*>(b.data()), b.size()) == b.size();
      sink->close();
      out.restore();  // before any check can print to stdout
      CHECK(ok);
      CHECK(sink->describe() == "stdout");
      char buf[256];
      for (ssize_t n; (n = ::read(out.ours(), buf, sizeof buf)) > 0;)
        got.append(buf, std::size_t(n));
    }
    CHECK(got == "alpha\nbeta\n");
  }
  SECTION("discard") {
    topology::SinkSpec spec;
    spec.kind = topology::SinkKind::discard;
    auto sink = make_sink(spec);
    sink->open();
    const std::byte b[3]{};
    CHECK(sink->write(b, 3) == 3);
    sink->close();
    CHECK(sink->describe() == "discard");
  }
}

TEST_CASE("tcp sink writes every chunk, then the peer sees EOF", "[connectors]") {
  asio::io_context io;
  tcp::acceptor acceptor = loopback_acceptor(io);
  const topology::SinkSpec spec = tcp_sink_to(acceptor.local_endpoint().port());
  auto sink = make_sink(spec);
  sink->open();

  std::vector<std::string> chunks;
  for (int i = 0; i < 200; ++i)
    chunks.push_back(length_prefixed(numbered(std::to_string(i) + "-", 50)));
  auto writer = std::async(std::launch::async, [&] {
    bool ok = true;
    for (const auto& chunk : chunks)
      ok = sink->write(reinterpret_cast<const std::byte*>(chunk.data()), chunk.size()) ==
               chunk.size() &&
           ok;
    sink->close();
    return ok;
  });
  tcp::socket peer = accept_within(acceptor, io);
  const std::string got = read_to_eof(peer, io);
  CHECK(get_within(writer, "the writes complete"));
  std::string expected;
  for (const auto& chunk : chunks) expected += chunk;
  CHECK(got == expected);
}

TEST_CASE("tcp sink connects late and resends a whole chunk after a reset", "[connectors]") {
  LogWatch log;
  const std::uint16_t port = free_port();
  const topology::SinkSpec spec = tcp_sink_to(port);
  auto sink = make_sink(spec);
  sink->open();

  // Far more than loopback socket buffers hold, so the reset lands in the middle of it.
  const std::string big =
      length_prefixed(std::vector<std::string>(32 << 10, std::string(1020, 'b')));
  const std::string small = length_prefixed({"after the reconnect"});
  auto writer = std::async(std::launch::async, [&] {
    const bool ok1 =
        sink->write(reinterpret_cast<const std::byte*>(big.data()), big.size()) == big.size();
    const bool ok2 =
        sink->write(reinterpret_cast<const std::byte*>(small.data()), small.size()) == small.size();
    sink->close();
    return ok1 && ok2;
  });
  // No listener yet: the sink must be retrying.
  REQUIRE(log.wait_for("sink tcp " + spec.address + ": cannot connect"));

  asio::io_context io;
  tcp::acceptor acceptor(io);
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen();

  {
    // Let the first connection carry part of the big chunk, then reset it.
    tcp::socket first = accept_within(acceptor, io);
    const std::string part = read_exactly(first, io, 1 << 20);
    CHECK((part == big.substr(0, part.size())));
    first.set_option(asio::socket_base::linger(true, 0));
    first.close();
  }
  // A second outage, seconds after the first: it is logged when it happens too.
  CHECK(log.wait_for("; retrying (backoff", 2));
  tcp::socket second = accept_within(acceptor, io);
  const std::string got = read_to_eof(second, io);
  CHECK(get_within(writer, "the writes complete"));
  CHECK(got.size() == big.size() + small.size());
  CHECK((got == big + small));  // the big chunk again from its first byte, then the next one
  CHECK(sink->connections_reset() == 1);  // the first; not the refused attempts, nor the close
}

TEST_CASE("tcp sink abandon() ends a blocked write", "[connectors]") {
  SECTION("while reconnecting") {
    LogWatch log;
    const topology::SinkSpec spec = tcp_sink_to(free_port());
    auto sink = make_sink(spec);
    sink->open();
    const std::byte b[4]{};
    auto writer = std::async(std::launch::async, [&] { return sink->write(b, 4); });
    REQUIRE(log.wait_for("sink tcp " + spec.address + ": cannot connect"));
    sink->abandon();
    CHECK(get_within(writer, "write() gives up") == 0);
  }
  SECTION("while the peer does not read") {
    asio::io_context io;
    tcp::acceptor acceptor = loopback_acceptor(io);
    const topology::SinkSpec spec = tcp_sink_to(acceptor.local_endpoint().port());
    auto sink = make_sink(spec);
    sink->open();
    const std::string huge(64 << 20, 'h');
    auto writer = std::async(std::launch::async, [&] {
      return sink->write(reinterpret_cast<const std::byte*>(huge.data()), huge.size());
    });
    tcp::socket peer = accept_within(acceptor, io);  // accepted, never read
    sink->abandon();
    // What the kernel took before the peer's window closed: part of it, never all.
    CHECK(get_within(writer, "write() gives up") < huge.size());
  }
}
