// shardline-gen: the Market Spread load generator.
//
// Writes NBBO and order streams in the "fixish" wire format of plugins/market_spread/README.md (4-byte
// big-endian length, then the payload), deterministic from a seed, and moves framed files over
// TCP: `send` plays a file to a TCP source (at full speed or at a fixed message rate) and
// `receive` stands in for the peer of a TCP sink. Random values come from std::mt19937_64
// mapped to ranges by this file's own arithmetic (not <random> distributions, whose output
// differs between standard libraries), so a seed gives the same bytes everywhere.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace {

using Clock = std::chrono::steady_clock;

/// A failure to report in one line and exit with status 1.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---- Symbols: 4 ASCII bytes, right-justified with spaces, as on the wire.

using Symbol = std::array<char, 4>;

constexpr std::string_view kLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr std::string_view kLettersDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
// Every name of 1 to 4 characters over A-Z0-9: 36 + 36^2 + 36^3 + 36^4.
constexpr std::uint64_t kMaxSymbols = 36 + 36 * 36 + 36 * 36 * 36 + 36ull * 36 * 36 * 36;

/// The first n names of one fixed sequence: all letter-only names by length ("A".."Z", "AA",
/// ..., "ZZZZ"), then the names with a digit ("0".."9", "A0", ...). Because the sequence is
/// fixed, the symbols of --symbols 350 are the first 350 of --symbols 1000: an NBBO file and
/// an order file made with the same N always agree.
std::vector<Symbol> make_symbols(std::uint64_t n) {
  if (n == 0) throw Failure("--symbols must be at least 1");
  if (n > kMaxSymbols)
    throw Failure("--symbols " + std::to_string(n) + " is too many: symbols are 4 characters " +
                  "of A-Z and 0-9, so there are at most " + std::to_string(kMaxSymbols));
  std::vector<Symbol> out;
  out.reserve(n);
  const auto add_names = [&](std::string_view alphabet, bool need_digit) {
    const std::uint64_t a = alphabet.size();
    for (std::uint64_t len = 1, count = a; len <= 4; ++len, count *= a) {
      for (std::uint64_t v = 0; v < count; ++v) {
        if (out.size() == n) return;
        Symbol s{' ', ' ', ' ', ' '};
        bool has_digit = false;
        std::uint64_t x = v;
        for (std::uint64_t i = 0; i < len; ++i, x /= a) {
          const char c = alphabet[x % a];
          s[3 - i] = c;
          has_digit |= c >= '0' && c <= '9';
        }
        if (!need_digit || has_digit) out.push_back(s);
      }
    }
  };
  add_names(kLetters, false);
  add_names(kLettersDigits, true);
  return out;
}

/// One symbol per line (e.g. plugins/market_spread/data/350-symbols.txt), right-justified.
std::vector<Symbol> read_symbols(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Failure(errno_text("cannot open --symbols-file " + path));
  std::vector<Symbol> out;
  std::string line;
  for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
    const auto begin = line.find_first_not_of(" \t\r");
    if (begin == std::string::npos) continue;
    const std::string name = line.substr(begin, line.find_last_not_of(" \t\r") - begin + 1);
    if (name.size() > 4)
      throw Failure(path + ":" + std::to_string(line_no) + ": symbol \"" + name +
                    "\" is longer than 4 characters");
    Symbol s{' ', ' ', ' ', ' '};
    std::copy(name.begin(), name.end(), s.end() - static_cast<std::ptrdiff_t>(name.size()));
    out.push_back(s);
  }
  if (out.empty()) throw Failure("--symbols-file " + path + " has no symbols");
  return out;
}

// ---- Deterministic random values.

