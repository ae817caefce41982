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
//
// --shards N (N >= 1) is the hand-written limit of a sharded design on this machine: the main
// thread frames each message, checks it, keys it (packed) and copies it into a 64-byte slot of
// a batch of 256 bound for its shard; N shard threads, each with its own map and output buffer,
// take the batches through a lock-free single-producer ring per shard whose slots are reused
// in place, sleeping in std::atomic::wait (a futex) when there is nothing to do. No plugin, no
// decode into a struct, no pools, no sink thread: the least a runtime that moves messages
// between threads can do.
#include <sys/resource.h>
#include <time.h>

#include <absl/container/flat_hash_map.h>
#include <shardline/key.hpp>

#include "market_spread.hpp"  // the plugin's symbol_key, for --key xxh3

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "engine/shard_router.hpp"  // header only: the engine's key -> shard mapping

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

/// The rejections' timestamp: read once per 256 orders, as the plugin reads it once per batch
/// of a step (batch_size 256; shardline::processing_time_ns()).
constexpr std::uint64_t kOrdersPerClockRead = 256;

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
  } else {  // exactly the plugin's key: its symbol_key (trim), then shardline::key_of (XXH3)
    char symbol[4];
    std::memcpy(symbol, sym, 4);
    return shardline::key_of(market_spread::symbol_key(symbol));
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
  std::uint64_t now = 0;
  while (end - p >= 4) {
    const std::uint32_t len = be32(p);
    if (static_cast<std::size_t>(end - p - 4) < len) break;
    const unsigned char* m = p + 4;
    p += 4 + len;
    if (c.messages++ % kOrdersPerClockRead == 0) now = realtime_ns();
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
    put_be64(q, now);
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

// ---- the sharded variant (--shards N) ----

constexpr std::uint32_t kBatch = 256;
constexpr std::uint32_t kPhaseEnd = ~0u;  // a slot with this count ends a phase

struct alignas(64) Slot {
  std::uint32_t count = 0;
  alignas(64) unsigned char msgs[kBatch][64];
};

/// One producer, one consumer; slots are filled and read in place. [producer: main thread;
/// consumer: one shard thread]
struct Ring {
  static constexpr std::uint32_t kSlots = 64;
  std::unique_ptr<Slot[]> slots = std::make_unique<Slot[]>(kSlots);
  alignas(64) std::atomic<std::uint32_t> head{0};  // slots published
  alignas(64) std::atomic<std::uint32_t> tail{0};  // slots given back
  alignas(64) std::uint32_t filling = 0;           // producer's private copy of head
};

struct ShardResult {
  Counts c;
  std::size_t keys = 0;
  double cpu_s = 0;  // the thread's CPU time, both phases
};

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// A shard thread: NBBO updates and orders from its ring until the final phase end.
void shard_loop(Ring& ring, std::atomic<std::uint32_t>& phases_done, ShardResult& result) {
  Map states;
  std::vector<unsigned char> out(256 * 1024);
  unsigned char* o = out.data();
  unsigned char* o_end = out.data() + out.size();
  Counts& c = result.c;
  std::uint64_t now = 0;
  int phases = 0;
  for (std::uint32_t tail = 0;; ++tail) {
    std::uint32_t head;
    while ((head = ring.head.load(std::memory_order_acquire)) == tail) ring.head.wait(head);
    const Slot& slot = ring.slots[tail % Ring::kSlots];
    if (slot.count == kPhaseEnd) {
      ring.tail.store(tail + 1, std::memory_order_release);
      ring.tail.notify_one();
      phases_done.fetch_add(1);
      phases_done.notify_all();
      if (++phases == 2) break;
      continue;
    }
    for (std::uint32_t i = 0; i < slot.count; ++i) {
      const unsigned char* m = slot.msgs[i];
      if (m[0] == 2) {
        const double bid = f64be(m + 26), offer = f64be(m + 34);
        SymbolData& s = states[symbol_key<KeyMode::packed>(m + 1)];
        const double diff = offer - bid;
        const double mid = (bid + offer) / 2;
        s.should_reject_trades = diff >= 0.05 || diff / mid >= 0.05;
        s.last_bid = bid;
        s.last_offer = offer;
        continue;
      }
      if (c.messages++ % kOrdersPerClockRead == 0) now = realtime_ns();
      SymbolData& s = states[symbol_key<KeyMode::packed>(m + 12)];
      if (!s.should_reject_trades) continue;
      if (o_end - o < 59) {
        c.bytes_out += static_cast<std::uint64_t>(o - out.data());
        o = out.data();
      }
      const std::uint32_t len_be = __builtin_bswap32(55);
      std::memcpy(o, &len_be, 4);
      o[4] = m[1];
      std::memcpy(o + 5, m + 2, 4);
      std::memcpy(o + 9, m + 6, 6);
      std::memcpy(o + 15, m + 12, 4);
      std::memcpy(o + 19, m + 16, 16);
      unsigned char* q = put_be64(o + 35, std::bit_cast<std::uint64_t>(s.last_bid));
      q = put_be64(q, std::bit_cast<std::uint64_t>(s.last_offer));
      put_be64(q, now);
      o += 59;
      ++c.rejected;
    }
    ring.tail.store(tail + 1, std::memory_order_release);
    ring.tail.notify_one();
  }
  c.bytes_out += static_cast<std::uint64_t>(o - out.data());
  result.keys = states.size();
  result.cpu_s = thread_cpu_s();
}

/// The producer's side: the slot being filled for a ring, waiting while the ring is full.
Slot& open_slot(Ring& ring) {
  std::uint32_t tail;
  while (ring.filling - (tail = ring.tail.load(std::memory_order_acquire)) == Ring::kSlots)
    ring.tail.wait(tail);
  return ring.slots[ring.filling % Ring::kSlots];
}

void publish(Ring& ring) {
  ring.head.store(++ring.filling, std::memory_order_release);
  ring.head.notify_one();
}

/// Frames and checks every message of `in` (type `type`, payload `len` bytes), copies it into
/// its shard's batch, and ends the phase on every ring. Returns the malformed frames.
std::uint64_t scatter(const std::vector<unsigned char>& in, std::size_t size, unsigned char type, std::uint32_t len,
                      std::size_t symbol_at, std::vector<Ring>& rings) {
  const auto shards = static_cast<std::uint32_t>(rings.size());
  const shardline::engine::ShardRouter router(4096, shards);  // keys map to shards as in the engine
  std::uint64_t bad = 0;
  std::vector<Slot*> open(shards);
  for (std::uint32_t s = 0; s < shards; ++s) {
    open[s] = &open_slot(rings[s]);
    open[s]->count = 0;
  }
  const unsigned char* p = in.data();
  const unsigned char* end = p + size;  // `in` has 64 more bytes, for the last copy
  while (end - p >= 4) {
    const std::uint32_t n = be32(p);
    if (static_cast<std::size_t>(end - p - 4) < n) break;
    const unsigned char* m = p + 4;
    p += 4 + n;
    if (n != len || m[0] != type) {
      ++bad;
      continue;
    }
    const std::uint32_t shard = router.shard(symbol_key<KeyMode::packed>(m + symbol_at));
    Slot* slot = open[shard];
    std::memcpy(slot->msgs[slot->count], m, 64);  // len <= 53: the frame's tail is ignored
    if (++slot->count == kBatch) {
      publish(rings[shard]);
      slot = open[shard] = &open_slot(rings[shard]);
      slot->count = 0;
    }
  }
  for (std::uint32_t s = 0; s < shards; ++s) {
    if (open[s]->count) {
      publish(rings[s]);
      open[s] = &open_slot(rings[s]);
    }
    open[s]->count = kPhaseEnd;
    publish(rings[s]);
  }
  return bad;
}

int run_sharded(std::vector<unsigned char> nbbo, std::vector<unsigned char> orders, int reps,
                std::uint32_t shards) {
  const std::size_t nbbo_size = nbbo.size(), orders_size = orders.size();
  nbbo.resize(nbbo_size + 64);  // the frames are copied 64 bytes at a time
  orders.resize(orders_size + 64);
  std::vector<double> orders_s, source_cpu, shards_cpu;
  Counts total;
  std::size_t keys = 0;
  std::uint64_t bad = 0;
  for (int r = 0; r < reps; ++r) {
    std::vector<Ring> rings(shards);
    std::vector<ShardResult> results(shards);
    std::atomic<std::uint32_t> phases_done{0};
    std::vector<std::thread> threads;
    for (std::uint32_t s = 0; s < shards; ++s)
      threads.emplace_back(shard_loop, std::ref(rings[s]), std::ref(phases_done), std::ref(results[s]));
    bad = scatter(nbbo, nbbo_size, 2, 42, 1, rings);
    for (std::uint32_t d; (d = phases_done.load()) < shards;) phases_done.wait(d);
    const auto t0 = Clock::now();
    const double cpu0 = thread_cpu_s();
    bad += scatter(orders, orders_size, 1, 53, 12, rings);
    source_cpu.push_back(thread_cpu_s() - cpu0);
    for (auto& t : threads) t.join();
    orders_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    double shards_total = 0;
    for (const auto& res : results) shards_total += res.cpu_s;
    shards_cpu.push_back(shards_total);
    total = {};
    keys = 0;
    for (const auto& res : results) {
      total.messages += res.c.messages;
      total.rejected += res.c.rejected;
      total.bytes_out += res.c.bytes_out;
      keys += res.keys;
    }
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double os = median(orders_s);
  std::printf("{\"key\": \"packed\", \"shards\": %u, \"reps\": %d, \"orders\": %llu, "
              "\"bad\": %llu, \"rejected\": %llu, \"bytes_out\": %llu, \"keys\": %zu, "
              "\"orders_s\": %.6f, \"msgs_per_s\": %.1f, \"source_cpu_ns_per_order\": %.1f, "
              "\"shards_cpu_ns_per_order\": %.1f, \"max_rss_kb\": %ld}\n",
              shards, reps, static_cast<unsigned long long>(total.messages),
              static_cast<unsigned long long>(bad), static_cast<unsigned long long>(total.rejected),
              static_cast<unsigned long long>(total.bytes_out), keys, os,
              os > 0 ? static_cast<double>(total.messages) / os : 0.0,
              median(source_cpu) * 1e9 / static_cast<double>(total.messages),
              median(shards_cpu) * 1e9 / static_cast<double>(total.messages), ru.ru_maxrss);
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
  std::uint32_t shards = 0;
  app.add_option("--shards", shards,
                 "0: one plain loop; N: the hand-written sharded limit (main thread scatters to N "
                 "shard threads over lock-free rings; --key packed only)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto nbbo = read_file(nbbo_file);
    auto orders = read_file(orders_file);
    if (reps < 1) reps = 1;
    if (shards > 0) return run_sharded(std::move(nbbo), std::move(orders), reps, shards);
    return key == "packed" ? run<KeyMode::packed>(nbbo, orders, reps, "packed")
                           : run<KeyMode::xxh3>(nbbo, orders, reps, "xxh3");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "baseline_market_spread: %s\n", e.what());
    return 1;
  }
}
