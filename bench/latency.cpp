// shardline-latency: end-to-end latency of Market Spread over TCP at a fixed offered load.
//
// One process plays both ends of a running `shardline run`:
//   - the receiver thread listens where the topology's TCP sink connects, reads the
//     OrderResult frames, and for each one looks up when its order was sent;
//   - the sender thread connects to the orders source and sends orders at --rate messages/s
//     (0: as fast as possible, to measure the maximum), in small bursts: every burst is one
//     send(2), and each order of the burst is stamped with the time just before that call.
// Each order's account field carries its sequence number (the OrderResult echoes it), so a
// result is matched to its send time by one array read. Latency = time the receiver got the
// result (after recv(2) returned) - time the order was handed to the kernel: source arrival to
// sink write, plus two loopback hops. Use data whose orders are all rejected (no NBBO: every
// symbol starts out rejecting) so that every order is a sample.
//
// With --null-pipeline the tool instead plays a pipeline that does no work (orders in, one
// result per order out, one thread): run in place of shardline, it measures the floor that the
// harness, loopback TCP and the machine's wake-up latency put under every number.
//
// With --stalls SECONDS it measures what the machine does to a thread that never sleeps: it
// reads the clock in a loop on one thread, and every gap between two readings is time the
// thread did not run (an interrupt, the hypervisor running something else). A message that
// arrives during such a gap waits for the rest of it, so the share of time left in gaps over
// 100 us bounds from below the share of messages any single hop delays by more than 100 us.
//
// With --wakeups COUNT it measures what every hand-off between two threads costs when the
// receiving thread sleeps: one thread stamps the time into an atomic and wakes the other
// (a futex, as a condition variable does), every 200 us so that the other is asleep again
// and its CPU may have gone idle; the woken thread records now - stamp.
//
// Samples go into the engine's own log-linear ("HDR-style") histogram
// (metrics::LatencyHistogram): fixed arrays, no allocation per sample, 1/64 relative
// precision. The first --warmup seconds are not recorded. Prints one JSON object.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "metrics/latency_histogram.hpp"

namespace {

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

struct Options {
  std::string to;        // the orders source
  std::string listen;    // where the sink connects
  std::string orders;    // framed order file (its orders are reused, renumbered)
  std::uint64_t count = 1'000'000;
  double rate = 0;
  double warmup = 0.5;
  double burst_us = 50;
  double timeout = 30;
};

std::pair<std::string, std::string> split_address(const std::string& a) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("address " + a + " is not HOST:PORT");
  return {a.substr(0, colon), a.substr(colon + 1)};
}

sockaddr_in resolve4(const std::string& address) {
  const auto [host, port] = split_address(address);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port)));
  if (::inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &sa.sin_addr) != 1)
    throw std::runtime_error("not an IPv4 address: " + address);
  return sa;
}

/// The orders of a framed file, repeated to `count` frames, account = sequence number.
std::vector<char> load_orders(const std::string& path, std::uint64_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::size_t kFrame = 4 + 53;
  if (file.size() < kFrame || file.size() % kFrame != 0)
    throw std::runtime_error(path + " is not a file of 57-byte order frames");
  const std::size_t have = file.size() / kFrame;
  std::vector<char> out(count * kFrame);
  for (std::uint64_t i = 0; i < count; ++i) {
    char* f = out.data() + i * kFrame;
    std::memcpy(f, file.data() + (i % have) * kFrame, kFrame);
    const std::uint32_t seq = htonl(static_cast<std::uint32_t>(i));
    std::memcpy(f + 4 + 2, &seq, 4);  // payload offset 2: account
  }
  return out;
}

void send_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) throw std::runtime_error(errno_text("send"));
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

