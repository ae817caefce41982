// "host:port" as written in a topology, for the TCP source (listen) and the TCP sink (connect):
// checked when the topology is read, split again by the connector that uses it.
//
// The host is kept as text and resolved by whoever uses it (a name such as "localhost" may
// resolve differently over time). An IPv6 literal is written in brackets: "[::1]:7000".
// Port 0 is accepted: a listening source then gets a port chosen by the kernel.
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace shardline::topology {

struct HostPort {
  std::string host;  ///< without the brackets of an IPv6 literal
  std::uint16_t port = 0;
};

/// Splits "host:port". Throws std::runtime_error("expected host:port, got '...'") when the text
/// has no colon, an empty host, or a port that is not a number from 0 to 65535, and says so
/// when it holds a blank (no host name or address has one: a name with a blank around it
/// would never resolve, and its sink would try to reconnect for ever). [any thread]
inline HostPort parse_host_port(std::string_view text) {
  const auto fail = [&]() -> HostPort {
    throw std::runtime_error("expected host:port, got '" + std::string(text) + "'");
  };
  if (text.find_first_of(" \t\r\n") != std::string_view::npos)
    throw std::runtime_error("expected host:port without blanks, got '" + std::string(text) +
                             "'");
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail();
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return fail();  // an unbracketed IPv6 literal: the port would be ambiguous
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() ||
      value > 65535)
    return fail();
  return {std::string(host), static_cast<std::uint16_t>(value)};
}

}  // namespace shardline::topology