class Random {
 public:
  explicit Random(std::uint64_t seed) : gen_(seed) {}
  /// Uniform in [0, n), by multiply-shift: one draw, bias below 2^-40 for the n used here.
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(gen_()) * n) >> 64);
  }
  /// Uniform in [lo, hi).
  double between(double lo, double hi) {
    return lo + (hi - lo) * (static_cast<double>(gen_() >> 11) * 0x1p-53);
  }
  bool chance(double p) { return between(0, 1) < p; }

  /// Several small uniform values out of one draw, for speed (the generator's time goes into
  /// the Mersenne Twister): each take(n) uses up about log2(n) of the 64 bits, so the ranges
  /// taken from one draw must multiply to well under 2^64.
  class Draw {
   public:
    explicit Draw(std::uint64_t bits) : x_(bits) {}
    std::uint64_t take(std::uint64_t n) {
      const auto m = static_cast<unsigned __int128>(x_) * n;
      x_ = static_cast<std::uint64_t>(m);
      return static_cast<std::uint64_t>(m >> 64);
    }

   private:
    std::uint64_t x_;
  };
  Draw draw() { return Draw(gen_()); }

 private:
  std::mt19937_64 gen_;
};

/// Picks symbols at random, drawing each pick a few picks ahead and prefetching it: with a
/// million symbols the table outgrows the caches, and the miss would cost as much as the rest
/// of a message.
class SymbolPicker {
 public:
  SymbolPicker(const std::vector<Symbol>& symbols, Random& rnd) : symbols_(symbols), rnd_(rnd) {
    for (auto& i : ahead_) i = draw();
  }
  const Symbol& next() {
    const Symbol& s = symbols_[ahead_[pos_]];
    ahead_[pos_] = draw();
    pos_ = (pos_ + 1) % kAhead;
    return s;
  }

 private:
  static constexpr std::size_t kAhead = 8;
  std::size_t draw() {
    const auto i = static_cast<std::size_t>(rnd_.below(symbols_.size()));
    __builtin_prefetch(&symbols_[i]);
    return i;
  }
  const std::vector<Symbol>& symbols_;
  Random& rnd_;
  std::size_t ahead_[kAhead];
  std::size_t pos_ = 0;
};

/// Prices have 4 decimals, like the real NBBO data.
double round4(double x) { return std::round(x * 10000) / 10000; }

// ---- Writing frames.

/// Buffered output to a file (or stdout for "-"), written in large blocks.
class Output {
 public:
  explicit Output(const std::string& path) : path_(path) {
    fd_ = path == "-" ? STDOUT_FILENO : ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) throw Failure(errno_text("cannot create " + path));
    buf_.reserve(kBlock);
  }
  ~Output() {
    if (fd_ > STDOUT_FILENO) ::close(fd_);
  }
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  /// Room for n more bytes at the end of the buffer; commit(n) after filling them.
  char* reserve(std::size_t n) {
    if (buf_.size() + n > kBlock) flush();
    const std::size_t at = buf_.size();
    buf_.resize(at + n);
    return buf_.data() + at;
  }
  void append(const char* p, std::size_t n) {
    if (buf_.size() + n > kBlock) flush();
    buf_.insert(buf_.end(), p, p + n);
  }
  void flush() {
    const char* p = buf_.data();
    std::size_t left = buf_.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Failure(errno_text("cannot write " + path_));
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    bytes_ += buf_.size();
    buf_.clear();
  }
  std::uint64_t bytes() const { return bytes_ + buf_.size(); }

 private:
  static constexpr std::size_t kBlock = 256 * 1024;
  std::string path_;
  int fd_ = -1;
  std::vector<char> buf_;
  std::uint64_t bytes_ = 0;
};

char* put_u8(char* p, std::uint8_t v) {
  *p = static_cast<char>(v);
  return p + 1;
}
char* put_u32(char* p, std::uint32_t v) {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
  return p + 4;
}
char* put_f64(char* p, double d) {
  const std::uint64_t v = __builtin_bswap64(std::bit_cast<std::uint64_t>(d));
  std::memcpy(p, &v, 8);
  return p + 8;
}
char* put_bytes(char* p, const char* src, std::size_t n) {
  std::memcpy(p, src, n);
  return p + n;
}

constexpr std::uint32_t kNbboPayload = 42;
constexpr std::uint32_t kOrderPayload = 53;
constexpr std::size_t kTimeSize = 21;

