// shardline/type_name.hpp — a stable, readable name for a C++ type, computed at compile time.
//
// The manifest names the type every component consumes, produces or holds; the host compares
// these names when it wires a topology, so `Order` produced by one step can only feed a step
// that consumes `Order`. Names come from the compiler (`__PRETTY_FUNCTION__`), so a user
// struct `market::Order` is named "market::Order" with no registration.
#pragma once

#include <string>
#include <string_view>

namespace shardline {
namespace detail {
template <class T>
constexpr std::string_view pretty_name() {
  std::string_view p = __PRETTY_FUNCTION__;
  const auto begin = p.find("T = ") + 4;
  const auto end = p.find_first_of(";]", begin);
  return p.substr(begin, end - begin);
}
}  // namespace detail

/// The name the manifest uses for T.
template <class T>
constexpr std::string_view type_name() {
  if constexpr (std::is_same_v<T, std::string>) {
    return "std::string";
  } else {
    return detail::pretty_name<T>();
  }
}

}  // namespace shardline
