// undefined_symbol: a valid plugin whose computation calls a function nothing defines. Built
// without -Wl,-z,defs, it links; the host's dlopen (RTLD_NOW) then fails with
// "undefined symbol: _Z31shardline_test_missing_functionm", which the host demangles.
#include <cstdint>

#include <shardline/plugin.hpp>

void shardline_test_missing_function(std::uint64_t v);

SHARDLINE_PLUGIN("undefined_symbol", "1.0.0", p) {
  p.computation("call_missing", [](const std::uint64_t& v) {
    shardline_test_missing_function(v);
    return v;
  });
}
