// micro_bench: Google Benchmark of the hot pieces of the engine, in isolation.
//
//   Queue/*          the engine's handoff: a producer fills a Batch from the Pool, pushes it
//                    through a BoundedQueue to a consumer thread, which reads it and gives it
//                    back to the Pool — per batch of 1..256 messages (items = messages).
//   Key/*            partition keys for 4-byte symbols: the plugin's string key (trim + XXH3,
//                    shardline::key_of), XXH3 of the raw 4 bytes, the 4 bytes packed as an
//                    integer; and ShardRouter::shard (mix + key group + table).
//   StateTable/*     StateTable::get for existing keys, 10k and 1M keys, random order.
//   Boundary/*       Market Spread's update_nbbo and check_order from the real market_spread.so
//                    (loaded with loader::Plugin::load): called through the plugin boundary
//                    once per message, once per batch of 256, and the same functions
//                    (plugins/market_spread/market_spread.hpp) called directly here.
//   Decode/*         the plugin's order decoder per batch vs its decode_order called directly.
//   Encode/*         Market Spread's result encoder per batch; a text encoder framed by length
//                    and as lines (each line checked for a newline inside).
//   Split/*          FrameSplitter over 1 MiB of 57-byte length-prefixed frames, as a file
//                    source hands them to its pipeline (items = frames).
#include <benchmark/benchmark.h>

#include <bit>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <shardline/key.hpp>
#include <shardline/plugin.hpp>

#include "connectors/frame_splitter.hpp"
#include "engine/batch.hpp"
#include "engine/bounded_queue.hpp"
#include "engine/message_buffer.hpp"
#include "engine/shard_router.hpp"
#include "loader/plugin.hpp"
#include "market_spread.hpp"
#include "state/state_table.hpp"

using namespace shardline;