/// Transact times "20160902-HH:MM:SS.mmm", one millisecond apart from the real data's
/// 15:47:52.000, wrapping at midnight so any count stays well-formed.
class TransactClock {
 public:
  const char* next() {
    const std::uint64_t ms = (kStartMs + tick_++) % kDayMs;
    write2(9, static_cast<unsigned>(ms / 3'600'000));
    write2(12, static_cast<unsigned>(ms / 60'000 % 60));
    write2(15, static_cast<unsigned>(ms / 1000 % 60));
    const auto milli = static_cast<unsigned>(ms % 1000);
    text_[18] = static_cast<char>('0' + milli / 100);
    write2(19, milli % 100);
    return text_;
  }

 private:
  static constexpr std::uint64_t kStartMs = (15 * 3600 + 47 * 60 + 52) * 1000ull;
  static constexpr std::uint64_t kDayMs = 24 * 3600 * 1000ull;
  void write2(std::size_t at, unsigned v) {
    text_[at] = static_cast<char>('0' + v / 10);
    text_[at + 1] = static_cast<char>('0' + v % 10);
  }
  char text_[kTimeSize + 1] = "20160902-00:00:00.000";
  std::uint64_t tick_ = 0;
};

// ---- nbbo and orders.

struct GenOptions {
  std::uint64_t symbols = 0;
  std::string symbols_file;
  std::uint64_t count = 1'000'000;
  std::uint64_t seed = 1;
  std::string out;
  bool no_initial = false;
};

std::vector<Symbol> symbols_of(const GenOptions& o) {
  if (!o.symbols_file.empty()) return read_symbols(o.symbols_file);
  if (o.symbols == 0) throw Failure("give the symbols: --symbols N or --symbols-file FILE");
  return make_symbols(o.symbols);
}

/// Prints a generator's summary where it cannot mix with the data it wrote.
std::ostream& report_stream(const GenOptions& o) { return o.out == "-" ? std::cerr : std::cout; }

// The share of NBBO updates whose spread is wide enough (>= 0.05) to reject orders.
constexpr double kWideShare = 0.15;

void write_nbbo(Output& out, const Symbol& symbol, const char* time, double bid, double offer) {
  char* p = out.reserve(4 + kNbboPayload);
  p = put_u32(p, kNbboPayload);
  p = put_u8(p, 2);
  p = put_bytes(p, symbol.data(), 4);
  p = put_bytes(p, time, kTimeSize);
  p = put_f64(p, bid);
  put_f64(p, offer);
}

int generate_nbbo(const GenOptions& o) {
  const auto start = Clock::now();
  const std::vector<Symbol> symbols = symbols_of(o);
  Random rnd(o.seed);
  TransactClock clock;
  Output out(o.out);
  // A tight spread is 1-4 cents, a wide one 6 cents to 1 dollar: with bids of at least 10,
  // neither lands near the 0.05 (absolute) or 5% (relative) thresholds.
  const auto quote = [&](const Symbol& s, bool wide) {
    const double bid = round4(rnd.between(10, 1000));
    const double spread = wide ? 0.06 + 0.01 * static_cast<double>(rnd.below(95))
                               : 0.01 + 0.01 * static_cast<double>(rnd.below(4));
    write_nbbo(out, s, clock.next(), bid, round4(bid + spread));
  };
  const std::uint64_t initial = o.no_initial ? 0 : symbols.size();
  if (!o.no_initial)
    for (const Symbol& s : symbols) quote(s, false);
  SymbolPicker pick(symbols, rnd);
  for (std::uint64_t i = 0; i < o.count; ++i) {
    const Symbol& s = pick.next();
    quote(s, rnd.chance(kWideShare));
  }
  out.flush();
  report_stream(o) << "wrote " << initial + o.count << " NBBO messages (" << initial
                   << " initial + " << o.count << " updates, " << symbols.size()
                   << " symbols, " << out.bytes() << " bytes) to " << o.out << " in "
                   << seconds_since(start) << " s\n";
  return 0;
}

int generate_orders(const GenOptions& o) {
  const auto start = Clock::now();
  const std::vector<Symbol> symbols = symbols_of(o);
  Random rnd(o.seed);
  TransactClock clock;
  Output out(o.out);
  SymbolPicker pick(symbols, rnd);
  for (std::uint64_t i = 0; i < o.count; ++i) {
    char* p = out.reserve(4 + kOrderPayload);
    p = put_u32(p, kOrderPayload);
    p = put_u8(p, 1);
    auto d = rnd.draw();  // 2 * 100000 * 100 values
    p = put_u8(p, static_cast<std::uint8_t>(1 + d.take(2)));              // side
    p = put_u32(p, static_cast<std::uint32_t>(1 + d.take(100'000)));     // account
    const double quantity = 100.0 * static_cast<double>(1 + d.take(100));  // round lots
    auto id = rnd.draw();  // 36^6 values
    for (int c = 0; c < 6; ++c) *p++ = kLettersDigits[id.take(kLettersDigits.size())];
    p = put_bytes(p, pick.next().data(), 4);
    p = put_f64(p, quantity);
    p = put_f64(p, round4(rnd.between(10, 1000)));
    put_bytes(p, clock.next(), kTimeSize);
  }
  out.flush();
  report_stream(o) << "wrote " << o.count << " orders (" << symbols.size() << " symbols, "
                   << out.bytes() << " bytes) to " << o.out << " in " << seconds_since(start)
                   << " s\n";
  return 0;
}

// ---- TCP.

/// "host:port", "[v6]:port" or ":port" (all interfaces, for --listen).
std::pair<std::string, std::string> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size())
    throw Failure("address \"" + address + "\" is not HOST:PORT");
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {host, address.substr(colon + 1)};
}

struct AddrInfo {
  addrinfo* list = nullptr;
  AddrInfo(const std::string& address, bool passive) {
    const auto [host, port] = split_address(address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &list);
    if (rc != 0) throw Failure("cannot resolve " + address + ": " + ::gai_strerror(rc));
  }
  ~AddrInfo() { ::freeaddrinfo(list); }
  AddrInfo(const AddrInfo&) = delete;
  AddrInfo& operator=(const AddrInfo&) = delete;
};

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

/// Connects to address, retrying while nothing listens there yet (the host may still be
/// starting), for up to `patience`.
Socket connect_to(const std::string& address, std::chrono::duration<double> patience) {
  const AddrInfo ai(address, false);
  const auto deadline = Clock::now() + patience;
  while (true) {
    int last_errno = 0;
    for (const addrinfo* a = ai.list; a; a = a->ai_next) {
      Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (s.fd() < 0) throw Failure(errno_text("socket"));
      if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) == 0) {
        const int one = 1;
        ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return s;
      }
      last_errno = errno;
    }
    if (Clock::now() >= deadline)
      throw Failure("cannot connect to " + address + ": " + std::strerror(last_errno));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void send_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    // MSG_NOSIGNAL: a peer that goes away is an error to report, not a SIGPIPE.
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) throw Failure(errno_text("send failed"));
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

/// A framed file, mapped read-only, with its frames counted (and their lengths checked).
class FramedFile {
 public:
  explicit FramedFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Failure(errno_text("cannot open " + path));
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw Failure(errno_text("cannot stat " + path));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (m == MAP_FAILED) {
        ::close(fd);
        throw Failure(errno_text("cannot map " + path));
      }
      data_ = static_cast<const char*>(m);
      ::madvise(m, size_, MADV_SEQUENTIAL);
    }
    ::close(fd);
    for (std::size_t at = 0; at < size_; ++frames_) {
      if (size_ - at < 4 || size_ - at - 4 < frame_length(at))
        throw Failure(path + ": truncated frame at byte " + std::to_string(at) +
                      " (frame " + std::to_string(frames_ + 1) + ")");
      at += 4 + frame_length(at);
    }
  }
  ~FramedFile() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
  }
  FramedFile(const FramedFile&) = delete;
  FramedFile& operator=(const FramedFile&) = delete;

  const char* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::uint64_t frames() const { return frames_; }
  /// The payload length of the frame starting at byte `at`.
  std::uint32_t frame_length(std::size_t at) const {
    std::uint32_t be;
    std::memcpy(&be, data_ + at, 4);
    return ntohl(be);
  }

 private:
  const char* data_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t frames_ = 0;
};

