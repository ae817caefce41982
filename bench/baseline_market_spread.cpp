// baseline_market_spread: the Market Spread logic as one plain single-threaded C++ loop.
//
// No runtime, no plugin, no queues, no threads: the bytes of the NBBO and order files (read
// into memory first) are framed, decoded with the same checks as the plugin (type byte, exact
// length), the per-symbol state lives in an absl::flat_hash_map, and each rejected order is
// encoded as an OrderResult frame (with a CLOCK_REALTIME timestamp, as the plugin does) into a
// 256 KiB buffer that is "sent" (counted and reused) when full, like a discard sink with an
// encoder. This is what the runtime is compared against: the honest cost of the runtime, and
// what sharding gains over it.
//
// Keys: --key packed (default) uses the 4 symbol bytes as a uint32 (what a hand-written loop
// does); --key xxh3 trims the padding and hashes with XXH3-64 like the plugin's string
// partition (shardline::key_of), to show what that choice costs.
//
// The NBBO phase runs first (every NBBO before any order, as the runtime's start_after does);
// each repetition starts from an empty map. Prints one JSON object (medians over repetitions).
#include <sys/resource.h>
#include <time.h>

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <CLI/CLI.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct SymbolData {
  bool should_reject_trades = true;
  double last_bid = 0;
  double last_offer = 0;
};

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

inline std::uint32_t be32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
inline double f64be(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return std::bit_cast<double>(__builtin_bswap64(v));
}
inline unsigned char* put_be64(unsigned char* p, std::uint64_t v) {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
  return p + 8;
}

inline std::uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

enum class KeyMode { packed, xxh3 };

template <KeyMode M>
inline std::uint64_t symbol_key(const unsigned char* sym) {
  if constexpr (M == KeyMode::packed) {
    std::uint32_t k;
    std::memcpy(&k, sym, 4);
    return k;
  } else {
    std::string_view s(reinterpret_cast<const char*>(sym), 4);
    const auto b = s.find_first_not_of(' ');
    if (b == std::string_view::npos) return XXH3_64bits("", 0);
    s = s.substr(b, s.find_last_not_of(' ') - b + 1);
    return XXH3_64bits(s.data(), s.size());
  }
}

struct Counts {
  std::uint64_t messages = 0, bad = 0, rejected = 0, bytes_out = 0;
};

using Map = absl::flat_hash_map<std::uint64_t, SymbolData>;

template <KeyMode M>
Counts run_nbbo(const std::vector<unsigned char>& in, Map& states) {
  Counts c;
  const unsigned char* p = in.data();
  const unsigned char* end = p + in.size();
  while (end - p >= 4) {
    const std::uint32_t len = be32(p);
    if (static_cast<std::size_t>(end - p - 4) < len) break;
    const unsigned char* m = p + 4;
    p += 4 + len;
    ++c.messages;
    if (len != 42 || m[0] != 2) {
      ++c.bad;
      continue;
    }
    const double bid = f64be(m + 26), offer = f64be(m + 34);
    SymbolData& s = states[symbol_key<M>(m + 1)];
    const double diff = offer - bid;
    const double mid = (bid + offer) / 2;
    s.should_reject_trades = diff >= 0.05 || diff / mid >= 0.05;
    s.last_bid = bid;
    s.last_offer = offer;
  }
  return c;
}