namespace {

// ---- Queue: the engine's batch handoff between two threads.

void Queue_BatchHandoff(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  engine::BoundedQueue<engine::Batch*> queue(64);  // the default queue_batches
  engine::Pool<engine::Batch> pool(engine::Reuse::oldest_first);  // as the engine's
  std::uint64_t consumed_sum = 0;
  std::thread consumer([&] {
    std::vector<engine::Batch*> taken;
    std::uint64_t sum = 0;
    while (queue.pop_all(taken)) {
      for (engine::Batch* b : taken) {
        for (std::uint64_t k : b->keys) sum += k;
        pool.release(b);
      }
      taken.clear();
    }
    consumed_sum = sum;
  });
  std::uint64_t next = 0;
  for (auto _ : state) {
    engine::Batch* b = pool.acquire();
    b->keys.clear();
    for (std::size_t i = 0; i < batch; ++i) b->keys.push_back(next++);
    queue.push(b);
  }
  queue.close();
  consumer.join();
  benchmark::DoNotOptimize(consumed_sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
  state.counters["batch"] = static_cast<double>(batch);
}
BENCHMARK(Queue_BatchHandoff)->Arg(1)->Arg(16)->Arg(64)->Arg(256)->UseRealTime();

// ---- Keys and routing.

/// n random symbols as on the wire: 1-4 letters, right-justified with spaces.
std::vector<market_spread::Order> symbols(std::size_t n) {
  std::vector<market_spread::Order> out(n);
  std::mt19937_64 rng(1);
  for (auto& o : out) {
    std::memset(o.symbol, ' ', sizeof o.symbol);
    const std::size_t len = 1 + rng() % 4;
    for (std::size_t c = 0; c < len; ++c) o.symbol[3 - c] = static_cast<char>('A' + rng() % 26);
  }
  return out;
}

void Key_PluginStringKey(benchmark::State& state) {
  const auto syms = symbols(1024);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(key_of(market_spread::symbol_key(syms[i++ & 1023].symbol)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Key_PluginStringKey);

void Key_Xxh3Raw4(benchmark::State& state) {
  const auto syms = symbols(1024);
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(key_of(std::string_view(syms[i++ & 1023].symbol, 4)));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Key_Xxh3Raw4);

void Key_Packed(benchmark::State& state) {
  const auto syms = symbols(1024);
  std::size_t i = 0;
  for (auto _ : state) {
    std::uint32_t k;
    std::memcpy(&k, syms[i++ & 1023].symbol, 4);
    benchmark::DoNotOptimize(k);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Key_Packed);

void Key_RouterShard(benchmark::State& state) {
  engine::ShardRouter router(4096, 2);
  std::vector<std::uint64_t> keys;
  for (const auto& o : symbols(1024)) keys.push_back(key_of(market_spread::symbol_key(o.symbol)));
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(router.shard(keys[i++ & 1023]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(Key_RouterShard);

// ---- Market Spread: the plugin's own types and functions (market_spread.hpp), loaded as the
// plugin and also called directly, to measure the plugin boundary.

using market_spread::Nbbo;
using market_spread::Order;
using market_spread::OrderResult;
using market_spread::SymbolData;

void put_be(std::vector<std::byte>& v, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  for (std::size_t i = 0; i < n; ++i) v.push_back(b[n - 1 - i]);
}

/// The plugin, its components, and batches of decoded messages and states to run them on.
struct MarketSpread {
  static constexpr std::size_t kBatch = 256;
  std::shared_ptr<loader::Plugin> plugin;
  Decoder* nbbo_decoder;
  Decoder* order_decoder;
  StateComputation* update_nbbo;
  StateComputation* check_order;
  StateFactory* factory;
  Encoder* result_encoder;
  const TypeDesc* nbbo_type;
  const TypeDesc* order_type;
  const TypeDesc* result_type;
  const TypeDesc* state_type;
  std::vector<std::vector<std::byte>> nbbo_frames_bytes, order_frames_bytes;
  std::vector<Frame> nbbo_frames, order_frames;
  std::unique_ptr<engine::MessageBuffer> nbbos, orders;
  std::vector<void*> states;  // one per message of the batch
  std::vector<std::unique_ptr<std::byte[]>> state_memory;

  template <class C>
  C* get(ComponentKind kind, const char* name, const ComponentInfo** info = nullptr) {
    const ComponentInfo* c = plugin->find(kind, name);
    if (!c) throw std::runtime_error(std::string("market_spread.so has no ") + name);
    if (info) *info = c;
    return static_cast<C*>(c->impl.get());
  }

  MarketSpread() {
    plugin = loader::Plugin::load(SHARDLINE_PLUGIN_DIR "/market_spread.so");
    const ComponentInfo *nd, *od, *cc, *sf;
    nbbo_decoder = get<Decoder>(ComponentKind::decoder, "nbbo", &nd);
    order_decoder = get<Decoder>(ComponentKind::decoder, "order", &od);
    update_nbbo = get<StateComputation>(ComponentKind::state_computation, "update_nbbo");
    check_order = get<StateComputation>(ComponentKind::state_computation, "check_order", &cc);
    factory = get<StateFactory>(ComponentKind::state, "symbol_data", &sf);
    result_encoder = get<Encoder>(ComponentKind::encoder, "order_result");
    nbbo_type = nd->output;
    order_type = od->output;
    result_type = cc->output;
    state_type = sf->state;
    if (nbbo_type->size != sizeof(Nbbo) || order_type->size != sizeof(Order) ||
        result_type->size != sizeof(OrderResult) || state_type->size != sizeof(SymbolData))
      throw std::runtime_error("market_spread.so was built from another market_spread.hpp");

    std::mt19937_64 rng(7);
    for (std::size_t i = 0; i < kBatch; ++i) {
      const char sym[4] = {' ', char('A' + i % 26), char('A' + i / 26 % 26), 'X'};
      const char time[21] = {'2', '0', '1', '6', '0', '9', '0', '2', '-', '1', '5', ':',
                             '4', '7', ':', '5', '2', '.', '0', '0', '0'};
      const double bid = 10.0 + static_cast<double>(rng() % 100000) / 100.0;
      const double offer = bid + (i % 7 == 0 ? 0.10 : 0.02);
      std::vector<std::byte> n;
      n.push_back(std::byte{2});
      for (char c : sym) n.push_back(std::byte(c));
      for (char c : time) n.push_back(std::byte(c));
      put_be(n, &bid, 8);
      put_be(n, &offer, 8);
      nbbo_frames_bytes.push_back(std::move(n));
      std::vector<std::byte> o;
      o.push_back(std::byte{1});
      o.push_back(std::byte{1});
      const std::uint32_t account = static_cast<std::uint32_t>(i);
      put_be(o, &account, 4);
      for (char c : {'A', 'B', 'C', 'D', 'E', 'F'}) o.push_back(std::byte(c));
      for (char c : sym) o.push_back(std::byte(c));
      const double qty = 100, price = bid;
      put_be(o, &qty, 8);
      put_be(o, &price, 8);
      for (char c : time) o.push_back(std::byte(c));
      order_frames_bytes.push_back(std::move(o));
    }
    for (const auto& b : nbbo_frames_bytes) nbbo_frames.push_back({b.data(), static_cast<std::uint32_t>(b.size())});
    for (const auto& b : order_frames_bytes) order_frames.push_back({b.data(), static_cast<std::uint32_t>(b.size())});
    nbbos = std::make_unique<engine::MessageBuffer>(nbbo_type);
    orders = std::make_unique<engine::MessageBuffer>(order_type);
    ErrorSink sink(&MarketSpread::fail, nullptr);
    nbbo_decoder->decode(nbbo_frames.data(), kBatch, *nbbos, sink);
    order_decoder->decode(order_frames.data(), kBatch, *orders, sink);
    for (std::size_t i = 0; i < kBatch; ++i) {
      state_memory.push_back(std::make_unique<std::byte[]>(sizeof(SymbolData) + 64));
      void* at = state_memory.back().get();
      factory->construct(at, i);
      states.push_back(at);
    }
  }
  static void fail(void*, std::size_t i, std::string_view what) {
    throw std::runtime_error("message " + std::to_string(i) + ": " + std::string(what));
  }
};

MarketSpread& market_spread() {
  static MarketSpread ms;
  return ms;
}

void Boundary_UpdateNbbo_PerMessage(benchmark::State& state) {
  auto& ms = market_spread();
  engine::MessageBuffer out(nullptr);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  const MessageSpan all = ms.nbbos->span();
  for (auto _ : state) {
    for (std::size_t i = 0; i < MarketSpread::kBatch; ++i) {
      const MessageSpan one{all.data + i * all.stride, 1, all.stride};
      ms.update_nbbo->run(one, &ms.states[i], out, sink);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_UpdateNbbo_PerMessage);

void Boundary_UpdateNbbo_PerBatch(benchmark::State& state) {
  auto& ms = market_spread();
  engine::MessageBuffer out(nullptr);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  for (auto _ : state) ms.update_nbbo->run(ms.nbbos->span(), ms.states.data(), out, sink);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_UpdateNbbo_PerBatch);

void Boundary_UpdateNbbo_Inlined(benchmark::State& state) {
  auto& ms = market_spread();
  const MessageSpan all = ms.nbbos->span();
  for (auto _ : state) {
    for (std::size_t i = 0; i < MarketSpread::kBatch; ++i)
      market_spread::update_nbbo(all.at<Nbbo>(i), *static_cast<SymbolData*>(ms.states[i]));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_UpdateNbbo_Inlined);

// check_order with every state rejecting: one OrderResult per order, and one clock_gettime per
// call into the plugin (shardline::processing_time_ns()): per order when called per message.
void reject_all(MarketSpread& ms) {
  for (void* s : ms.states) static_cast<SymbolData*>(s)->should_reject_trades = true;
}

void Boundary_CheckOrder_PerMessage(benchmark::State& state) {
  auto& ms = market_spread();
  reject_all(ms);
  engine::MessageBuffer out(ms.result_type);
  out.reserve(MarketSpread::kBatch);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  const MessageSpan all = ms.orders->span();
  for (auto _ : state) {
    out.clear();
    for (std::size_t i = 0; i < MarketSpread::kBatch; ++i) {
      const MessageSpan one{all.data + i * all.stride, 1, all.stride};
      ms.check_order->run(one, &ms.states[i], out, sink);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_CheckOrder_PerMessage);

void Boundary_CheckOrder_PerBatch(benchmark::State& state) {
  auto& ms = market_spread();
  reject_all(ms);
  engine::MessageBuffer out(ms.result_type);
  out.reserve(MarketSpread::kBatch);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  for (auto _ : state) {
    out.clear();
    ms.check_order->run(ms.orders->span(), ms.states.data(), out, sink);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_CheckOrder_PerBatch);

void Boundary_CheckOrder_Inlined(benchmark::State& state) {
  auto& ms = market_spread();
  reject_all(ms);
  std::vector<OrderResult> out(MarketSpread::kBatch);
  const MessageSpan all = ms.orders->span();
  for (auto _ : state) {
    std::size_t n = 0;
    const shardline::detail::CallTime call;  // one clock reading for the batch, as the SDK's
    for (std::size_t i = 0; i < MarketSpread::kBatch; ++i) {  // kept as the SDK's loop keeps it
      auto& s = *static_cast<SymbolData*>(ms.states[i]);
      if (!s.should_reject_trades) continue;
      auto* r = ::new (static_cast<void*>(&out[n++])) OrderResult();  // as Emit::emplace()
      market_spread::reject_order(all.at<Order>(i), s, *r);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Boundary_CheckOrder_Inlined);

void Encode_OrderResults_PluginPerBatch(benchmark::State& state) {
  auto& ms = market_spread();
  reject_all(ms);
  engine::MessageBuffer results(ms.result_type);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  ms.check_order->run(ms.orders->span(), ms.states.data(), results, sink);
  std::vector<std::byte> bytes;
  bytes.reserve(64 * 1024);
  for (auto _ : state) {
    bytes.clear();
    EncodedOutput out(bytes, Framing::length_prefixed, 4096);  // as the engine's shards
    ms.result_encoder->encode(results.span(), out, sink);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * results.count()));
}
BENCHMARK(Encode_OrderResults_PluginPerBatch);

/// A text encoder (a std::string per message, word count's kind of output) for a sink framed
/// by length (Arg 0) or as lines (Arg 1), where each message is also checked for a newline.
void Encode_Text(benchmark::State& state) {
  Manifest m;
  PluginBuilder(m).encoder("text", [](const std::string& s) { return s; });
  auto& encoder = *static_cast<Encoder*>(m.components.front().impl.get());
  engine::MessageBuffer words(&type_desc_v<std::string>);
  for (int i = 0; i < 256; ++i) {
    ::new (words.room(1)) std::string("word " + std::to_string(i * 7919) + " count " +
                                      std::to_string(i));  // 18-24 bytes: inline strings
    words.commit(1);
  }
  ErrorSink sink(&MarketSpread::fail, nullptr);
  const Framing framing = state.range(0) ? Framing::lines : Framing::length_prefixed;
  std::vector<std::byte> bytes;
  bytes.reserve(64 * 1024);
  for (auto _ : state) {
    bytes.clear();
    EncodedOutput out(bytes, framing, 4096);
    encoder.encode(words.span(), out, sink);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * words.count()));
}
BENCHMARK(Encode_Text)->Arg(0)->Arg(1);

void Decode_Orders_PluginPerBatch(benchmark::State& state) {
  auto& ms = market_spread();
  engine::MessageBuffer out(ms.order_type);
  out.reserve(MarketSpread::kBatch);
  ErrorSink sink(&MarketSpread::fail, nullptr);
  for (auto _ : state) {
    out.clear();
    ms.order_decoder->decode(ms.order_frames.data(), MarketSpread::kBatch, out, sink);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Decode_Orders_PluginPerBatch);

void Decode_Orders_Inlined(benchmark::State& state) {
  auto& ms = market_spread();
  std::vector<Order> out(MarketSpread::kBatch);
  for (auto _ : state) {
    std::size_t n = 0;
    for (const Frame& f : ms.order_frames) {
      shardline::Reader r(f);
      // Built in place, as the SDK's batch loop does: a temporary copied into the slot would
      // stall on store forwarding (its fields are written narrow, then read back 16 bytes wide).
      ::new (static_cast<void*>(&out[n++])) Order(market_spread::decode_order(r));
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * MarketSpread::kBatch));
}
BENCHMARK(Decode_Orders_Inlined);

// ---- StateTable lookups of existing keys, in random order (the 1M-key table is far larger
// than the caches: every lookup misses).

void StateTable_Get(benchmark::State& state) {
  auto& ms = market_spread();
  const auto n = static_cast<std::size_t>(state.range(0));
  state::StateTable table(ms.state_type, ms.factory, true);
  std::vector<std::uint64_t> keys;
  for (std::size_t i = 0; i < n; ++i) keys.push_back(key_of(std::to_string(i)));
  for (std::uint64_t k : keys) table.get(k);
  std::mt19937_64 rng(3);
  std::vector<std::uint64_t> order(1 << 16);
  for (auto& k : order) k = keys[rng() % n];
  std::size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(table.get(order[i++ & 0xffff]));
  state.SetItemsProcessed(state.iterations());
  state.counters["overhead_B_per_key"] =
      static_cast<double>(table.overhead_bytes()) / static_cast<double>(table.size());
}
BENCHMARK(StateTable_Get)->Arg(10'000)->Arg(1'000'000);

// ---- Split: framing a read buffer.

class CountingHandler final : public connectors::FrameHandler {
 public:
  std::size_t on_frames(const Frame* frames, std::size_t n, std::uint64_t,
                        const connectors::FrameOrigin&) override {
    for (std::size_t i = 0; i < n; ++i) bytes += frames[i].size;
    count += n;
    return n;
  }
  void on_bad_input(std::string_view) override { std::abort(); }
  std::uint64_t count = 0, bytes = 0;
};

void Split_LengthPrefixed(benchmark::State& state) {
  constexpr std::size_t kFrame = 57, kFrames = (std::size_t(1) << 20) / kFrame;
  std::vector<std::byte> input(kFrames * kFrame);
  for (std::size_t i = 0; i < kFrames; ++i) {
    const std::uint32_t len = htobe32(kFrame - 4);
    std::memcpy(input.data() + i * kFrame, &len, 4);
    input[i * kFrame + 4] = std::byte{1};
  }
  connectors::FrameSplitter splitter(Framing::length_prefixed, 1 << 20);
  CountingHandler handler;
  // deliver() frames everything, so every write_space() returns the front of the same buffer,
  // which still holds the frames: the read is simulated once, and only the framing is timed.
  std::memcpy(splitter.write_space(input.size()).data(), input.data(), input.size());
  for (auto _ : state) {
    if (splitter.write_space(input.size()).data() == nullptr) std::abort();
    splitter.commit(input.size());
    splitter.deliver(handler);
  }
  if (handler.count != kFrames * state.iterations()) std::abort();
  state.SetItemsProcessed(static_cast<std::int64_t>(handler.count));
}
BENCHMARK(Split_LengthPrefixed);

}  // namespace

BENCHMARK_MAIN();
