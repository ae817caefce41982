// Market Spread: Wallaroo's reference application, as a Shardline plugin.
//
// Two pipelines share one partitioned state, SymbolData per stock symbol. The NBBO pipeline
// (market data) decides per symbol whether the spread is too wide to trade; the orders
// pipeline reports every order that arrives while its symbol is in that state. Wire format and
// logic: README.md beside this file ("fixish" frames, big-endian).
#include <shardline/plugin.hpp>

#include "market_spread.hpp"

SHARDLINE_PLUGIN("market_spread", MARKET_SPREAD_VERSION == 1 ? "1.0.0" : "2.0.0", p) {
  using namespace market_spread;
  // Lambdas rather than function names, and `inline` functions: the SDK calls them once per
  // message inside its batch loop, where a lambda inlines (and the functions with it) and a
  // function pointer stays an indirect call.
  p.decoder("nbbo", [](shardline::Reader& r) { return decode_nbbo(r); });
  p.decoder("order", [](shardline::Reader& r) { return decode_order(r); });
  p.partition("nbbo_symbol", [](const Nbbo& m) { return symbol_key(m.symbol); });
  p.partition("order_symbol", [](const Order& m) { return symbol_key(m.symbol); });
  p.state<SymbolData>("symbol_data");
  p.state_computation("update_nbbo", [](const Nbbo& m, SymbolData& s) { update_nbbo(m, s); });
  p.state_computation("check_order", [](const Order& o, SymbolData& s,
                                        shardline::Emit<OrderResult>& emit) {
    if (s.should_reject_trades) reject_order(o, s, emit.emplace());
  });
  p.encoder("order_result",
            [](const OrderResult& r, shardline::Writer& w) { encode_order_result(r, w); });
}
