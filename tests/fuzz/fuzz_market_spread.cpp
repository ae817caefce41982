// Fuzz target: Market Spread's decoders (plugins/market_spread) through the SDK's Reader.
//
// Byte 0 picks the decoder (NBBO, order, or a saved SymbolData of schema 1 or 2), the rest is
// the frame. A frame that does not match its format must throw DecodeError, the error the host
// counts and reports for the message: never read past the frame or crash. What decodes is
// used as the plugin uses it (its symbol as a string key).
#include <shardline/bytes.hpp>

#include "fuzz_support.hpp"
#include "market_spread.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const shardline::Frame frame{reinterpret_cast<const std::byte*>(data + 1),
                               static_cast<std::uint32_t>(size - 1)};
  shardline::Reader in(frame);
  try {
    switch (data[0] % 4) {
      case 0: {
        const auto nbbo = market_spread::decode_nbbo(in);
        FUZZ_CHECK(market_spread::symbol_key(nbbo.symbol).size() <= 4);
        FUZZ_CHECK(frame.size == 42);
        break;
      }
      case 1: {
        const auto order = market_spread::decode_order(in);
        FUZZ_CHECK(market_spread::symbol_key(order.symbol).size() <= 4);
        FUZZ_CHECK(frame.size == 53);
        break;
      }
      default:
        (void)market_spread::SymbolData::restore(in, data[0] % 4 - 1);
        FUZZ_CHECK(in.offset() <= frame.size);
    }
  } catch (const shardline::DecodeError& e) {
    FUZZ_CHECK(e.what()[0] != '\0');
  }
  return 0;
}