struct SendOptions {
  std::string to;
  std::string file;
  double rate = 0;
  std::uint64_t repeat = 1;
  double connect_timeout = 10;
};

int send_file(const SendOptions& o) {
  const FramedFile file(o.file);
  const Socket sock = connect_to(o.to, std::chrono::duration<double>(o.connect_timeout));
  const std::uint64_t total = file.frames() * o.repeat;
  const auto start = Clock::now();
  if (o.rate <= 0) {
    constexpr std::size_t kChunk = 1 << 20;
    for (std::uint64_t r = 0; r < o.repeat; ++r)
      for (std::size_t at = 0; at < file.size(); at += kChunk)
        send_all(sock.fd(), file.data() + at, std::min(kChunk, file.size() - at));
  } else if (total > 0) {
    // Frame k is due at start + k / rate. Each turn sends every frame already due in one
    // write; a receiver that falls behind is caught up with in bursts, so the average rate
    // holds instead of drifting down.
    std::uint64_t sent = 0;
    std::size_t at = 0;
    while (sent < total) {
      const auto due = std::min<std::uint64_t>(
          total, static_cast<std::uint64_t>(seconds_since(start) * o.rate) + 1);
      if (due <= sent) {
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                        static_cast<double>(sent) / o.rate)));
        continue;
      }
      while (sent < due) {
        std::size_t end = at;
        while (sent < due && end < file.size()) {
          end += 4 + file.frame_length(end);
          ++sent;
        }
        send_all(sock.fd(), file.data() + at, end - at);
        at = end == file.size() ? 0 : end;
      }
    }
  }
  const double secs = seconds_since(start);
  std::printf("sent %llu messages in %.3f s (%.0f msg/s)\n",
              static_cast<unsigned long long>(total), secs,
              secs > 0 ? static_cast<double>(total) / secs : 0.0);
  return 0;
}

