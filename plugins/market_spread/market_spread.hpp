// Market Spread's messages, state and logic, as plain C++: market_spread.cpp registers them as
// the plugin's components, and bench/micro_bench calls the same functions directly to measure
// what the plugin boundary costs. Wire format and logic: README.md beside this file.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include <shardline/bytes.hpp>
#include <shardline/processing_time.hpp>

namespace market_spread {

// Messages and state are flat structs: the host moves them with memcpy, and nothing in them
// points into the plugin library, so they survive a reload of it.

struct Nbbo {
  char symbol[4];          // as on the wire: right-justified with spaces (" NFX")
  char transact_time[21];  // "20160902-15:47:52.000"
  double bid;
  double offer;
};

struct Order {
  std::uint8_t side;  // 1 buy, 2 sell
  std::uint32_t account;
  char order_id[6];
  char symbol[4];
  double quantity;
  double price;
  char transact_time[21];
};

// Built twice from this file: version 1 (Wallaroo's logic, exactly) and, with
// MARKET_SPREAD_VERSION=2, version 2 — the hot-reload example. Version 2's state adds a count
// of NBBO updates, so its layout changes (schema_version 2), and version 2 tolerates spreads up
// to 10 cents instead of 5. The state carries over a reload through save() and restore().
#ifndef MARKET_SPREAD_VERSION
#define MARKET_SPREAD_VERSION 1
#endif

struct SymbolData {
  static constexpr std::uint32_t schema_version = MARKET_SPREAD_VERSION;
  bool should_reject_trades = true;  // until an NBBO says the spread is tight
  double last_bid = 0;
  double last_offer = 0;
#if MARKET_SPREAD_VERSION >= 2
  std::uint64_t nbbo_updates = 0;
#endif

  void save(shardline::Writer& out) const {
    out.u8(should_reject_trades);
    out.f64be(last_bid);
    out.f64be(last_offer);
#if MARKET_SPREAD_VERSION >= 2
    out.u64be(nbbo_updates);
#endif
  }
  /// Reads what any version saved: older schemas lack fields (defaulted), newer ones add
  /// fields at the end (ignored), so a reload can also go back to an earlier version.
  static SymbolData restore(shardline::Reader& in, std::uint32_t version) {
    SymbolData s;
    s.should_reject_trades = in.u8() != 0;
    s.last_bid = in.f64be();
    s.last_offer = in.f64be();
#if MARKET_SPREAD_VERSION >= 2
    // Version 1 did not count updates: a symbol with a price has seen at least one.
    s.nbbo_updates = version >= 2 ? in.u64be() : (s.last_bid != 0 ? 1 : 0);
#endif
    (void)version;
    return s;
  }
};

struct OrderResult {
  std::uint8_t side;
  std::uint32_t account;
  char order_id[6];
  char symbol[4];
  double quantity;
  double price;
  double bid;    // the symbol's last NBBO when the order arrived
  double offer;
  std::uint64_t timestamp_ns;  // CLOCK_REALTIME
};

static_assert(std::is_trivially_copyable_v<Nbbo> && std::is_trivially_copyable_v<Order> &&
              std::is_trivially_copyable_v<SymbolData> &&
              std::is_trivially_copyable_v<OrderResult>);

constexpr std::uint8_t kOrderType = 1;
constexpr std::uint8_t kNbboType = 2;

[[noreturn, gnu::cold, gnu::noinline]] inline void wrong_type(std::uint8_t type,
                                                             std::uint8_t expected,
                                                             const char* what) {
  throw shardline::DecodeError(std::string("expected ") + what + " type byte " +
                               std::to_string(expected) + ", got " + std::to_string(type));
}

inline void expect_type(shardline::Reader& r, std::uint8_t expected, const char* what) {
  const std::uint8_t type = r.u8();
  if (type != expected) [[unlikely]] wrong_type(type, expected, what);
}

inline Nbbo decode_nbbo(shardline::Reader& r) {
  expect_type(r, kNbboType, "NBBO");
  Nbbo m;
  r.copy_to(m.symbol);
  r.copy_to(m.transact_time);
  m.bid = r.f64be();
  m.offer = r.f64be();
  r.expect_end();
  return m;
}

inline Order decode_order(shardline::Reader& r) {
  expect_type(r, kOrderType, "order");
  Order m;
  m.side = r.u8();
  m.account = r.u32be();
  r.copy_to(m.order_id);
  r.copy_to(m.symbol);
  m.quantity = r.f64be();
  m.price = r.f64be();
  r.copy_to(m.transact_time);
  r.expect_end();
  return m;
}

/// The symbol without its justification spaces: " NFX" is the string key "NFX", the key a
/// topology's keys_file line " NFX" or "NFX" declares.
inline std::string_view symbol_key(const char (&symbol)[4]) {
  // Four bytes: plain loops beat string_view::find_first_not_of's general character search.
  std::size_t begin = 0, end = sizeof symbol;
  while (begin < end && symbol[begin] == ' ') ++begin;
  while (end > begin && symbol[end - 1] == ' ') --end;
  return {symbol + begin, end - begin};
}

#if MARKET_SPREAD_VERSION >= 2
constexpr double kMaxSpread = 0.10;
#else
constexpr double kMaxSpread = 0.05;
#endif

inline void update_nbbo(const Nbbo& m, SymbolData& s) {
  const double diff = m.offer - m.bid;
  const double mid = (m.bid + m.offer) / 2;
  s.should_reject_trades = diff >= kMaxSpread || diff / mid >= 0.05;
#if MARKET_SPREAD_VERSION >= 2
  ++s.nbbo_updates;
#endif
  s.last_bid = m.bid;
  s.last_offer = m.offer;
}

/// The result of an order checked while trading in its symbol is rejected
/// (s.should_reject_trades), written into `r` where it lies: the plugin has the engine build it
/// in its output buffer (shardline::Emit::emplace). Returned by value in an std::optional
/// instead, it was copied right after these stores, 20-30 ns per result (bench/RESULTS.md).
inline void reject_order(const Order& o, const SymbolData& s, OrderResult& r) {
  r.side = o.side;
  r.account = o.account;
  std::memcpy(r.order_id, o.order_id, sizeof r.order_id);
  std::memcpy(r.symbol, o.symbol, sizeof r.symbol);
  r.quantity = o.quantity;
  r.price = o.price;
  r.bid = s.last_bid;
  r.offer = s.last_offer;
  // When the batch of orders reached the check: one clock reading per batch, not per order.
  r.timestamp_ns = shardline::processing_time_ns();
}

/// 55 bytes; the sink writes the 4-byte length prefix in front.
inline void encode_order_result(const OrderResult& r, shardline::Writer& w) {
  w.u8(r.side);
  w.u32be(r.account);
  w.bytes(r.order_id, sizeof r.order_id);
  w.bytes(r.symbol, sizeof r.symbol);
  w.f64be(r.quantity);
  w.f64be(r.price);
  w.f64be(r.bid);
  w.f64be(r.offer);
  w.u64be(r.timestamp_ns);
}

}  // namespace market_spread