template <KeyMode M>
Counts run_orders(const std::vector<unsigned char>& in, Map& states, std::vector<unsigned char>& out) {
  Counts c;
  const unsigned char* p = in.data();
  const unsigned char* end = p + in.size();
  unsigned char* o = out.data();
  unsigned char* o_end = out.data() + out.size();
  while (end - p >= 4) {
    const std::uint32_t len = be32(p);
    if (static_cast<std::size_t>(end - p - 4) < len) break;
    const unsigned char* m = p + 4;
    p += 4 + len;
    ++c.messages;
    if (len != 53 || m[0] != 1) {
      ++c.bad;
      continue;
    }
    SymbolData& s = states[symbol_key<M>(m + 12)];
    if (!s.should_reject_trades) continue;
    // OrderResult, 55 bytes, framed: side, account, order id, symbol, quantity, price (copied
    // from the order, already big-endian), bid, offer, timestamp.
    if (o_end - o < 59) {
      c.bytes_out += static_cast<std::uint64_t>(o - out.data());  // the "sink" takes the chunk
      o = out.data();
    }
    const std::uint32_t len_be = __builtin_bswap32(55);
    std::memcpy(o, &len_be, 4);
    o[4] = m[1];                       // side
    std::memcpy(o + 5, m + 2, 4);      // account
    std::memcpy(o + 9, m + 6, 6);      // order id
    std::memcpy(o + 15, m + 12, 4);    // symbol
    std::memcpy(o + 19, m + 16, 16);   // quantity, price
    unsigned char* q = put_be64(o + 35, std::bit_cast<std::uint64_t>(s.last_bid));
    q = put_be64(q, std::bit_cast<std::uint64_t>(s.last_offer));
    put_be64(q, realtime_ns());
    o += 59;
    ++c.rejected;
  }
  c.bytes_out += static_cast<std::uint64_t>(o - out.data());
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <KeyMode M>
int run(const std::vector<unsigned char>& nbbo, const std::vector<unsigned char>& orders, int reps,
        const char* key_name) {
  std::vector<unsigned char> out(256 * 1024);
  std::vector<double> nbbo_s, orders_s;
  Counts cn, co;
  std::size_t keys = 0;
  for (int r = 0; r < reps; ++r) {
    Map states;
    const auto t0 = Clock::now();
    cn = run_nbbo<M>(nbbo, states);
    const auto t1 = Clock::now();
    co = run_orders<M>(orders, states, out);
    const auto t2 = Clock::now();
    nbbo_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    orders_s.push_back(std::chrono::duration<double>(t2 - t1).count());
    keys = states.size();
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double os = median(orders_s), ns = median(nbbo_s);
  std::printf("{\"key\": \"%s\", \"reps\": %d, \"nbbo\": %llu, \"orders\": %llu, \"bad\": %llu, "
              "\"rejected\": %llu, \"bytes_out\": %llu, \"keys\": %zu, \"nbbo_s\": %.6f, "
              "\"orders_s\": %.6f, \"msgs_per_s\": %.1f, \"nbbo_per_s\": %.1f, "
              "\"max_rss_kb\": %ld}\n",
              key_name, reps, static_cast<unsigned long long>(cn.messages),
              static_cast<unsigned long long>(co.messages),
              static_cast<unsigned long long>(cn.bad + co.bad),
              static_cast<unsigned long long>(co.rejected),
              static_cast<unsigned long long>(co.bytes_out), keys, ns, os,
              os > 0 ? static_cast<double>(co.messages) / os : 0.0,
              ns > 0 ? static_cast<double>(cn.messages) / ns : 0.0, ru.ru_maxrss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Market Spread as one plain single-threaded loop over the bytes of the NBBO and "
               "order files. Prints one JSON object; throughput counts orders only."};
  std::string nbbo_file, orders_file, key = "packed";
  int reps = 3;
  app.add_option("--nbbo", nbbo_file, "Framed NBBO file")->required()->check(CLI::ExistingFile);
  app.add_option("--orders", orders_file, "Framed order file")->required()->check(CLI::ExistingFile);
  app.add_option("--reps", reps, "Repetitions (median reported)")->capture_default_str();
  app.add_option("--key", key, "packed: the 4 symbol bytes as an integer; xxh3: like the plugin")
      ->check(CLI::IsMember({"packed", "xxh3"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const auto nbbo = read_file(nbbo_file);
    const auto orders = read_file(orders_file);
    if (reps < 1) reps = 1;
    return key == "packed" ? run<KeyMode::packed>(nbbo, orders, reps, "packed")
                           : run<KeyMode::xxh3>(nbbo, orders, reps, "xxh3");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "baseline_market_spread: %s\n", e.what());
    return 1;
  }
}