struct ReceiveOptions {
  std::string listen;
  std::string out;
  std::uint64_t count = 0;
  double timeout = 0;
};

/// Waits until fd is readable; false when `timeout_s` (> 0) passes first.
bool wait_readable(int fd, double timeout_s) {
  pollfd p{fd, POLLIN, 0};
  const int ms = timeout_s > 0 ? static_cast<int>(std::ceil(timeout_s * 1000)) : -1;
  while (true) {
    const int rc = ::poll(&p, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) throw Failure(errno_text("poll"));
    return rc > 0;
  }
}

std::string describe(const sockaddr* sa) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  const socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return sa->sa_family == AF_INET6 ? "[" + std::string(host) + "]:" + port
                                   : std::string(host) + ":" + port;
}

/// Counts length-prefixed frames across reads that split them anywhere.
class FrameCounter {
 public:
  /// Consumes bytes until `limit` frames are complete; returns how many bytes it consumed.
  std::size_t feed(const char* p, std::size_t n, std::uint64_t limit) {
    std::size_t i = 0;
    while (i < n && frames_ < limit) {
      if (header_have_ < 4) {
        header_[header_have_++] = static_cast<unsigned char>(p[i++]);
        if (header_have_ == 4) {
          body_left_ = std::uint32_t{header_[0]} << 24 | std::uint32_t{header_[1]} << 16 |
                       std::uint32_t{header_[2]} << 8 | header_[3];
          if (body_left_ == 0) complete();
        }
      } else {
        const std::size_t take = std::min<std::size_t>(body_left_, n - i);
        i += take;
        body_left_ -= take;
        if (body_left_ == 0) complete();
      }
    }
    return i;
  }
  std::uint64_t frames() const { return frames_; }
  bool mid_frame() const { return header_have_ > 0; }

 private:
  void complete() {
    ++frames_;
    header_have_ = 0;
  }
  unsigned char header_[4] = {};
  std::size_t header_have_ = 0;
  std::uint64_t body_left_ = 0;
  std::uint64_t frames_ = 0;
};

/// Whether the first bytes of a stream read as text: printable ASCII and line ends only, with a
/// line end among them or filling all of `head`. A length prefix is rarely printable: such a
/// stream is lines (a sink with framing = "lines"), which receive does not count as frames.
bool looks_like_lines(std::string_view head, std::size_t full) {
  if (head.size() < 4) return false;
  const bool text = std::all_of(head.begin(), head.end(), [](char c) {
    return c == '\n' || c == '\r' || c == '\t' || (c >= 0x20 && c < 0x7f);
  });
  return text && (head.find('\n') != std::string_view::npos || head.size() == full);
}