int connect_retry(const std::string& address, double patience_s) {
  const sockaddr_in sa = resolve4(address);
  const std::uint64_t until = now_ns() + static_cast<std::uint64_t>(patience_s * 1e9);
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0) {
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    ::close(fd);
    if (now_ns() > until) throw std::runtime_error(errno_text("cannot connect to " + address));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// The harness floor: a "pipeline" that does nothing but turn each order frame into a 55-byte
/// OrderResult frame carrying its account, on one thread, in another process: what the
/// measurement costs without Shardline (loopback TCP, wake-ups, this tool's own threads).
int null_pipeline(const std::string& listen, const std::string& to, double timeout_s) {
  const sockaddr_in la = resolve4(listen);
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&la), sizeof la) != 0 ||
      ::listen(listener, 4) != 0)
    throw std::runtime_error(errno_text("cannot listen on " + listen));
  const int out = connect_retry(to, timeout_s);
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0)
    throw std::runtime_error("no client on " + listen);
  const int in = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (in < 0) throw std::runtime_error(errno_text("accept"));
  std::vector<char> buf(1 << 20), results(2 << 20);
  std::size_t have = 0;
  for (;;) {
    const ssize_t n = ::recv(in, buf.data() + have, buf.size() - have, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<std::size_t>(n);
    std::size_t at = 0, o = 0;
    while (have - at >= 57) {
      const char* f = buf.data() + at;
      char* r = results.data() + o;
      const std::uint32_t len = htonl(55);
      std::memcpy(r, &len, 4);
      r[4] = f[5];                  // side
      std::memcpy(r + 5, f + 6, 4);  // account = sequence number
      std::memset(r + 9, 0, 50);
      o += 59;
      at += 57;
    }
    std::memmove(buf.data(), buf.data() + at, have - at);
    have -= at;
    send_all(out, results.data(), o);
  }
  ::close(in);
  ::close(out);
  ::close(listener);
  return 0;
}

/// --stalls: spins for `seconds` and prints, as JSON, how often and for how long the thread
/// did not run (gaps between clock readings over 10 us, 100 us and 1 ms).
int stalls(double seconds) {
  constexpr std::uint64_t kLimits[] = {10'000, 100'000, 1'000'000};
  std::uint64_t count[3] = {}, stalled[3] = {}, beyond[3] = {}, longest = 0;
  const std::uint64_t start = now_ns(), end = start + static_cast<std::uint64_t>(seconds * 1e9);
  std::uint64_t last = start;
  while (last < end) {
    const std::uint64_t t = now_ns(), gap = t - last;
    last = t;
    longest = std::max(longest, gap);
    for (int i = 0; i < 3; ++i) {
      if (gap <= kLimits[i]) break;
      ++count[i];
      stalled[i] += gap;
      beyond[i] += gap - kLimits[i];  // the instants in this gap that wait longer than the limit
    }
  }
  const double total = static_cast<double>(last - start);
  std::printf("{\"seconds\": %.3f, \"longest_us\": %.1f", total * 1e-9,
              static_cast<double>(longest) / 1e3);
  const char* names[] = {"10us", "100us", "1ms"};
  for (int i = 0; i < 3; ++i)
    std::printf(", \"over_%s_per_s\": %.1f, \"over_%s_time_share\": %.5f, "
                "\"wait_over_%s_share\": %.5f",
                names[i], static_cast<double>(count[i]) / (total * 1e-9), names[i],
                static_cast<double>(stalled[i]) / total, names[i],
                static_cast<double>(beyond[i]) / total);
  std::printf("}\n");
  return 0;
}

/// --wakeups: `count` futex wake-ups of a sleeping thread, 200 us apart; prints the
/// distribution of wake -> running, as JSON.
int wakeups(std::uint64_t count) {
  shardline::metrics::LatencyHistogram histogram;
  std::atomic<std::uint64_t> stamp{0};  // 0: nothing to take; UINT64_MAX: stop
  std::thread sleeper([&] {
    for (;;) {
      stamp.wait(0, std::memory_order_acquire);
      const std::uint64_t t = now_ns(), s = stamp.exchange(0, std::memory_order_acq_rel);
      if (s == UINT64_MAX) return;
      histogram.record(t - s);
    }
  });
  const timespec gap{0, 200'000};
  for (std::uint64_t i = 0; i < count; ++i) {
    ::nanosleep(&gap, nullptr);
    while (stamp.load(std::memory_order_acquire) != 0) ::nanosleep(&gap, nullptr);  // not taken yet
    stamp.store(now_ns(), std::memory_order_release);
    stamp.notify_one();
  }
  while (stamp.load(std::memory_order_acquire) != 0) ::nanosleep(&gap, nullptr);
  stamp.store(UINT64_MAX, std::memory_order_release);
  stamp.notify_one();
  sleeper.join();
  const auto hist = histogram.snapshot();
  std::printf("{\"wakeups\": %llu, \"p50_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, "
              "\"p9999_us\": %.2f, \"max_us\": %.2f}\n",
              static_cast<unsigned long long>(hist.total()), hist.quantile(0.5) / 1e3,
              hist.quantile(0.99) / 1e3, hist.quantile(0.999) / 1e3, hist.quantile(0.9999) / 1e3,
              hist.max() / 1e3);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sends orders over TCP at a fixed rate to a running shardline (orders pipeline) "
               "and receives its OrderResults; prints latency percentiles as JSON."};
  Options o;
  app.add_option("--to", o.to, "The orders source, HOST:PORT");
  app.add_option("--listen", o.listen, "Where the TCP sink connects, HOST:PORT (IPv4)");
  app.add_option("--orders", o.orders, "Framed order file (from shardline-gen orders)");
  app.add_option("--count", o.count, "Orders to send")->capture_default_str();
  app.add_option("--rate", o.rate, "Orders per second (0: as fast as possible)")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Seconds at the start not recorded")->capture_default_str();
  app.add_option("--burst-us", o.burst_us, "Pacing period: one send(2) per period at most")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "Give up after this many seconds without a result")
      ->capture_default_str();
  std::string serve;
  app.add_option("--null-pipeline", serve,
                 "Instead: be the null pipeline (listen here for orders, send results to --to)");
  double stall_seconds = 0;
  app.add_option("--stalls", stall_seconds,
                 "Instead: spin this many seconds and report how long the machine stops a "
                 "running thread");
  std::uint64_t wakeup_count = 0;
  app.add_option("--wakeups", wakeup_count,
                 "Instead: wake a sleeping thread this many times, 200 us apart, and report how "
                 "long each took to run");
  CLI11_PARSE(app, argc, argv);
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // sleeps end on time (default slack is 50 us)
  if (stall_seconds > 0) return stalls(stall_seconds);
  if (wakeup_count > 0) return wakeups(wakeup_count);
  if (!serve.empty()) {
    try {
      return null_pipeline(serve, o.to, o.timeout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "shardline-latency --null-pipeline: %s\n", e.what());
      return 1;
    }
  }
  if (o.to.empty() || o.listen.empty() || o.orders.empty()) {
    std::fprintf(stderr, "shardline-latency: --to, --listen and --orders are required\n");
    return 2;
  }
  try {
    const std::vector<char> frames = load_orders(o.orders, o.count);
    std::vector<std::uint64_t> sent_at(o.count, 0);  // written by the sender before each send
    std::atomic<std::uint64_t> published{0};  // orders whose sent_at is written

    // Listen before the runtime's sink first connects (it connects on its first write).
    const sockaddr_in la = resolve4(o.listen);
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener, reinterpret_cast<const sockaddr*>(&la), sizeof la) != 0 ||
        ::listen(listener, 4) != 0)
      throw std::runtime_error(errno_text("cannot listen on " + o.listen));
    std::fprintf(stderr, "listening on %s\n", o.listen.c_str());

    shardline::metrics::LatencyHistogram histogram;
    std::uint64_t received = 0, unmatched = 0, first_send = 0, last_recv = 0;
    std::uint64_t warmup_until_seq = 0;  // set by the sender once the warm-up has passed
    std::atomic<std::uint64_t> warm_seq{UINT64_MAX};
    std::atomic<bool> receiver_failed{false};
    std::string receiver_error;

    std::atomic<bool> sender_failed{false};
    // Waits until `fd` is readable, for at most --timeout seconds, and gives up as soon as the
    // sender has failed (so that it can be joined). [receiver thread]
    const auto wait_readable = [&](int fd, const char* what) {
      for (double waited = 0;; waited += 0.1) {
        if (sender_failed.load()) throw std::runtime_error("the sender failed");
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) return;
        if (waited >= o.timeout) throw std::runtime_error(what);
      }
    };

    std::thread receiver([&] {
      try {
        wait_readable(listener, "no connection from the sink");
        const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) throw std::runtime_error(errno_text("accept"));
        std::vector<unsigned char> buf(1 << 20);
        std::size_t have = 0;
        while (received < o.count) {
          wait_readable(fd, "timed out waiting for results");
          const ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, 0);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) throw std::runtime_error(errno_text("recv"));
          if (n == 0) break;
          const std::uint64_t t = now_ns();
          have += static_cast<std::size_t>(n);
          const std::uint64_t published_now = published.load(std::memory_order_acquire);
          const std::uint64_t warm = warm_seq.load(std::memory_order_relaxed);
          std::size_t at = 0;
          while (have - at >= 4) {
            std::uint32_t len;
            std::memcpy(&len, buf.data() + at, 4);
            len = ntohl(len);
            if (have - at - 4 < len) break;
            if (len == 55) {
              std::uint32_t seq;
              std::memcpy(&seq, buf.data() + at + 4 + 1, 4);  // OrderResult: account at 1
              seq = ntohl(seq);
              if (seq < published_now) {
                if (seq >= warm) histogram.record(t - sent_at[seq]);
              } else {
                ++unmatched;
              }
            } else {
              ++unmatched;
            }
            ++received;
            at += 4 + len;
          }
          std::memmove(buf.data(), buf.data() + at, have - at);
          have -= at;
          last_recv = t;
        }
        ::close(fd);
      } catch (const std::exception& e) {
        receiver_error = e.what();
        receiver_failed = true;
      }
    });

    // If the sender fails (no connection, the peer gone), the receiver must stop before its
    // thread is joined.
    int fd = -1;
    std::uint64_t sent = 0, send_end = 0;
    try {
      fd = connect_retry(o.to, o.timeout);
      constexpr std::size_t kFrame = 57;
      const std::uint64_t start = now_ns();
      first_send = start;
      const std::uint64_t warm_ns = static_cast<std::uint64_t>(o.warmup * 1e9);
      const std::uint64_t burst_ns = static_cast<std::uint64_t>(o.burst_us * 1e3);
      bool warm_published = o.warmup <= 0;
      if (warm_published) warm_seq = 0;
      // A burst's worth of orders (at least one): the sender waits until that many are due, so
      // that it makes one send(2) per --burst-us period, not one each time a few more are due
      // while the previous send was in the kernel (that took 5x the syscalls, and the CPU they
      // cost was taken from the pipeline being measured).
      const std::uint64_t per_burst = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(o.rate * static_cast<double>(burst_ns) * 1e-9));
      while (sent < o.count && !receiver_failed.load()) {
        std::uint64_t t = now_ns();
        std::uint64_t due = o.count;
        if (o.rate > 0) {
          due = std::min<std::uint64_t>(
              o.count, static_cast<std::uint64_t>(static_cast<double>(t - start) * 1e-9 * o.rate) + 1);
          if (due < std::min(sent + per_burst, o.count)) {
            // Sleep until the burst's last order is due.
            const auto wake = start + static_cast<std::uint64_t>(
                                          static_cast<double>(sent + per_burst - 1) / o.rate * 1e9);
            if (wake > t) {
              const std::uint64_t d = wake - t;
              timespec ts{static_cast<time_t>(d / 1'000'000'000u), static_cast<long>(d % 1'000'000'000u)};
              ::nanosleep(&ts, nullptr);
            }
            continue;
          }
        }
        const std::uint64_t n = std::min<std::uint64_t>(due - sent, 4096);  // <= 228 KiB a call
        if (!warm_published && t - start >= warm_ns) {
          warm_seq = sent;
          warmup_until_seq = sent;
          warm_published = true;
        }
        t = now_ns();
        for (std::uint64_t i = sent; i < sent + n; ++i) sent_at[i] = t;
        published.store(sent + n, std::memory_order_release);
        send_all(fd, frames.data() + sent * kFrame, n * kFrame);
        sent += n;
      }
      send_end = now_ns();
    } catch (...) {
      sender_failed = true;
      receiver.join();
      if (fd >= 0) ::close(fd);
      throw;
    }
    ::shutdown(fd, SHUT_WR);
    receiver.join();
    ::close(fd);
    ::close(listener);
    if (receiver_failed) throw std::runtime_error("receiver: " + receiver_error);

    const auto hist = histogram.snapshot();
    const double send_s = static_cast<double>(send_end - first_send) * 1e-9;
    const double total_s = static_cast<double>(last_recv - first_send) * 1e-9;
    std::printf("{\"sent\": %llu, \"received\": %llu, \"unmatched\": %llu, \"samples\": %llu, "
                "\"warmup_orders\": %llu, \"offered_rate\": %.1f, \"send_rate\": %.1f, "
                "\"msgs_per_s\": %.1f, \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, "
                "\"p999_us\": %.2f, \"p9999_us\": %.2f, \"min_us\": %.2f, \"max_us\": %.2f}\n",
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
                static_cast<unsigned long long>(unmatched),
                static_cast<unsigned long long>(hist.total()),
                static_cast<unsigned long long>(warmup_until_seq), o.rate,
                send_s > 0 ? static_cast<double>(sent) / send_s : 0.0,
                total_s > 0 ? static_cast<double>(received) / total_s : 0.0,
                hist.quantile(0.5) / 1e3, hist.quantile(0.9) / 1e3, hist.quantile(0.99) / 1e3,
                hist.quantile(0.999) / 1e3, hist.quantile(0.9999) / 1e3,
                hist.min() / 1e3, hist.max() / 1e3);
    return received == sent ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardline-latency: %s\n", e.what());
    return 1;
  }
}