int receive(const ReceiveOptions& o) {
  const AddrInfo ai(o.listen, true);
  Socket listener;
  int last_errno = 0;
  for (const addrinfo* a = ai.list; a && listener.fd() < 0; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (s.fd() < 0) throw Failure(errno_text("socket"));
    const int one = 1;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.fd(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(s.fd(), 1) == 0)
      listener = std::move(s);
    else
      last_errno = errno;
  }
  if (listener.fd() < 0)
    throw Failure("cannot listen on " + o.listen + ": " + std::strerror(last_errno));
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(listener.fd(), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  // Tests wait for this line before starting the sender; with port 0 it names the real port.
  std::fprintf(stderr, "listening on %s\n", describe(reinterpret_cast<sockaddr*>(&bound)).c_str());
  std::fflush(stderr);

  Output out(o.out);
  FrameCounter counter;
  constexpr std::size_t kHead = 64;
  std::string head;  // the stream's first kHead bytes: to tell lines from frames
  const std::uint64_t limit = o.count > 0 ? o.count : UINT64_MAX;
  bool timed_out = false;
  std::string peer = "nobody";
  auto start = Clock::now();
  if (!wait_readable(listener.fd(), o.timeout)) {
    timed_out = true;
  } else {
    sockaddr_storage from{};
    socklen_t from_len = sizeof from;
    const Socket conn(::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&from), &from_len,
                                SOCK_CLOEXEC));
    if (conn.fd() < 0) throw Failure(errno_text("accept"));
    // One connection is all it takes: closing the listener now makes a sink's reconnection
    // fail at once, instead of waiting in the kernel's queue for an accept that never comes.
    listener = Socket();
    peer = describe(reinterpret_cast<sockaddr*>(&from));
    start = Clock::now();
    std::vector<char> buf(256 * 1024);
    while (counter.frames() < limit) {
      if (!wait_readable(conn.fd(), o.timeout)) {
        timed_out = true;
        break;
      }
      const ssize_t n = ::recv(conn.fd(), buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Failure(errno_text("recv from " + peer));
      if (n == 0) break;
      head.append(buf.data(), std::min(static_cast<std::size_t>(n), kHead - head.size()));
      out.append(buf.data(), counter.feed(buf.data(), static_cast<std::size_t>(n), limit));
    }
  }
  out.flush();
  const double secs = seconds_since(start);
  // The summary goes to stderr when the data itself goes to stdout.
  std::fprintf(o.out == "-" ? stderr : stdout, "received %llu frames (%llu bytes) from %s in %.3f s%s\n",
              static_cast<unsigned long long>(counter.frames()),
              static_cast<unsigned long long>(out.bytes()), peer.c_str(), secs,
              timed_out ? " (timed out)" : "");
  if (looks_like_lines(head, kHead))
    std::fprintf(stderr, "warning: the stream looks like lines of text, not frames: receive "
                         "counts frames of a 4-byte big-endian length and that many bytes "
                         "(a sink with framing = \"length\"); the bytes are in %s as received\n",
                 o.out == "-" ? "stdout" : o.out.c_str());
  else if (counter.mid_frame())
    std::fprintf(stderr, "warning: the last frame is incomplete\n");
  if (o.count > 0 && counter.frames() < o.count) {
    std::fprintf(stderr, "error: expected %llu frames, received %llu\n",
                 static_cast<unsigned long long>(o.count),
                 static_cast<unsigned long long>(counter.frames()));
    return 1;
  }
  return 0;
}

// ---- Command line.

/// A validator that keeps quiet in --help: the option's own text already says what it takes.
CLI::Validator quiet(CLI::Validator v) {
  v.description("");
  return v;
}

void add_gen_options(CLI::App& cmd, GenOptions& o, const char* count_help) {
  auto* n = cmd.add_option("--symbols", o.symbols,
                           "Generate N symbols: \"   A\"..\"ZZZZ\", then names with digits "
                           "(at most " + std::to_string(kMaxSymbols) + ")")
                ->type_name("N");
  auto* f = cmd.add_option("--symbols-file", o.symbols_file,
                           "Read the symbols, one per line (e.g. "
                           "plugins/market_spread/data/350-symbols.txt)")
                ->type_name("FILE");
  n->excludes(f);
  cmd.add_option("--count", o.count, count_help)->type_name("N")->capture_default_str();
  cmd.add_option("--seed", o.seed, "Random seed: the same seed gives the same bytes")
      ->type_name("S")
      ->capture_default_str();
  cmd.add_option("--out", o.out, "Output file (\"-\" for stdout)")->type_name("FILE")->required();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shardline-gen: Market Spread load generator. Makes NBBO and order streams in the "
      "length-prefixed \"fixish\" format of plugins/market_spread/README.md, deterministic from a seed, and "
      "sends or receives framed files over TCP."};
  app.require_subcommand(1);

  GenOptions nbbo_opts;
  auto* nbbo = app.add_subcommand(
      "nbbo",
      "Write NBBO market data: first one NBBO per symbol with a tight spread (so orders are "
      "accepted), then random updates, " +
          std::to_string(static_cast<int>(kWideShare * 100)) +
          "% of them with a spread >= 0.05 (orders for that symbol are then rejected). "
          "46 bytes per message.");
  add_gen_options(*nbbo, nbbo_opts, "Random updates after the initial NBBOs");
  nbbo->add_flag("--no-initial", nbbo_opts.no_initial,
                 "Write only the random updates, no initial NBBO per symbol");

  GenOptions orders_opts;
  auto* orders = app.add_subcommand(
      "orders",
      "Write orders: random side, account, order id, symbol, quantity and price. 57 bytes "
      "per message.");
  add_gen_options(*orders, orders_opts, "Orders to write");

  SendOptions send_opts;
  auto* send = app.add_subcommand(
      "send",
      "Send a framed file to a TCP source (e.g. shardline's), then close the connection. "
      "Prints the messages sent and the rate (timed from the connection to the last byte "
      "handed to the kernel).");
  send->add_option("--to", send_opts.to, "Where to connect")->type_name("HOST:PORT")->required();
  send->add_option("--file", send_opts.file, "Framed file to send (e.g. from nbbo or orders)")
      ->type_name("FILE")
      ->required()
      ->check(quiet(CLI::ExistingFile));
  send->add_option("--rate", send_opts.rate,
                   "Messages per second; 0 sends at full speed in large writes")
      ->type_name("MSGS_PER_S")
      ->check(quiet(CLI::NonNegativeNumber))
      ->capture_default_str();
  send->add_option("--repeat", send_opts.repeat, "Send the file this many times")
      ->type_name("N")
      ->check(quiet(CLI::PositiveNumber))
      ->capture_default_str();
  send->add_option("--connect-timeout", send_opts.connect_timeout,
                   "Keep retrying the connection this long while nothing listens yet")
      ->type_name("S")
      ->check(quiet(CLI::NonNegativeNumber))
      ->capture_default_str();

  ReceiveOptions recv_opts;
  auto* recv = app.add_subcommand(
      "receive",
      "Accept one TCP connection (e.g. from shardline's TCP sink) and write everything it "
      "sends to a file, until the peer closes, N frames arrived, or the timeout passes. "
      "It counts length-prefixed frames (a 4-byte big-endian length, then that many bytes: a "
      "sink's framing = \"length\"); a stream of lines is written all the same, but not "
      "counted. "
      "Prints \"listening on HOST:PORT\" on stderr once listening (port 0 picks a free port) "
      "and the number of frames received on stdout.");
  recv->add_option("--listen", recv_opts.listen, "Where to listen")
      ->type_name("HOST:PORT")
      ->required();
  recv->add_option("--out", recv_opts.out, "File for the received bytes (\"-\" for stdout)")
      ->type_name("FILE")
      ->required();
  recv->add_option("--count", recv_opts.count,
                   "Stop after N frames; exit with status 1 if fewer arrive (0: no limit)")
      ->type_name("N")
      ->capture_default_str();
  recv->add_option("--timeout", recv_opts.timeout,
                   "Give up after S seconds without a connection or without data (0: wait "
                   "forever)")
      ->type_name("S")
      ->check(quiet(CLI::NonNegativeNumber))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*nbbo) return generate_nbbo(nbbo_opts);
    if (*orders) return generate_orders(orders_opts);
    if (*send) return send_file(send_opts);
    if (*recv) return receive(recv_opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardline-gen: %s\n", e.what());
    return 1;
  }
  return 0;
}
